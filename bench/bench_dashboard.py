"""The dashboard's demand page at scale: N subscriptions over V variants in SQLite.

    .venv/bin/python bench/bench_dashboard.py [--subscriptions 1000000] [--variants 10000]

Seeds the database (not timed; popularity is skewed like real demand: a few variants have
thousands of waiting shoppers, most have a handful; 85% of sign-ups are pending), then times
whole HTTP requests to the logged-in dashboard through the ASGI app (routing, session check,
queries, Jinja rendering): the first demand page (cold and warm), the next page, the other sort
order, a search, a subscriber page of the most wanted variant, and the full CSV export.
Prints milliseconds per request (median of --repeat)
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import subscriptions


def seed(app: App, total: int, variants: int) -> None:
    rng = random.Random(7)
    # Zipf-like popularity: variant k is wanted ~1/(k+1) as often as the top one
    weights = [1 / (k + 1) ** 0.9 for k in range(variants)]
    picks = rng.choices(range(variants), weights=weights, k=total)
    now = datetime.now(UTC)
    started = time.perf_counter()
    chunk = 20_000
    with app.engine.begin() as conn:
        for start in range(0, total, chunk):
            rows = []
            for i in range(start, min(start + chunk, total)):
                k = picks[i]
                created = now - timedelta(minutes=(total - i) * 60 * 24 * 60 / total)
                rows.append(
                    {
                        "variant_id": f"variant-{k:05d}",
                        "scope": "default",
                        "source": "manual",
                        "channel": "email",
                        "contact": f"shopper{i}@example.com",
                        "status": "pending" if rng.random() < 0.85 else "notified",
                        "product_title": f"Product {k // 4}",
                        "variant_title": f"Size {k % 4}",
                        "attributes": {},
                        "created_at": created,
                        "updated_at": created,
                    }
                )
            conn.execute(sa.insert(subscriptions), rows)
    with app.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(
        f"seeded {total:,} subscriptions over {variants:,} variants in {time.perf_counter() - started:.1f} s"
    )


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    """(first ms, median ms, bytes)"""
    times = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        size = len(answer.content)
    return times[0], statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", help="an existing SQLite file to reuse (seeded if empty)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="restock-bench-"))
    path = Path(args.db) if args.db else folder / "restock.db"
    app = App(parse_config({"restock": {"database": f"sqlite:///{path}", "admin_api_key": "k"}}))
    app.migrate()
    with app.engine.connect() as conn:
        existing = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)).scalar_one()
    if existing == 0:
        seed(app, args.subscriptions, args.variants)
    else:
        print(f"reusing {path} with {existing:,} subscriptions")
    client = TestClient(create_api(app))
    form = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    client.post("/admin/login", data={"csrf": token, "key": "k"})
    first_page = client.get("/admin/demand").text
    cursor = re.search(r'after=([A-Za-z0-9_-]+)"', first_page).group(1)
    top = re.search(r'data-variant="([^"]+)"', first_page).group(1)
    cases = [
        ("demand, first page", "/admin/demand"),
        ("demand, next page", f"/admin/demand?after={cursor}"),
        ("demand, by variant id", "/admin/demand?sort=variant"),
        ("demand, search 'Product 42'", "/admin/demand?q=Product+42"),
        ("subscribers of the top variant", f"/admin/subscribers?source=manual&variant={top}"),
        ("restocks", "/admin/restocks"),
    ]
    print(f"{'request':34} {'first ms':>9} {'median ms':>10} {'bytes':>8}")
    for label, url in cases:
        first, median, size = timed(client, url, args.repeat)
        print(f"{label:34} {first:9.1f} {median:10.1f} {size:8,}")
    started = time.perf_counter()
    csv_answer = client.get("/admin/demand.csv")
    print(
        f"{'demand CSV export (all variants)':34} {(time.perf_counter() - started) * 1000:9.1f} "
        f"{'':>10} {len(csv_answer.content):8,} ({csv_answer.text.count(chr(10)) - 1:,} rows)"
    )
    app.close()


if __name__ == "__main__":
    main()
