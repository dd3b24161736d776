"""Signed events: the wire format shared by the Medusa subscriber (restock-forwarder.ts), the
event receiver and the outgoing `restocked` forwarder; and the v1 plugin's event shape.

Signature: ``X-Restock-Signature: sha256=<hex>`` where hex is HMAC-SHA256 of
``"<X-Restock-Timestamp>.<raw body>"`` with the shared ``event_secret``. The timestamp
(unix seconds) must be within ``event_tolerance`` seconds of now; the event id
(``X-Restock-Event-Id`` or the body's ``id``) is recorded so a replay changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from restock_core import Channel, Restock, Subscription, hookimpl

log = logging.getLogger("restock.medusa")

SIGNATURE_HEADER = "x-restock-signature"
TIMESTAMP_HEADER = "x-restock-timestamp"
EVENT_ID_HEADER = "x-restock-event-id"


def sign(secret: str, body: bytes, timestamp: int | str | None = None) -> dict[str, str]:
    """Headers that sign `body` (for the forwarder, tests and your own senders)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={digest}"}


class SignatureError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance: float,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless the headers sign `body` with `secret`, recently."""
    signature = headers.get(SIGNATURE_HEADER) or ""
    ts = headers.get(TIMESTAMP_HEADER) or ""
    if not signature or not ts:
        raise SignatureError(
            "missing_signature", "X-Restock-Signature and X-Restock-Timestamp are required"
        )
    try:
        ts_value = int(ts)
    except ValueError:
        raise SignatureError("bad_signature", "X-Restock-Timestamp is not unix seconds") from None
    scheme, _, given = signature.partition("=")
    expected = sign(secret, body, ts_value)[SIGNATURE_HEADER].partition("=")[2]
    if scheme.strip().lower() != "sha256" or not hmac.compare_digest(given.strip(), expected):
        raise SignatureError("bad_signature", "the signature does not match the body")
    current = time.time() if now is None else now
    if abs(current - ts_value) > tolerance:
        raise SignatureError(
            "stale", f"the timestamp is more than {int(tolerance)} seconds from now (replay?)"
        )


def v1_event(restock: Restock, subscriptions: Sequence[Subscription]) -> dict[str, Any]:
    """The v1 plugin's `restock-notification.restocked` payload: `{variant_id, emails}`.

    Only email subscriptions are listed (the v1 plugin stored e-mail addresses only).
    """
    emails: list[str] = []
    for sub in subscriptions:
        if sub.channel == Channel.EMAIL and sub.contact not in emails:
            emails.append(sub.contact)
    return {"variant_id": restock.variant_id, "emails": emails}


class RestockedForwarder:
    """Observer registered by an adapter with `forward_restocked_url`: POSTs the v1 shape
    (plus `sales_channel_id` / `scope`) for this adapter's restocks. Never raises."""

    def __init__(self, adapter: Any):
        self.adapter = adapter

    @hookimpl
    def restocked(self, restock: Restock, subscriptions: Sequence[Subscription]) -> None:
        adapter = self.adapter
        url = adapter.options.forward_restocked_url
        if not url or restock.source != adapter.id:
            return
        try:
            payload = v1_event(restock, subscriptions)
            payload["sales_channel_id"] = adapter.channel_for_scope(restock.scope)
            payload["scope"] = restock.scope
            body = json.dumps(payload).encode()
            headers = {
                "content-type": "application/json",
                EVENT_ID_HEADER: f"restock-{restock.id}-{restock.released}-{uuid.uuid4().hex[:8]}",
            }
            if adapter.options.event_secret is not None:
                headers.update(sign(adapter.options.event_secret.value, body))
            response = httpx.post(
                url, content=body, headers=headers, timeout=adapter.options.timeout
            )
            if response.status_code >= 400:
                log.warning(
                    "forwarding restock %s to %s answered %s", restock.id, url, response.status_code
                )
        except Exception as exc:  # an observer must never break delivery
            log.warning("forwarding restock %s failed: %s", restock.id, type(exc).__name__)
