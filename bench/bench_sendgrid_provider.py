"""The SendGrid provider alone: `send()` throughput through the real SDK to a fake SendGrid.

    .venv/bin/python bench/bench_sendgrid_provider.py --messages 20000

Runs a minimal fake Mail Send API in its own process on 127.0.0.1 (202 + X-Message-Id), then
times three shapes of batch, each in calls of `max_batch_size` (1000) messages:

- shared: identical content, per-recipient unsubscribe link (substitutions, 1 request per call);
- template: a dynamic template (dynamic_template_data, 1 request per call);
- distinct: every message has its own content (1 request per message: the worst case).

Prints messages/s, requests made and the time spent building payloads (no network).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request

import attrs
from restock_sendgrid import SendGridOptions, SendGridProvider

from restock_core.config import Secret
from restock_core.testing import make_message

FAKE = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = {"requests": 0, "personalizations": 0}
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n = len(json.loads(body).get("personalizations", []))
        with lock:
            count["requests"] += 1
            count["personalizations"] += n
        self.send_response(202)
        self.send_header("X-Message-Id", "bench%d" % count["requests"])
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        data = json.dumps(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/count", timeout=5) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--distinct", type=int, default=2000, help="messages in the worst case")
    args = parser.parse_args()

    fake = subprocess.Popen([sys.executable, "-c", FAKE], stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        url = f"http://127.0.0.1:{int(fake.stdout.readline())}"
        base = {"api_key": Secret("SG.bench"), "from_email": "shop@example.com", "base_url": url}
        shapes = {
            "shared": (SendGridOptions(**base), args.messages, False),
            "template": (
                SendGridOptions(**base, template_id="d-bench"),
                args.messages,
                False,
            ),
            "distinct": (SendGridOptions(**base), args.distinct, True),
        }
        for name, (options, total, distinct) in shapes.items():
            provider = SendGridProvider(options)
            messages = [make_message(i) for i in range(1, total + 1)]
            if distinct:
                messages = [attrs.evolve(m, subject=f"Item {m.delivery_id}") for m in messages]
            size = provider.max_batch_size
            batches = [messages[i : i + size] for i in range(0, total, size)]
            started = time.perf_counter()
            for batch in batches:
                for content, members in provider.plan(batch):
                    for i in range(0, len(members), size):
                        json.dumps(provider.payload(content, members[i : i + size]))
            building = time.perf_counter() - started
            before = counts(url)
            started = time.perf_counter()
            sent = 0
            for batch in batches:
                sent += sum(r.outcome == "sent" for r in provider.send(batch))
            elapsed = time.perf_counter() - started
            after = counts(url)
            print(
                f"{name:9} messages={total:6} sent={sent:6} "
                f"requests={after['requests'] - before['requests']:5} "
                f"elapsed={elapsed:6.2f} s  messages/s={total / elapsed:8.0f}  "
                f"payload build={building * 1000 / total:.3f} ms/message"
            )
    finally:
        fake.terminate()
        fake.wait(5)


if __name__ == "__main__":
    main()
