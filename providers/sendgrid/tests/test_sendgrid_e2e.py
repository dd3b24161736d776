"""End to end on SQLite and PostgreSQL: plugins.toml selecting sendgrid (pointed at the fake)
and the manual stock source; sign-ups, a restock, the worker, SendGrid outages, and the signed
Event Webhook mounted by the core API."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from restock_sendgrid.testing import SendGridFake

from restock_core.api import create_api
from restock_core.app import App
from restock_core.errors import SuppressedError
from restock_core.models import Channel, SubscriptionStatus
from restock_core.testing import wait_for

API_KEY = "SG.contract-test.secret-key-do-not-log"


def _config(fake: SendGridFake, **options: Any) -> dict[str, Any]:
    return {
        "restock": {"retry_base": 0.01, "public_url": "https://shop.example/restock"},
        "plugins": [
            {
                "resolve": "sendgrid",
                "options": {
                    "api_key": API_KEY,
                    "from_email": "shop@example.com",
                    "from_name": "Example Shop",
                    "categories": ["back-in-stock"],
                    "base_url": fake.url,
                    "timeout": 5,
                    **options,
                },
            },
            {"resolve": "manual"},
        ],
    }


def _statuses(app: App, ids: list[int]) -> list[SubscriptionStatus]:
    return [app.get_subscription(i).status for i in ids]


@pytest.fixture
def started_app(
    make_app: Callable[..., App], sendgrid_fake: SendGridFake, sendgrid_plugins: list[Any]
) -> Callable[..., App]:
    def build(**options: Any) -> App:
        return make_app(_config(sendgrid_fake, **options), plugins=sendgrid_plugins)

    return build


def test_restock_reaches_every_subscriber_once(
    started_app: Callable[..., App], sendgrid_fake: SendGridFake
) -> None:
    app = started_app()
    emails = ["ada@example.com", "grace@example.com", "linus@example.com"]
    ids = [app.subscribe("shirt-m", email=e).subscription.id for e in emails]
    app.set_stock("shirt-m", 5)
    app.worker().drain()

    (request,) = sendgrid_fake.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = request.json
    assert len(body["personalizations"]) == 3
    assert body["categories"] == ["back-in-stock"]
    assert body["from"] == {"email": "shop@example.com", "name": "Example Shop"}
    assert sorted(sendgrid_fake.received()) == sorted(emails)
    assert _statuses(app, ids) == [SubscriptionStatus.NOTIFIED] * 3
    for delivered in sendgrid_fake.delivered:
        # the real per-subscriber link, in the body and in the one-click headers
        sub_id = int(delivered.custom_args["subscription_id"])
        link = app.unsubscribe_url(sub_id)
        assert link in (delivered.text or "")
        assert delivered.headers["List-Unsubscribe"] == f"<{link}>"
        assert delivered.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # nothing more to send
    app.worker().drain()
    assert len(sendgrid_fake.requests) == 1


def test_outage_then_recovery_delivers_everyone_exactly_once(
    started_app: Callable[..., App], sendgrid_fake: SendGridFake
) -> None:
    app = started_app()
    emails = [f"shopper{i}@example.com" for i in range(6)]
    ids = [app.subscribe("hat", email=e).subscription.id for e in emails]
    sendgrid_fake.server_error()
    app.set_stock("hat", 3)
    worker = app.worker()
    worker.drain()
    assert sendgrid_fake.requests, "the worker tried SendGrid"
    assert sendgrid_fake.received() == []
    assert _statuses(app, ids) == [SubscriptionStatus.PENDING] * 6

    sendgrid_fake.accept()

    def everyone_notified() -> bool:
        worker.drain()
        return _statuses(app, ids) == [SubscriptionStatus.NOTIFIED] * 6

    wait_for(everyone_notified, timeout=30)
    assert Counter(sendgrid_fake.received()) == Counter(emails)  # each exactly once
    worker.drain()
    assert Counter(sendgrid_fake.received()) == Counter(emails)


def test_template_mode_end_to_end(
    started_app: Callable[..., App], sendgrid_fake: SendGridFake
) -> None:
    app = started_app(template_id="d-restock0001")
    ids = [
        app.subscribe("shoe", email=e, product_title="Runner", variant_title="42").subscription.id
        for e in ("a@example.com", "b@example.com")
    ]
    app.set_stock("shoe", 2)
    app.worker().drain()
    (request,) = sendgrid_fake.requests
    body = request.json
    assert body["template_id"] == "d-restock0001"
    for item in body["personalizations"]:
        data = item["dynamic_template_data"]
        assert data["name"] == "Runner - 42"
        assert data["unsubscribe_url"].startswith("https://shop.example/restock/unsubscribe/")
    assert _statuses(app, ids) == [SubscriptionStatus.NOTIFIED] * 2


# --------------------------------------------------------------------------- event webhook


def test_signed_event_webhook(
    started_app: Callable[..., App],
    sendgrid_fake: SendGridFake,
    webhook_keys: Any,
    sign_events: Callable[..., dict[str, str]],
) -> None:
    private, public_b64 = webhook_keys
    app = started_app(webhook_public_key=public_b64)
    emails = ["ok@example.com", "bounces@example.com", "spam@example.com"]
    ids = {e: app.subscribe("scarf", email=e).subscription.id for e in emails}
    app.set_stock("scarf", 10)
    app.worker().drain()
    assert _statuses(app, list(ids.values())) == [SubscriptionStatus.NOTIFIED] * 3
    sent = {d.to: d for d in sendgrid_fake.delivered}

    def event(to: str, kind: str, event_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "email": to,
            "timestamp": 1700000000,
            "event": kind,
            "sg_event_id": event_id,
            "sg_message_id": f"{sent[to].message_id}.filterdrecv-1.0",
            **sent[to].custom_args,  # custom_args come back as top-level keys
            **extra,
        }

    events = [
        event("ok@example.com", "processed", "ev-1"),
        event("ok@example.com", "delivered", "ev-2", response="250 OK"),
        event(
            "bounces@example.com",
            "bounce",
            "ev-3",
            type="bounce",
            reason="550 5.1.1 The email account does not exist",
        ),
        event("spam@example.com", "deferred", "ev-4", response="try later"),
        {"email": "someone@else.example", "event": "bounce", "sg_event_id": "ev-5"},
        "not an event",
    ]
    body = json.dumps(events).encode()

    with TestClient(create_api(app)) as client:
        # unsigned, wrongly signed, or signed for another body: refused, nothing changes
        unsigned = client.post(
            "/sendgrid/events", content=body, headers={"Content-Type": "application/json"}
        )
        assert unsigned.status_code == 401
        assert unsigned.json()["error"]["code"] == "bad_signature"
        forged = sign_events(private, b"[]")
        assert client.post("/sendgrid/events", content=body, headers=forged).status_code == 401
        wrong = sign_events(private, body, timestamp="1700000000")
        wrong["X-Twilio-Email-Event-Webhook-Timestamp"] = "1700000001"
        assert client.post("/sendgrid/events", content=body, headers=wrong).status_code == 401
        garbage = dict(sign_events(private, body))
        garbage["X-Twilio-Email-Event-Webhook-Signature"] = "%%%not-base64"
        assert client.post("/sendgrid/events", content=body, headers=garbage).status_code == 401
        assert _statuses(app, list(ids.values())) == [SubscriptionStatus.NOTIFIED] * 3

        # signed but not JSON / not an array
        for bad in (b"{not json", b'{"event": "bounce"}'):
            answer = client.post("/sendgrid/events", content=bad, headers=sign_events(private, bad))
            assert answer.status_code == 400
            assert answer.json()["error"]["code"] in ("invalid_json", "invalid")

        answer = client.post("/sendgrid/events", content=body, headers=sign_events(private, body))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": 6, "applied": 3, "ignored": 3}
        bounced = app.get_subscription(ids["bounces@example.com"])
        assert bounced.status == SubscriptionStatus.FAILED
        assert "bounce" in (bounced.failed_reason or "")
        assert app.is_suppressed(Channel.EMAIL, "bounces@example.com")
        assert not app.is_suppressed(Channel.EMAIL, "ok@example.com")
        assert app.get_subscription(ids["ok@example.com"]).status == SubscriptionStatus.NOTIFIED
        assert app.get_subscription(ids["spam@example.com"]).status == SubscriptionStatus.NOTIFIED

        # a replay (SendGrid retries, or an attacker resending a captured request) does nothing
        again = client.post("/sendgrid/events", content=body, headers=sign_events(private, body))
        assert again.json()["applied"] == 0

        # spam report and unsubscribe suppress too
        later = json.dumps(
            [
                event("spam@example.com", "spamreport", "ev-6"),
                event("ok@example.com", "group_unsubscribe", "ev-7", asm_group_id=1),
            ]
        ).encode()
        answer = client.post("/sendgrid/events", content=later, headers=sign_events(private, later))
        assert answer.json()["applied"] == 2
        assert app.is_suppressed(Channel.EMAIL, "spam@example.com")
        assert app.is_suppressed(Channel.EMAIL, "ok@example.com")
        # a suppressed address cannot sign up again; a public caller is not told why
        refused = client.post(
            "/subscriptions", json={"variant_id": "other", "email": "spam@example.com"}
        )
        assert refused.status_code == 202, refused.text
        assert not app.list_subscriptions(variant_id="other").items
        with pytest.raises(SuppressedError):
            app.subscribe("other", email="spam@example.com")


def test_webhook_without_a_key_refuses_everything(
    started_app: Callable[..., App], webhook_keys: Any, sign_events: Callable[..., dict[str, str]]
) -> None:
    private, _ = webhook_keys
    app = started_app()
    body = b"[]"
    with TestClient(create_api(app)) as client:
        answer = client.post("/sendgrid/events", content=body, headers=sign_events(private, body))
    assert answer.status_code == 401
    assert "webhook_public_key" in answer.json()["error"]["message"]


def test_events_of_another_install_on_the_same_account_are_not_applied(
    started_app: Callable[..., App],
    make_app: Callable[..., App],
    sendgrid_fake: SendGridFake,
    sendgrid_plugins: list[Any],
    webhook_keys: Any,
    sign_events: Callable[..., dict[str, str]],
    tmp_path: Any,
) -> None:
    """Staging and production (or two stores) share one SendGrid account: both number their
    deliveries from 1 and SendGrid posts every event of the account to both. A bounce for the
    other install's delivery 1 must not fail or suppress our delivery 1."""
    private, public_b64 = webhook_keys
    ours = started_app(webhook_public_key=public_b64)
    config = _config(sendgrid_fake, webhook_public_key=public_b64)
    config["restock"]["database"] = f"sqlite:///{tmp_path / 'other-install.db'}"
    theirs = make_app(config, plugins=sendgrid_plugins)
    assert ours.install_id != theirs.install_id
    mine = ours.subscribe("scarf", email="ours@example.com").subscription
    other = theirs.subscribe("scarf", email="theirs@example.com").subscription
    for app in (ours, theirs):
        app.set_stock("scarf", 10)
        app.worker().drain()
    sent = {d.to: d for d in sendgrid_fake.delivered}
    assert sent["ours@example.com"].custom_args["delivery_id"] == "1"
    assert sent["theirs@example.com"].custom_args["delivery_id"] == "1"
    assert sent["ours@example.com"].custom_args["restock_install"] == ours.install_id
    assert sent["theirs@example.com"].custom_args["restock_install"] == theirs.install_id

    def bounce(to: str, event_id: str, **override: Any) -> dict[str, Any]:
        return {
            "email": to,
            "timestamp": 1700000000,
            "event": "bounce",
            "type": "bounce",
            "reason": "550 5.1.1 no such user",
            "sg_event_id": event_id,
            "sg_message_id": f"{sent[to].message_id}.filterdrecv-1.0",
            **sent[to].custom_args,
            **override,
        }

    foreign = [
        bounce("theirs@example.com", "ev-theirs"),
        # an older message of theirs without the install arg: the email gives it away
        {
            k: v
            for k, v in bounce("theirs@example.com", "ev-theirs-old").items()
            if k != "restock_install"
        },
    ]
    body = json.dumps(foreign).encode()
    with TestClient(create_api(ours)) as client:
        answer = client.post("/sendgrid/events", content=body, headers=sign_events(private, body))
        assert answer.json() == {"received": 2, "applied": 0, "ignored": 2}
        assert ours.get_subscription(mine.id).status == SubscriptionStatus.NOTIFIED
        assert not ours.is_suppressed(Channel.EMAIL, "ours@example.com")
        assert not ours.is_suppressed(Channel.EMAIL, "theirs@example.com")

        own = json.dumps([bounce("ours@example.com", "ev-ours")]).encode()
        answer = client.post("/sendgrid/events", content=own, headers=sign_events(private, own))
        assert answer.json()["applied"] == 1
    assert ours.get_subscription(mine.id).status == SubscriptionStatus.FAILED
    assert ours.is_suppressed(Channel.EMAIL, "ours@example.com")
    assert theirs.get_subscription(other.id).status == SubscriptionStatus.NOTIFIED


def test_double_opt_in_confirmation_is_rendered_text_even_with_a_template(
    make_app: Callable[..., App], sendgrid_fake: SendGridFake, sendgrid_plugins: list[Any]
) -> None:
    """With `template_id` the dynamic template is the restock message's; the confirmation
    request goes out as restock's rendered confirm_email text and HTML (docs/security.md)."""
    config = _config(sendgrid_fake, template_id="d-restock0001")
    config["restock"].update(double_opt_in=True, admin_api_key="admin-key")
    app = make_app(config, plugins=sendgrid_plugins)
    client = TestClient(create_api(app))
    answer = client.post("/subscriptions", json={"variant_id": "boot", "email": "ada@example.com"})
    assert answer.json() == {"status": "accepted", "confirm": True}
    app.worker().drain()

    (confirmation,) = sendgrid_fake.delivered
    body = sendgrid_fake.requests[0].json
    assert "template_id" not in body and confirmation.template_id is None
    assert confirmation.dynamic_template_data is None
    assert confirmation.to == "ada@example.com" and confirmation.subject
    assert confirmation.text and confirmation.html
    link = re.search(r"https://shop\.example/restock(/confirm/\S+)", confirmation.text)
    assert link is not None and link.group(1) in confirmation.html
    assert confirmation.custom_args["subscription_id"] == str(app.list_subscriptions().items[0].id)

    # confirmed, then restocked: the restock message uses the dynamic template
    assert client.post(link.group(1)).status_code == 200
    app.set_stock("boot", 1)
    app.worker().drain()
    restock = sendgrid_fake.delivered[-1]
    assert (restock.to, restock.template_id) == ("ada@example.com", "d-restock0001")
    assert restock.dynamic_template_data is not None
    assert [str(s.status) for s in app.list_subscriptions().items] == ["notified"]
