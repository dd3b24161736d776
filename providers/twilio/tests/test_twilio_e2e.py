"""End to end on SQLite and PostgreSQL: plugins.toml with twilio (pointed at a fake Twilio)
for SMS, logger for email and the manual source; sign-ups, a restock, the worker, then
Twilio status callbacks through the HTTP API."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from restock_twilio.testing import FakeTwilio
from twilio.request_validator import RequestValidator

from restock_core.api import create_api
from restock_core.app import App
from restock_core.errors import ConfigError, SuppressedError
from restock_core.models import Channel

PUBLIC_URL = "https://restock.example"
PHONES = ["+14155550101", "+14155550102", "+14155550103"]


def config(fake: FakeTwilio, creds: Any, **options: Any) -> dict[str, Any]:
    return {
        "restock": {"public_url": PUBLIC_URL},
        "plugins": [
            {
                "resolve": "twilio",
                "id": "sms",
                "options": {
                    "account_sid": creds.account_sid,
                    "auth_token": {"env": "RESTOCK_TEST_TWILIO_TOKEN"},
                    "from_number": creds.from_number,
                    "base_url": fake.url,
                    "timeout": 5,
                    "concurrency": 2,
                    **options,
                },
            },
            {"resolve": "logger", "options": {"channels": ["email"]}},
            {"resolve": "manual"},
        ],
    }


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, creds: Any) -> None:
    monkeypatch.setenv("RESTOCK_TEST_TWILIO_TOKEN", creds.auth_token)


def signed_post(client: TestClient, token: str, params: dict[str, str], path: str = "/sms/status"):
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return client.post(
        path,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def restock_and_drain(make_app: Callable[..., App], fake: FakeTwilio, creds: Any) -> App:
    app = make_app(config(fake, creds))
    for phone in PHONES:
        app.subscribe("shirt-m", phone=phone)
    app.subscribe("shirt-m", email="ada@example.com")
    app.set_stock("shirt-m", 5)
    app.worker().drain()
    return app


def test_restock_texts_every_sms_subscriber_once(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    app = restock_and_drain(make_app, fake_twilio, creds)

    requests = fake_twilio.message_requests
    assert len(requests) == len(PHONES)
    assert sorted(fake_twilio.received()) == PHONES
    for request in requests:
        form = {k: v[0] for k, v in request.form.items()}
        assert request.path == f"/2010-04-01/Accounts/{creds.account_sid}/Messages.json"
        assert form["From"] == creds.from_number
        # the delivery id rides in the (signed) callback URL
        assert form["StatusCallback"].startswith(f"{PUBLIC_URL}/sms/status?delivery_id=")
        assert "/unsubscribe/" in form["Body"]
    subs = app.list_subscriptions(variant_id="shirt-m").items
    assert {s.contact: s.status for s in subs} == {
        **dict.fromkeys(PHONES, "notified"),
        "ada@example.com": "notified",
    }
    # a second pass sends nothing more
    app.worker().drain()
    assert len(fake_twilio.message_requests) == len(PHONES)


def test_opted_out_number_is_failed_and_suppressed(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    fake_twilio.reject_recipients([PHONES[1]], code=21610)
    app = restock_and_drain(make_app, fake_twilio, creds)
    subs = {s.contact: s for s in app.list_subscriptions(variant_id="shirt-m").items}
    assert subs[PHONES[0]].status == "notified"
    assert subs[PHONES[1]].status == "failed"
    assert "21610" in (subs[PHONES[1]].failed_reason or "")
    assert app.is_suppressed(Channel.SMS, PHONES[1])
    with pytest.raises(SuppressedError):
        app.subscribe("other-variant", phone=PHONES[1])


def test_rate_limited_messages_are_queued_again(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    fake_twilio.rate_limit(retry_after=30)
    app = restock_and_drain(make_app, fake_twilio, creds)
    subs = {s.contact: s.status for s in app.list_subscriptions(variant_id="shirt-m").items}
    assert all(subs[p] == "pending" for p in PHONES)
    assert app.counts()["deliveries"].get("queued") == len(PHONES)


def test_status_callbacks(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    app = restock_and_drain(make_app, fake_twilio, creds)
    sid_of = {form["To"]: f"SM{i + 1:032x}" for i, form in enumerate(fake_twilio.accepted)}
    client = TestClient(create_api(app))
    token = creds.auth_token

    delivered = {"MessageSid": sid_of[PHONES[0]], "MessageStatus": "delivered", "To": PHONES[0]}
    answer = signed_post(client, token, delivered)
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True

    # intermediate statuses are acknowledged and change nothing
    sent = {"MessageSid": sid_of[PHONES[1]], "MessageStatus": "sent", "To": PHONES[1]}
    assert signed_post(client, token, sent).json() == {
        "ok": True,
        "applied": False,
        "status": "sent",
    }

    undelivered = {
        "MessageSid": sid_of[PHONES[1]],
        "MessageStatus": "undelivered",
        "ErrorCode": "30005",
        "To": PHONES[1],
        "AccountSid": creds.account_sid,
        "ApiVersion": "2010-04-01",
    }
    # a bad signature is refused and changes nothing
    forged = client.post(
        "/sms/status",
        content=urlencode(undelivered),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator("not-the-token").compute_signature(
                PUBLIC_URL + "/sms/status", undelivered
            ),
        },
    )
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthorized"
    missing = client.post(
        "/sms/status",
        content=urlencode(undelivered),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert missing.status_code == 401
    # signed for another URL (the signature covers the URL)
    elsewhere = client.post(
        "/sms/status",
        content=urlencode(undelivered),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": RequestValidator(token).compute_signature(
                "https://attacker.example/sms/status", undelivered
            ),
        },
    )
    assert elsewhere.status_code == 401
    assert not app.is_suppressed(Channel.SMS, PHONES[1])

    answer = signed_post(client, token, undelivered)
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    subs = {s.contact: s for s in app.list_subscriptions(variant_id="shirt-m").items}
    assert subs[PHONES[0]].status == "notified"
    assert subs[PHONES[1]].status == "failed"
    assert "30005" in (subs[PHONES[1]].failed_reason or "")
    assert app.is_suppressed(Channel.SMS, PHONES[1])

    # a replay changes nothing
    replay = signed_post(client, token, undelivered)
    assert replay.status_code == 200
    assert replay.json()["applied"] is False

    # malformed: signed but without MessageStatus; not a form at all; broken form
    no_status = signed_post(client, token, {"MessageSid": sid_of[PHONES[2]]})
    assert no_status.status_code == 400
    assert no_status.json()["error"]["field"] == "MessageStatus"
    as_json = client.post(
        "/sms/status",
        json=undelivered,
        headers={"X-Twilio-Signature": "abc"},
    )
    assert as_json.status_code == 400
    assert as_json.json()["error"]["code"] == "malformed"
    broken = client.post(
        "/sms/status",
        content=b"\xff\xfe=&&",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": "abc",
        },
    )
    assert broken.status_code == 400
    assert subs[PHONES[2]].status == "notified"
    assert app.get_subscription(subs[PHONES[2]].id).status == "notified"


def test_config_errors_name_the_plugin_and_option(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(config(fake_twilio, creds, messaging_service_sid=creds.service_sid))
    assert "'sms'" in str(caught.value) and "from_number" in str(caught.value)
    assert creds.auth_token not in str(caught.value)

    bad = config(fake_twilio, creds, timeout="soon")
    with pytest.raises(ConfigError) as caught:
        make_app(bad)
    assert "timeout" in str(caught.value) and "a number" in str(caught.value)

    bad = config(fake_twilio, creds)
    bad["plugins"][0]["options"]["auth_token"] = 12345
    with pytest.raises(ConfigError) as caught:
        make_app(bad)
    assert "auth_token" in str(caught.value) and "12345" not in str(caught.value)


def test_callback_signed_for_the_configured_status_callback_url(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    hook = "https://hooks.example/proxy/twilio-status"
    app = make_app(config(fake_twilio, creds, status_callback=hook))
    app.subscribe("shirt-m", phone=PHONES[0])
    app.set_stock("shirt-m", 1)
    app.worker().drain()
    form = fake_twilio.message_requests[0].form
    assert form["StatusCallback"] == [f"{hook}?delivery_id=1"]
    client = TestClient(create_api(app))
    params = {"MessageSid": "SM" + "1".zfill(32), "MessageStatus": "failed", "ErrorCode": "30007"}
    signature = RequestValidator(creds.auth_token).compute_signature(hook, params)
    answer = client.post(
        "/sms/status",
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    (sub,) = app.list_subscriptions(variant_id="shirt-m").items
    assert sub.status == "failed" and "30007" in (sub.failed_reason or "")


def test_double_opt_in_by_sms(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any, token_env: None
) -> None:
    """double_opt_in for SMS: the public sign-up stays unconfirmed and Twilio carries the
    rendered confirm_sms text with the confirm link; only after the link is posted does a
    restock text the number. Email sign-ups (not named in double_opt_in) are pending at once."""
    settings = config(fake_twilio, creds)
    settings["restock"].update(double_opt_in=["sms"], admin_api_key="admin-key")
    app = make_app(settings)
    client = TestClient(create_api(app))
    phone = PHONES[0]
    answer = client.post("/subscriptions", json={"variant_id": "scarf", "phone": phone})
    assert answer.json() == {"status": "accepted", "confirm": True}
    email = client.post("/subscriptions", json={"variant_id": "scarf", "email": "a@example.com"})
    assert email.json() == {"status": "accepted"}
    app.worker().drain()

    (request,) = fake_twilio.message_requests
    form = {k: v[0] for k, v in request.form.items()}
    assert (form["To"], form["From"]) == (phone, creds.from_number)
    link = re.search(re.escape(PUBLIC_URL) + r"(/confirm/\S+)", form["Body"])
    assert link is not None, form["Body"]
    assert form["StatusCallback"].startswith(f"{PUBLIC_URL}/sms/status?delivery_id=")
    statuses = {s.contact: str(s.status) for s in app.list_subscriptions().items}
    assert statuses == {phone: "unconfirmed", "a@example.com": "pending"}

    # a restock before the confirmation texts nobody
    app.set_stock("scarf", 3)
    app.worker().drain()
    assert len(fake_twilio.message_requests) == 1
    app.set_stock("scarf", 0)

    assert client.post(link.group(1)).status_code == 200
    app.set_stock("scarf", 3)
    app.worker().drain()
    restock = {k: v[0] for k, v in fake_twilio.message_requests[-1].form.items()}
    assert len(fake_twilio.message_requests) == 2
    assert restock["To"] == phone and "/unsubscribe/" in restock["Body"]
    assert "/confirm/" not in restock["Body"]
    statuses = {s.contact: str(s.status) for s in app.list_subscriptions().items}
    assert statuses == {phone: "notified", "a@example.com": "notified"}
