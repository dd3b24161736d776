"""End to end through the App (SQLite and PostgreSQL) and the Svix-signed webhook route."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from restock_resend.testing import FakeResend
from svix.webhooks import Webhook

from restock_core.api import create_api
from restock_core.models import Channel
from restock_core.testing import wait_for

KEY = "re_e2e_key"
SECRET = "whsec_" + base64.b64encode(b"restock-resend-test-secret-32by").decode()


@pytest.fixture
def fake():
    with FakeResend(KEY) as server:
        yield server


@pytest.fixture
def app(make_app, fake):
    return make_app(
        {
            "restock": {"retry_base": 0.05},
            "plugins": [
                {
                    "resolve": "resend",
                    "options": {
                        "api_key": KEY,
                        "from_email": "shop@example.com",
                        "base_url": fake.url,
                        "timeout": 1,
                        "webhook_secret": SECRET,
                    },
                },
                {"resolve": "manual"},
            ],
        }
    )


def restock_three(app) -> list[str]:
    emails = [f"p{i}@example.com" for i in range(3)]
    for email in emails:
        app.subscribe("v1", email=email)
    app.set_stock("v1", 2)
    return emails


def test_each_subscriber_once_and_notified(app, fake) -> None:
    emails = restock_three(app)
    app.worker().drain()
    assert Counter(fake.received()) == Counter(emails)
    assert {str(s.status) for s in app.list_subscriptions().items} == {"notified"}
    [request] = fake.requests
    assert request.path == "/emails/batch"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["idempotency-key"].startswith("restock-req-")
    body = request.json
    assert sorted(e["to"][0] for e in body) == sorted(emails)
    for email in body:
        assert email["from"] == "shop@example.com" and email["subject"] and email["html"]
        assert email["headers"]["List-Unsubscribe"].startswith("<http")
        assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert email["tags"][0]["name"] == "delivery_id"


def test_lost_batch_response_is_retried_under_the_same_key(app, fake) -> None:
    emails = restock_three(app)
    fake.slow_once = 2.5  # Resend accepted the batch; the answer never reached us in time
    worker = app.worker()
    wait_for(
        lambda: (
            worker.drain() >= 0
            and all(str(s.status) == "notified" for s in app.list_subscriptions().items)
        ),
        timeout=30,
        interval=0.1,
    )
    assert Counter(fake.received()) == Counter(emails)  # exactly once each
    assert len({r.headers["idempotency-key"] for r in fake.requests}) == 1


def signed(payload: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    now = datetime.now(UTC)
    signature = Webhook(SECRET).sign(msg_id, now, body.decode())
    return body, {
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }


def test_bounce_webhook_fails_and_suppresses(app, fake) -> None:
    restock_three(app)
    app.worker().drain()
    email_id = fake.email_ids["p0@example.com"]
    bounce = {
        "type": "email.bounced",
        "created_at": "2026-11-24T00:00:00Z",
        "data": {
            "email_id": email_id,
            "to": ["p0@example.com"],
            "bounce": {"message": "mailbox does not exist"},
        },
    }
    with TestClient(create_api(app)) as client:
        body, headers = signed(bounce, "msg_1")
        assert (
            client.post(
                "/resend/webhooks", content=body, headers={**headers, "svix-signature": "v1,AAAA"}
            ).status_code
            == 401
        )
        assert (
            client.post(
                "/resend/webhooks", content=body, headers={"content-type": "application/json"}
            ).status_code
            == 401
        )
        assert (
            app.list_subscriptions(contact="p0@example.com").items[0].status == "notified"
        )  # nothing changed
        response = client.post("/resend/webhooks", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "applied"
        assert (
            client.post("/resend/webhooks", content=body, headers=headers).json()["status"]
            == "unchanged"
        )
        bad, bad_headers = signed({"type": "email.bounced"}, "msg_2")
        assert client.post("/resend/webhooks", content=bad, headers=bad_headers).status_code == 400
        other, other_headers = signed(
            {"type": "email.opened", "data": {"email_id": email_id}}, "msg_3"
        )
        assert (
            client.post("/resend/webhooks", content=other, headers=other_headers).json()["status"]
            == "ignored"
        )
    sub = app.list_subscriptions(contact="p0@example.com").items[0]
    assert str(sub.status) == "failed" and "mailbox does not exist" in (sub.failed_reason or "")
    assert app.is_suppressed(Channel.EMAIL, "p0@example.com")
