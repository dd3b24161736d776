"""The SendGrid provider against a fake Mail Send API: the shared contract, then what the
fake received (path, auth, personalizations, headers, template mode) and how answers map to
results."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate
from typing import Any

import attrs
import pytest
from restock_sendgrid import SendGridOptions, SendGridProvider
from restock_sendgrid.provider import TAG, content_of, retry_after_seconds
from restock_sendgrid.testing import SendGridFake

from restock_core.config import Secret, parse_config
from restock_core.errors import ConfigError
from restock_core.models import Channel, Hold, Outcome
from restock_core.plugins import PluginRegistry
from restock_core.testing import ProviderContract, Reply, make_message

API_KEY = "SG.contract-test.secret-key-do-not-log"


# --------------------------------------------------------------------------- contract


class TestSendGridContract(ProviderContract):
    @pytest.fixture
    def provider(self, make_provider: Any) -> SendGridProvider:
        return make_provider()

    @pytest.fixture
    def provider_fake(self, sendgrid_fake: SendGridFake) -> SendGridFake:
        return sendgrid_fake

    @pytest.fixture
    def provider_secrets(self) -> list[str]:
        return [API_KEY]

    @pytest.fixture
    def contract_channel(self) -> Channel:
        return Channel.EMAIL


# --------------------------------------------------------------------------- wire format


def test_posts_one_request_with_a_personalization_per_recipient(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    provider = make_provider(categories=["back-in-stock", "restock"], reply_to="help@example.com")
    messages = [make_message(i) for i in (11, 12, 13)]
    results = provider.send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    (request,) = sendgrid_fake.requests
    assert request.method == "POST"
    assert request.path == "/v3/mail/send"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["from"] == {"email": "shop@example.com"}
    assert body["reply_to"] == {"email": "help@example.com"}
    assert body["categories"] == ["back-in-stock", "restock"]
    assert body["subject"] == "Back in stock: Blue Shirt - M"
    assert "mail_settings" not in body and "template_id" not in body
    # the link is a substitution tag in the shared content ...
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert all(TAG in c["value"] and "token-" not in c["value"] for c in body["content"])
    # ... and each personalization carries its own recipient, ids, headers and link
    personalizations = body["personalizations"]
    assert len(personalizations) == 3
    for message, item in zip(messages, personalizations, strict=True):
        assert item["to"] == [{"email": message.to}]
        assert item["custom_args"]["delivery_id"] == str(message.delivery_id)
        assert item["headers"] == {
            "List-Unsubscribe": f"<{message.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert item["substitutions"] == {TAG: message.unsubscribe_url}
    # the message id SendGrid returned is stored for every message of the request
    message_id = sendgrid_fake.delivered[0].message_id
    assert {r.provider_message_id for r in results} == {message_id}


def test_each_recipient_gets_their_own_unsubscribe_link(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    messages = [make_message(i) for i in range(1, 6)]
    make_provider().send(messages)
    by_to = {d.to: d for d in sendgrid_fake.delivered}
    for message in messages:
        email = by_to[message.to]
        assert email.text == message.text
        assert email.html == message.html
        assert email.subject == message.subject
        assert email.headers["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"


def test_different_content_goes_out_in_separate_requests(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    shirts = [make_message(i) for i in (1, 2)]
    hats = [
        attrs.evolve(m, subject="Back in stock: Hat", text=m.text.replace("Blue Shirt - M", "Hat"))
        for m in (make_message(3), make_message(4))
    ]
    results = make_provider().send([shirts[0], hats[0], shirts[1], hats[1]])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len(sendgrid_fake.requests) == 2
    subjects = sorted(r.json["subject"] for r in sendgrid_fake.requests)
    assert subjects == ["Back in stock: Blue Shirt - M", "Back in stock: Hat"]
    assert all(len(r.json["personalizations"]) == 2 for r in sendgrid_fake.requests)
    by_to = {d.to: d for d in sendgrid_fake.delivered}
    for message in shirts + hats:
        assert by_to[message.to].text == message.text


def test_html_escaped_link_is_substituted_escaped() -> None:
    url = "https://shop.example/unsubscribe?t=abc&s=1"
    message = attrs.evolve(
        make_message(1),
        unsubscribe_url=url,
        text=f"Unsubscribe: {url}",
        html='<a href="https://shop.example/unsubscribe?t=abc&amp;s=1">Unsubscribe</a>',
    )
    content = content_of(message)
    assert content.substituted
    assert url not in (content.text or "") and "abc" not in (content.html or "")


def test_one_address_is_never_twice_in_one_request(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    """A person signed up for two variants that render alike: SendGrid refuses a whole
    request naming one address twice (the fake does, as documented), so the second message
    goes in another request and both arrive."""
    messages = [
        make_message(1, to="ada@example.com", variant_id="shirt-m"),
        make_message(2, to="bob@example.com", variant_id="shirt-m"),
        make_message(3, to="Ada@Example.com", variant_id="shirt-l"),
        make_message(4, to="ada@example.com", variant_id="shirt-xl"),
        make_message(5, to="cy@example.com", variant_id="shirt-l"),
    ]
    for template_id in (None, "d-0123456789abcdef"):
        sendgrid_fake.delivered.clear()
        sendgrid_fake.server.requests.clear()
        results = make_provider(template_id=template_id).send(messages)
        assert [r.outcome for r in results] == [Outcome.SENT] * 5, results
        for request in sendgrid_fake.requests:
            addresses = [p["to"][0]["email"].lower() for p in request.json["personalizations"]]
            assert len(addresses) == len(set(addresses))
        assert len(sendgrid_fake.requests) == 3
        # first request: every distinct address once, in order of first appearance
        first = sendgrid_fake.requests[0].json["personalizations"]
        assert [p["custom_args"]["delivery_id"] for p in first] == ["1", "2", "5"]
        assert sorted(d.to.lower() for d in sendgrid_fake.delivered) == sorted(
            m.to.lower() for m in messages
        )


def test_fake_refuses_a_repeated_address(sendgrid_fake: SendGridFake) -> None:
    """The fake follows SendGrid: one address twice in a request fails the whole request."""
    import json
    import urllib.error
    import urllib.request

    body = {
        "from": {"email": "shop@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
        "personalizations": [
            {"to": [{"email": "ada@example.com"}]},
            {"to": [{"email": "ADA@example.com"}]},
        ],
    }
    request = urllib.request.Request(
        sendgrid_fake.url + "/v3/mail/send",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert "more than once" in caught.value.read().decode()


def test_template_mode_sends_dynamic_template_data(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    provider = make_provider(template_id="d-0123456789abcdef", sandbox_mode=True)
    messages = [make_message(i) for i in (21, 22)]
    results = provider.send(messages)
    assert {r.outcome for r in results} == {Outcome.SENT}
    (request,) = sendgrid_fake.requests
    body = request.json
    assert body["template_id"] == "d-0123456789abcdef"
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert "content" not in body and "subject" not in body
    for message, item in zip(messages, body["personalizations"], strict=True):
        assert "substitutions" not in item  # not allowed with dynamic templates
        data = item["dynamic_template_data"]
        assert data["unsubscribe_url"] == message.unsubscribe_url
        assert data["name"] == "Blue Shirt - M"
        assert data["subject"] == message.subject
        assert item["custom_args"]["delivery_id"] == str(message.delivery_id)
        assert item["headers"]["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"


def test_2500_messages_take_three_requests(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    provider = make_provider()
    assert provider.max_batch_size == 1000
    messages = [make_message(i) for i in range(1, 2501)]
    results = provider.send(messages)
    assert len(results) == 2500 and {r.outcome for r in results} == {Outcome.SENT}
    sizes = [len(r.json["personalizations"]) for r in sendgrid_fake.requests]
    assert sizes == [1000, 1000, 500]
    assert sorted(sendgrid_fake.received()) == sorted(m.to for m in messages)


def test_batch_size_option(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    provider = make_provider(batch_size=2)
    assert provider.max_batch_size == 2
    provider.send([make_message(i) for i in range(1, 6)])
    assert [len(r.json["personalizations"]) for r in sendgrid_fake.requests] == [2, 2, 1]


def test_from_name_and_sender(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    make_provider(from_name="Example Shop").send([make_message(1)])
    assert sendgrid_fake.requests[0].json["from"] == {
        "email": "shop@example.com",
        "name": "Example Shop",
    }


# --------------------------------------------------------------------------- answers


def test_429_with_retry_after(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    sendgrid_fake.rate_limit(retry_after=30)
    results = make_provider().send([make_message(1), make_message(2)])
    assert {(r.outcome, r.hold) for r in results} == {(Outcome.RETRY, Hold.RATE_LIMITED)}
    assert all(r.retry_after == 30 for r in results)
    assert "429" in (results[0].reason or "")


def test_429_with_x_ratelimit_reset(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    reset = int(time.time()) + 120
    sendgrid_fake.answer(
        Reply(
            429,
            {"errors": [{"field": None, "message": "too many requests"}]},
            headers={
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
        )
    )
    results = make_provider().send([make_message(1)])
    assert results[0].outcome == Outcome.RETRY
    assert results[0].retry_after is not None and 100 <= results[0].retry_after <= 121


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert retry_after_seconds({"Retry-After": "7"}, now) == 7
    assert retry_after_seconds({"retry-after": formatdate(now + 60, usegmt=True)}, now) == 60
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now) + 42)}, now) == 42
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(now) - 5)}, now) == 0
    assert retry_after_seconds({"Retry-After": "soon"}, now) is None
    assert retry_after_seconds({}, now) is None


def test_a_rate_limit_stops_the_rest_of_the_call(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    sendgrid_fake.rate_limit(retry_after=5)
    provider = make_provider(batch_size=2)
    results = provider.send([make_message(i) for i in range(1, 7)])
    assert len(sendgrid_fake.requests) == 1  # no point hammering a rate-limited API
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert {r.retry_after for r in results} == {5}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(
    make_provider: Any, sendgrid_fake: SendGridFake, status: int
) -> None:
    sendgrid_fake.answer(Reply(status, "<html>upstream error</html>"))
    results = make_provider().send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert str(status) in (results[0].reason or "")


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not json", "{not json", {"errors": "nope"}, [1, 2], {"errors": [None, 3]}, None],
)
def test_malformed_error_bodies_do_not_crash(
    make_provider: Any, sendgrid_fake: SendGridFake, body: Any
) -> None:
    sendgrid_fake.answer(Reply(400, body))
    results = make_provider().send([make_message(1)])
    assert results[0].outcome == Outcome.FAILED
    assert "400" in (results[0].reason or "")
    sendgrid_fake.answer(Reply(500, body))
    assert make_provider().send([make_message(2)])[0].outcome == Outcome.RETRY


def test_malformed_success_body_still_counts_as_sent(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    sendgrid_fake.answer(Reply(202, b"\x00garbage"))
    results = make_provider().send([make_message(1)])
    assert results[0].outcome == Outcome.SENT
    assert results[0].provider_message_id is None  # no X-Message-Id header


def test_slow_response_times_out_and_is_retried(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    sendgrid_fake.server.queue(Reply(202, None, delay=3.0))
    results = make_provider(timeout=0.3).send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert "unreachable" in (results[0].reason or "")


def test_reset_connection_is_retried(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    sendgrid_fake.server.queue(Reply(reset=True))
    results = make_provider().send([make_message(1)])
    assert results[0].outcome == Outcome.RETRY


def test_refused_connection_is_retried(make_provider: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = make_provider(base_url=f"http://127.0.0.1:{port}").send([make_message(1)])
    assert results[0].outcome == Outcome.RETRY
    assert API_KEY not in (results[0].reason or "")


def test_rejected_recipient_fails_and_the_others_are_resent(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    messages = [make_message(i) for i in range(1, 6)]
    sendgrid_fake.reject_recipients([messages[1].to, messages[3].to])
    results = {r.delivery_id: r for r in make_provider().send(messages)}
    for bad in (messages[1], messages[3]):
        assert results[bad.delivery_id].outcome == Outcome.FAILED
        assert "personalizations." in (results[bad.delivery_id].reason or "")
    for good in (messages[0], messages[2], messages[4]):
        assert results[good.delivery_id].outcome == Outcome.SENT
    assert len(sendgrid_fake.requests) == 2
    assert len(sendgrid_fake.requests[1].json["personalizations"]) == 3
    assert sorted(sendgrid_fake.received()) == sorted(
        m.to for m in (messages[0], messages[2], messages[4])
    )


def test_400_for_the_whole_request_fails_the_batch(
    make_provider: Any, sendgrid_fake: SendGridFake
) -> None:
    sendgrid_fake.answer(
        Reply(
            400,
            {
                "errors": [
                    {
                        "message": "The from address does not match a verified Sender Identity.",
                        "field": "from",
                        "help": None,
                    }
                ]
            },
        )
    )
    results = make_provider().send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert "verified Sender" in (results[0].reason or "")
    assert len(sendgrid_fake.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_a_provider_outage(
    make_provider: Any, sendgrid_fake: SendGridFake, status: int
) -> None:
    provider = make_provider(batch_size=1)
    if status == 401:
        provider = make_provider(batch_size=1, api_key=Secret("SG.wrong-key"))
    else:
        sendgrid_fake.answer(
            Reply(403, {"errors": [{"field": None, "message": "access forbidden"}]})
        )
    results = provider.send([make_message(1), make_message(2)])
    # not the recipients' fault: the core keeps them queued and pauses the provider
    assert {(r.outcome, r.hold) for r in results} == {(Outcome.RETRY, Hold.UNAUTHORIZED)}
    assert "auth" in (results[0].reason or "").lower()
    assert "SG.wrong-key" not in (results[0].reason or "")
    assert len(sendgrid_fake.requests) == 1  # the second message did not try again


def test_413_splits_the_batch(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    too_large = Reply(413, {"errors": [{"field": None, "message": "Payload Too Large"}]})
    sendgrid_fake.server.queue(
        too_large, when=lambda r: len(r.json["personalizations"]) > 2, times=10
    )
    messages = [make_message(i) for i in range(1, 7)]
    results = make_provider().send(messages)
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert sorted(sendgrid_fake.received()) == sorted(m.to for m in messages)


def test_413_for_a_single_message_fails_it(make_provider: Any, sendgrid_fake: SendGridFake) -> None:
    sendgrid_fake.answer(Reply(413, {"errors": [{"message": "Payload Too Large"}]}))
    results = make_provider().send([make_message(1), make_message(2)])
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert "413" in (results[0].reason or "")


def test_secret_stays_out_of_repr_and_debug_logs(
    make_provider: Any, sendgrid_fake: SendGridFake, caplog: Any
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    provider = make_provider()
    provider.send([make_message(1)])
    assert "Bearer ***" in caplog.text  # the SDK's header log line, redacted
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(provider) and API_KEY not in repr(provider.options)


# --------------------------------------------------------------------------- options


def _build(options: dict[str, Any], plugins: list[Any]) -> Any:
    config = parse_config({"plugins": [{"resolve": "sendgrid", "options": options}]})
    return PluginRegistry(plugins=plugins).build(config)[0].obj


def test_options_from_plugins_toml(monkeypatch: Any, sendgrid_plugins: list[Any]) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    provider = _build(
        {
            "api_key": {"env": "SENDGRID_API_KEY"},
            "from_email": "shop@example.com",
            "categories": ["restock"],
            "timeout": 3,
            "batch_size": 250,
        },
        sendgrid_plugins,
    )
    assert isinstance(provider, SendGridProvider)
    assert provider.max_batch_size == 250
    assert provider.options.timeout == 3.0
    assert provider._client.client.timeout == 3.0
    assert provider.channels == frozenset({Channel.EMAIL})


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"from_email": "shop@example.com"}, "api_key", "required"),
        ({"api_key": "SG.x"}, "from_email", "required"),
        ({"api_key": "SG.x", "from_email": "nope"}, "from_email", "email address"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "batch_size": 1001}, "batch_size", "1000"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "batch_size": 0}, "batch_size", "between"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "timeout": 0}, "timeout", "greater than 0"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "template_id": "abc"}, "template_id", "d-"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "categories": ["x"] * 11}, "categories", "10"),
        ({"api_key": "SG.x", "from_email": "a@b.c", "base_url": "ftp://x"}, "base_url", "http"),
        (
            {"api_key": "SG.x", "from_email": "a@b.c", "webhook_public_key": "zz"},
            "webhook_public_key",
            "verification key",
        ),
        ({"api_key": "SG.x", "from_email": "a@b.c", "sandbox": True}, "sandbox", "unknown"),
    ],
)
def test_bad_options_are_named(
    options: dict[str, Any], option: str, words: str, sendgrid_plugins: list[Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _build(options, sendgrid_plugins)
    assert caught.value.option == option
    assert words in str(caught.value)
    assert "SG.x" not in str(caught.value)


def test_pem_public_key_is_accepted(webhook_keys: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    private, _ = webhook_keys
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    options = SendGridOptions(
        api_key=Secret("SG.x"), from_email="a@example.com", webhook_public_key=pem
    )
    assert SendGridProvider(options).public_key is not None


@pytest.mark.parametrize(
    "base", ["https://shop.example/unsubscribe/", "https://shop.example/u?shop=1&token="]
)
def test_shared_content_gives_the_payload_finding_each_link_gives(
    make_provider: Any, base: str
) -> None:
    """Messages carrying the core's shared content (`Message.content`) are grouped and
    tagged from it once; the requests must be exactly those built by finding each message's
    own link in its text (the path for messages without it), for plain and escaped links."""
    from datetime import UTC, datetime

    from restock_core.models import Subscription, SubscriptionStatus
    from restock_core.rendering import Renderer

    renderer = Renderer()
    messages = []
    for n in range(1, 7):
        sub = Subscription(
            n,
            "v1" if n % 3 else "v2",
            "default",
            "manual",
            Channel.EMAIL,
            f"s{n}@example.com",
            SubscriptionStatus.PENDING,
            datetime.now(UTC),
            product_title="Mug" if n % 3 else "Jug",
        )
        url = f"{base}tok{n}"
        messages.append(
            renderer.render(
                delivery_id=n,
                attempt=1,
                subscription=sub,
                info=None,
                unsubscribe_url=url,
                unsubscribe_post_url=url,
            )
        )
    assert all(m.content is not None for m in messages)
    provider = make_provider()
    shared = provider.plan(messages)
    found = provider.plan([attrs.evolve(m, content=None) for m in messages])
    assert [(c, [m.delivery_id for m in ms]) for c, ms in shared] == [
        (c, [m.delivery_id for m in ms]) for c, ms in found
    ]
    assert len(shared) == 2  # one request per variant's content
    for (content, members), (_, plain) in zip(shared, found, strict=True):
        assert content.substituted
        assert provider.payload(content, members) == provider.payload(content, plain)
        body = provider.payload(content, members)
        for item, message in zip(body["personalizations"], members, strict=True):
            assert message.unsubscribe_url in item["substitutions"].values()
