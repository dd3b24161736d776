"""Benchmark: one reconciliation pass of the Shopify adapter over N (variant, scope) pairs with
pending subscribers, against the fake GraphQL Admin API running in a separate process.

    .venv/bin/python bench/bench_reconcile_shopify.py                     # 10,000 pairs, SQLite
    .venv/bin/python bench/bench_reconcile_shopify.py --available 5       # every pair restocks
    .venv/bin/python bench/bench_reconcile_shopify.py --scoped            # per-location scope
    .venv/bin/python bench/bench_reconcile_shopify.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Prints the GraphQL requests the pass made and how long it took.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from restock_shopify.fake import TOKEN

from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import subscriptions, utcnow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--available", type=int, default=0, help="quantity the fake reports")
    parser.add_argument(
        "--scoped", action="store_true", help="use a location-set scope (per-location levels)"
    )
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: temp SQLite)")
    args = parser.parse_args()

    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "restock_shopify.fake",
            "--variants",
            str(args.pairs),
            "--available",
            str(args.available),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        tmp = tempfile.TemporaryDirectory()
        database = args.database or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
        options: dict[str, object] = {
            "shop": "bench.myshopify.com",
            "access_token": TOKEN,
            "base_url": url,
            "timeout": 30.0,
        }
        scope = "default"
        if args.scoped:
            options["scopes"] = {"store": ["1"]}
            scope = "store"
        app = App(
            parse_config(
                {
                    "restock": {"database": database},
                    "plugins": [
                        {"resolve": "shopify", "id": "shopify", "options": options},
                        {"resolve": "logger", "options": {}},
                    ],
                }
            )
        )
        app.migrate()
        now = utcnow()

        def rows(first: int, last: int) -> list[dict[str, object]]:
            return [
                {
                    "variant_id": f"gid://shopify/ProductVariant/{n}",
                    "scope": scope,
                    "source": "shopify",
                    "channel": "email",
                    "contact": f"shopper{n}@example.com",
                    "status": "pending",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(first, last)
            ]

        with app.engine.begin() as conn:  # in chunks, so seeding does not set the peak RSS
            conn.execute(sa.delete(subscriptions).where(subscriptions.c.source == "shopify"))
            for first in range(1, args.pairs + 1, 20_000):
                conn.execute(
                    sa.insert(subscriptions), rows(first, min(args.pairs + 1, first + 20_000))
                )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def requests_made() -> int:
            return int(httpx.get(f"{url}/_fake/stats", timeout=10).json()["requests"])

        before = requests_made()
        started = time.perf_counter()
        result = app.worker().reconcile("shopify")
        seconds = time.perf_counter() - started
        requests = requests_made() - before
        print(
            f"pairs={result.keys} scope={scope} available={args.available} "
            f"requests={requests} restocks_opened={result.restocks_opened} "
            f"errors={len(result.errors)} seconds={seconds:.2f} "
            f"pairs_per_second={result.keys / seconds:,.0f} "
            f"peak_rss_before_pass={rss_before / 1024:.0f}MB "
            f"peak_rss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}MB "
            f"load={Path('/proc/loadavg').read_text().split()[0]}"
        )
        app.close()
        tmp.cleanup()
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
