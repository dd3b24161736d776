"""Resend pacing end to end: a restock of N email subscribers through the App, the worker
threads of one process and the real `resend` SDK, against FakeResend enforcing Resend's
default rate limit of 2 requests/s per team (https://resend.com/docs/api-reference/rate-limit)
with its documented 429 (`rate_limit_exceeded`, `retry-after`, `ratelimit-*` headers).

    .venv/bin/python bench/bench_resend_pacing.py --emails 10000 --threads 4

Prints the emails sent and failed, requests made and answered 429, duplicates and the time.
10,000 emails in batches of 100 are 100 requests: about 50 s at 2 requests/s. Uses SQLite
in a temporary directory unless --database is given.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from restock_resend.testing import FakeResend

from restock_core import App
from restock_core.clock import utcnow
from restock_core.config import parse_config
from restock_core.db import deliveries, subscriptions

KEY = "re_bench_key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4, help="worker threads (one process)")
    parser.add_argument("--rate", type=int, default=2, help="the fake's requests per second")
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeResend(KEY, requests_per_second=args.rate) as fake,
    ):
        url = args.database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        config = parse_config(
            {
                "restock": {"database": url, "max_attempts": 8, "batch_size": 500},
                "plugins": [
                    {
                        "resolve": "resend",
                        "options": {
                            "api_key": KEY,
                            "from_email": "shop@example.com",
                            "base_url": fake.url,
                            "timeout": 10,
                        },
                    },
                    {"resolve": "manual"},
                ],
            }
        )
        app = App(config)
        app.migrate()
        now = utcnow()
        with app.engine.begin() as conn:  # sign-ups in bulk: this measures sending
            conn.execute(
                sa.insert(subscriptions),
                [
                    {
                        "variant_id": "v1",
                        "scope": "default",
                        "source": "manual",
                        "channel": "email",
                        "contact": f"shopper{i}@example.com",
                        "status": "pending",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(args.emails)
                ],
            )
        app.set_stock("v1", 0)
        started = time.monotonic()
        app.set_stock("v1", args.emails)
        stop = threading.Event()
        workers = [
            threading.Thread(target=app.worker().run, args=(stop,), kwargs={"reconcile": False})
            for _ in range(args.threads)
        ]
        for thread in workers:
            thread.start()

        def finished() -> tuple[int, Counter[str]]:
            with app.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
                ).all()
            by_status = Counter({status: count for status, count in rows})
            return sum(by_status.values()), by_status

        while True:
            total, by_status = finished()
            if total == args.emails and by_status["sent"] + by_status["failed"] == total:
                break
            if time.monotonic() - started > 60 + args.emails / (100 * args.rate) * 3:
                print("timed out")
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        stop.set()
        app.wake()
        for thread in workers:
            thread.join(30)
        total, by_status = finished()
        received = Counter(fake.received())
        requests = len(fake.requests)
        print(f"emails: {args.emails}, worker threads: {args.threads}, fake limit: {args.rate}/s")
        print(
            f"sent: {by_status['sent']}, failed: {by_status['failed']}, other: "
            f"{total - by_status['sent'] - by_status['failed']}"
        )
        print(
            f"delivered by the fake: {sum(received.values())} to {len(received)} addresses "
            f"(duplicates: {sum(received.values()) - len(received)})"
        )
        share = fake.rate_limited / requests if requests else 0.0
        print(f"requests: {requests}, answered 429: {fake.rate_limited} ({share:.2%})")
        print(f"time: {elapsed:.1f} s ({by_status['sent'] / elapsed:.0f} emails/s)")
        app.close()


if __name__ == "__main__":
    main()
