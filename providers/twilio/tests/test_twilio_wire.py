"""What the real twilio SDK, driven by the provider, puts on the wire, and how the provider
classifies what a fake Twilio answers."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from restock_twilio import TwilioOptions, TwilioProvider
from restock_twilio.provider import parse_retry_after
from restock_twilio.testing import FakeTwilio, twilio_error

from restock_core.models import Channel, Hold, Outcome
from restock_core.testing import Reply, make_message

MakeProvider = Callable[..., TwilioProvider]


def sms(delivery_id: int, to: str | None = None) -> Any:
    return make_message(delivery_id, channel=Channel.SMS, to=to)


# --------------------------------------------------------------------------- wire format


def test_one_form_encoded_request_per_sms_with_basic_auth(
    make_provider: MakeProvider, fake_twilio: FakeTwilio, creds: Any
) -> None:
    provider = make_provider(status_callback="https://restock.example/sms/status")
    messages = [sms(1, "+14155550101"), sms(2, "+14155550102"), sms(3, "+14155550103")]
    results = provider.send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert all(r.provider_message_id and r.provider_message_id.startswith("SM") for r in results)
    requests = fake_twilio.message_requests
    assert len(requests) == 3
    token = base64.b64encode(f"{creds.account_sid}:{creds.auth_token}".encode()).decode()
    by_to = {}
    for request in requests:
        assert request.method == "POST"
        assert request.path == f"/2010-04-01/Accounts/{creds.account_sid}/Messages.json"
        assert request.headers["authorization"] == f"Basic {token}"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {k: v for k, v in request.form.items()}
        assert all(len(v) == 1 for v in form.values())
        by_to[form["To"][0]] = {k: v[0] for k, v in form.items()}
    assert sorted(by_to) == ["+14155550101", "+14155550102", "+14155550103"]
    first = by_to["+14155550101"]
    assert first["From"] == creds.from_number
    assert "MessagingServiceSid" not in first
    assert first["Body"] == messages[0].text
    assert first["StatusCallback"] == "https://restock.example/sms/status?delivery_id=1"
    # the sid Twilio returned is what the result carries
    sids = {r.delivery_id: r.provider_message_id for r in results}
    assert len(set(sids.values())) == 3


def test_messaging_service_replaces_from(
    make_provider: MakeProvider, fake_twilio: FakeTwilio, creds: Any
) -> None:
    provider = make_provider(messaging_service_sid=creds.service_sid)
    assert provider.send([sms(1)])[0].outcome == Outcome.SENT
    form = fake_twilio.message_requests[0].form
    assert form["MessagingServiceSid"] == [creds.service_sid]
    assert "From" not in form


def test_no_status_callback_without_app_or_option(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    provider = make_provider()
    provider.send([sms(1)])
    assert "StatusCallback" not in fake_twilio.message_requests[0].form


def test_status_callback_derived_from_public_url_when_bound(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    class FakeHost:  # only public_url is read
        public_url = "https://shop.example/restock/"

    provider = make_provider()
    provider.bind(FakeHost(), "texts")  # type: ignore[arg-type]
    assert provider.status_callback_url == "https://shop.example/restock/texts/status"
    provider.send([sms(1)])
    assert fake_twilio.message_requests[0].form["StatusCallback"] == [
        "https://shop.example/restock/texts/status?delivery_id=1"
    ]


def test_empty_status_callback_sends_none(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    class FakeHost:
        public_url = "https://shop.example"

    provider = make_provider(status_callback="")
    provider.bind(FakeHost(), "twilio")  # type: ignore[arg-type]
    provider.send([sms(1)])
    assert "StatusCallback" not in fake_twilio.message_requests[0].form


def test_twilio_environment_does_not_rewrite_the_host(
    make_provider: MakeProvider, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TWILIO_REGION/TWILIO_EDGE would turn 127.0.0.1 into 127.ie1.0.1 (providers.md §0)
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "9" * 32)
    provider = make_provider()
    assert provider.send([sms(1)])[0].outcome == Outcome.SENT
    assert len(fake_twilio.message_requests) == 1


def test_concurrency_bound_is_honoured(make_provider: MakeProvider, creds: Any) -> None:
    with FakeTwilio(creds.account_sid, creds.auth_token, hold=0.05) as fake:
        provider = make_provider(base_url=fake.url, concurrency=3)
        results = provider.send([sms(i) for i in range(1, 31)])
        assert [r.outcome for r in results] == [Outcome.SENT] * 30
        assert len(fake.message_requests) == 30
        assert 1 < fake.max_in_flight <= 3
        # one SDK client (and HTTP session) per worker thread, never more than the pool
        assert 1 < len(provider._http_clients) <= 3


def test_batch_size_option_is_the_max_batch(make_provider: MakeProvider) -> None:
    assert make_provider().max_batch_size == 100
    assert make_provider(batch_size=25).max_batch_size == 25


# --------------------------------------------------------------------------- errors


def test_429_is_retried_after_retry_after(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.rate_limit(retry_after=12)
    results = make_provider().send([sms(1), sms(2)])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert {r.retry_after for r in results} == {12.0}
    assert all("20429" in (r.reason or "") for r in results)


def test_20429_without_retry_after_uses_backoff(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.rate_limit(retry_after=None)
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.RETRY
    assert result.retry_after is None
    assert "20429" in (result.reason or "")


def test_500_is_retried(make_provider: MakeProvider, fake_twilio: FakeTwilio) -> None:
    fake_twilio.server_error()
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.RETRY
    assert "20500" in (result.reason or "")


def test_502_with_an_html_body_is_retried(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.server.queue(Reply(502, "<html>Bad Gateway</html>"))
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.RETRY
    assert "502" in (result.reason or "")


def test_400_with_a_malformed_body_fails(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.server.queue(Reply(400, "this is not json"))
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.FAILED
    assert "400" in (result.reason or "")


def test_created_with_a_malformed_body_counts_as_sent(
    make_provider: MakeProvider, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    # Twilio said 201; sending again could text the shopper twice (no idempotency keys)
    fake_twilio.server.queue(Reply(201, "{not json"))
    with caplog.at_level(logging.WARNING, logger="restock.twilio"):
        (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.SENT
    assert result.provider_message_id is None
    assert "unreadable body" in caplog.text


def test_slow_response_times_out_and_is_retried(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.server.queue(Reply(201, {"sid": "SMslow", "status": "queued"}, delay=1.5))
    provider = make_provider(timeout=0.2)
    (result,) = provider.send([sms(1)])
    assert result.outcome == Outcome.RETRY
    assert "timeout" in (result.reason or "")
    # the next attempt goes through on the same provider
    (again,) = provider.send([sms(1)])
    assert again.outcome == Outcome.SENT


def test_connection_refused_is_retried(make_provider: MakeProvider) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (result,) = make_provider(base_url=f"http://127.0.0.1:{port}").send([sms(1)])
    assert result.outcome == Outcome.RETRY
    assert "connection" in (result.reason or "")


def test_invalid_to_and_opted_out_fail_per_message(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.reject_recipients(["+14155550102"], code=21211)
    fake_twilio.reject_recipients(["+14155550103"], code=21610)
    fake_twilio.reject_recipients(["+14155550104"], code=21614)
    fake_twilio.reject_recipients(["+14155550105"], code=21408)
    messages = [sms(i, f"+1415555010{i}") for i in range(1, 6)]
    results = {r.delivery_id: r for r in make_provider().send(messages)}

    assert results[1].outcome == Outcome.SENT
    invalid, opted_out, landline, region = results[2], results[3], results[4], results[5]
    # invalid and non-mobile numbers cannot take SMS: suppressed like an opt-out
    assert invalid.outcome == Outcome.FAILED and invalid.suppress
    assert "21211" in invalid.reason and "not a valid phone number" in invalid.reason
    assert opted_out.outcome == Outcome.FAILED and opted_out.suppress
    assert "21610" in opted_out.reason and "unsubscribed" in opted_out.reason
    assert landline.outcome == Outcome.FAILED and "21614" in landline.reason
    assert landline.suppress
    # a region the account may not send to is the sender's setup: no suppression
    assert region.outcome == Outcome.FAILED and "21408" in region.reason
    assert not region.suppress
    assert fake_twilio.received() == ["+14155550101"]


def test_other_4xx_fails(make_provider: MakeProvider, fake_twilio: FakeTwilio) -> None:
    fake_twilio.server.queue(Reply(400, twilio_error(400, 21606, "The From phone number is bad")))
    (result,) = make_provider().send([sms(1)])
    assert result.outcome == Outcome.FAILED
    assert "21606" in result.reason


def test_bad_credentials_fail_for_good_without_leaking_the_token(
    fake_twilio: FakeTwilio, creds: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-do-not-log-31337"
    provider = TwilioProvider(
        TwilioOptions(
            account_sid=creds.account_sid,
            auth_token=wrong,
            from_number=creds.from_number,
            base_url=fake_twilio.url,
        )
    )
    try:
        (result,) = provider.send([sms(1)])
    finally:
        provider.close()
    assert (result.outcome, result.hold) == (Outcome.RETRY, Hold.UNAUTHORIZED)  # an outage
    assert "20003" in result.reason and "authentication" in result.reason
    assert wrong not in result.reason
    assert wrong not in caplog.text
    assert wrong not in repr(provider) and wrong not in repr(provider.options)


def test_non_e164_number_fails_without_a_request(
    make_provider: MakeProvider, fake_twilio: FakeTwilio
) -> None:
    (result,) = make_provider().send([sms(1, "0415 555 0101")])
    assert result.outcome == Outcome.FAILED
    assert "E.164" in result.reason
    assert fake_twilio.message_requests == []


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
