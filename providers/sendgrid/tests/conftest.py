"""Fixtures for the SendGrid provider tests: a fake Mail Send API and an ECDSA key pair."""

from __future__ import annotations

import base64
import importlib.metadata
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from restock_sendgrid import SendGridOptions, SendGridProvider
from restock_sendgrid.testing import SendGridFake

from restock_core.config import Secret

API_KEY = "SG.contract-test.secret-key-do-not-log"


@pytest.fixture
def sendgrid_fake() -> Iterator[SendGridFake]:
    fake = SendGridFake(api_key=API_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def make_provider(sendgrid_fake: SendGridFake) -> Callable[..., SendGridProvider]:
    def build(**options: Any) -> SendGridProvider:
        values: dict[str, Any] = {
            "api_key": Secret(API_KEY),
            "from_email": "shop@example.com",
            "base_url": sendgrid_fake.url,
            "timeout": 5.0,
        }
        values.update(options)
        return SendGridProvider(SendGridOptions(**values))

    return build


@pytest.fixture
def webhook_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key pair; the public half as SendGrid shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign(
    private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str | None = None
) -> dict[str, str]:
    """The headers SendGrid's Signed Event Webhook sends with `body`."""
    timestamp = timestamp or str(int(time.time()))
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


@pytest.fixture
def sign_events() -> Callable[..., dict[str, str]]:
    return sign


def registered_plugins() -> list[Any]:
    """The plugin module to hand make_app when the distribution is not installed (its entry
    point then provides it)."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="restock")}
    if "sendgrid" in names:
        return []
    import restock_sendgrid

    return [restock_sendgrid]


@pytest.fixture
def sendgrid_plugins() -> list[Any]:
    return registered_plugins()
