"""Sign-up throughput over HTTP: restock's `POST /subscriptions` against a bare endpoint.

    .venv/bin/python bench/bench_signup_http.py [--duration 20] [--threads 2] [--connections 32]
    .venv/bin/python bench/bench_signup_http.py --database postgresql
    RESTOCK_BENCH_PROFILE=/tmp/signup.prof .venv/bin/python bench/bench_signup_http.py --sides restock

Load comes from wrk (Debian's `wrk`, `apt-get install wrk`), driven by a Lua script that
POSTs JSON with a unique email per request and a distinct `X-Forwarded-For` address per
request. Each side runs in its own server process on 127.0.0.1 with a fresh database, gets a
2 s warm-up, then `--duration` seconds of measured load:

- **baseline**: written here. FastAPI + a pydantic model + one
  `INSERT ... ON CONFLICT DO NOTHING RETURNING` into an indexed SQLite table (WAL,
  synchronous=NORMAL, like restock), served by uvicorn with `restock serve`'s settings
  (`log_level="warning", access_log=False`, default thread pool).
- **restock**: `restock serve` (default plugins.toml-like config: logger provider, manual
  source, in-process worker), SQLite, abuse limits **on at their defaults** (30 sign-ups per
  IP per 10 min, 1,000 per variant, 50 active per contact, the honeypot hook, the consent
  record). `trusted_proxies = ["127.0.0.1"]` and the distinct X-Forwarded-For addresses keep
  the per-IP limit on the hot path without turning the run into 429s; sign-ups spread over
  1,000 variants so the per-variant bucket is never exhausted either.
- **nolimits**: the same with every limit set to 0 (issue 9's "within 10%" comparison).
- **pg** (`--database postgresql`): restock on PostgreSQL at 127.0.0.1:5432 (a scratch
  schema), limits on, same load.

Prints req/s, p50/p99, non-2xx counts per side, the server process's CPU time per 2xx
answer during the measured load (all its threads, from /proc/<pid>/stat), the ratios to the
baseline, and checks that rows stored equal the 2xx answers (a request still in flight when
wrk stops may be stored without its answer being counted: at most one per connection). The
load average is printed with every figure: the machine is shared, so ratios from one run are
what count.

`RESTOCK_BENCH_PROFILE=<file>` profiles the restock server in CPU time (cProfile with
`time.thread_time`): the event-loop thread from the first public sign-up on (where a public
sign-up now runs: `App.sign_up_async`), and the group-commit writer thread
(`SignUpWriter`) on its own, with its group count and mean group size. It prints the top
functions of each; the raw stats go to `<file>` and `<file>.writer`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

PG_URL = os.environ.get("RESTOCK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

BASELINE_SERVER = r"""
import sqlite3, sys, threading
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

db_path, port = sys.argv[1], int(sys.argv[2])
setup = sqlite3.connect(db_path, isolation_level=None)
setup.execute("PRAGMA journal_mode=WAL")
setup.execute(
    "CREATE TABLE IF NOT EXISTS signups (id INTEGER PRIMARY KEY, variant_id TEXT NOT NULL,"
    " email TEXT NOT NULL, created_at TEXT NOT NULL)"
)
setup.execute("CREATE UNIQUE INDEX IF NOT EXISTS ux_signups ON signups (variant_id, email)")
setup.close()
local = threading.local()


def connection() -> sqlite3.Connection:
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        local.conn = conn
    return conn


class SignUp(BaseModel):
    variant_id: str = Field(min_length=1, max_length=255)
    email: str = Field(min_length=3, max_length=320)


api = FastAPI()


@api.post("/subscriptions")
def create(body: SignUp) -> JSONResponse:
    connection().execute(
        "INSERT INTO signups (variant_id, email, created_at) VALUES (?, ?, datetime('now'))"
        " ON CONFLICT DO NOTHING RETURNING id",
        (body.variant_id, body.email),
    ).fetchall()
    return JSONResponse({"status": "accepted"}, status_code=202)


@api.get("/health")
def health() -> dict:
    return {"status": "ok"}


uvicorn.run(api, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""

#: restock serve, profiled (RESTOCK_BENCH_PROFILE): the event-loop thread from the first
#: public sign-up on, and the sign-up writer thread, both in CPU time (time.thread_time)
PROFILED_SERVER = r"""
import atexit, cProfile, io, os, pstats, signal, sys, time
from restock_core.app import App

out = sys.argv.pop(1)
loop_profile = cProfile.Profile(time.thread_time)
calls = [0]
original = App.sign_up_async


async def sign_up_async(self, *args, **kwargs):
    if not calls[0]:
        loop_profile.enable()  # the event loop's thread, from here on
    calls[0] += 1
    return await original(self, *args, **kwargs)


App.sign_up_async = sign_up_async

# the group-commit writer thread, profiled on its own
from restock_core.store.subscriptions import SignUpWriter
writer_profile, writers, original_run = cProfile.Profile(time.thread_time), [], SignUpWriter._run


def run(self):
    writers.append(self)
    writer_profile.enable()
    try:
        original_run(self)
    finally:
        writer_profile.disable()


SignUpWriter._run = run


def report(profile, title, n):
    stats = pstats.Stats(profile)
    total = stats.total_tt
    print(f"{title}: {total:.2f} s CPU under the profiler, {total / max(1, n) * 1000:.3f} ms "
          f"per sign-up ({n} sign-ups)", file=sys.stderr)
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(30)
        print(text.getvalue(), file=sys.stderr)


def dump():
    if not calls[0]:
        return
    loop_profile.disable()
    writer_profile.disable()
    loop_profile.dump_stats(out)
    print(f"PROFILE sign-ups={calls[0]} (warm-up included)", file=sys.stderr)
    report(loop_profile, "EVENT LOOP", calls[0])
    for w in writers:
        print(f"WRITER groups={w.groups} sign-ups in groups={w.grouped} "
              f"mean group={w.grouped / max(1, w.groups):.1f}", file=sys.stderr)
    if writers:
        writer_profile.dump_stats(out + ".writer")
        report(writer_profile, "WRITER", calls[0])


atexit.register(dump)


def on_term(signum, frame):  # uvicorn re-raises SIGTERM after its shutdown: dump, then exit
    dump()
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
sys.argv = ["restock", *sys.argv[1:]]
from restock_core.cli import main
try:
    main()
except SystemExit:
    pass
"""

WRK_SCRIPT = r"""
-- one unique email and one distinct X-Forwarded-For address per request, POST JSON
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] or "m"
  counter = 0
  statuses = {}
end
function request()
  counter = counter + 1
  local n = counter
  local ip = string.format("10.%d.%d.%d", tid, math.floor(n / 256) % 256, n % 256)
  local body = string.format('{"variant_id":"v%d","email":"%s-%d-%d@example.com"}',
    n % 1000, prefix, tid, n)
  return wrk.format("POST", "/subscriptions",
    {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local codes = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do codes[code] = (codes[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(codes) do table.insert(parts, string.format('"%d":%d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"codes":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ",")))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_up(port: int, server: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not start")


def wrk(port: int, script: Path, args: argparse.Namespace, seconds: float, prefix: str) -> dict:
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            prefix,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    result: dict = json.loads(line[len("WRKJSON ") :])
    return result


def restock_config(tmp: Path, url: str, port: int, limits_on: bool) -> Path:
    limits = (
        ""
        if limits_on
        else "limit_signups_per_ip = 0\nlimit_signups_per_variant = 0\nlimit_active_per_contact = 0\n"
    )
    config = tmp / f"plugins-{port}.toml"
    config.write_text(
        f'[restock]\ndatabase = "{url}"\nlog_level = "WARNING"\ntrigger_delay = 0\n'
        f'inventory_required = 1\nadmin_api_key = "bench-admin-key"\n'
        f'public_url = "http://127.0.0.1:{port}"\ntrusted_proxies = ["127.0.0.1"]\n{limits}\n'
        '[[plugins]]\nresolve = "logger"\noptions = { channels = ["email", "sms"] }\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    return config


def run_side(side: str, tmp: Path, args: argparse.Namespace, script: Path) -> dict:
    port = free_port()
    schema = None
    profile = os.environ.get("RESTOCK_BENCH_PROFILE") if side != "baseline" else None
    if side == "baseline":
        db_path = tmp / "baseline.db"
        cmd = [sys.executable, "-c", BASELINE_SERVER, str(db_path), str(port)]
        count_sql, engine_url = "SELECT count(*) FROM signups WHERE email LIKE 'm-%'", None
        engine_url = f"sqlite:///{db_path}"
    else:
        if side == "pg":
            schema = f"bench_signup_{os.getpid()}"
            admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            engine_url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        else:
            engine_url = f"sqlite:///{tmp / f'restock-{side}.db'}"
        config = restock_config(tmp, engine_url, port, limits_on=side != "nolimits")
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        if side == "pg":
            subprocess.run([*cli, "db", "upgrade"], check=True, capture_output=True)
        if profile:
            cmd = [sys.executable, "-c", PROFILED_SERVER, profile, "--config", str(config)]
        else:
            cmd = cli
        cmd = [*cmd, "serve", "--port", str(port)]
        count_sql = "SELECT count(*) FROM subscriptions WHERE contact LIKE 'm-%'"
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE if profile else subprocess.DEVNULL)
    try:
        wait_up(port, server)
        wrk(port, script, args, 2, "w")  # warm-up, not counted
        load_before = loadavg()
        cpu_before = cpu_seconds(server.pid)
        result = wrk(port, script, args, args.duration, "m")
        result["cpu"] = cpu_seconds(server.pid) - cpu_before
        result["load"] = f"{load_before}-{loadavg()}"
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    if profile and err:
        text = err.decode(errors="replace")
        start = text.find("PROFILE ")
        print(text[start:] if start >= 0 else text[-4000:])
    engine = sa.create_engine(engine_url)
    with engine.connect() as conn:
        result["rows"] = int(conn.execute(sa.text(count_sql)).scalar() or 0)
    engine.dispose()
    if schema is not None:
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql adds a restock-on-PostgreSQL side",
    )
    parser.add_argument(
        "--sides",
        default="baseline,restock,nolimits",
        help="comma-separated: baseline, restock, nolimits, pg",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.database == "postgresql" and "pg" not in sides:
        sides.append("pg")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "signup.lua"
        script.write_text(WRK_SCRIPT)
        for side in sides:
            print(f"running {side} ...", flush=True)
            results[side] = run_side(side, tmp, args, script)
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, unique email and "
        "X-Forwarded-For per request\n"
    )
    header = (
        f"{'side':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'2xx':>7} {'non-2xx':>8} "
        f"{'sock err':>8} {'rows':>7} {'CPU ms/req':>10}  check  load"
    )
    print(header)
    base = results.get("baseline")
    for side, r in results.items():
        seconds = r["duration_us"] / 1e6
        ok = sum(n for code, n in r["codes"].items() if 200 <= int(code) < 300)
        non2xx = {code: n for code, n in r["codes"].items() if not 200 <= int(code) < 300}
        errors = sum(r["errors"][k] for k in ("connect", "read", "write", "timeout"))
        r["rps"] = ok / seconds
        drift = r["rows"] - ok
        check = "OK" if 0 <= drift <= args.connections else f"MISMATCH ({drift:+d})"
        print(
            f"{side:<10} {r['rps']:>8.0f} {r['p50_us'] / 1000:>8.1f} {r['p99_us'] / 1000:>8.1f} "
            f"{ok:>7} {sum(non2xx.values()):>8} {errors:>8} {r['rows']:>7} "
            f"{r['cpu'] / max(1, ok) * 1000:>10.2f}  {check}  "
            f"{r['load']}" + (f"  non-2xx: {non2xx}" if non2xx else "")
        )
    if base:
        print()
        for side, r in results.items():
            if side == "baseline":
                continue
            print(
                f"{side} / baseline: throughput {r['rps'] / base['rps']:.2f}x, "
                f"p99 {r['p99_us'] / base['p99_us']:.2f}x"
            )
    if "restock" in results and "nolimits" in results:
        cost = 1 - results["restock"]["rps"] / results["nolimits"]["rps"]
        print(f"abuse limits cost: {cost * 100:+.1f}% of throughput (limits on vs off)")


if __name__ == "__main__":
    main()
