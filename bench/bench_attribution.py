"""Attribution at scale: N orders against M notified subscriptions on SQLite (or PostgreSQL).

Seeds M notified email subscriptions over 5,000 variants and 30 days (bulk insert, not timed),
then times `App.record_orders` over N orders in batches (the way a reconciliation pass or a
burst of webhooks hands them in). About a third of the orders are by a notified person for
the notified variant within the window (they convert), a third are by notified people for
another variant, a third by strangers. Prints the figure; asserts the conversions counted.

    python bench/bench_attribution.py --orders 100000 --subscriptions 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import subscriptions
from restock_core.models import Order, OrderLine

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VARIANTS = 5000


def seed(app: App, m: int) -> None:
    now = datetime.now(UTC)
    rows = []
    with app.engine.begin() as conn:
        for i in range(m):
            notified = T0 + timedelta(minutes=(i * 43) % (30 * 24 * 60))
            rows.append(
                {
                    "variant_id": f"v{i % VARIANTS}",
                    "scope": "default",
                    "source": "manual",
                    "channel": "email",
                    "contact": f"p{i}@example.com",
                    "status": "notified",
                    "attributes": {},
                    "created_at": notified - timedelta(days=3),
                    "notified_at": notified,
                    "updated_at": now,
                }
            )
            if len(rows) == 20_000:
                conn.execute(sa.insert(subscriptions), rows)
                rows = []
        if rows:
            conn.execute(sa.insert(subscriptions), rows)


def orders(n: int, m: int) -> tuple[list[Order], int]:
    rnd = random.Random(7)
    out = []
    expected = 0
    used: set[int] = set()
    for k in range(n):
        i = rnd.randrange(m)
        notified = T0 + timedelta(minutes=(i * 43) % (30 * 24 * 60))
        kind = k % 3
        variant = f"v{i % VARIANTS}" if kind == 0 else f"v{(i + 1) % VARIANTS}"
        email = f"p{i}@example.com" if kind < 2 else f"stranger{k}@example.com"
        if kind == 0 and i not in used:
            used.add(i)
            expected += 1
        out.append(
            Order(
                source="manual",
                order_id=f"o{k}",
                placed_at=notified + timedelta(hours=rnd.randrange(1, 24 * 6)),
                currency="EUR",
                email=email,
                lines=(
                    OrderLine(variant, 1, Decimal("19.90")),
                    OrderLine(f"v{rnd.randrange(VARIANTS)}-other", 2, Decimal("5.00")),
                ),
            )
        )
    return out, expected


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{tempfile.mkdtemp()}/attribution.db"
    app = App(parse_config({"restock": {"database": url}}))
    app.migrate()
    started = time.perf_counter()
    seed(app, args.subscriptions)
    print(
        f"seeded {args.subscriptions:,} notified subscriptions in {time.perf_counter() - started:.1f} s"
    )
    batch, expected = orders(args.orders, args.subscriptions)
    started = time.perf_counter()
    cpu = time.process_time()
    made = 0
    for i in range(0, len(batch), args.batch):
        made += len(app.record_orders(batch[i : i + args.batch]))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    print(
        f"attributed {args.orders:,} orders against {args.subscriptions:,} notified subscriptions "
        f"in {elapsed:.2f} s wall, {cpu:.2f} s CPU of this process "
        f"({args.orders / elapsed:,.0f} orders/s): {made:,} conversions; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    assert made == expected, (made, expected)
    again = sum(
        len(app.record_orders(batch[i : i + args.batch])) for i in range(0, 5000, args.batch)
    )
    assert again == 0  # re-delivered orders count nothing
    with app.read_engine.connect() as conn:
        plan = (
            conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM subscriptions WHERE contact IN ('a') "
                "AND variant_id IN ('v1') AND status = 'notified'"
            ).all()
            if url.startswith("sqlite")
            else []
        )
    for row in plan:
        print("plan:", row[-1])
    app.close()
    if url.startswith("sqlite:///") and args.database is None:
        os.remove(url.removeprefix("sqlite:///"))


if __name__ == "__main__":
    main()
