"""Status callbacks and inbound messages against the App (SQLite and PostgreSQL): early
callbacks, what each delivery error code does, and STOP / START / HELP.

Twilio signs every webhook with X-Twilio-Signature over the full URL (query string included)
and the sorted form parameters (https://www.twilio.com/docs/usage/security#validating-requests);
the tests sign with the SDK's own RequestValidator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from restock_twilio.testing import FakeTwilio
from twilio.request_validator import RequestValidator

from restock_core import db
from restock_core.api import create_api
from restock_core.app import App
from restock_core.errors import SuppressedError, ValidationError
from restock_core.models import Channel

PUBLIC_URL = "https://restock.example"
PHONES = ["+14155550101", "+14155550102", "+14155550103", "+14155550104", "+14155550105"]


def config(fake: FakeTwilio, creds: Any, restock: Mapping[str, Any] = (), **options: Any):
    return {
        "restock": {"public_url": PUBLIC_URL, **dict(restock)},
        "plugins": [
            {
                "resolve": "twilio",
                "id": "sms",
                "options": {
                    "account_sid": creds.account_sid,
                    "auth_token": creds.auth_token,
                    "from_number": creds.from_number,
                    "base_url": fake.url,
                    "timeout": 5,
                    "concurrency": 2,
                    **options,
                },
            },
            {"resolve": "manual"},
        ],
    }


def post_signed(client: Any, token: str, url: str, params: Mapping[str, str]) -> Any:
    """POST `params` to `url` (absolute, as Twilio calls it) signed with `token`."""
    signature = RequestValidator(token).compute_signature(url, dict(params))
    parts = urlsplit(url)
    return client.post(
        parts.path + (f"?{parts.query}" if parts.query else ""),
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


def subs_by_phone(app: App, variant: str = "shirt-m") -> dict[str, Any]:
    return {s.contact: s for s in app.list_subscriptions(variant_id=variant).items}


def delivery(app: App, subscription_id: int) -> Any:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.select(db.deliveries).where(db.deliveries.c.subscription_id == subscription_id)
        ).one()


# --------------------------------------------------------------------------- early callbacks


def test_callback_before_the_worker_records_the_sid_is_applied(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    """Twilio answered 201 and, before the worker stored the sid, posted `undelivered`:
    the delivery id in the signed StatusCallback URL finds the row, the failure sticks (the
    worker's later "sent" does not overwrite it), and nothing is lost."""
    app = make_app(config(fake_twilio, creds))
    client = TestClient(create_api(app))
    answers: list[Any] = []
    early_sid: list[str] = []

    def callback_now(form: Mapping[str, str], sid: str) -> None:
        if form["To"] != PHONES[0]:
            return
        early_sid.append(sid)
        params = {
            "MessageSid": sid,
            "MessageStatus": "undelivered",
            "ErrorCode": "30005",
            "To": form["To"],
            "AccountSid": creds.account_sid,
        }
        answers.append(post_signed(client, creds.auth_token, form["StatusCallback"], params))

    fake_twilio.on_accept = callback_now
    for phone in PHONES[:2]:
        app.subscribe("shirt-m", phone=phone)
    app.set_stock("shirt-m", 5)
    app.worker().drain()

    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    subs = subs_by_phone(app)
    assert subs[PHONES[0]].status == "failed"
    assert "30005" in (subs[PHONES[0]].failed_reason or "")
    assert subs[PHONES[1]].status == "notified"
    row = delivery(app, subs[PHONES[0]].id)
    assert row.status == "failed"  # not overwritten by the worker's "sent"
    assert row.provider_message_id == early_sid[0]
    assert app.is_suppressed(Channel.SMS, PHONES[0])


def test_a_callback_that_could_not_be_applied_can_be_posted_again(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    """Without a delivery id (a Messaging Service's own callback URL) a callback for a sid
    restock has not stored yet is not applied -- and must not use up its event id."""
    app = make_app(config(fake_twilio, creds, status_callback=""))
    client = TestClient(create_api(app))
    app.subscribe("shirt-m", phone=PHONES[0])
    sid = f"SM{1:032x}"  # the sid the fake will hand out
    params = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30006"}
    early = post_signed(client, creds.auth_token, f"{PUBLIC_URL}/sms/status", params)
    assert early.status_code == 200 and early.json()["applied"] is False

    app.set_stock("shirt-m", 5)
    app.worker().drain()
    assert "StatusCallback" not in fake_twilio.message_requests[0].form
    again = post_signed(client, creds.auth_token, f"{PUBLIC_URL}/sms/status", params)
    assert again.json()["applied"] is True
    assert subs_by_phone(app)[PHONES[0]].status == "failed"
    # and a true replay is still refused
    replay = post_signed(client, creds.auth_token, f"{PUBLIC_URL}/sms/status", params)
    assert replay.json()["applied"] is False


def test_the_delivery_id_in_the_callback_url_cannot_be_forged(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    app = make_app(config(fake_twilio, creds))
    for phone in PHONES[:2]:
        app.subscribe("shirt-m", phone=phone)
    app.set_stock("shirt-m", 5)
    app.worker().drain()
    subs = subs_by_phone(app)
    target = delivery(app, subs[PHONES[1]].id).id
    client = TestClient(create_api(app))
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "failed", "ErrorCode": "21610"}
    signed_for = f"{PUBLIC_URL}/sms/status?delivery_id=999"
    signature = RequestValidator(creds.auth_token).compute_signature(signed_for, params)
    forged = client.post(
        f"/sms/status?delivery_id={target}",
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert forged.status_code == 401
    assert subs_by_phone(app)[PHONES[1]].status == "notified"


# --------------------------------------------------------------------------- error codes


def test_error_codes_suppress_only_opt_outs_and_numbers_that_cannot_take_sms(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    """Twilio's error dictionary (https://www.twilio.com/docs/api/errors/<code>): 30034 is the
    merchant's unregistered A2P 10DLC sender, 30007 carrier filtering -- failed, number kept;
    30006 landline and 21610 opted out -- failed and suppressed; 30003 handset unreachable --
    sent again later."""
    app = make_app(config(fake_twilio, creds, restock={"retry_max": 0}))
    for phone in PHONES:
        app.subscribe("shirt-m", phone=phone)
    app.set_stock("shirt-m", 10)
    app.worker().drain()
    assert len(fake_twilio.message_requests) == 5
    callbacks = {r.form["To"][0]: r.form["StatusCallback"][0] for r in fake_twilio.message_requests}
    sids = {form["To"]: f"SM{i + 1:032x}" for i, form in enumerate(fake_twilio.accepted)}
    codes = dict(zip(PHONES, ["30034", "30007", "30006", "21610", "30003"], strict=True))
    client = TestClient(create_api(app))
    for phone, code in codes.items():
        params = {"MessageSid": sids[phone], "MessageStatus": "undelivered", "ErrorCode": code}
        answer = post_signed(client, creds.auth_token, callbacks[phone], params)
        assert answer.status_code == 200 and answer.json()["applied"] is True, (code, answer.text)

    subs = subs_by_phone(app)
    for phone in PHONES[:4]:
        assert subs[phone].status == "failed", phone
        assert codes[phone] in (subs[phone].failed_reason or "")
    assert "unregistered A2P 10DLC" in (subs[PHONES[0]].failed_reason or "")
    suppressed = {p for p in PHONES if app.is_suppressed(Channel.SMS, p)}
    assert suppressed == {PHONES[2], PHONES[3]}
    # the merchant's own faults leave the shopper free to sign up again
    app.subscribe("hat", phone=PHONES[0])
    with pytest.raises(SuppressedError):
        app.subscribe("hat", phone=PHONES[2])

    # 30003: queued again, the subscription pending meanwhile, then texted once more
    assert subs[PHONES[4]].status == "pending"
    row = delivery(app, subs[PHONES[4]].id)
    assert row.status == "queued" and "30003" in (row.last_error or "")
    app.worker().drain()
    assert [r.form["To"][0] for r in fake_twilio.message_requests[5:]] == [PHONES[4]]
    assert subs_by_phone(app)[PHONES[4]].status == "notified"


def test_retryable_code_past_max_attempts_fails_without_suppressing(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    app = make_app(config(fake_twilio, creds, restock={"max_attempts": 1}))
    app.subscribe("shirt-m", phone=PHONES[0])
    app.set_stock("shirt-m", 1)
    app.worker().drain()
    callback = fake_twilio.message_requests[0].form["StatusCallback"][0]
    client = TestClient(create_api(app))
    params = {"MessageSid": f"SM{1:032x}", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert post_signed(client, creds.auth_token, callback, params).json()["applied"] is True
    sub = subs_by_phone(app)[PHONES[0]]
    assert sub.status == "failed" and "gave up after 1 attempts" in (sub.failed_reason or "")
    assert not app.is_suppressed(Channel.SMS, PHONES[0])
    app.worker().drain()
    assert len(fake_twilio.message_requests) == 1


# --------------------------------------------------------------------------- inbound


def test_inbound_stop_start_help(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    """Twilio's incoming-message webhook (From, To, Body, MessageSid, AccountSid; OptOutType
    with Advanced Opt-Out -- https://www.twilio.com/docs/messaging/guides/webhook-request)."""
    app = make_app(config(fake_twilio, creds, help_text="Acme alerts <3. Reply STOP to end."))
    inbound = f"{PUBLIC_URL}/sms/inbound"
    client = TestClient(create_api(app))
    shopper, other = PHONES[0], PHONES[1]
    for variant in ("shirt-m", "hat"):
        app.subscribe(variant, phone=shopper)
    app.subscribe("shirt-m", phone=other)
    app.set_stock("shirt-m", 5)
    app.worker().process_restocks()  # deliveries queued, not sent yet

    def message(body: str, sid: str, sender: str = shopper, **extra: str) -> dict[str, str]:
        return {
            "MessageSid": sid,
            "AccountSid": creds.account_sid,
            "From": sender,
            "To": creds.from_number,
            "Body": body,
            **extra,
        }

    # anything but a keyword changes nothing and gets an empty TwiML answer
    chat = post_signed(client, creds.auth_token, inbound, message("Is it back yet?", "SMa"))
    assert chat.status_code == 200
    assert chat.headers["content-type"].startswith("application/xml")
    assert "<Response></Response>" in chat.text

    help_answer = post_signed(client, creds.auth_token, inbound, message(" help ", "SMb"))
    assert help_answer.status_code == 200
    assert "<Message>Acme alerts &lt;3. Reply STOP to end.</Message>" in help_answer.text

    stop = post_signed(client, creds.auth_token, inbound, message("Stop", "SMc"))
    assert stop.status_code == 200 and "<Message>" not in stop.text
    assert app.is_suppressed(Channel.SMS, shopper)
    assert {s.status for s in app.list_subscriptions(contact=shopper).items} == {"unsubscribed"}
    app.worker().drain()
    assert fake_twilio.received() == [other]  # the queued text to the shopper was cancelled
    with pytest.raises(SuppressedError):
        app.subscribe("scarf", phone=shopper)

    start = post_signed(client, creds.auth_token, inbound, message("START", "SMd"))
    assert start.status_code == 200
    assert not app.is_suppressed(Channel.SMS, shopper)
    app.subscribe("scarf", phone=shopper)
    # a replayed STOP (same MessageSid) does not undo the START
    post_signed(client, creds.auth_token, inbound, message("Stop", "SMc"))
    assert not app.is_suppressed(Channel.SMS, shopper)

    # Advanced Opt-Out decided it is an opt-out, whatever the wording
    post_signed(
        client,
        creds.auth_token,
        inbound,
        message("please stop texting me", "SMe", sender=other, OptOutType="STOP"),
    )
    assert app.is_suppressed(Channel.SMS, other)


def test_inbound_refuses_forged_or_foreign_messages(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    app = make_app(config(fake_twilio, creds))
    client = TestClient(create_api(app))
    app.subscribe("shirt-m", phone=PHONES[0])
    params = {
        "MessageSid": "SMx",
        "AccountSid": creds.account_sid,
        "From": PHONES[0],
        "Body": "STOP",
    }
    forged = post_signed(client, "not-the-token", f"{PUBLIC_URL}/sms/inbound", params)
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "unauthorized"
    unsigned = client.post(
        "/sms/inbound",
        content=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 401
    other_account = {**params, "AccountSid": "AC" + "9" * 32}
    answer = post_signed(client, creds.auth_token, f"{PUBLIC_URL}/sms/inbound", other_account)
    assert answer.status_code == 200
    not_e164 = {**params, "From": "ACME", "MessageSid": "SMy"}
    post_signed(client, creds.auth_token, f"{PUBLIC_URL}/sms/inbound", not_e164)
    assert not app.is_suppressed(Channel.SMS, PHONES[0])
    assert subs_by_phone(app)[PHONES[0]].status == "pending"


# --------------------------------------------------------------------------- national numbers


def test_default_region_reads_national_numbers(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    app = make_app(config(fake_twilio, creds, default_region="GB"))
    signup = app.subscribe("shirt-m", phone="07911 123456")
    assert signup.subscription.contact == "+447911123456"
    # an international number is still read as given
    assert app.subscribe("shirt-m", phone="+14155550101").subscription.contact == "+14155550101"


def test_without_default_region_national_numbers_are_refused(
    make_app: Callable[..., App], fake_twilio: FakeTwilio, creds: Any
) -> None:
    app = make_app(config(fake_twilio, creds))
    with pytest.raises(ValidationError) as caught:
        app.subscribe("shirt-m", phone="07911 123456")
    assert caught.value.field == "phone"
