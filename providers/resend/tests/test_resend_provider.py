"""The Resend provider through the real SDK against a fake Resend on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time

import pytest
from restock_resend import ResendOptions, ResendProvider, batch_key
from restock_resend.testing import FakeResend

from restock_core.config import Secret, structure_options
from restock_core.errors import ConfigError
from restock_core.models import Channel, Outcome
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


def test_auth_and_validation_fail_for_good(provider_fake) -> None:
    wrong = ResendProvider(
        ResendOptions(
            api_key=Secret("re_wrong"), from_email="a@example.com", base_url=provider_fake.url
        )
    )
    results = wrong.send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.FAILED}
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
