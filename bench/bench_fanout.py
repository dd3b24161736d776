"""Fan-out: N subscribers of one variant released at once and delivered, against a floor.

    .venv/bin/python bench/bench_fanout.py --subscribers 100000
    .venv/bin/python bench/bench_fanout.py --subscribers 1000000 --sides restock
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --database postgresql --workers 4
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --provider logger --sides restock
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --no-dashboard   # scratch DB
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --profile /tmp/fanout.prof
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --repeat 5   # median ratio

Seeds N pending email subscribers of one variant (bulk insert, not timed) and then runs two
sides against the same fake SendGrid (its own process on 127.0.0.1, counting requests and
personalizations):

- **floor** (written here, in this process): only the unavoidable work. Read the pending rows
  in keyset chunks of 1,000 (same order and index as restock's release), sign a
  per-recipient unsubscribe token with restock's own `Signer`, build one SendGrid v3 Mail
  Send payload of 1,000 personalizations (to, custom_args, List-Unsubscribe headers, the
  unsubscribe substitution), POST it over a keep-alive connection, mark the chunk `notified`
  and commit. Raw DB-API statements, on its own copy of the seeded database (the dashboard
  triggers of migration 0003 fire for it too).
- **restock**: `stock set` (the restock is opened), then `--workers` worker processes doing what
  `restock worker --once` does (`App.from_config(...).worker().drain()`; with more than one
  worker each keeps draining until no subscriber is pending, since `--once` quits as soon as
  nothing is due and the other workers would stop while one still releases the wave) with the real
  SendGrid provider (or the logger provider, `--provider logger`). Each worker reports its
  start-up (interpreter + imports) apart from its work, its peak RSS (getrusage), and the
  time spent per stage, measured by wrapping the core functions that implement each stage
  (nothing in the core is edited):

  | stage | wrapped |
  | --- | --- |
  | release | `RestockStore.release` (INSERT ... SELECT of a chunk into `deliveries`) |
  | claim | `Outbox.claim` (lease a batch, read it back with its subscriptions) |
  | render | `Worker._messages` (per-recipient token + message from cached templates) |
  | provider | each provider instance's `send` (payload + HTTP) |
  | record | `Outbox.record` and `Outbox.cancel` (results, subscription status) |
  | requests | `Outbox.store_request` / `stored_requests` / `delivery_members` (migration 0004; only providers with `stable_requests`) |
  | other | the rest of the work (Python glue, metrics, restock bookkeeping) |

The ratio printed is restock's work time (from the restock opening to the last worker done,
start-up excluded) over the floor's; the wall time including process start-up is printed too,
and the CPU time of each side's own process (the floor's loop, the workers' work) with its
ratio, each stage's CPU time and the time spent in the garbage collector: on a shared machine
CPU time moves less with other load than wall time.

`--no-dashboard` drops the dashboard demand triggers and the deliveries-per-restock index of
migrations 0003/0007 from both sides' scratch databases, to measure what they cost;
`--sql-timing` lists the worker's SQL statements by total time (cursor execute only);
`--stable-requests` makes the SendGrid instance store its requests first (the 0004 path the
Resend batch provider takes) to measure that. `--profile FILE` runs the (single) worker under
cProfile and prints the top functions by cumulative and own time. `--repeat N` runs both
sides N times, alternating, each on a fresh copy of the seeded database, and prints each
round's ratios and their medians: on a shared machine one round's ratio moves by a fifth.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("RESTOCK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PUBLIC_URL = "https://shop.example"

FAKE_SENDGRID = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = {"requests": 0, "personalizations": 0}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v3/mail/send":
            n = len(json.loads(body).get("personalizations", []))
            with lock:
                count["requests"] += 1
                count["personalizations"] += n
                number = count["requests"]
            self.send_response(202)
            self.send_header("X-Message-Id", "bench%d" % number)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        data = json.dumps(count).encode()
        if self.path == "/reset":
            with lock:
                count["requests"] = count["personalizations"] = 0
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

#: one worker process: imports (timed), stage timers, App.worker().drain() (timed)
WORKER = r"""
import time
T0 = time.time()
import json, resource, sys
config, options = sys.argv[1], json.loads(sys.argv[2])
import sqlalchemy, jinja2, httpx  # noqa: F401  (what a worker imports anyway)
from restock_core.app import App
from restock_core.worker import Worker
from restock_core.store.outbox import Outbox
from restock_core.store.restocks import RestockStore
if options["provider"] == "sendgrid":
    import restock_sendgrid.provider  # noqa: F401
T_IMPORTED = time.time()

stages = {}
cpu = {}
calls = {}
def timed(stage, fn):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        cpu_started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - started
            cpu[stage] = cpu.get(stage, 0.0) + time.thread_time() - cpu_started
            calls[stage] = calls.get(stage, 0) + 1
    return wrapper
missing = []
for stage, owner, name in [
    ("release", RestockStore, "release"),
    ("claim", Outbox, "claim"),
    ("render", Worker, "_messages"),
    ("record", Outbox, "record"),
    ("record", Outbox, "cancel"),
    ("requests", Outbox, "store_request"),
    ("requests", Outbox, "stored_requests"),
    ("requests", Outbox, "delivery_members"),
]:
    if hasattr(owner, name):
        setattr(owner, name, timed(stage, getattr(owner, name)))
    else:
        missing.append(f"{owner.__name__}.{name}")

app = App.from_config(config)
from restock_core.logs import setup_logging
setup_logging(app.settings.log_level)  # as `restock worker` does: log lines cost what they cost
sql = {}
if options.get("sql"):
    from sqlalchemy import event
    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()
    def after(conn, cursor, statement, parameters, context, executemany):
        key = " ".join(statement.split())[:110]
        spent = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        total, n = sql.get(key, (0.0, 0))
        sql[key] = (total + spent, n + 1)
    for engine in {app.engine, app.read_engine}:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
for instance in app.providers.values():
    instance.obj.send = timed("provider", instance.obj.send)
    if options.get("stable_requests"):
        instance.obj.stable_requests = True
worker = app.worker()
from restock_core.worker import freeze_heap
freeze_heap()  # as `restock worker` does at start-up, before any work
import gc
gc_time = [0.0, 0, 0.0]  # seconds in the collector, full collections, seconds in those
def on_gc(phase, info, _started=[0.0]):
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    spent = time.perf_counter() - _started[0]
    gc_time[0] += spent
    if info["generation"] == 2:
        gc_time[1] += 1
        gc_time[2] += spent
gc.callbacks.append(on_gc)
T_READY = time.time()
CPU_READY = time.process_time()
profile = None
if options.get("profile"):
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
done = worker.drain(max_seconds=3600)
if options.get("until_all"):
    # `worker --once` returns as soon as nothing is due *now*: with N workers, the ones that
    # start while another still releases the wave would quit at once and the run would
    # measure one worker. Keep draining until no subscriber of the bench is pending.
    from sqlalchemy import text
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 60:
        with app.read_engine.connect() as conn:
            left = conn.execute(text("SELECT 1 FROM subscriptions WHERE status = 'pending' LIMIT 1")).first()
        if left is None:
            break
        more = worker.drain(max_seconds=3600)
        done += more
        if more:
            idle_since = time.monotonic()
        else:
            time.sleep(0.05)
if profile is not None:
    profile.disable()
    profile.dump_stats(options["profile"])
T_DONE = time.time()
CPU_DONE = time.process_time()
app.close()
print("WORKERJSON " + json.dumps({
    "t0": T0, "imported": T_IMPORTED, "ready": T_READY, "done": T_DONE, "items": done,
    "stages": stages, "cpu": cpu, "work_cpu": CPU_DONE - CPU_READY, "calls": calls, "missing": missing,
    "sql": sorted(([k, t, n] for k, (t, n) in sql.items()), key=lambda x: -x[1])[:12],
    "gc": gc_time,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}), flush=True)
"""

DASHBOARD_TRIGGERS = ("trg_demand_insert", "trg_demand_update", "trg_demand_delete")
DASHBOARD_INDEXES = ("ix_deliveries_restock_wave", "ix_deliveries_restock")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def seed(url: str, n: int, *, no_dashboard: bool) -> None:
    from restock_core.app import App
    from restock_core.config import parse_config
    from restock_core.db import stock, subscriptions

    app = App(parse_config({"restock": {"database": url, "public_url": PUBLIC_URL}}))
    app.migrate()
    start = datetime.now(UTC) - timedelta(days=1)
    with app.engine.begin() as conn:
        conn.execute(
            sa.insert(stock).values(
                source="manual",
                variant_id="hot",
                scope="default",
                quantity=0,
                observed_at=start,
                updated_at=start,
            )
        )
        chunk = 20000
        if app.is_postgres:
            # one statement: psycopg's executemany sends one INSERT per row, and each fires
            # 0003's statement trigger on the one hot `demand` row: minutes for 100k rows
            conn.execute(
                sa.text(
                    "INSERT INTO subscriptions (variant_id, scope, source, channel, contact, "
                    "status, attributes, created_at, updated_at) SELECT 'hot', 'default', "
                    "'manual', 'email', 'shopper' || i || '@example.com', 'pending', '{}', "
                    ":start + i * interval '1 microsecond', :start "
                    "FROM generate_series(0, :n - 1) AS i"
                ),
                {"start": start, "n": n},
            )
        for base in range(0, 0 if app.is_postgres else n, chunk):
            conn.execute(
                sa.insert(subscriptions),
                [
                    {
                        "variant_id": "hot",
                        "scope": "default",
                        "source": "manual",
                        "channel": "email",
                        "contact": f"shopper{i}@example.com",
                        "status": "pending",
                        "attributes": {},
                        "created_at": start + timedelta(microseconds=i),
                        "updated_at": start,
                    }
                    for i in range(base, min(n, base + chunk))
                ],
            )
        if no_dashboard:
            postgres = app.is_postgres
            for name in DASHBOARD_TRIGGERS:
                on = " ON subscriptions" if postgres else ""
                conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}{on}"))
            for name in DASHBOARD_INDEXES:
                conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    if app.is_postgres:
        with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE subscriptions"))
    app.signer  # noqa: B018  (store the unsubscribe secret now, outside the timed part)
    app.close()
    if not app.is_postgres:  # fold the WAL into the file, so a copy of the file is complete
        raw = sqlite3.connect(url.removeprefix("sqlite:///"))
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()


def count_notified(url: str) -> int:
    from restock_core.db import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("select count(*) from subscriptions where status = 'notified'")
        ).scalar()
    engine.dispose()
    return int(value or 0)


# ---------------------------------------------------------------------- the floor


def floor(url: str, port: int, chunk: int = 1000) -> tuple[float, float]:
    """The least work a fan-out can do; returns its seconds and its CPU seconds."""
    from restock_core.db import create_engine
    from restock_core.tokens import Signer

    engine = create_engine(url)
    with engine.connect() as conn:
        secret = conn.execute(
            sa.text("select value from restock_meta where key = 'unsubscribe_secret'")
        ).scalar()
    engine.dispose()
    signer = Signer(str(secret or "bench-secret"))
    postgres = url.startswith("postgresql")
    if postgres:
        import psycopg

        pg_url = url.replace("postgresql+psycopg://", "postgresql://")
        pg_url, _, query = pg_url.partition("?")
        options = query.split("options=", 1)[1].replace("%3D", "=") if query else ""
        db: Any = psycopg.connect(pg_url, options=options)
        mark = "%s"
    else:
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        mark = "?"
    subject = "Back in stock: Hot item"
    text = f"Hot item is back in stock: {PUBLIC_URL}/p/hot\n\nUnsubscribe: -unsubscribe-\n"
    html = (
        f'<p><a href="{PUBLIC_URL}/p/hot">Hot item</a> is back in stock.</p>'
        '<p><a href="-unsubscribe_html-">Unsubscribe</a></p>'
    )
    select = (
        "SELECT id, contact, created_at FROM subscriptions WHERE source = 'manual' AND "
        "variant_id = 'hot' AND scope = 'default' AND status = 'pending' "
        f"AND (created_at, id) > ({mark}, {mark}) ORDER BY created_at, id LIMIT {chunk}"
    )
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": "Bearer SG.bench", "Content-Type": "application/json"}
    cursor: tuple[Any, int] = ("", 0) if not postgres else (datetime(1970, 1, 1, tzinfo=UTC), 0)
    started = time.perf_counter()
    cpu_started = time.process_time()
    while True:
        cur = db.cursor()
        rows = cur.execute(select, cursor).fetchall()
        if not rows:
            break
        personalizations = []
        for sub_id, contact, _ in rows:
            link = f"{PUBLIC_URL}/unsubscribe/{signer.sign(sub_id)}"
            personalizations.append(
                {
                    "to": [{"email": contact}],
                    "custom_args": {"subscription_id": str(sub_id)},
                    "headers": {
                        "List-Unsubscribe": f"<{link}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    },
                    "substitutions": {"-unsubscribe-": link, "-unsubscribe_html-": link},
                }
            )
        body = json.dumps(
            {
                "from": {"email": "shop@example.com"},
                "subject": subject,
                "content": [
                    {"type": "text/plain", "value": text},
                    {"type": "text/html", "value": html},
                ],
                "personalizations": personalizations,
            }
        )
        connection.request("POST", "/v3/mail/send", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            raise SystemExit(f"fake SendGrid answered {response.status}")
        now = datetime.now(UTC)
        stamp: Any = now if postgres else now.isoformat(" ")
        ids = [r[0] for r in rows]
        if not postgres:
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(
            f"UPDATE subscriptions SET status = 'notified', notified_at = {mark}, "
            f"updated_at = {mark} WHERE id IN ({', '.join(mark for _ in ids)})",
            [stamp, stamp, *ids],
        )
        db.commit() if postgres else cur.execute("COMMIT")
        cursor = (rows[-1][2], rows[-1][0])
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    connection.close()
    db.close()
    return elapsed, cpu


# ---------------------------------------------------------------------- restock's side


def run_restock(url: str, config: Path, args: argparse.Namespace) -> dict[str, Any]:
    cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
    options = json.dumps(
        {
            "provider": args.provider,
            "profile": args.profile,
            "stable_requests": args.stable_requests,
            "sql": args.sql_timing,
            "until_all": args.workers > 1,
        }
    )
    opened_at = time.time()
    subprocess.run([*cli, "stock", "set", "hot", "5"], check=True, capture_output=True)
    spawned_at = time.time()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(config), options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.workers)
    ]
    reports = []
    for w in workers:
        out, err = w.communicate()
        line = next((x for x in out.splitlines() if x.startswith("WORKERJSON ")), None)
        if line is None:
            raise SystemExit(f"worker failed:\n{err[-3000:]}")
        reports.append(json.loads(line[len("WORKERJSON ") :]))
    finished_at = time.time()
    return {
        "stock_set": spawned_at - opened_at,
        "wall": finished_at - opened_at,
        "work": max(r["done"] for r in reports) - min(r["ready"] for r in reports),
        "startup": [r["imported"] - spawned_at for r in reports],
        "setup": [r["ready"] - r["imported"] for r in reports],
        "reports": reports,
    }


def print_profile(path: str) -> None:
    import io
    import pstats

    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(path, stream=text).sort_stats(order).print_stats(25)
        body = text.getvalue()
        print(f"\n--- worker profile, top 25 by {order} ---")
        print(body[body.find("   ncalls") :])


def run_sides(
    args: argparse.Namespace,
    sides: list[str],
    tmp: Path,
    url: str,
    port: int,
    postgres: bool,
    database: Any,
) -> dict[str, Any]:
    """One round: the floor on its own copy of the seeded database, then restock."""
    import httpx

    results: dict[str, Any] = {}
    if "floor" in sides:
        if postgres:
            floor_url = database(tmp, "floor")
            seed(floor_url, args.subscribers, no_dashboard=args.no_dashboard)
        else:
            floor_url = f"sqlite:///{tmp / 'floor.db'}"
            shutil.copy(tmp / "restock.db", tmp / "floor.db")
        httpx.get(f"http://127.0.0.1:{port}/reset")
        load = loadavg()
        seconds, cpu_seconds = floor(floor_url, port)
        counts = httpx.get(f"http://127.0.0.1:{port}/reset").json()
        results["floor"] = {
            "work": seconds,
            "cpu": cpu_seconds,
            "notified": count_notified(floor_url),
            "requests": counts,
            "load": f"{load}-{loadavg()}",
        }
    if "restock" in sides:
        if args.provider == "sendgrid":
            plugins = (
                '[[plugins]]\nresolve = "sendgrid"\noptions = { api_key = "SG.bench", '
                f'from_email = "shop@example.com", base_url = "http://127.0.0.1:{port}" }}\n'
            )
        else:
            plugins = '[[plugins]]\nresolve = "logger"\n'
        config = tmp / "plugins.toml"
        config.write_text(
            f'[restock]\ndatabase = "{url}"\nlog_level = "INFO"\n'
            f'public_url = "{PUBLIC_URL}"\nbatch_size = {args.batch_size}\n'
            f'release_batch_size = 5000\n\n{plugins}\n[[plugins]]\nresolve = "manual"\n'
        )
        load = loadavg()
        run = run_restock(url, config, args)
        run["load"] = f"{load}-{loadavg()}"
        run["notified"] = count_notified(url)
        run["requests"] = httpx.get(f"http://127.0.0.1:{port}/reset").json()
        results["restock"] = run
    return results


def ratios(results: dict[str, Any]) -> str:
    f, r = results["floor"], results["restock"]
    cpu = sum(w["work_cpu"] for w in r["reports"])
    return (
        f"floor {f['work']:.2f} s ({f['cpu']:.2f} s CPU), restock {r['work']:.2f} s "
        f"({cpu:.2f} s CPU): {r['work'] / f['work']:.2f}x work, {cpu / f['cpu']:.2f}x CPU"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument(
        "--database", "--db", choices=["sqlite", "postgresql", "postgres"], default="sqlite"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--provider", choices=["sendgrid", "logger"], default="sendgrid")
    parser.add_argument("--sides", default="floor,restock", help="floor, restock or both")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-dashboard", action="store_true", help="drop 0003's triggers")
    parser.add_argument("--stable-requests", action="store_true", help="SendGrid stores requests")
    parser.add_argument(
        "--sql-timing", action="store_true", help="time each SQL statement in the worker"
    )
    parser.add_argument("--profile", help="cProfile the worker into this file (1 worker)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run both sides this many times, alternating, each on a fresh copy of the seeded "
        "database (SQLite), and print every round's ratio and the median",
    )
    args = parser.parse_args()
    postgres = args.database.startswith("postgres")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.provider == "logger" and "floor" in sides:
        sides.remove("floor")  # the floor is a SendGrid floor
    if args.profile and args.workers != 1:
        raise SystemExit("--profile needs --workers 1")
    if args.repeat > 1 and (postgres or args.profile):
        raise SystemExit("--repeat is for SQLite runs without --profile")

    schemas: list[str] = []
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT") if postgres else None

    def database(tmp: Path, name: str) -> str:
        if admin is None:
            return f"sqlite:///{tmp / f'{name}.db'}"
        schema = f"bench_{name}_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        schemas.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SENDGRID], stdout=subprocess.PIPE, text=True
    )
    assert fake.stdout is not None
    port = int(fake.stdout.readline())

    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            url = database(tmp, "restock")
            print(f"seeding {args.subscribers} subscribers on {args.database} ...", flush=True)
            seed(url, args.subscribers, no_dashboard=args.no_dashboard)
            if args.repeat > 1:
                shutil.copy(tmp / "restock.db", tmp / "seeded.db")
            for round_ in range(args.repeat):
                if round_:
                    shutil.copy(tmp / "seeded.db", tmp / "restock.db")
                results = run_sides(args, sides, tmp, url, port, postgres, database)
                rounds.append(results)
                if args.repeat > 1 and "floor" in results and "restock" in results:
                    print(f"round {round_ + 1}: {ratios(results)}", flush=True)
    finally:
        fake.terminate()
        fake.wait(10)
        if admin is not None:
            with admin.connect() as conn:
                for schema in schemas:
                    conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            admin.dispose()

    results = rounds[-1]
    n = args.subscribers
    print(
        f"\ndatabase={args.database} subscribers={n:,} provider={args.provider} "
        f"workers={args.workers}{' no-dashboard' if args.no_dashboard else ''}"
        f"{' stable-requests' if args.stable_requests else ''}"
    )
    ok = True
    if "floor" in results:
        f = results["floor"]
        print(
            f"floor:   {f['work']:7.2f} s work ({f['cpu']:.2f} s CPU)  {n / f['work']:8.0f} msg/s  "
            f"requests {f['requests']['requests']} ({f['requests']['personalizations']} "
            f"recipients)  notified {f['notified']}  load {f['load']}"
        )
        ok = ok and f["notified"] == n
    if "restock" in results:
        r = results["restock"]
        reports = r["reports"]
        requests = r["requests"]
        sent = (
            f"requests {requests['requests']} ({requests['personalizations']} recipients)"
            if args.provider == "sendgrid"
            else "logger"
        )
        print(
            f"restock: {r['work']:7.2f} s work  {n / r['work']:8.0f} msg/s  {sent}  "
            f"notified {r['notified']}  load {r['load']}"
        )
        print(
            f"         wall {r['wall']:.2f} s = stock set {r['stock_set']:.2f} s + worker "
            f"start-up (interpreter + imports) "
            f"{', '.join(f'{x:.2f}' for x in r['startup'])} s + App set-up "
            f"{', '.join(f'{x:.2f}' for x in r['setup'])} s + work"
        )
        print(
            "         peak RSS per worker: "
            + ", ".join(f"{w['peak_rss_kb'] / 1024:.0f} MB" for w in reports)
        )
        for i, w in enumerate(reports):
            work = w["done"] - w["ready"]
            parts = dict(w["stages"])
            parts["other"] = work - sum(parts.values())
            order = ["release", "claim", "render", "provider", "record", "requests", "other"]
            print(
                f"         worker {i + 1} stages ({work:.2f} s): "
                + "  ".join(
                    f"{k} {parts[k]:.2f} s ({parts[k] / work * 100:.0f}%, "
                    f"{w['calls'].get(k, '-')} calls)"
                    if k != "other"
                    else f"other {parts[k]:.2f} s ({parts[k] / work * 100:.0f}%)"
                    for k in order
                    if k in parts
                )
            )
            spent = dict(w["cpu"])
            spent["other"] = w["work_cpu"] - sum(spent.values())
            print(
                f"         worker {i + 1} CPU time ({w['work_cpu']:.2f} s of {work:.2f} s): "
                + "  ".join(f"{k} {spent[k]:.2f} s" for k in order if k in spent)
            )
            gc_s, full, full_s = w["gc"]
            print(
                f"         worker {i + 1} garbage collector: {gc_s:.2f} s "
                f"({full} full collections, {full_s:.2f} s), inside the stages above"
            )
            for statement, spent, count in w.get("sql", []):
                print(f"           SQL {spent:6.2f} s {count:5d}x  {statement}")
            if w["missing"]:
                print(f"         (not found, not timed: {', '.join(w['missing'])})")
        ok = ok and r["notified"] == n
    if "floor" in results and "restock" in results:
        f, r = results["floor"], results["restock"]
        cpu = sum(w["work_cpu"] for w in r["reports"])
        print(
            f"ratio restock/floor: {r['work'] / f['work']:.2f}x work "
            f"({r['wall'] / f['work']:.2f}x with process start-up); CPU time "
            f"{cpu:.2f} s / {f['cpu']:.2f} s = {cpu / f['cpu']:.2f}x (the sides' own processes; "
            "less sensitive to other load on the machine than wall time)"
        )
    both = [x for x in rounds if "floor" in x and "restock" in x]
    if len(both) > 1:
        walls = sorted(x["restock"]["work"] / x["floor"]["work"] for x in both)
        cpus = sorted(
            sum(w["work_cpu"] for w in x["restock"]["reports"]) / x["floor"]["cpu"] for x in both
        )
        print(
            f"{len(both)} rounds: work ratio median {statistics.median(walls):.2f}x "
            f"(range {walls[0]:.2f}-{walls[-1]:.2f}x), CPU ratio median "
            f"{statistics.median(cpus):.2f}x (range {cpus[0]:.2f}-{cpus[-1]:.2f}x)"
        )
        ok = ok and all(x["floor"]["notified"] == n and x["restock"]["notified"] == n for x in both)
    if args.profile:
        print_profile(args.profile)
    if not ok:
        raise SystemExit("MISMATCH: not everyone was notified")


if __name__ == "__main__":
    main()
