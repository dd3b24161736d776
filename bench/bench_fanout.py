"""Fan-out: N subscribers of one variant released at once and delivered.

    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --db sqlite --provider sendgrid
    .venv/bin/python bench/bench_fanout.py --subscribers 100000 --db postgres --workers 4

Seeds N pending email subscribers (bulk insert, not timed), sets the variant's stock, then runs
`restock worker` processes until every subscriber is notified. Prints messages/s, provider
requests made and the peak RSS of each worker process. With --provider sendgrid the messages go
through the real SendGrid SDK to a fake SendGrid on 127.0.0.1 (its own process); with
--provider logger they go to the logger provider (no file), which measures the core alone.
Everything runs on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("RESTOCK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

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
            self.send_response(202)
            self.send_header("X-Message-Id", "bench%d" % count["requests"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        data = json.dumps(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def seed(url: str, n: int) -> None:
    from restock_core.app import App
    from restock_core.config import parse_config
    from restock_core.db import stock, subscriptions

    app = App(parse_config({"restock": {"database": url}}))
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
        for base in range(0, n, chunk):
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
    app.close()


def count_notified(url: str) -> int:
    from restock_core.db import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("select count(*) from subscriptions where status = 'notified'")
        ).scalar()
    engine.dispose()
    return int(value or 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--provider", choices=["sendgrid", "logger"], default="sendgrid")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'fanout.db'}"
        else:
            schema = f"bench_{os.getpid()}"
            admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        fake = None
        plugins = '[[plugins]]\nresolve = "logger"\n'
        if args.provider == "sendgrid":
            fake = subprocess.Popen(
                [sys.executable, "-c", FAKE_SENDGRID], stdout=subprocess.PIPE, text=True
            )
            port = int(fake.stdout.readline())
            plugins = (
                '[[plugins]]\nresolve = "sendgrid"\noptions = { api_key = "SG.bench", '
                f'from_email = "shop@example.com", base_url = "http://127.0.0.1:{port}" }}\n'
            )
        config = Path(tmp) / "plugins.toml"
        config.write_text(
            f'[restock]\ndatabase = "{url}"\nlog_level = "WARNING"\nbatch_size = {args.batch_size}\n'
            f'release_batch_size = 5000\n\n{plugins}\n[[plugins]]\nresolve = "manual"\n'
        )
        print(f"seeding {args.subscribers} subscribers on {args.db} ...", flush=True)
        seed(url, args.subscribers)
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        started = time.perf_counter()
        subprocess.run([*cli, "stock", "set", "hot", "5"], check=True, capture_output=True)
        rss_script = (
            "import resource, runpy, sys, atexit\n"
            "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr, flush=True))\n"
            "sys.argv = ['restock'] + sys.argv[1:]\n"
            "from restock_core.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", rss_script, "--config", str(config), "worker", "--once"],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(args.workers)
        ]
        peaks = []
        for w in workers:
            _, err = w.communicate()
            peaks.append(
                next(
                    (
                        int(line.split()[1])
                        for line in err.splitlines()
                        if line.startswith("PEAK_RSS_KB")
                    ),
                    0,
                )
            )
        elapsed = time.perf_counter() - started
        notified = count_notified(url)
        requests = "-"
        if fake is not None:
            import httpx

            counts = httpx.get(f"http://127.0.0.1:{port}/").json()
            requests = f"{counts['requests']} ({counts['personalizations']} recipients)"
            fake.terminate()
        if args.db == "postgres":
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        print(
            f"db={args.db} workers={args.workers} provider={args.provider} subscribers={args.subscribers}\n"
            f"notified: {notified}  elapsed: {elapsed:.2f} s  messages/s: {notified / elapsed:.0f}\n"
            f"provider requests: {requests}\n"
            f"peak RSS per worker: {', '.join(f'{p / 1024:.0f} MB' for p in peaks)}"
        )
        if notified != args.subscribers:
            raise SystemExit(f"MISMATCH: {args.subscribers - notified} not notified")
    _ = resource  # imported for the worker wrapper's documentation value


if __name__ == "__main__":
    main()
