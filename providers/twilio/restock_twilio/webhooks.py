"""Twilio's webhooks (status callbacks, incoming STOP/START/HELP), kept apart from the
provider so that loading the provider (``restock plugins``, a worker) does not import FastAPI:
:meth:`TwilioProvider.routes` imports this module when an API process mounts the routes."""

from __future__ import annotations

import html
import logging
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.responses import Response as HTTPResponse
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from restock_core import (
    Channel,
    DeliveryEvent,
    DeliveryOutcome,
    PluginHost,
    error_response,
)

from .provider import (
    DELIVERY_ERRORS,
    DELIVERY_PARAM,
    E164,
    FINAL_STATUSES,
    HELP_WORDS,
    RETRYABLE_CODES,
    START_WORDS,
    STOP_WORDS,
    SUPPRESSING_CODES,
    TwilioProvider,
)

log = logging.getLogger("restock.twilio")


def build_router(provider: TwilioProvider, app: PluginHost) -> APIRouter:
    """``POST /status`` (Twilio status callbacks) and ``POST /inbound`` (Twilio's
    incoming-message webhook: STOP, START, HELP), mounted under ``/<instance id>``."""
    router = APIRouter()

    @router.post(
        "/status",
        summary="Twilio message status callback",
        description="Twilio posts message status changes here (form-encoded, signed "
        "with X-Twilio-Signature). delivered confirms; undelivered/failed fail the "
        "subscription, suppressing the number only for opt-out and invalid-number "
        "codes; passing carrier errors send the message again later.",
    )
    async def twilio_status(request: Request) -> JSONResponse:
        return await handle_status(provider, app, request)

    @router.post(
        "/inbound",
        summary="Twilio incoming message webhook (STOP / START / HELP)",
        description="Set as the 'A message comes in' webhook of the sender. STOP (and "
        "Twilio's other opt-out words) suppresses the number and ends its pending "
        "sign-ups; START lifts the suppression; HELP answers with help_text (TwiML).",
    )
    async def twilio_inbound(request: Request) -> HTTPResponse:
        return await handle_inbound(provider, app, request)

    return router


def _candidate_urls(provider: TwilioProvider, app: PluginHost, request: Request) -> list[str]:
    """The URLs Twilio may have signed: the StatusCallback we send (its query string
    included: our delivery id), and the public URL of this route (a Messaging Service's
    own callback, or the inbound webhook, pointing here)."""
    query = request.url.query
    base = str(app.public_url).rstrip("/")
    urls = []
    configured = provider.options.status_callback
    if configured and request.url.path.endswith("/status"):
        parts = urlsplit(configured)
        if query:
            urls.append(urlunsplit(parts._replace(query=query)))
        urls.append(configured)
    own = base + request.url.path + (f"?{query}" if query else "")
    if own not in urls:
        urls.append(own)
    return urls


async def _verified_form(
    provider: TwilioProvider, app: PluginHost, request: Request
) -> tuple[dict[str, str] | None, JSONResponse | None]:
    """The form Twilio posted, once its X-Twilio-Signature checks out; else an error."""
    if provider._token is None:
        return None, error_response(
            401,
            "unauthorized",
            "set the auth_token option: Twilio signs webhooks with the Auth Token "
            "(an API key cannot verify them)",
        )
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        return None, error_response(401, "unauthorized", "missing X-Twilio-Signature header")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None, error_response(
            400, "malformed", "expected an application/x-www-form-urlencoded body"
        )
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        return None, error_response(400, "malformed", "the body is not a valid form")
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            return None, error_response(400, "malformed", f"parameter {key} is repeated", key)
        params[key] = value
    validator = RequestValidator(provider._token)
    if not any(
        validator.validate(url, params, signature)
        for url in _candidate_urls(provider, app, request)
    ):
        return None, error_response(401, "unauthorized", "X-Twilio-Signature does not match")
    return params, None


async def handle_status(
    provider: TwilioProvider, app: PluginHost, request: Request
) -> JSONResponse:
    params, problem = await _verified_form(provider, app, request)
    if params is None:
        assert problem is not None
        return problem
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid:
        return error_response(400, "malformed", "MessageSid is missing", "MessageSid")
    if not status:
        return error_response(400, "malformed", "MessageStatus is missing", "MessageStatus")
    delivery_id = _delivery_id(request.query_params.get(DELIVERY_PARAM))
    if status not in FINAL_STATUSES:
        return JSONResponse({"ok": True, "applied": False, "status": status})
    code = (params.get("ErrorCode") or "").strip()
    detail = params.get("ErrorMessage") or DELIVERY_ERRORS.get(code) or status
    reason = None if status == "delivered" else (f"error {code}: {detail}" if code else detail)
    event_id = f"{sid}:{status}"
    if status != "delivered" and code in RETRYABLE_CODES:
        applied = await run_in_threadpool(
            lambda: app.requeue_delivery(
                provider.instance_id,
                delivery_id=delivery_id,
                provider_message_id=sid,
                reason=f"{provider.instance_id} {status}: {reason}",
                delay=RETRYABLE_CODES[code][1],
                event_id=event_id,
            )
        )
        return JSONResponse({"ok": True, "applied": bool(applied), "status": status, "retry": True})
    event = DeliveryEvent(
        provider=provider.instance_id,
        provider_message_id=sid,
        event=status,
        outcome=DeliveryOutcome.DELIVERED if status == "delivered" else DeliveryOutcome.FAILED,
        reason=reason,
        delivery_id=delivery_id,
        event_id=event_id,
        # only opt-outs and numbers that cannot take SMS block the number; the sender's
        # own faults (30034 unregistered A2P, 30007 filtering ...) do not
        suppress=code in SUPPRESSING_CODES,
    )
    applied = await run_in_threadpool(app.handle_delivery_event, event)
    return JSONResponse({"ok": True, "applied": bool(applied), "status": status})


async def handle_inbound(
    provider: TwilioProvider, app: PluginHost, request: Request
) -> HTTPResponse:
    """Twilio's incoming-message webhook (https://www.twilio.com/docs/messaging/guides/
    webhook-request): ``From``, ``To``, ``Body``, ``MessageSid``, ``AccountSid`` and, with
    Advanced Opt-Out, ``OptOutType`` (STOP / START / HELP). Answers TwiML."""
    params, problem = await _verified_form(provider, app, request)
    if params is None:
        assert problem is not None
        return problem
    sender = (params.get("From") or "").strip()
    account = params.get("AccountSid")
    keyword = _keyword(params.get("OptOutType"), params.get("Body"))
    if (
        keyword is None
        or not E164.match(sender)
        or (account is not None and account != provider.options.account_sid)
    ):
        return _twiml()
    sid = params.get("MessageSid") or params.get("SmsSid")
    if keyword == "HELP":
        return _twiml(provider.options.help_text)
    if sid:
        replay = await run_in_threadpool(
            app.seen_event, f"{provider.instance_id}:inbound", f"{sid}:{keyword}"
        )
        if replay:
            return _twiml()  # a replay of a message already handled
    if keyword == "STOP":
        reason = f"{provider.instance_id}: the number replied STOP"
        await run_in_threadpool(app.suppress, Channel.SMS, sender, reason)
        ended = await run_in_threadpool(app.unsubscribe_contact, Channel.SMS, sender, reason)
        log.info(
            "twilio %s: an inbound STOP suppressed a number and ended %s pending sign-ups",
            provider.instance_id,
            ended,
        )
    else:  # START: the person opted in again
        await run_in_threadpool(app.lift_suppression, Channel.SMS, sender)
        log.info("twilio %s: an inbound START lifted a number's suppression", provider.instance_id)
    # Twilio (or the Messaging Service's Advanced Opt-Out) sends the carrier-required
    # confirmation for STOP and START itself; a second one from us would be a duplicate
    return _twiml()


def _twiml(message: str | None = None) -> HTTPResponse:
    """A TwiML answer: an empty ``<Response/>`` or one ``<Message>``
    (https://www.twilio.com/docs/messaging/twiml)."""
    inner = f"<Message>{html.escape(message, quote=False)}</Message>" if message else ""
    return HTTPResponse(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>',
        media_type="application/xml",
    )


def _keyword(opt_out_type: str | None, body: str | None) -> str | None:
    """STOP, START or HELP for an opt-out/opt-in/help message, else None. Twilio's
    ``OptOutType`` wins; otherwise the body must be exactly one keyword (any case)."""
    if opt_out_type:
        kind = opt_out_type.strip().upper()
        if kind in ("STOP", "START", "HELP"):
            return kind
    word = (body or "").strip().upper()
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


def _delivery_id(value: str | None) -> int | None:
    if not value or not value.isdigit() or len(value) > 18:
        return None
    number = int(value)
    return number if number > 0 else None
