"""Signed unsubscribe tokens: no login, no lookup table, and nobody can unsubscribe
someone else by guessing an id."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .errors import NotFoundError

_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding (`base64.urlsafe_b64encode`, in one C call less)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-signed subscription ids. `purpose` separates keys: a token signed for one purpose
    (unsubscribe links) is worthless for another (double opt-in confirm links)."""

    def __init__(self, secret: str, purpose: str = "unsubscribe"):
        self._key = hashlib.sha256(f"restock-{purpose}:".encode() + secret.encode()).digest()
        self._what = f"{purpose} link"
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)

    def sign(self, subscription_id: int) -> str:
        body = str(subscription_id).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def _mac(self, body: bytes) -> bytes:
        """HMAC-SHA256 of `body`, truncated to 16 bytes, from a copy of the keyed state made
        once: the worker signs one link per message, and `hmac.new` per call cost half as
        much again (as `App.contact_hash` does)."""
        mac = self._keyed.copy()
        mac.update(body)
        return mac.digest()[:16]

    def derive(self, purpose: str) -> bytes:
        """A key for another purpose (the dashboard's session cookies), derived from the same
        secret; knowing it reveals nothing about the unsubscribe key."""
        return hmac.new(self._key, b"derive:" + purpose.encode(), hashlib.sha256).digest()

    def verify(self, token: str) -> int:
        try:
            body_text, mac_text = token.split(".", 1)
            body, mac = _unb64(body_text), _unb64(mac_text)
            expected = self._mac(body)
            if not hmac.compare_digest(mac, expected):
                raise ValueError
            return int(body.decode())
        except (ValueError, UnicodeDecodeError):
            raise NotFoundError(f"unknown or tampered {self._what}", field="token") from None
