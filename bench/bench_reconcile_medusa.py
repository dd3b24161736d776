"""Benchmark: one reconciliation pass over N (variant, scope) pairs through the Medusa adapter,
against the fake Medusa backend running in a separate process.

    .venv/bin/python bench/bench_reconcile_medusa.py [--pairs 10000] [--batch 100]

Prints the pairs read, the HTTP requests the fake received, restocks opened and seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

SCOPES = ("sc_01A", "sc_01B")


def serve(variants: int) -> None:
    """Child process: the fake Medusa with `variants` variants; every 10th in stock in sc_01A."""
    from restock_medusa.testing import SC_A, SC_B, FakeMedusa

    from restock_core.testing import Reply

    fake = FakeMedusa()
    inner = fake.handle

    def handle(request):  # type: ignore[no-untyped-def]
        if request.path == "/__stats":
            return Reply(200, {"requests": len(fake.server.requests) - 1})
        return inner(request)

    fake.server.handler = handle
    for index in range(variants):
        stock = {SC_A: 3 if index % 10 == 0 else 0, SC_B: 0}
        fake.variants[f"v_{index:06d}"] = {
            "id": f"v_{index:06d}",
            "title": "M",
            "product_id": "prod_shirt",
            "manage_inventory": True,
            "allow_backorder": False,
            "item": f"iitem_{index}",
        }
        for channel, quantity in stock.items():
            fake.stock[(f"v_{index:06d}", channel)] = quantity
    fake.server.start()
    print(fake.url, flush=True)
    sys.stdin.read()  # run until the parent closes stdin
    fake.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="the adapter's max_batch_size")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    import httpx
    import sqlalchemy as sa
    from restock_medusa.testing import PK

    from restock_core.app import App
    from restock_core.config import parse_config
    from restock_core.db import subscriptions

    variants = (args.pairs + len(SCOPES) - 1) // len(SCOPES)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(variants)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = child.stdout.readline().strip()  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as tmp:
            app = App(
                parse_config(
                    {
                        "restock": {"database": f"sqlite:///{Path(tmp) / 'bench.db'}"},
                        "plugins": [
                            {"resolve": "logger", "options": {"file": str(Path(tmp) / "out")}},
                            {
                                "resolve": "medusa",
                                "id": "shop",
                                "options": {
                                    "base_url": url,
                                    "publishable_key": PK,
                                    "max_batch_size": args.batch,
                                },
                            },
                        ],
                    }
                )
            )
            app.migrate()
            now = datetime.now(UTC)

            def rows(first: int, last: int) -> list[dict[str, object]]:
                return [
                    {
                        "variant_id": f"v_{index // len(SCOPES):06d}",
                        "scope": SCOPES[index % len(SCOPES)],
                        "source": "shop",
                        "channel": "email",
                        "contact": f"s{index}@example.com",
                        "status": "pending",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for index in range(first, last)
                ]

            with app.engine.begin() as conn:  # in chunks: seeding must not set the peak RSS
                for first in range(0, args.pairs, 20_000):
                    conn.execute(
                        sa.insert(subscriptions), rows(first, min(args.pairs, first + 20_000))
                    )
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            result = app.worker().reconcile("shop")
            seconds = time.perf_counter() - started
            stats = httpx.get(url + "/__stats", timeout=10).json()
            app.close()
        print(
            json.dumps(
                {
                    "pairs": result.keys,
                    "max_batch_size": args.batch,
                    "requests": stats["requests"],
                    "restocks_opened": result.restocks_opened,
                    "errors": list(result.errors),
                    "seconds": round(seconds, 2),
                    "peak_rss_before_pass_mb": round(rss_before / 1024),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    "load": Path("/proc/loadavg").read_text().split()[0],
                }
            )
        )
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
