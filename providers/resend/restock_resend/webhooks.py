"""Resend delivery webhooks, verified with Svix (`svix-id`, `svix-timestamp`,
`svix-signature`) before anything is parsed. Bounces, complaints and suppressed sends fail
the subscription and suppress the address; a failed send (`email.failed`: invalid recipient,
API key, domain or quota problems, https://resend.com/docs/webhooks/emails/failed) fails it
without suppressing the address, since the cause is often the sender's; a replayed `svix-id`
changes nothing."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from svix.webhooks import Webhook, WebhookVerificationError

from restock_core import DeliveryEvent, DeliveryOutcome, PluginHost, error_response

#: Resend event type -> (name in logs and failure reasons, what it means); others are ignored
#: (https://resend.com/docs/dashboard/webhooks/event-types)
EVENTS = {
    "email.delivered": ("delivered", DeliveryOutcome.DELIVERED),
    "email.bounced": ("bounce", DeliveryOutcome.BOUNCED),
    "email.complained": ("complaint", DeliveryOutcome.COMPLAINED),
    # Resend did not send: the address is on the account's suppression list (an earlier hard
    # bounce or complaint) -- https://resend.com/docs/webhooks/emails/suppressed
    "email.suppressed": ("dropped", DeliveryOutcome.DROPPED),
    # Resend could not send it: invalid recipient, API key, domain verification or quota
    # problems -- https://resend.com/docs/webhooks/emails/failed
    "email.failed": ("failed", DeliveryOutcome.FAILED),
}
#: failure events that do not block the address (the cause may be the sender's setup)
NOT_SUPPRESSING = frozenset({"email.failed"})


def _reason(kind: str, data: dict[str, Any]) -> str | None:
    """The human reason Resend gives: `bounce.message`, `failed.reason`, `suppressed.message`."""
    for key in ("bounce", "failed", "suppressed"):
        detail = data.get(key)
        if isinstance(detail, dict):
            text = detail.get("message") or detail.get("reason") or detail.get("type")
            if text:
                return str(text)[:500]
    if kind == "email.suppressed":
        return "the address is on Resend's suppression list"
    return None


def build_router(provider: Any, app: PluginHost) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks")
    async def webhook(request: Request) -> JSONResponse:
        secret = provider.options.webhook_secret
        if secret is None:
            return error_response(
                401, "unauthorized", "webhook_secret is not configured for this provider"
            )
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(secret.value).verify(body, headers)
        except WebhookVerificationError:
            return error_response(401, "unauthorized", "missing or invalid Svix signature")
        try:
            payload = json.loads(body)
            kind = payload["type"]
            data = payload.get("data") or {}
            email_id = data["email_id"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return error_response(
                400, "malformed", "expected a Resend event with type and data.email_id"
            )
        known = EVENTS.get(kind)
        if known is None:
            return JSONResponse({"status": "ignored", "type": kind})
        to = data.get("to")
        recipient = to[0] if isinstance(to, list) and to else to if isinstance(to, str) else None
        reason = _reason(kind, data) if isinstance(data, dict) else None
        applied = await run_in_threadpool(
            app.handle_delivery_event,
            DeliveryEvent(
                provider=provider.id,
                provider_message_id=str(email_id),
                event=known[0],
                outcome=known[1],
                reason=reason,
                event_id=headers.get("svix-id"),
                recipient=recipient,
                suppress=kind not in NOT_SUPPRESSING,
            ),
        )
        return JSONResponse({"status": "applied" if applied else "unchanged"})

    return router
