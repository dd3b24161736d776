"""Event Webhook pieces on their own: signature checks (cross-checked with the SDK's own
verifier) and the mapping of SendGrid events to restock delivery events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from restock_sendgrid.options import load_public_key
from restock_sendgrid.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    to_delivery_event,
    verify_signature,
)
from sendgrid.helpers.eventwebhook import EventWebhook


def test_signature_matches_the_sdk_verifier(
    webhook_keys: Any, sign_events: Callable[..., dict[str, str]]
) -> None:
    private, public_b64 = webhook_keys
    body = json.dumps([{"event": "delivered", "delivery_id": "1"}]).encode()
    headers = sign_events(private, body)
    signature, timestamp = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    key = load_public_key(public_b64)
    assert verify_signature(key, body, signature, timestamp)
    assert EventWebhook(public_b64).verify_signature(body.decode(), signature, timestamp)
    # tampered body, other timestamp, missing or garbage headers
    assert not verify_signature(key, body + b" ", signature, timestamp)
    assert not verify_signature(key, body, signature, str(int(timestamp) + 1))
    assert not verify_signature(key, body, None, timestamp)
    assert not verify_signature(key, body, signature, None)
    assert not verify_signature(key, body, "@@@", timestamp)
    assert not verify_signature(key, body, "aGVsbG8=", timestamp)


def test_event_mapping() -> None:
    base = {"email": "a@example.com", "sg_event_id": "e1", "sg_message_id": "abc123.filter0.1"}
    bounce = to_delivery_event(
        "sg",
        {
            **base,
            "event": "bounce",
            "type": "bounce",
            "reason": "550 no such user",
            "delivery_id": "42",
        },
    )
    assert bounce is not None
    assert (bounce.provider, bounce.event, bounce.delivery_id) == ("sg", "bounce", 42)
    assert bounce.provider_message_id == "abc123"
    assert bounce.event_id == "e1"
    assert bounce.reason is not None and "550 no such user" in bounce.reason

    dropped = to_delivery_event(
        "sg", {**base, "event": "dropped", "reason": "Bounced Address", "delivery_id": 7}
    )
    assert dropped is not None and dropped.reason == "Bounced Address"
    delivered = to_delivery_event("sg", {**base, "event": "delivered", "delivery_id": "7"})
    assert delivered is not None and delivered.event == "delivered"
    unsubscribed = to_delivery_event("sg", {**base, "event": "unsubscribe", "delivery_id": "7"})
    assert unsubscribed is not None and unsubscribed.event == "unsubscribe"

    # not acted on: temporary blocks, deferrals, resubscribes, other senders, junk
    ignored = [
        {**base, "event": "bounce", "type": "blocked", "delivery_id": "1"},
        {**base, "event": "deferred", "delivery_id": "1"},
        {**base, "event": "group_resubscribe", "delivery_id": "1"},
        {**base, "event": "bounce"},
        {**base, "event": "bounce", "delivery_id": "abc"},
        {**base, "event": "bounce", "delivery_id": True},
        {**base, "event": "bounce", "delivery_id": "-3"},
        {**base, "event": None, "delivery_id": "1"},
        ["bounce"],
        None,
    ]
    for raw in ignored:
        assert to_delivery_event("sg", raw) is None, raw


def test_events_naming_another_install_are_dropped() -> None:
    base = {
        "email": "a@example.com",
        "event": "bounce",
        "sg_event_id": "e1",
        "delivery_id": "1",
    }
    assert to_delivery_event("sg", {**base, "restock_install": "theirs"}, "ours") is None
    mine = to_delivery_event("sg", {**base, "restock_install": "ours"}, "ours")
    assert mine is not None and mine.recipient == "a@example.com"
    # without the arg (sent before it existed) the core still checks the email
    legacy = to_delivery_event("sg", base, "ours")
    assert legacy is not None and legacy.recipient == "a@example.com"
    # no email at all: a recipient that matches nobody, never "trust the delivery id"
    anonymous = to_delivery_event("sg", {k: v for k, v in base.items() if k != "email"}, "ours")
    assert anonymous is not None and anonymous.recipient == ""
