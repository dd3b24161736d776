"""Issue 10 against a fake that follows Resend's documented behaviour: pacing to the team's
rate limit (2 requests/s by default, https://resend.com/docs/api-reference/rate-limit), 429s
that pause the provider without using up attempts, a refused key as an outage, and batches
whose membership and key stay fixed across retries (Idempotency-Key replay,
https://resend.com/docs/dashboard/emails/idempotency-keys)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import sqlalchemy as sa
from fastapi.testclient import TestClient
from restock_resend.testing import FakeResend

from restock_core.api import create_api
from restock_core.db import deliveries
from restock_core.pacing import ProviderGate

KEY = "re_delivery_key"


def resend_app(make_app, fake, *, restock=None, **options):
    return make_app(
        {
            "restock": {"retry_base": 0.05, "retry_max": 2.0, **(restock or {})},
            "plugins": [
                {
                    "resolve": "resend",
                    "options": {
                        "api_key": KEY,
                        "from_email": "shop@example.com",
                        "base_url": fake.url,
                        "timeout": 2,
                        **options,
                    },
                },
                {"resolve": "manual"},
            ],
        }
    )


def sign_up(app, count: int, variant: str = "v1") -> list[str]:
    emails = [f"p{i}@example.com" for i in range(count)]
    for email in emails:
        app.subscribe(variant, email=email)
    return emails


def work_until(app, done, *, threads: int = 1, timeout: float = 30.0) -> None:
    """Run `threads` workers of one app (one process) until `done()` or the timeout."""
    stop = threading.Event()
    workers = [threading.Thread(target=app.worker().run, args=(stop,)) for _ in range(threads)]
    for thread in workers:
        thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        app.wake()
        for thread in workers:
            thread.join(10)


def delivery_rows(app):
    with app.engine.connect() as conn:
        return conn.execute(sa.select(deliveries).order_by(deliveries.c.id)).all()


def all_sent(app) -> bool:
    rows = delivery_rows(app)
    return bool(rows) and all(r.status in ("sent", "failed", "cancelled") for r in rows)


# ---------------------------------------------------------------- 2. pacing


def test_paced_to_resends_default_limit_across_worker_threads(make_app) -> None:
    with FakeResend(KEY, requests_per_second=2) as fake:
        app = resend_app(make_app, fake, restock={"max_attempts": 1}, batch_size=5)
        assert app.providers["resend"].obj.requests_per_second == 2.0  # Resend's default
        emails = sign_up(app, 30)
        app.set_stock("v1", 30)
        work_until(app, lambda: all_sent(app), threads=3)
        assert Counter(fake.received()) == Counter({e: 1 for e in emails})
        assert {r.status for r in delivery_rows(app)} == {"sent"}
        # paced, the limit is (almost) never hit; unpaced, 4 of every 6 requests were 429s
        assert fake.rate_limited <= 1


def test_a_429_pauses_the_provider_and_does_not_use_up_attempts(make_app) -> None:
    # restock paces to 50/s but the account allows 2/s: Resend answers 429 + retry-after
    with FakeResend(KEY, requests_per_second=2) as fake:
        app = resend_app(
            make_app, fake, restock={"max_attempts": 1}, batch_size=5, requests_per_second=50
        )
        emails = sign_up(app, 30)
        app.set_stock("v1", 30)
        work_until(app, lambda: all_sent(app), threads=2)
        rows = delivery_rows(app)
        assert {r.status for r in rows} == {"sent"}, [r.last_error for r in rows]
        assert all(r.attempts == 1 for r in rows)  # the 429s gave their attempts back
        assert Counter(fake.received()) == Counter({e: 1 for e in emails})
        # after a 429 the provider waits for retry-after instead of hammering the API
        assert 1 <= fake.rate_limited <= 4
        metrics = app.metrics.rate_limited.labels(provider="resend")._value.get()
        assert metrics == fake.rate_limited


# ---------------------------------------------------------------- 8. auth outage


def test_a_refused_key_is_an_outage_that_keeps_deliveries_queued(make_app, caplog) -> None:
    with FakeResend("re_the_rotated_key") as fake:
        app = resend_app(make_app, fake, restock={"max_attempts": 2})
        app.gates["resend"] = ProviderGate("resend", 2.0, probe_delay=0.1, max_probe_delay=0.2)
        app.providers["resend"].obj._gate = app.gates["resend"]
        emails = sign_up(app, 4)
        app.set_stock("v1", 4)
        with caplog.at_level(logging.ERROR, logger="restock"):
            for _ in range(4):  # several refused probes: more than max_attempts
                app.worker().drain()
                time.sleep(0.8)
        rows = delivery_rows(app)
        assert {r.status for r in rows} == {"queued"}
        assert all(r.attempts == 0 for r in rows)
        assert "resend refused the API key (403 invalid_api_key)" in rows[0].last_error
        assert {s.status for s in app.list_subscriptions().items} == {"pending"}
        assert any("refuses restock's credentials" in r.message for r in caplog.records)
        assert app.metrics.provider_down.labels(provider="resend")._value.get() == 1
        with TestClient(create_api(app)) as client:
            health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["providers"]["resend"]["status"] == "unauthorized"
        # the operator fixes the key: the next probe works and everyone is told once
        fake.api_key = KEY
        time.sleep(0.8)
        app.worker().drain()
        assert {r.status for r in delivery_rows(app)} == {"sent"}
        assert sorted(fake.received()) == sorted(emails)
        assert app.metrics.provider_down.labels(provider="resend")._value.get() == 0
        with TestClient(create_api(app)) as client:
            assert client.get("/health").json() == {"status": "ok"}


# ---------------------------------------------------------------- 3. stable requests


def test_a_retried_batch_is_identical_after_a_recipient_unsubscribed(make_app) -> None:
    with FakeResend(KEY) as fake:
        app = resend_app(make_app, fake, restock={"retry_base": 0.3})
        emails = sign_up(app, 5)
        fake.lose_answers = [True]  # Resend sends the batch, its answer is lost
        app.set_stock("v1", 5)
        app.worker().drain()
        assert {r.status for r in delivery_rows(app)} == {"queued"}
        leaver = app.list_subscriptions().items[2]
        app.unsubscribe(app.unsubscribe_url(leaver.id).rsplit("/", 1)[1])
        time.sleep(0.8)
        app.worker().drain()
        batches = [r for r in fake.requests if r.path == "/emails/batch"]
        assert len(batches) == 2
        assert batches[1].body == batches[0].body
        assert batches[1].headers["idempotency-key"] == batches[0].headers["idempotency-key"]
        # Resend replayed the first answer: nobody got the email twice
        assert Counter(fake.received()) == Counter({e: 1 for e in emails})
        statuses = {s.contact: str(s.status) for s in app.list_subscriptions().items}
        assert statuses.pop(leaver.contact) == "unsubscribed"
        assert set(statuses.values()) == {"notified"}


def test_a_retried_batch_is_not_re_split_with_new_deliveries(make_app) -> None:
    with FakeResend(KEY) as fake:
        # claims of 7, batches of 5: the first claim sends [1..5] and [6, 7]
        app = resend_app(make_app, fake, restock={"batch_size": 7, "retry_base": 0.0}, batch_size=5)
        emails = sign_up(app, 10)
        fake.lose_answers = [False, True]  # [6, 7] was sent but its answer was lost
        app.set_stock("v1", 10)
        app.worker().drain()
        assert Counter(fake.received()) == Counter({e: 1 for e in emails})
        assert {r.status for r in delivery_rows(app)} == {"sent"}
        keys = Counter(r.headers["idempotency-key"] for r in fake.requests)
        assert sorted(keys.values()) == [1, 1, 2]  # only [6, 7] was sent again, as it was
