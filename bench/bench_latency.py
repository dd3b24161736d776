"""Latency from a stock signal to the first provider request, over many restocks.

    .venv/bin/python bench/bench_latency.py [--restocks 200] [--signal manual|shopify] [--db sqlite|postgres]

Runs `restock serve` (trigger_delay 0) with the SendGrid provider pointed at a fake SendGrid in
its own process that stamps the arrival time of every request. For each restock, one subscriber
waits on its own variant; the benchmark sends the stock signal (manual `PUT /stock` or a signed
Shopify `inventory_levels/update` webhook to a fake Shopify-backed adapter) and measures the time
until the fake provider receives the message. Prints p50/p99/max. Loopback only; stops itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

PG_URL = os.environ.get("RESTOCK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

FAKE = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
arrivals = []
stock = {}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/v3/mail/send":
            now = time.time()
            data = json.loads(body)
            with lock:
                for p in data["personalizations"]:
                    arrivals.append((p["to"][0]["email"], now))
            return self.reply(202, headers=[("X-Message-Id", "m%d" % len(arrivals))])
        self.reply(404)
    def do_GET(self):
        with lock:
            body = json.dumps(arrivals).encode()
        self.reply(200, body, [("Content-Type", "application/json")])
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--restocks", type=int, default=200)
    parser.add_argument("--signal", choices=["manual", "shopify"], default="manual")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    fake = subprocess.Popen([sys.executable, "-c", FAKE], stdout=subprocess.PIPE, text=True)
    fake_port = int(fake.stdout.readline())
    fake_url = f"http://127.0.0.1:{fake_port}"
    secret = "shpss_bench_secret"
    shop = None
    if args.signal == "shopify":
        from restock_shopify.fake import TOKEN, FakeShopify, webhook_headers

        shop = FakeShopify().start()
        for i in range(args.restocks):
            shop.add_variant(1000 + i, available=0, title="M", handle=f"shirt-{i}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'latency.db'}"
        else:
            schema = f"latency_{os.getpid()}"
            admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        source = (
            '[[plugins]]\nresolve = "manual"\n'
            if args.signal == "manual"
            else '[[plugins]]\nresolve = "shopify"\n'
            f'options = {{ shop = "example.myshopify.com", access_token = "{TOKEN}", '
            f'client_secret = "{secret}", base_url = "{shop.url}" }}\n'
        )
        config = Path(tmp) / "plugins.toml"
        config.write_text(
            f'[restock]\ndatabase = "{url}"\ntrigger_delay = 0\nadmin_api_key = "k"\nlog_level = "WARNING"\n\n'
            '[[plugins]]\nresolve = "sendgrid"\noptions = { api_key = "SG.bench", '
            f'from_email = "shop@example.com", base_url = "{fake_url}" }}\n\n{source}'
        )
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        subprocess.run([*cli, "db", "upgrade"], check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([*cli, "serve", "--port", str(port)], stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer k"}
        latencies = []
        try:
            client = httpx.Client(base_url=base, timeout=10)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.1)
            for i in range(args.restocks):
                variant = (
                    f"gid://shopify/ProductVariant/{1000 + i}"
                    if args.signal == "shopify"
                    else f"v{i}"
                )
                r = client.post(
                    "/subscriptions",
                    json={"variant_id": variant, "email": f"s{i}@example.com"},
                    headers=auth,  # a trusted caller: 201 with the record, no abuse limits
                )
                assert r.status_code == 201, r.text
            for i in range(args.restocks):
                email = f"s{i}@example.com"
                if args.signal == "manual":
                    sent_at = time.time()
                    client.put(
                        f"/stock/v{i}", json={"quantity": 1}, headers=auth
                    ).raise_for_status()
                else:
                    shop.set_available(1000 + i, 1)
                    body = json.dumps(
                        {
                            "inventory_item_id": 1_001_000 + i,
                            "location_id": 1,
                            "available": 1,
                            "updated_at": datetime.now(UTC).isoformat(),
                        }
                    ).encode()
                    sent_at = time.time()
                    client.post(
                        "/shopify/webhooks/inventory_levels/update",
                        content=body,
                        headers=webhook_headers(body, secret, webhook_id=f"wh-{i}"),
                    ).raise_for_status()
                while True:
                    arrivals = dict((e, t) for e, t in httpx.get(fake_url).json())
                    if email in arrivals:
                        latencies.append(arrivals[email] - sent_at)
                        break
                    if time.time() - sent_at > 10:
                        raise SystemExit(f"restock {i}: no provider request within 10 s")
                    time.sleep(0.002)
        finally:
            server.terminate()
            server.wait(10)
            fake.terminate()
            if shop is not None:
                shop.stop()
            if args.db == "postgres":
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    print(f"signal={args.signal} db={args.db} restocks={len(ms)} trigger_delay=0")
    print(
        f"stock signal -> first provider request: p50 {ms[len(ms) // 2]:.1f} ms  "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms  max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
