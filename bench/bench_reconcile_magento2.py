"""One Magento 2 reconciliation pass over 10,000 (SKU, scope) pairs with pending subscribers.

    .venv/bin/python bench/bench_reconcile_magento2.py [--pairs 10000] [--scopes 2]
        [--physical] [--batch 100] [--restocked 0.1]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test]

Starts the fake Magento (restock_magento2.fake) in its own process on 127.0.0.1, stores one
pending subscription per (SKU, scope) pair (scopes: "default" = stock 1 / source "default",
"na" = stock 2 / sources central + east), sets a share of the SKUs back in stock, then times
`app.worker().reconcile("m2")` and prints the requests the fake received and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from restock_magento2.fake import TOKEN

from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import subscriptions

SCOPES = ("default", "na")


@contextmanager
def database_url(given: str | None, tmp: str) -> Iterator[str]:
    """A temporary SQLite file, or a fresh schema in the given PostgreSQL database (dropped
    afterwards, so the benchmark leaves nothing behind)."""
    if not given:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    if not given.startswith("postgresql"):
        yield given
        return
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(given, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        joiner = "&" if "?" in given else "?"
        yield f"{given}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--scopes", type=int, default=2, choices=(1, 2))
    parser.add_argument(
        "--physical",
        action="store_true",
        help="salable_check = false (source-item quantities; the default reads salable ones)",
    )
    parser.add_argument("--batch", type=int, default=100, help="max_batch_size")
    parser.add_argument("--restocked", type=float, default=0.1, help="share of SKUs set to 3")
    parser.add_argument(
        "--database",
        help="default: a temporary SQLite file; a PostgreSQL URL gets a fresh schema, dropped after",
    )
    args = parser.parse_args()
    scopes = SCOPES[: args.scopes]
    skus = [f"SKU-{n:06d}" for n in range(args.pairs // len(scopes))]

    fake = subprocess.Popen(
        [sys.executable, "-m", "restock_magento2.fake", "--skus", str(len(skus))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the fake did not start: {url!r}")
        with tempfile.TemporaryDirectory() as tmp, database_url(args.database, tmp) as database:
            app = App(
                parse_config(
                    {
                        "restock": {"database": database, "log_level": "WARNING"},
                        "plugins": [
                            {
                                "resolve": "magento2",
                                "id": "m2",
                                "options": {
                                    "base_url": url,
                                    "access_token": TOKEN,
                                    "salable_check": not args.physical,
                                    "max_batch_size": args.batch,
                                    "stocks": {
                                        "na": {"stock_id": 2, "sources": ["central", "east"]}
                                    },
                                },
                            },
                            {
                                "resolve": "logger",
                                "options": {"file": str(Path(tmp) / "out.jsonl")},
                            },
                        ],
                    }
                )
            )
            app.migrate()
            now = datetime.now(UTC)
            rows = [
                {
                    "variant_id": sku,
                    "scope": scope,
                    "source": "m2",
                    "channel": "email",
                    "contact": f"shopper{n}@example.com",
                    "status": "pending",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for n, (sku, scope) in enumerate((s, sc) for s in skus for sc in scopes)
            ]
            with app.engine.begin() as conn:
                for start in range(0, len(rows), 5000):
                    conn.execute(sa.insert(subscriptions), rows[start : start + 5000])
            restocked = skus[: int(len(skus) * args.restocked)]
            httpx.post(
                f"{url}/__fake/stock",
                content=json.dumps({"skus": restocked, "scopes": ["default", "2"], "quantity": 3}),
            ).raise_for_status()
            before = httpx.get(f"{url}/__fake/stats").json()["requests"]
            started = time.perf_counter()
            result = app.worker().reconcile("m2")
            elapsed = time.perf_counter() - started
            requests = httpx.get(f"{url}/__fake/stats").json()["requests"] - before
            app.close()
    finally:
        if fake.stdin:
            fake.stdin.close()
        fake.wait(10)
    print(
        f"pairs: {result.keys}  scopes: {len(scopes)}  batch: {args.batch}  "
        f"salable_check: {not args.physical}"
    )
    print(
        f"requests to Magento: {requests}  seconds: {elapsed:.2f}  pairs/s: {result.keys / elapsed:.0f}"
    )
    print(
        f"stock rows written: {result.changed}  restocks opened: {result.restocks_opened}  "
        f"errors: {list(result.errors)}"
    )


if __name__ == "__main__":
    main()
