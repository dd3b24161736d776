"""Issue 3's end-to-end promise: plugins.toml picks SendGrid for email and Twilio for SMS
(both real SDKs pointed at fakes through base_url); a restock reaches each subscriber once,
at the right fake, and an outage of both followed by recovery still delivers everyone once."""

from __future__ import annotations

from collections import Counter

from restock_sendgrid.testing import SendGridFake
from restock_twilio.testing import FakeTwilio

from restock_core.testing import wait_for

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-e2e-token"


def config(sendgrid_url: str, twilio_url: str) -> dict:
    return {
        "restock": {"retry_base": 0.05, "max_attempts": 20},
        "plugins": [
            {
                "resolve": "sendgrid",
                "id": "mail",
                "options": {
                    "api_key": "SG.e2e-key",
                    "from_email": "shop@example.com",
                    "base_url": sendgrid_url,
                    "timeout": 2,
                },
            },
            {
                "resolve": "twilio",
                "id": "sms",
                "options": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "from_number": "+14155550000",
                    "base_url": twilio_url,
                    "timeout": 2,
                },
            },
            {"resolve": "manual"},
        ],
    }


def test_email_and_sms_each_reach_the_right_fake_once_despite_an_outage(make_app) -> None:
    sendgrid, twilio = (
        SendGridFake(api_key="SG.e2e-key").start(),
        FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start(),
    )
    try:
        app = make_app(config(sendgrid.url, twilio.url))
        assert app.routing["email"].id == "mail" and app.routing["sms"].id == "sms"
        emails = [f"e{i}@example.com" for i in range(5)]
        phones = [f"+1415555{i:04d}" for i in range(101, 104)]
        for email in emails:
            app.subscribe("v1", email=email)
        for phone in phones:
            app.subscribe("v1", phone=phone)
        sendgrid.server_error()  # both providers are down when the restock comes
        twilio.server_error()
        app.set_stock("v1", 2)
        worker = app.worker()
        worker.drain()
        assert sendgrid.received() == [] and twilio.received() == []
        assert {str(s.status) for s in app.list_subscriptions().items} == {"pending"}
        sendgrid.accept()
        twilio.accept()
        wait_for(
            lambda: (
                worker.drain() >= 0
                and all(str(s.status) == "notified" for s in app.list_subscriptions().items)
            ),
            timeout=30,
            interval=0.05,
        )
        assert Counter(sendgrid.received()) == Counter(emails)
        assert Counter(twilio.received()) == Counter(phones)
        assert all(r.path == "/v3/mail/send" for r in sendgrid.requests)
        assert all(ACCOUNT_SID in r.path for r in twilio.requests)
    finally:
        sendgrid.stop()
        twilio.stop()
