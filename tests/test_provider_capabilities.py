"""App methods that providers call from their webhooks (install id, opt-out and opt-in,
requeue after a passing failure, early events), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from restock_core.app import App
from restock_core.db import deliveries, utcnow
from restock_core.errors import SuppressedError
from restock_core.models import Channel, DeliveryEvent, DeliveryOutcome, SendResult

CONFIG = {
    "restock": {"retry_max": 0},
    "plugins": [
        {"resolve": "logger", "options": {"channels": ["email", "sms"]}},
        {"resolve": "manual"},
    ],
}
PHONE = "+14155550101"


def delivery_of(app: App, subscription_id: int) -> sa.Row:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.select(deliveries).where(deliveries.c.subscription_id == subscription_id)
        ).one()


def sent_subscription(app: App, **contact: str) -> int:
    sub = app.subscribe("v1", **contact).subscription
    app.set_stock("v1", 5)
    app.worker().drain()
    assert app.get_subscription(sub.id).status == "notified"
    return sub.id


def test_install_id_is_made_once_and_kept(make_app) -> None:
    first = make_app(CONFIG)
    second = make_app(CONFIG)  # another process on the same database
    assert first.install_id == second.install_id
    assert len(first.install_id) == 16


def test_unsubscribe_contact_and_lift_suppression(make_app) -> None:
    app = make_app(CONFIG)
    ids = [app.subscribe(v, phone=PHONE).subscription.id for v in ("v1", "v2")]
    other = app.subscribe("v1", phone="+14155550102").subscription.id
    app.set_stock("v1", 5)
    app.worker().process_restocks()
    assert delivery_of(app, ids[0]).status == "queued"

    assert app.unsubscribe_contact(Channel.SMS, PHONE, "replied STOP") == 2
    assert [app.get_subscription(i).status for i in ids] == ["unsubscribed"] * 2
    assert delivery_of(app, ids[0]).status == "cancelled"
    assert app.get_subscription(other).status == "pending"
    assert app.unsubscribe_contact(Channel.SMS, PHONE, "again") == 0

    app.suppress(Channel.SMS, PHONE, "replied STOP")
    with pytest.raises(SuppressedError):
        app.subscribe("v3", phone=PHONE)
    assert app.lift_suppression(Channel.SMS, PHONE) is True
    assert app.lift_suppression(Channel.SMS, PHONE) is False
    app.subscribe("v3", phone=PHONE)


def test_requeue_delivery_sends_again_then_gives_up(make_app) -> None:
    app = make_app({**CONFIG, "restock": {"retry_max": 0, "max_attempts": 2}})
    sub_id = sent_subscription(app, phone=PHONE)
    row = delivery_of(app, sub_id)
    requeue = {"reason": "handset off", "delay": 600.0}

    assert not app.requeue_delivery("logger", delivery_id=row.id + 100, **requeue)
    assert app.requeue_delivery("logger", delivery_id=row.id, event_id="e1", **requeue)
    assert not app.requeue_delivery("logger", delivery_id=row.id, event_id="e1", **requeue)
    again = delivery_of(app, sub_id)
    assert again.status == "queued" and again.last_error == "handset off"
    assert again.next_attempt_at <= utcnow() + timedelta(seconds=1)  # capped by retry_max
    assert app.get_subscription(sub_id).status == "pending"

    app.worker().drain()
    assert delivery_of(app, sub_id).attempts == 2
    assert app.get_subscription(sub_id).status == "notified"
    # attempts used up: failed, and the contact is not suppressed
    assert app.requeue_delivery("logger", delivery_id=row.id, event_id="e2", **requeue)
    failed = app.get_subscription(sub_id)
    assert failed.status == "failed" and "gave up after 2 attempts" in (failed.failed_reason or "")
    assert not app.is_suppressed(Channel.SMS, PHONE)


def test_requeue_delivery_leaves_a_newer_sign_up_alone(make_app) -> None:
    app = make_app(CONFIG)
    sub_id = sent_subscription(app, phone=PHONE)
    app.set_stock("v1", 0)
    newer = app.subscribe("v1", phone=PHONE).subscription.id
    assert newer != sub_id
    row = delivery_of(app, sub_id)
    assert app.requeue_delivery("logger", delivery_id=row.id, reason="handset off", delay=0)
    assert app.get_subscription(sub_id).status == "failed"
    assert app.get_subscription(newer).status == "pending"


def test_an_event_for_an_unknown_message_does_not_use_up_its_id(make_app) -> None:
    app = make_app(CONFIG)
    event = DeliveryEvent(
        provider="logger",
        provider_message_id="not-yet-stored",
        event="bounce",
        outcome=DeliveryOutcome.BOUNCED,
        event_id="ev-early",
    )
    assert app.handle_delivery_event(event) is False
    sub_id = sent_subscription(app, email="ada@example.com")
    with app.engine.begin() as conn:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.subscription_id == sub_id)
            .values(provider_message_id="not-yet-stored")
        )
    assert app.handle_delivery_event(event) is True
    assert app.get_subscription(sub_id).status == "failed"
    assert app.handle_delivery_event(event) is False  # a true replay


def test_a_failure_reported_while_the_worker_holds_the_delivery_sticks(make_app) -> None:
    app = make_app(CONFIG)
    sub = app.subscribe("v1", email="ada@example.com").subscription
    app.set_stock("v1", 5)
    worker = app.worker()
    worker.process_restocks()
    token = worker._claim_token()  # the worker holds it: sending, no provider id yet
    assert token is not None
    row = delivery_of(app, sub.id)
    assert row.status == "sending"
    event = DeliveryEvent(
        provider="logger",
        provider_message_id="m1",
        event="bounce",
        outcome=DeliveryOutcome.BOUNCED,
        delivery_id=row.id,
    )
    assert app.handle_delivery_event(event) is True
    worker._record(
        token, "logger", [(app.get_subscription(sub.id), 1, SendResult.sent(row.id, "m1"))]
    )
    after = delivery_of(app, sub.id)
    assert after.status == "failed" and after.provider_message_id == "m1"
    assert app.get_subscription(sub.id).status == "failed"
