"""The signed SendGrid Event Webhook: `POST /<instance id>/events`.

SendGrid posts a JSON array of events, signed with ECDSA (P-256, SHA-256) over
`timestamp + raw body`; the signature (base64 DER) is in `X-Twilio-Email-Event-Webhook-Signature`,
the timestamp in `X-Twilio-Email-Event-Webhook-Timestamp`. Our `custom_args` come back as
top-level keys of each event, so `delivery_id` names the outbox row; `sg_event_id`
deduplicates SendGrid's retries and replays.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from restock_core import DeliveryEvent, DeliveryOutcome, PluginHost, error_response

from .provider import INSTALL_ARG

if TYPE_CHECKING:
    from .provider import SendGridProvider

log = logging.getLogger("restock.sendgrid")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

#: SendGrid event -> what it means for restock (Event Webhook reference:
#: https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event)
OUTCOMES = {
    # confirmations: passed on, they change nothing but are counted
    "processed": DeliveryOutcome.ACCEPTED,
    "delivered": DeliveryOutcome.DELIVERED,
    "open": DeliveryOutcome.ENGAGED,
    "click": DeliveryOutcome.ENGAGED,
    # failures: they end the subscription and suppress the address
    "bounce": DeliveryOutcome.BOUNCED,
    "dropped": DeliveryOutcome.DROPPED,
    "spamreport": DeliveryOutcome.COMPLAINED,
    "unsubscribe": DeliveryOutcome.OPTED_OUT,
    "group_unsubscribe": DeliveryOutcome.OPTED_OUT,
}
CONFIRMING = frozenset(k for k, v in OUTCOMES.items() if not v.is_failure)
FAILING = frozenset(k for k, v in OUTCOMES.items() if v.is_failure)


def verify_signature(
    key: ec.EllipticCurvePublicKey, payload: bytes, signature: str | None, timestamp: str | None
) -> bool:
    """True when `signature` is SendGrid's ECDSA signature of `timestamp + payload`."""
    if not signature or not timestamp:
        return False
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
        key.verify(decoded, timestamp.encode("utf-8") + payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


def _delivery_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def to_delivery_event(
    provider_id: str, raw: Any, install_id: str | None = None
) -> DeliveryEvent | None:
    """A SendGrid event as a core DeliveryEvent, or None when it is not one of ours or not
    one restock acts on (deferred, blocked bounces, group_resubscribe ...).

    Two restock installs sharing one SendGrid account both number deliveries from 1 and both
    receive every event, so `delivery_id` alone does not make an event ours: an event whose
    `restock_install` custom arg names another install is dropped, and the event's `email`
    must be the delivery's contact (checked by the core; it also covers messages sent before
    the install arg existed)."""
    if not isinstance(raw, Mapping):
        return None
    sender = raw.get(INSTALL_ARG)
    if install_id is not None and sender is not None and str(sender) != install_id:
        return None  # sent by another restock install on the same SendGrid account
    kind = raw.get("event")
    if not isinstance(kind, str) or kind not in CONFIRMING | FAILING:
        return None
    if kind == "bounce" and raw.get("type") == "blocked":
        # a temporary block by the receiving server: SendGrid does not suppress the address
        return None
    delivery_id = _delivery_id(raw.get("delivery_id"))
    if delivery_id is None:
        return None  # sent by something else through the same SendGrid account
    email = raw.get("email")
    message_id = raw.get("sg_message_id")
    event_id = raw.get("sg_event_id")
    reason = raw.get("reason") or raw.get("response") or raw.get("status")
    if kind == "bounce" and raw.get("type"):
        reason = f"{raw['type']}: {reason}" if reason else str(raw["type"])
    return DeliveryEvent(
        provider=provider_id,
        # sg_message_id is "<X-Message-Id>.<filter ...>"; the X-Message-Id is what we stored
        provider_message_id=str(message_id).split(".", 1)[0] if message_id else None,
        event=kind,
        outcome=OUTCOMES[kind],
        reason=str(reason)[:500] if reason else None,
        delivery_id=delivery_id,
        event_id=str(event_id) if event_id else None,
        recipient=email if isinstance(email, str) and email.strip() else "",
    )


def apply_events(app: PluginHost, provider_id: str, payload: Sequence[Any]) -> dict[str, int]:
    applied = ignored = 0
    install_id = app.install_id
    for raw in payload:
        event = to_delivery_event(provider_id, raw, install_id)
        if event is None or not app.handle_delivery_event(event):
            ignored += 1
        else:
            applied += 1
    return {"received": len(payload), "applied": applied, "ignored": ignored}


def build_router(provider: SendGridProvider, app: PluginHost) -> APIRouter:
    router = APIRouter()

    @router.post("/events", summary="SendGrid Event Webhook (signed)")
    async def sendgrid_events(request: Request) -> JSONResponse:
        if provider.public_key is None:
            return error_response(
                401,
                "unauthorized",
                "the SendGrid Event Webhook is not configured: set the webhook_public_key option "
                "to the Signed Event Webhook verification key",
            )
        raw = await request.body()
        if not verify_signature(
            provider.public_key,
            raw,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
        ):
            return error_response(
                401,
                "bad_signature",
                f"missing or invalid {SIGNATURE_HEADER} / {TIMESTAMP_HEADER} signature",
            )
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "invalid_json", "the body is not valid JSON")
        if not isinstance(payload, list):
            return error_response(400, "invalid", "expected a JSON array of SendGrid events")
        try:
            counts = await run_in_threadpool(apply_events, app, provider.instance_id, payload)
        except Exception:
            # the database is unreachable, say: a 5xx makes SendGrid post the batch again
            log.exception("sendgrid %s: applying webhook events failed", provider.instance_id)
            return error_response(503, "unavailable", "events could not be stored; retry later")
        log.info(
            "sendgrid %s: webhook events received=%s applied=%s ignored=%s",
            provider.instance_id,
            counts["received"],
            counts["applied"],
            counts["ignored"],
        )
        return JSONResponse(counts)

    return router
