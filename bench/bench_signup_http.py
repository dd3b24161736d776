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

The sides above send what a server sends (no `Origin`, two headers). A shopper's browser
sends more, and the storefront is on another origin (`cors_origins = ["https://shop.example"]`
in every restock side's config):

- **browser**: `POST /subscriptions` as a storefront page's script sends it: `Origin:
  https://shop.example` (allowed), `Referer`, and the rest of Chrome's headers for a
  `fetch()` with `credentials: "omit"` (User-Agent, Accept*, sec-ch-ua*, Sec-Fetch-*,
  Priority). Limits on.
- **widget**: what widget.js sends now, for a shopper's first sign-up and every later one:
  `POST /widget/subscriptions` with its JSON (`{variant_id, scope, consent: true, locale,
  email}`) as `Content-Type: text/plain;charset=UTF-8`, a CORS "simple" request the browser
  sends without a preflight (restock checks the `Origin` itself), and the same browser
  headers.
- **widget-json**: an older widget.js still in a browser's cache, its preflight cached too:
  the same JSON as `application/json`.
- **bare-browser**: the baseline's bare endpoint sent the browser side's requests (it
  has no CORS and ignores the extra headers): what the same bytes cost without restock.
- **preflight**: an older widget.js's *first* sign-up from a browser (what every first
  sign-up cost before the widget posted text/plain): a JSON POST across origins is not a
  CORS "simple" request, so the browser sends an `OPTIONS` preflight first (and caches the
  answer for `max_age`, 600 s): each sign-up is an `OPTIONS` then the `POST`. Sign-ups/s
  counts the POSTs (201); p50/p99 mix both kinds of request.

Prints sign-ups/s, p50/p99, non-2xx counts per side, the server process's CPU time per
sign-up during the measured load (all its threads, from /proc/<pid>/stat), the ratios to the
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
-- one unique email and one distinct X-Forwarded-For address per request, POST JSON.
-- args: prefix, mode (plain | browser | widget | widget-json | preflight), origin
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = args[1] or "m"
  mode = args[2] or "plain"
  origin = args[3] or "https://shop.example"
  counter = 0
  statuses = {}
  -- what Chrome sends with the widget's fetch() from a product page on the shop's origin
  -- (credentials: "omit": no cookie)
  browser = {
    ["Origin"] = origin,
    ["Referer"] = origin .. "/products/linen-shirt?variant=42",
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 " ..
      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ["Accept"] = "*/*",
    ["Accept-Language"] = "en-GB,en;q=0.9",
    ["Accept-Encoding"] = "gzip, deflate, br, zstd",
    ["sec-ch-ua"] = '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
    ["sec-ch-ua-mobile"] = "?0",
    ["sec-ch-ua-platform"] = '"Windows"',
    ["Sec-Fetch-Site"] = "cross-site",
    ["Sec-Fetch-Mode"] = "cors",
    ["Sec-Fetch-Dest"] = "empty",
    ["Priority"] = "u=1, i",
  }
  preflight_next = true
end
function request()
  if mode == "preflight" then
    -- a shopper's first sign-up: the browser asks first (JSON is not a "simple" request)
    preflight_next = not preflight_next
    if not preflight_next then
      local h = {}
      for k, v in pairs(browser) do h[k] = v end
      h["Access-Control-Request-Method"] = "POST"
      h["Access-Control-Request-Headers"] = "content-type"
      h["Accept"] = "*/*"
      return wrk.format("OPTIONS", "/widget/subscriptions", h, nil)
    end
  end
  counter = counter + 1
  local n = counter
  local ip = string.format("10.%d.%d.%d", tid, math.floor(n / 256) % 256, n % 256)
  local email = string.format("%s-%d-%d@example.com", prefix, tid, n)
  if mode == "plain" then
    local body = string.format('{"variant_id":"v%d","email":"%s"}', n % 1000, email)
    return wrk.format("POST", "/subscriptions",
      {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, body)
  end
  local h = {}
  for k, v in pairs(browser) do h[k] = v end
  h["Content-Type"] = "application/json"
  h["X-Forwarded-For"] = ip
  if mode == "widget" then
    -- widget.js across origins: the same JSON as text/plain, a CORS simple request
    h["Content-Type"] = "text/plain;charset=UTF-8"
  end
  if mode == "browser" then
    local body = string.format('{"variant_id":"v%d","email":"%s"}', n % 1000, email)
    return wrk.format("POST", "/subscriptions", h, body)
  end
  -- the widget's JSON.stringify(body), keys in its order (widget.js)
  local body = string.format(
    '{"variant_id":"v%d","scope":"default","consent":true,"locale":"en","email":"%s"}',
    n % 1000, email)
  return wrk.format("POST", "/widget/subscriptions", h, body)
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


#: the storefront's origin, configured in `cors_origins` for every restock side
SHOP_ORIGIN = "https://shop.example"

#: side -> (the wrk script's mode, abuse limits on, database)
SIDES = {
    "bare-browser": ("browser", True, "sqlite"),
    "restock": ("plain", True, "sqlite"),
    "nolimits": ("plain", False, "sqlite"),
    "pg": ("plain", True, "postgresql"),
    "browser": ("browser", True, "sqlite"),
    "widget": ("widget", True, "sqlite"),
    "widget-json": ("widget-json", True, "sqlite"),
    "preflight": ("preflight", True, "sqlite"),
}


#: which real caller each side stands for (printed under the table)
CALLERS = {
    "baseline": "bare FastAPI + one SQLite INSERT (the issue's floor), no Origin",
    "bare-browser": "the bare endpoint sent the browser side's request (same headers and "
    "body; it has no CORS, so it ignores the Origin)",
    "restock": "server-to-server: a shop backend or platform calling POST /subscriptions "
    "(no Origin, no browser headers)",
    "nolimits": "the same with the abuse limits off",
    "pg": "the same on PostgreSQL",
    "browser": "a storefront page's script posting to POST /subscriptions: allowed Origin "
    "and Chrome's headers, preflight already cached",
    "widget": "the widget (widget.js), a shopper's first sign-up and every later one: its "
    "JSON as text/plain to POST /widget/subscriptions (no preflight), allowed Origin, "
    "Chrome's headers",
    "widget-json": "an older widget.js (JSON), its preflight already cached",
    "preflight": "an older widget.js's first sign-up from a browser: OPTIONS preflight then "
    "the JSON POST (latencies mix both; sign-ups/s counts the POSTs)",
}


def wrk(
    port: int, script: Path, args: argparse.Namespace, seconds: float, prefix: str, mode: str
) -> dict:
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
            mode,
            SHOP_ORIGIN,
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
        f'public_url = "http://127.0.0.1:{port}"\ntrusted_proxies = ["127.0.0.1"]\n'
        f'cors_origins = ["{SHOP_ORIGIN}"]\n{limits}\n'
        '[[plugins]]\nresolve = "logger"\noptions = { channels = ["email", "sms"] }\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    return config


def run_side(side: str, tmp: Path, args: argparse.Namespace, script: Path) -> dict:
    port = free_port()
    schema = None
    bare = side in ("baseline", "bare-browser")
    profile = os.environ.get("RESTOCK_BENCH_PROFILE") if not bare else None
    mode, limits_on, database = SIDES.get(side, ("plain", True, "sqlite"))
    if bare:
        db_path = tmp / f"{side}.db"
        cmd = [sys.executable, "-c", BASELINE_SERVER, str(db_path), str(port)]
        count_sql, engine_url = "SELECT count(*) FROM signups WHERE email LIKE 'm-%'", None
        engine_url = f"sqlite:///{db_path}"
    else:
        if database == "postgresql":
            schema = f"bench_signup_{os.getpid()}"
            admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            engine_url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        else:
            engine_url = f"sqlite:///{tmp / f'restock-{side}.db'}"
        config = restock_config(tmp, engine_url, port, limits_on=limits_on)
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        if database == "postgresql":
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
        wrk(port, script, args, 2, "w", mode)  # warm-up, not counted
        load_before = loadavg()
        cpu_before = cpu_seconds(server.pid)
        result = wrk(port, script, args, args.duration, "m", mode)
        result["mode"] = mode
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


def per_sign_up(result: dict) -> float:
    """Server CPU seconds per sign-up (2xx sign-up answer) of a side's measured load."""
    return float(result["cpu"]) / max(1.0, result["rps"] * result["duration_us"] / 1e6)


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
        default="baseline,restock,nolimits,bare-browser,browser,widget,widget-json,preflight",
        help="comma-separated: baseline, " + ", ".join(SIDES),
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s != "baseline" and s not in SIDES]
    if unknown:
        raise SystemExit(f"unknown side(s): {', '.join(unknown)}")
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
        f"{'side':<12} {'sign-ups/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'sign-ups':>8} "
        f"{'preflight':>9} {'non-2xx':>8} {'sock err':>8} {'rows':>7} {'CPU ms/s-up':>11}  check  load"
    )
    print(header)
    base = results.get("baseline")
    for side, r in results.items():
        seconds = r["duration_us"] / 1e6
        # the preflight side's OPTIONS answers are its 200s; the widget's sign-up answers 201
        preflights = r["codes"].get("200", 0) if r.get("mode") == "preflight" else 0
        ok = sum(n for code, n in r["codes"].items() if 200 <= int(code) < 300) - preflights
        non2xx = {code: n for code, n in r["codes"].items() if not 200 <= int(code) < 300}
        errors = sum(r["errors"][k] for k in ("connect", "read", "write", "timeout"))
        r["rps"] = ok / seconds
        drift = r["rows"] - ok
        check = "OK" if 0 <= drift <= args.connections else f"MISMATCH ({drift:+d})"
        print(
            f"{side:<12} {r['rps']:>10.0f} {r['p50_us'] / 1000:>8.1f} {r['p99_us'] / 1000:>8.1f} "
            f"{ok:>8} {preflights:>9} {sum(non2xx.values()):>8} {errors:>8} {r['rows']:>7} "
            f"{r['cpu'] / max(1, ok) * 1000:>11.2f}  {check}  "
            f"{r['load']}" + (f"  non-2xx: {non2xx}" if non2xx else "")
        )
    print()
    for side in results:
        print(f"  {side:<12} {CALLERS[side]}")
    if base:
        print()
        for side, r in results.items():
            if side == "baseline":
                continue
            if side == "browser" and "bare-browser" in results:
                bare = results["bare-browser"]
                print(
                    f"browser / bare-browser (the same requests): throughput "
                    f"{r['rps'] / bare['rps']:.2f}x, p99 {r['p99_us'] / bare['p99_us']:.2f}x"
                )
            print(
                f"{side} / baseline: throughput {r['rps'] / base['rps']:.2f}x, "
                f"p99 {r['p99_us'] / base['p99_us']:.2f}x"
            )
    if "widget" in results and "preflight" in results:
        w, old = results["widget"], results["preflight"]
        print(
            f"a browser's first sign-up, widget (text/plain) / older widget (preflight + JSON): "
            f"throughput {w['rps'] / old['rps']:.2f}x, server CPU per sign-up "
            f"{per_sign_up(w) / per_sign_up(old):.2f}x"
        )
    if "restock" in results and "nolimits" in results:
        cost = 1 - results["restock"]["rps"] / results["nolimits"]["rps"]
        print(f"abuse limits cost: {cost * 100:+.1f}% of throughput (limits on vs off)")


if __name__ == "__main__":
    main()
