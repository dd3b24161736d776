"""Twilio SMS throughput: 10,000 SMS to a fake Twilio, twice.

    .venv/bin/python bench/bench_twilio_sms.py                      # both parts, 10,000 SMS
    .venv/bin/python bench/bench_twilio_sms.py --messages 2000 --concurrency 16 --part provider

1. provider: `TwilioProvider.send` called directly with batches of `max_batch_size` messages
   (the real twilio SDK, one `Messages.create` request per SMS, `concurrency` threads).
2. app: a full App on SQLite (plugins: twilio + manual): N pending SMS subscribers are
   bulk-inserted (not timed), the stock is set, and `worker().drain()` runs until all are
   notified (release, claim, render, send, record).

The fake Twilio runs in its own process (so it does not share the provider's GIL), binds
127.0.0.1 and answers 201 with a JSON Message resource; it counts requests and the most
requests in flight at once. Each part runs in its own process, so each peak RSS is its own.
Prints messages/s, requests made, the fake's max in-flight and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-auth-token"

FAKE_TWILIO = r"""
import json, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a): pass
    def reply(self, status, reason, payload):
        data = json.dumps(payload).encode()
        head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, reason, len(data))).encode()
        self.wfile.write(head + data)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.endswith("/Messages.json"):
            return self.reply(404, "Not Found", {"code": 20404, "message": "not found", "status": 404})
        with lock:
            stats["requests"] += 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            n = stats["requests"]
        try:
            self.reply(201, "Created", {"sid": "SM%032x" % n, "status": "queued", "body": "",
                                        "to": "", "num_segments": "1"})
        finally:
            with lock:
                stats["in_flight"] -= 1
    def do_GET(self):
        with lock:
            snapshot = dict(stats)
        self.reply(200, "OK", snapshot)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def fake_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        return json.loads(answer.read())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def phone(i: int) -> str:
    return f"+1415{i // 10000 % 1000:03d}{i % 10000:04d}"


def run_provider(port: int, n: int, concurrency: int) -> dict[str, object]:
    from restock_twilio import TwilioOptions, TwilioProvider

    from restock_core.models import Channel, Outcome
    from restock_core.testing import make_message

    provider = TwilioProvider(
        TwilioOptions(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            from_number="+14155550100",
            base_url=f"http://127.0.0.1:{port}",
            concurrency=concurrency,
        )
    )
    messages = [make_message(i, channel=Channel.SMS, to=phone(i)) for i in range(1, n + 1)]
    before = fake_stats(port)["requests"]
    size = provider.max_batch_size
    sent = 0
    started = time.perf_counter()
    for start in range(0, n, size):
        results = provider.send(messages[start : start + size])
        sent += sum(1 for r in results if r.outcome == Outcome.SENT)
    elapsed = time.perf_counter() - started
    provider.close()
    stats = fake_stats(port)
    return {
        "part": "provider",
        "sent": sent,
        "elapsed": elapsed,
        "requests": stats["requests"] - before,
        "max_in_flight": stats["max_in_flight"],
    }


def seed(app: object, n: int) -> None:
    import sqlalchemy as sa

    from restock_core.db import stock, subscriptions

    start = datetime.now(UTC) - timedelta(days=1)
    with app.engine.begin() as conn:  # type: ignore[attr-defined]
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
        for base in range(0, n, 5000):
            conn.execute(
                sa.insert(subscriptions),
                [
                    {
                        "variant_id": "hot",
                        "scope": "default",
                        "source": "manual",
                        "channel": "sms",
                        "contact": phone(i),
                        "status": "pending",
                        "attributes": {},
                        "created_at": start + timedelta(microseconds=i),
                        "updated_at": start,
                    }
                    for i in range(base, min(n, base + 5000))
                ],
            )


def run_app(port: int, n: int, concurrency: int) -> dict[str, object]:
    import logging

    from restock_core.app import App
    from restock_core.config import parse_config

    logging.getLogger("restock").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "restock": {
                "database": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "public_url": "https://restock.example",
                "release_batch_size": 5000,
            },
            "plugins": [
                {
                    "resolve": "twilio",
                    "options": {
                        "account_sid": ACCOUNT_SID,
                        "auth_token": AUTH_TOKEN,
                        "from_number": "+14155550100",
                        "base_url": f"http://127.0.0.1:{port}",
                        "concurrency": concurrency,
                    },
                },
                {"resolve": "manual"},
            ],
        }
        app = App(parse_config(config))
        app.migrate()
        seed(app, n)
        before = fake_stats(port)["requests"]
        started = time.perf_counter()
        app.set_stock("hot", 5)
        app.worker().drain(max_seconds=3600)
        elapsed = time.perf_counter() - started
        notified = app.counts()["subscriptions"].get("notified", 0)
        app.close()
    stats = fake_stats(port)
    return {
        "part": "app (SQLite)",
        "sent": notified,
        "elapsed": elapsed,
        "requests": stats["requests"] - before,
        "max_in_flight": stats["max_in_flight"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--part", choices=["both", "provider", "app"], default="both")
    parser.add_argument("--fake-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.fake_port:  # a child: run one part and print its figures as JSON
        run = run_provider if args.part == "provider" else run_app
        result = run(args.fake_port, args.messages, args.concurrency)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result), flush=True)
        return

    fake = subprocess.Popen([sys.executable, "-c", FAKE_TWILIO], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline())
        parts = ["provider", "app"] if args.part == "both" else [args.part]
        print(
            f"{args.messages} SMS, concurrency {args.concurrency}, fake Twilio on "
            f"127.0.0.1:{port} (pid {fake.pid})"
        )
        failed = False
        for part in parts:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--part",
                    part,
                    "--messages",
                    str(args.messages),
                    "--concurrency",
                    str(args.concurrency),
                    "--fake-port",
                    str(port),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                raise SystemExit(f"{part} part failed")
            r = json.loads(child.stdout.strip().splitlines()[-1])
            rate = r["sent"] / r["elapsed"] if r["elapsed"] else 0.0
            print(
                f"{r['part']:>14}: {r['sent']} sent in {r['elapsed']:.2f} s = {rate:,.0f} msg/s; "
                f"requests made: {r['requests']}; max in flight at the fake: "
                f"{r['max_in_flight']}; peak RSS: {r['peak_rss_mb']:.0f} MB"
            )
            if r["sent"] != args.messages or r["requests"] != args.messages:
                print(f"  MISMATCH: expected {args.messages} sent and requests", file=sys.stderr)
                failed = True
        if failed:
            raise SystemExit(1)
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
