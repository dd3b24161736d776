"""The Resend provider through the real SDK against a fake Resend on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time

import attrs
import pytest
from restock_resend import ResendOptions, ResendProvider, batch_key
from restock_resend.testing import FakeResend

from restock_core.config import Secret, structure_options
from restock_core.errors import ConfigError
from restock_core.models import Channel, Hold, Outcome
from restock_core.testing import ProviderContract, Reply, make_message

KEY = "re_test_key_93hf"


@pytest.fixture
def provider_fake():
    with FakeResend(KEY) as fake:
        yield fake


@pytest.fixture
def provider(provider_fake):
    return ResendProvider(
        ResendOptions(
            api_key=Secret(KEY),
            from_email="Shop <shop@example.com>",
            base_url=provider_fake.url,
            timeout=1,
        )
    )


@pytest.fixture
def provider_secrets():
    return [KEY]


@pytest.fixture
def contract_channel():
    return Channel.EMAIL


class TestResendContract(ProviderContract):
    pass


def test_batch_wire_format(provider, provider_fake) -> None:
    messages = [make_message(i) for i in (1, 2, 3)]
    results = provider.send(messages)
    assert [r.provider_message_id for r in results] == ["email-1", "email-2", "email-3"]
    request = provider_fake.requests[-1]
    assert request.path == "/emails/batch"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["idempotency-key"] == batch_key(messages)
    assert request.headers["x-batch-validation"] == "permissive"
    body = request.json
    assert [e["to"] for e in body] == [[m.to] for m in messages]
    first = body[0]
    assert first["from"] == "Shop <shop@example.com>" and first["subject"] == messages[0].subject
    assert first["html"] == messages[0].html and first["text"] == messages[0].text
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["tags"] == [{"name": "delivery_id", "value": "1"}]


def test_single_message_uses_its_delivery_key(provider, provider_fake) -> None:
    message = make_message(7)
    assert provider.send([message])[0].outcome == Outcome.SENT
    request = provider_fake.requests[-1]
    assert (
        request.path == "/emails" and request.headers["idempotency-key"] == message.idempotency_key
    )


def test_batch_key_is_stable_and_order_free() -> None:
    a = [make_message(i) for i in (3, 1, 2)]
    b = [make_message(i) for i in (1, 2, 3)]
    assert batch_key(a) == batch_key(b) != batch_key(b[:2])


def test_lost_response_is_retried_without_sending_twice(provider, provider_fake) -> None:
    messages = [make_message(i) for i in range(1, 6)]
    provider_fake.slow_once = 2.0  # accepted, but the answer comes after the client gave up
    first = provider.send(messages)
    assert {r.outcome for r in first} == {Outcome.RETRY}
    time.sleep(0.1)
    second = provider.send(list(reversed(messages)))
    assert {r.outcome for r in second} == {Outcome.SENT}
    assert sorted(provider_fake.received()) == sorted(m.to for m in messages)  # once each
    keys = {r.headers["idempotency-key"] for r in provider_fake.requests}
    assert len(keys) == 1


def test_rate_limit_and_quota(provider, provider_fake) -> None:
    provider_fake.rate_limit(retry_after=3)
    results = provider.send([make_message(1), make_message(2)])
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.RETRY, 3.0)}
    provider_fake.mode = Reply(
        429, {"statusCode": 429, "name": "daily_quota_exceeded", "message": "quota"}
    )
    results = provider.send([make_message(3)])
    assert results[0].outcome == Outcome.RETRY and results[0].retry_after >= 3600
    assert results[0].hold == Hold.RATE_LIMITED


def test_a_refused_key_is_an_outage_and_validation_fails_for_good(provider_fake) -> None:
    wrong = ResendProvider(
        ResendOptions(
            api_key=Secret("re_wrong"), from_email="a@example.com", base_url=provider_fake.url
        )
    )
    results = wrong.send([make_message(1), make_message(2)])
    # 403 invalid_api_key: the core keeps these queued and pauses the provider
    assert {(r.outcome, r.hold) for r in results} == {(Outcome.RETRY, Hold.UNAUTHORIZED)}
    assert "API key" in (results[0].reason or "") and "re_wrong" not in (results[0].reason or "")
    provider_fake.mode = Reply(
        422, {"statusCode": 422, "name": "validation_error", "message": "Invalid `from`"}
    )
    ok = ResendProvider(
        ResendOptions(api_key=Secret(KEY), from_email="a@example.com", base_url=provider_fake.url)
    )
    assert ok.send([make_message(3)])[0].outcome == Outcome.FAILED


@pytest.mark.parametrize(
    "reply",
    [
        Reply(502, "<html>bad gateway</html>"),
        Reply(200, "not json"),
        Reply(200, {"unexpected": True}),
        Reply(reset=True),
    ],
)
def test_malformed_answers_are_retried(provider, provider_fake, reply) -> None:
    provider_fake.mode = reply
    results = provider.send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.RETRY}


def test_unreachable_server_is_retried() -> None:
    provider = ResendProvider(
        ResendOptions(
            api_key=Secret(KEY),
            from_email="a@example.com",
            base_url="http://127.0.0.1:9",
            timeout=1,
        )
    )
    assert provider.send([make_message(1)])[0].outcome == Outcome.RETRY


def test_api_key_is_not_logged(provider, provider_fake, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    provider_fake.server_error()
    results = provider.send([make_message(1), make_message(2)])
    assert KEY not in caplog.text and KEY not in json.dumps([r.reason for r in results])
    assert KEY not in repr(provider) and KEY not in repr(provider.options)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"from_email": "a@example.com"}, "api_key"),
        ({"api_key": "k", "from_email": "a@example.com", "batch_size": 500}, "batch_size"),
        ({"api_key": "k", "from_email": "a@example.com", "base_url": "ftp://x"}, "base_url"),
        ({"api_key": "k", "from_email": "a@example.com", "timeout": 0}, "timeout"),
        ({"api_key": "k", "from_email": ""}, "from_email"),
    ],
)
def test_bad_options_name_the_option(options, option) -> None:
    with pytest.raises(ConfigError) as caught:
        structure_options(ResendOptions, options, plugin="resend")
    assert caught.value.option == option


def test_retried_batch_with_other_content_is_not_sent_again(provider, provider_fake) -> None:
    messages = [make_message(i) for i in (1, 2)]
    assert {r.outcome for r in provider.send(messages)} == {Outcome.SENT}
    changed = [attrs.evolve(m, subject="A new subject") for m in messages]
    results = provider.send(changed)  # same deliveries, same key, other payload: Resend says 409
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert "already submitted" in (results[0].reason or "")
    assert sorted(provider_fake.received()) == sorted(m.to for m in messages)  # once each


def test_key_still_in_flight_is_retried(provider, provider_fake) -> None:
    provider_fake.mode = Reply(
        409,
        {"statusCode": 409, "name": "concurrent_idempotent_requests", "message": "in progress"},
    )
    results = provider.send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert all(r.retry_after and r.retry_after > 0 for r in results)


def test_per_message_rejection_keeps_ids_in_order(provider, provider_fake) -> None:
    messages = [make_message(i) for i in (1, 2, 3, 4)]
    provider_fake.reject_recipients([messages[1].to])
    results = {r.delivery_id: r for r in provider.send(messages)}
    assert results[2].outcome == Outcome.FAILED and messages[1].to in (results[2].reason or "")
    assert [results[i].provider_message_id for i in (1, 3, 4)] == [
        provider_fake.email_ids[messages[i].to] for i in (0, 2, 3)
    ]
    assert provider_fake.requests[-1].headers["x-batch-validation"] == "permissive"


def test_batch_rejected_as_a_whole_fails_every_message(provider, provider_fake) -> None:
    provider_fake.mode = Reply(
        422, {"statusCode": 422, "name": "validation_error", "message": "Invalid `from` field."}
    )
    results = provider.send([make_message(i) for i in (1, 2, 3)])
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert "Invalid `from` field." in (results[0].reason or "")


def test_server_error_and_timeout_are_retried(provider, provider_fake) -> None:
    provider_fake.server_error()
    assert {r.outcome for r in provider.send([make_message(1), make_message(2)])} == {Outcome.RETRY}
    provider_fake.mode = Reply(200, {"data": []}, delay=2.0)  # beyond the 1 s timeout
    results = provider.send([make_message(3), make_message(4)])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert "HttpClientError" in (results[0].reason or "")


def test_without_batches_each_message_has_its_own_request(provider_fake) -> None:
    provider = ResendProvider(
        ResendOptions(
            api_key=Secret(KEY),
            from_email="a@example.com",
            reply_to="help@example.com",
            base_url=provider_fake.url,
            use_batch=False,
        )
    )
    assert provider.max_batch_size == 1
    messages = [make_message(i) for i in (5, 6)]
    assert {r.outcome for r in provider.send(messages)} == {Outcome.SENT}
    assert [r.path for r in provider_fake.requests] == ["/emails", "/emails"]
    assert [r.headers["idempotency-key"] for r in provider_fake.requests] == [
        "restock-delivery-5",
        "restock-delivery-6",
    ]
    body = provider_fake.requests[0].json
    assert body["reply_to"] == "help@example.com" and body["to"] == [messages[0].to]
    assert body["headers"]["List-Unsubscribe"] == messages[0].headers["List-Unsubscribe"]
    assert body["tags"] == [{"name": "delivery_id", "value": "5"}]


def test_bad_webhook_secret_is_refused_at_startup() -> None:
    with pytest.raises(ConfigError) as caught:
        structure_options(
            ResendOptions,
            {"api_key": "k", "from_email": "a@example.com", "webhook_secret": "whsec_!!!"},
            plugin="resend",
        )
    assert caught.value.option == "webhook_secret"
    assert "whsec_!!!" not in str(caught.value)
