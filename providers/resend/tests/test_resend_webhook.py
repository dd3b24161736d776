"""The Svix-signed webhook route, mounted by the core API, against deliveries the App sent
through the fake Resend (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from restock_resend.testing import FakeResend
from svix.webhooks import Webhook

from restock_core.api import create_api
from restock_core.models import Channel

KEY = "re_webhook_key"
SECRET = "whsec_" + base64.b64encode(b"another-resend-test-secret-32by!").decode()
EMAILS = ["w0@example.com", "w1@example.com"]


@pytest.fixture
def fake():
    with FakeResend(KEY) as server:
        yield server


def build(make_app, fake, **extra):
    options = {"api_key": KEY, "from_email": "shop@example.com", "base_url": fake.url, **extra}
    app = make_app(
        {
            "plugins": [
                {"resolve": "resend", "id": "mail", "options": options},
                {"resolve": "manual"},
            ]
        }
    )
    for email in EMAILS:
        app.subscribe("v1", email=email)
    app.set_stock("v1", 5)
    app.worker().drain()
    assert sorted(fake.received()) == EMAILS
    return app


def signed(payload, msg_id: str, *, when: datetime | None = None, secret: str = SECRET):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    when = when or datetime.now(UTC)
    return body, {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def event(kind: str, email_id: str, to: str | None = None, **data) -> dict:
    payload = {"email_id": email_id, **data}
    if to:
        payload["to"] = [to]
    return {"type": kind, "created_at": "2026-11-24T00:00:00Z", "data": payload}


def status(app, email: str) -> str:
    return str(app.list_subscriptions(contact=email).items[0].status)


def test_delivered_confirms_and_complaint_suppresses(make_app, fake) -> None:
    app = build(make_app, fake, webhook_secret=SECRET)
    with TestClient(create_api(app)) as client:
        body, headers = signed(
            event("email.delivered", fake.email_ids[EMAILS[0]], EMAILS[0]), "msg_d"
        )
        response = client.post("/mail/webhooks", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "applied"
        assert status(app, EMAILS[0]) == "notified"

        body, headers = signed(
            event("email.complained", fake.email_ids[EMAILS[1]], EMAILS[1]), "msg_c"
        )
        assert client.post("/mail/webhooks", content=body, headers=headers).json() == {
            "status": "applied"
        }
        replay = client.post("/mail/webhooks", content=body, headers=headers)
        assert replay.status_code == 200 and replay.json() == {"status": "unchanged"}
    sub = app.list_subscriptions(contact=EMAILS[1]).items[0]
    assert str(sub.status) == "failed" and "complaint" in (sub.failed_reason or "")
    assert app.is_suppressed(Channel.EMAIL, EMAILS[1])
    assert not app.is_suppressed(Channel.EMAIL, EMAILS[0])


def test_forged_stale_and_malformed_requests_change_nothing(make_app, fake) -> None:
    app = build(make_app, fake, webhook_secret=SECRET)
    bounce = event("email.bounced", fake.email_ids[EMAILS[0]], EMAILS[0])
    other_secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with TestClient(create_api(app)) as client:
        for body, headers in (
            signed(bounce, "msg_forged", secret=other_secret),
            signed(bounce, "msg_stale", when=datetime.now(UTC) - timedelta(hours=1)),
            (json.dumps(bounce).encode(), {"content-type": "application/json"}),
        ):
            response = client.post("/mail/webhooks", content=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        for payload in (b"{not json", {"type": "email.bounced"}, ["a", "list"]):
            body, headers = signed(payload, "msg_bad")
            response = client.post("/mail/webhooks", content=body, headers=headers)
            assert response.status_code == 400 and "error" in response.json()
        # a bounce naming someone else for this email id is not applied
        body, headers = signed(
            event("email.bounced", fake.email_ids[EMAILS[0]], EMAILS[1]), "msg_other"
        )
        assert client.post("/mail/webhooks", content=body, headers=headers).json() == {
            "status": "unchanged"
        }
    assert [status(app, e) for e in EMAILS] == ["notified", "notified"]
    assert not app.is_suppressed(Channel.EMAIL, EMAILS[0])


def test_without_a_webhook_secret_every_call_is_refused(make_app, fake) -> None:
    app = build(make_app, fake)
    body, headers = signed(event("email.bounced", fake.email_ids[EMAILS[0]], EMAILS[0]), "m1")
    with TestClient(create_api(app)) as client:
        response = client.post("/mail/webhooks", content=body, headers=headers)
    assert response.status_code == 401
    assert status(app, EMAILS[0]) == "notified"


def test_suppressed_fails_and_suppresses_failed_fails_without_suppressing(make_app, fake) -> None:
    """`email.suppressed` (the address is on Resend's suppression list) and `email.failed`
    (invalid recipient, API key, domain or quota problems) both mean the shopper got nothing.
    Payload shapes: https://resend.com/docs/webhooks/emails/suppressed and
    https://resend.com/docs/webhooks/emails/failed."""
    app = build(make_app, fake, webhook_secret=SECRET)
    with TestClient(create_api(app)) as client:
        body, headers = signed(
            event(
                "email.suppressed",
                fake.email_ids[EMAILS[0]],
                EMAILS[0],
                suppressed={"message": "previously bounced", "type": "OnAccountSuppressionList"},
            ),
            "msg_s",
        )
        assert client.post("/mail/webhooks", content=body, headers=headers).json() == {
            "status": "applied"
        }
        body, headers = signed(
            event(
                "email.failed",
                fake.email_ids[EMAILS[1]],
                EMAILS[1],
                failed={"reason": "reached_daily_quota"},
            ),
            "msg_f",
        )
        assert client.post("/mail/webhooks", content=body, headers=headers).json() == {
            "status": "applied"
        }
    suppressed = app.list_subscriptions(contact=EMAILS[0]).items[0]
    assert str(suppressed.status) == "failed"
    assert "previously bounced" in (suppressed.failed_reason or "")
    assert app.is_suppressed(Channel.EMAIL, EMAILS[0])
    failed = app.list_subscriptions(contact=EMAILS[1]).items[0]
    assert str(failed.status) == "failed"
    assert "reached_daily_quota" in (failed.failed_reason or "")
    # a quota or API key problem is the sender's: the shopper may sign up again
    assert not app.is_suppressed(Channel.EMAIL, EMAILS[1])
