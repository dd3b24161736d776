"""Stock in, restock detection, release and delivery, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from restock_core.db import deliveries, restocks, utcnow
from restock_core.models import SendResult, StockKey, StockUpdate
from restock_core.testing import wait_for
from tests.support import Exploding, Recorder, ScriptedPlugin, scripted_config


def statuses(app) -> dict[str, str]:
    return {s.contact: str(s.status) for s in app.list_subscriptions(limit=1000).items}


def test_restock_notifies_each_subscriber_once_in_sign_up_order(make_app, tmp_path) -> None:
    log_file = tmp_path / "messages.jsonl"
    app = make_app(
        {
            "plugins": [
                {"resolve": "logger", "options": {"file": str(log_file)}},
                {"resolve": "manual"},
            ]
        }
    )
    for name in ("ann", "bob", "cy"):
        app.subscribe("v1", email=f"{name}@example.com")
    app.subscribe("v2", email="other@example.com")
    app.set_stock("v1", 0)
    assert app.set_stock("v1", 2).restocks_opened
    app.worker().drain()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["to"] for line in lines] == [
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
    ]
    assert all("/unsubscribe/" in line["unsubscribe_url"] for line in lines)
    assert statuses(app) == {
        "ann@example.com": "notified",
        "bob@example.com": "notified",
        "cy@example.com": "notified",
        "other@example.com": "pending",
    }
    # sold out and back again: nobody is told twice
    app.set_stock("v1", 0)
    assert app.set_stock("v1", 5).restocks_opened == ()
    app.worker().drain()
    assert len(log_file.read_text().splitlines()) == 3
    # a notified shopper may sign up again, and is told on the next restock
    app.set_stock("v1", 0)
    assert app.subscribe("v1", email="ann@example.com").created
    app.set_stock("v1", 1)
    app.worker().drain()
    assert len(log_file.read_text().splitlines()) == 4


def test_stale_and_out_of_order_stock_updates_are_dropped(make_app) -> None:
    app = make_app()
    app.subscribe("v1", email="ann@example.com")
    now = utcnow()
    key = StockKey("v1")
    first = app.record_stock("manual", [StockUpdate(key, 0, now)])
    assert first.applied == 1
    stale = app.record_stock("manual", [StockUpdate(key, 9, now - timedelta(seconds=5))])
    assert (stale.applied, stale.stale, stale.restocks_opened) == (0, 1, ())
    replay = app.record_stock("manual", [StockUpdate(key, 0, now)])
    assert replay.stale == 1
    newer = app.record_stock("manual", [StockUpdate(key, 3, now + timedelta(seconds=1))])
    assert newer.applied == 1 and len(newer.restocks_opened) == 1


def test_no_restock_without_pending_subscribers_or_below_threshold(make_app) -> None:
    app = make_app({"restock": {"inventory_required": 3}})
    assert app.set_stock("v1", 10).restocks_opened == ()  # nobody waiting
    app.set_stock("v1", 0)
    app.subscribe("v1", email="ann@example.com")
    assert app.set_stock("v1", 2).restocks_opened == ()  # below inventory_required
    assert app.set_stock("v1", 3).restocks_opened != ()


def test_trigger_delay_waits_then_rereads_stock(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(trigger_delay=300), plugins=[plugin])
    app.subscribe("v1", email="ann@example.com")
    app.set_stock("v1", 1)
    worker = app.worker()
    worker.drain()
    assert plugin.provider.calls == []  # still inside the delay
    app.set_stock("v1", 0)  # sold out again during the delay: the re-read sees it
    with app.engine.begin() as conn:
        conn.execute(sa.update(restocks).values(next_wave_at=utcnow()))
    worker.drain()
    assert plugin.provider.calls == []
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(restocks.c.status)).scalar() == "ended"
    assert statuses(app) == {"ann@example.com": "pending"}


def test_raising_observer_does_not_stop_delivery_or_other_observers(make_app) -> None:
    plugin, recorder = ScriptedPlugin(), Recorder()
    app = make_app(scripted_config(), plugins=[plugin, Exploding(), recorder])
    sub = app.subscribe("v1", email="ann@example.com").subscription
    app.set_stock("v1", 1)
    app.worker().drain()
    assert plugin.provider.sent_to == ["ann@example.com"]
    assert statuses(app) == {"ann@example.com": "notified"}
    assert recorder.created == [sub.id]
    assert [ids for _, ids in recorder.restocks] == [[sub.id]]
    assert recorder.sent == [sub.id]


def test_transient_failure_is_retried_then_sent(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    plugin.provider.script = [
        lambda m: SendResult.retry(m.delivery_id, "429 too many requests", retry_after=0),
        ConnectionError("connection reset"),
    ]
    app.subscribe("v1", email="ann@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    assert len(plugin.provider.calls) == 3
    assert statuses(app) == {"ann@example.com": "notified"}
    with app.engine.connect() as conn:
        row = conn.execute(sa.select(deliveries)).one()
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 3, f"msg-{row.id}")


def test_retry_after_is_honoured(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    plugin.provider.script = [lambda m: SendResult.retry(m.delivery_id, "429", retry_after=120)]
    app.subscribe("v1", email="ann@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    with app.engine.connect() as conn:
        row = conn.execute(sa.select(deliveries)).one()
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert row.status == "queued" and 100 < wait <= 135 and row.last_error == "429"


def test_permanent_failure_marks_subscription_failed(make_app) -> None:
    plugin, recorder = ScriptedPlugin(), Recorder()
    app = make_app(scripted_config(), plugins=[plugin, recorder])
    plugin.provider.script = [
        lambda m: (
            SendResult.failed(m.delivery_id, "invalid address", suppress=True)
            if m.to.startswith("bad")
            else SendResult.sent(m.delivery_id, "ok")
        )
    ]
    bad = app.subscribe("v1", email="bad@example.com").subscription
    app.subscribe("v1", email="good@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    assert statuses(app) == {"bad@example.com": "failed", "good@example.com": "notified"}
    assert app.get_subscription(bad.id).failed_reason == "invalid address"
    assert recorder.failed == [(bad.id, "invalid address")]
    assert app.is_suppressed(bad.channel, "bad@example.com")


def test_bounded_attempts_then_failed(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(max_attempts=3), plugins=[plugin])
    plugin.provider.script = [TimeoutError("slow")] * 10
    app.subscribe("v1", email="ann@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    assert len(plugin.provider.calls) == 3
    sub = app.list_subscriptions().items[0]
    assert str(sub.status) == "failed" and "gave up after 3 attempts" in (sub.failed_reason or "")


def test_missing_results_are_retried_not_lost(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    original = plugin.provider.send
    calls = {"n": 0}

    def forgetful(messages):
        calls["n"] += 1
        results = original(messages)
        return results[:1] if calls["n"] == 1 else results

    plugin.provider.send = forgetful  # a buggy provider answering for one message only
    for name in ("ann", "bob"):
        app.subscribe("v1", email=f"{name}@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    assert statuses(app) == {"ann@example.com": "notified", "bob@example.com": "notified"}


def test_unsubscribe_before_send_cancels_the_message(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    ann = app.subscribe("v1", email="ann@example.com").subscription
    app.subscribe("v1", email="bob@example.com")
    token = app.unsubscribe_url(ann.id).rsplit("/", 1)[1]
    assert str(app.unsubscribe(token).status) == "unsubscribed"
    assert str(app.unsubscribe(token).status) == "unsubscribed"  # idempotent
    app.set_stock("v1", 1)
    app.worker().drain()
    assert plugin.provider.sent_to == ["bob@example.com"]


def test_expired_lease_is_taken_over(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    app.subscribe("v1", email="ann@example.com")
    app.set_stock("v1", 1)
    worker = app.worker()
    worker.process_restocks()
    assert worker._claim() is not None  # a worker claims, then dies before sending
    assert worker.dispatch_once() == 0  # the claim is held while its lease lasts
    with app.engine.begin() as conn:
        conn.execute(sa.update(deliveries).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert worker.dispatch_once() == 1
    assert plugin.provider.sent_to == ["ann@example.com"]
    assert statuses(app) == {"ann@example.com": "notified"}


def test_email_carries_one_click_unsubscribe_headers(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(public_url="https://restock.example"), plugins=[plugin])
    app.subscribe("v1", email="ann@example.com", product_title="Blue Shirt", variant_title="M")
    app.subscribe("v1", phone="+14155550101")
    app.set_stock("v1", 1)
    app.worker().drain()
    email, sms = sorted(
        (m for call in plugin.provider.calls for m in call), key=lambda m: m.channel
    )
    assert email.subject == "Back in stock: Blue Shirt - M"
    assert email.unsubscribe_url.startswith("https://restock.example/unsubscribe/")
    assert email.headers["List-Unsubscribe"] == f"<{email.unsubscribe_url}>"
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.unsubscribe_url in (email.html or "") and email.unsubscribe_url in email.text
    assert sms.unsubscribe_url in sms.text and sms.subject is None


def test_restocked_hook_receives_the_released_subscribers(make_app) -> None:
    plugin, recorder = ScriptedPlugin(), Recorder()
    app = make_app(scripted_config(release_batch_size=2), plugins=[plugin, recorder])
    ids = [app.subscribe("v1", email=f"p{i}@example.com").subscription.id for i in range(5)]
    app.set_stock("v1", 1)
    app.worker().drain()
    assert [chunk for _, chunk in recorder.restocks] == [ids[0:2], ids[2:4], ids[4:5]]


def test_worker_thread_delivers_promptly(make_app) -> None:
    import threading

    plugin = ScriptedPlugin()
    app = make_app(scripted_config(poll_interval=5), plugins=[plugin])
    stop = threading.Event()
    thread = threading.Thread(target=app.worker().run, args=(stop,), daemon=True)
    thread.start()
    try:
        app.subscribe("v1", email="ann@example.com")
        app.set_stock("v1", 2)  # wakes the worker: no 5 s poll wait
        wait_for(lambda: plugin.provider.sent_to == ["ann@example.com"], timeout=4)
    finally:
        stop.set()
        app.wake_event.set()
        thread.join(5)


def test_delivery_events_fail_suppress_and_ignore_replays(make_app) -> None:
    from restock_core.models import Channel, DeliveryEvent, DeliveryOutcome

    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    for name in ("ann", "bob", "cy"):
        app.subscribe("v1", email=f"{name}@example.com")
    app.set_stock("v1", 1)
    app.worker().drain()
    with app.engine.connect() as conn:
        ids = dict(
            conn.execute(
                sa.text(
                    "select s.contact, d.id from deliveries d join subscriptions s on s.id = d.subscription_id"
                )
            ).all()
        )
    bounce = DeliveryEvent(
        "scripted",
        None,
        "bounce",
        outcome=DeliveryOutcome.BOUNCED,
        reason="550 no such user",
        delivery_id=ids["ann@example.com"],
        event_id="e1",
        recipient="ANN@example.com",
    )
    assert app.handle_delivery_event(bounce) is True
    assert app.handle_delivery_event(bounce) is False  # replay
    assert app.is_suppressed(Channel.EMAIL, "ann@example.com")
    # a passing carrier problem fails the message but does not block the address
    soft = DeliveryEvent(
        "scripted",
        f"msg-{ids['bob@example.com']}",
        "undelivered",
        outcome=DeliveryOutcome.FAILED,
        suppress=False,
        event_id="e2",
    )
    assert app.handle_delivery_event(soft) is True
    assert not app.is_suppressed(Channel.EMAIL, "bob@example.com")
    # another installation's event (recipient differs) and unknown events change nothing
    foreign = DeliveryEvent(
        "scripted",
        None,
        "bounce",
        outcome=DeliveryOutcome.BOUNCED,
        delivery_id=ids["cy@example.com"],
        recipient="x@example.com",
    )
    assert app.handle_delivery_event(foreign) is False
    assert (
        app.handle_delivery_event(
            DeliveryEvent(
                "scripted",
                None,
                "deferred",
                outcome=DeliveryOutcome.OTHER,
                delivery_id=ids["cy@example.com"],
            )
        )
        is False
    )
    assert (
        app.handle_delivery_event(
            DeliveryEvent(
                "scripted",
                None,
                "delivered",
                outcome=DeliveryOutcome.DELIVERED,
                delivery_id=ids["cy@example.com"],
            )
        )
        is True
    )
    assert statuses(app) == {
        "ann@example.com": "failed",
        "bob@example.com": "failed",
        "cy@example.com": "notified",
    }
    assert "550 no such user" in (
        app.list_subscriptions(contact="ann@example.com").items[0].failed_reason or ""
    )


def test_oversold_and_absurd_quantities_are_clamped(make_app) -> None:
    app = make_app()
    app.subscribe("v1", email="ann@example.com")
    now = utcnow()
    assert app.record_stock("manual", [StockUpdate(StockKey("v1"), -4, now)]).restocks_opened == ()
    result = app.record_stock(
        "manual", [StockUpdate(StockKey("v1"), 2**40, now + timedelta(seconds=1))]
    )
    assert result.restocks_opened
