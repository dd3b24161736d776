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
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
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
        if self.path == "/_stock":  # the benchmark sets the fake Shopify stock
            stock.update(json.loads(body)); return self.reply(200)
        if self.path.endswith("/graphql.json"):  # a minimal Shopify GraphQL Admin API
            q = json.loads(body)
            ids = (q.get("variables") or {}).get("ids") or []
            nodes = []
            for gid in ids:
                if "InventoryItem" in gid:
                    num = gid.rsplit("/", 1)[1]
                    nodes.append({"id": gid, "variant": {"id": "gid://shopify/ProductVariant/" + num}})
                    continue
                qty = stock.get(gid, 0)
                nodes.append({"id": gid, "inventoryQuantity": qty, "title": "M",
                    "product": {"title": "Shirt", "handle": "shirt", "featuredImage": None},
                    "inventoryItem": {"id": gid.replace("ProductVariant", "InventoryItem"), "tracked": True,
                        "inventoryLevels": {"nodes": [{"location": {"id": "gid://shopify/Location/1"},
                            "quantities": [{"name": "available", "quantity": qty}]}]}}})
            return self.reply(200, json.dumps({"data": {"nodes": nodes}}).encode(), [("Content-Type", "application/json")])
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
            f'options = {{ shop = "bench.myshopify.com", access_token = "shpat_bench", '
            f'client_secret = "{secret}", base_url = "{fake_url}" }}\n'
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
                variant = f"gid://shopify/ProductVariant/{1000 + i}" if args.signal == "shopify" else f"v{i}"
                r = client.post("/subscriptions", json={"variant_id": variant, "email": f"s{i}@example.com"})
                assert r.status_code == 201, r.text
            for i in range(args.restocks):
                email = f"s{i}@example.com"
                if args.signal == "manual":
                    sent_at = time.time()
                    client.put(f"/stock/v{i}", json={"quantity": 1}, headers=auth).raise_for_status()
                else:
                    gid = f"gid://shopify/ProductVariant/{1000 + i}"
                    httpx.post(f"{fake_url}/_stock", json={gid: 1})
                    body = json.dumps(
                        {"inventory_item_id": 1000 + i, "location_id": 1, "available": 1,
                         "updated_at": "2030-01-01T00:00:00Z"}
                    ).encode()
                    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
                    sent_at = time.time()
                    client.post(
                        "/shopify/webhooks/inventory_levels/update",
                        content=body,
                        headers={"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Webhook-Id": f"wh-{i}",
                                 "X-Shopify-Topic": "inventory_levels/update", "Content-Type": "application/json"},
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
            if args.db == "postgres":
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    print(f"signal={args.signal} db={args.db} restocks={len(ms)} trigger_delay=0")
    print(f"stock signal -> first provider request: p50 {ms[len(ms) // 2]:.1f} ms  "
          f"p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms  max {ms[-1]:.1f} ms")


if __name__ == "__main__":
    main()
