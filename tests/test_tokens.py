"""Signed unsubscribe tokens: the precomputed-pad HMAC gives exactly RFC 2104's HMAC-SHA256
(links already sent keep working), and tampering is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from restock_core.errors import NotFoundError
from restock_core.tokens import Signer


def reference_token(secret: str, purpose: str, subscription_id: int) -> str:
    """The token as the standard library makes it (how earlier versions made it)."""
    key = hashlib.sha256(f"restock-{purpose}:".encode() + secret.encode()).digest()
    body = str(subscription_id).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    return f"{b64(body)}.{b64(mac)}"


@pytest.mark.parametrize("secret", ["s", "x" * 100, "ünïcode-secret"])
@pytest.mark.parametrize("subscription_id", [1, 62, 63, 999_999, 2**63 - 1])
def test_tokens_are_standard_hmac_and_verify(secret: str, subscription_id: int) -> None:
    for purpose in ("unsubscribe", "confirm"):
        signer = Signer(secret, purpose)
        token = signer.sign(subscription_id)
        assert token == reference_token(secret, purpose, subscription_id)
        assert signer.verify(token) == subscription_id


def test_a_tampered_or_foreign_token_is_refused() -> None:
    signer = Signer("secret")
    token = signer.sign(42)
    body, mac = token.split(".")
    other = Signer("secret").sign(43).split(".")[0]
    for bad in (f"{other}.{mac}", f"{body}.{mac[:-1]}A", Signer("other").sign(42), "x"):
        if bad == token:
            continue
        with pytest.raises(NotFoundError):
            signer.verify(bad)
    with pytest.raises(NotFoundError):
        Signer("secret", "confirm").verify(token)
