"""The HTTP API (FastAPI). Endpoints are plain `def`s: FastAPI runs them in its thread pool
and the App underneath is synchronous, like the worker. The exception is the public sign-up
(`POST /subscriptions`, and the widget's): it runs on the event loop and awaits the sign-up
writer (`App.sign_up_async`), most of the time through :class:`PublicSignUpFastPath`."""

from __future__ import annotations

import functools
import html
import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import attrs
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from .app import App, PublicSignUp
from .auth import Caller, caller, require_admin
from .clock import utcnow
from .errors import (
    NotFoundError,
    RateLimitedError,
    RestockError,
    ValidationError,
)
from .models import Channel, Subscription, SubscriptionStatus
from .signup import SignUpContext, check_text, max_length
from .web import error_response, retry_after_header
from .widget import WidgetSignUp, is_public, public_cors, route_path, widget_sign_up

log = logging.getLogger("restock.api")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def read_body(receive: Receive, limit: int) -> tuple[list[bytes], int, bool] | None:
    """Read a request body until it ends or passes `limit` bytes: (chunks, bytes read,
    whether it ended); None when the client went away."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        seen += len(chunks[-1])
        complete = not message.get("more_body", False)
        if complete or seen > limit:
            return chunks, seen, complete


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length is sent.

    The body is read (up to `limit` bytes) before the route runs, so a chunked body that
    goes over is answered 413 and never half-parsed into a 400."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                declared = value
                break
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self.too_big(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") and declared is None:
            await self.app(scope, receive, send)
            return
        read = await read_body(receive, self.limit)
        if read is None:  # the client went away
            return
        chunks, seen, _ = read
        if seen > self.limit:
            await self.too_big(scope, receive, send)
            return
        await self.app(scope, _replay([b"".join(chunks)], receive, more=False), send)

    async def too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 (built when needed: a response built per request cost a JSON dump)."""
        response = error_response(413, "too_large", f"request body is over {self.limit} bytes")
        await response(scope, receive, send)


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every error: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut} for code in (*codes, 400, 413, 422)}


SIGNUP_ERRORS = _errors(409)
ADMIN_ERRORS = _errors(401, 403, 404)
UNSUBSCRIBE_ERRORS = _errors(404)


class SubscriptionIn(BaseModel):
    """The sign-up body; field limits come from :class:`SignUpRequest`. `product_title`,
    `variant_title` and `url` need the secret (or admin) API key."""

    model_config = ConfigDict(extra="forbid")

    variant_id: str = Field(min_length=1, max_length=max_length("variant_id"))
    email: str | None = Field(default=None, max_length=max_length("email"))
    phone: str | None = Field(default=None, max_length=max_length("phone"))
    channel: Literal["email", "sms"] | None = None
    scope: str | None = Field(default=None, min_length=1, max_length=max_length("scope"))
    source: str | None = None
    customer_id: str | None = Field(default=None, max_length=max_length("customer_id"))
    product_id: str | None = Field(default=None, max_length=max_length("product_id"))
    locale: str | None = Field(default=None, max_length=max_length("locale"))
    product_title: str | None = Field(default=None, max_length=max_length("product_title"))
    variant_title: str | None = Field(default=None, max_length=max_length("variant_title"))
    url: str | None = Field(default=None, max_length=max_length("url"))
    attributes: dict[str, Any] | None = None
    #: the built-in honeypot: a hidden field people leave empty
    hp: str | None = Field(default=None, max_length=max_length("honeypot"))
    #: what the form said the person agreed to, kept in the consent record
    consent_text: str | None = Field(default=None, max_length=max_length("consent_text"))
    consent_version: str | None = Field(default=None, max_length=max_length("consent_version"))


class StockIn(BaseModel):
    """`PUT /stock/{variant_id}`: the quantity (a JSON integer; "3" and true are refused)
    and optionally the variant's message content for the manual source."""

    model_config = ConfigDict(extra="forbid")

    quantity: StrictInt = Field(ge=0, le=2**31 - 1)
    scope: str | None = Field(default=None, min_length=1, max_length=255)
    source: str | None = Field(default=None, max_length=100)
    product_title: str | None = Field(default=None, max_length=max_length("product_title"))
    variant_title: str | None = Field(default=None, max_length=max_length("variant_title"))
    url: str | None = Field(default=None, max_length=max_length("url"))
    image_url: str | None = Field(default=None, max_length=max_length("url"))


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "variant_id": sub.variant_id,
        "scope": sub.scope,
        "source": sub.source,
        "channel": str(sub.channel),
        "email": sub.email,
        "phone": sub.phone,
        "status": str(sub.status),
        "customer_id": sub.customer_id,
        "product_id": sub.product_id,
        "locale": sub.locale,
        "product_title": sub.product_title,
        "variant_title": sub.variant_title,
        "url": sub.url,
        "attributes": dict(sub.attributes),
        "created_at": sub.created_at.isoformat(),
        "notified_at": sub.notified_at.isoformat() if sub.notified_at else None,
        "failed_reason": sub.failed_reason,
    }


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        status_code=status_code,
        content=f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width'></head>"
        f"<body style='font-family:sans-serif;max-width:32em;margin:3em auto'>{body}</body></html>",
    )


class QueueCollector:
    """Live queue figures for /metrics, read from the database at scrape time."""

    def __init__(self, app: App):
        self.app = app

    def collect(self) -> Any:
        depth = GaugeMetricFamily("restock_queue_depth", "Deliveries by status", labels=["status"])
        oldest = GaugeMetricFamily(
            "restock_oldest_queued_age_seconds", "Age of the oldest queued delivery"
        )
        subs = GaugeMetricFamily(
            "restock_subscriptions", "Subscriptions by status", labels=["status"]
        )
        try:
            counts = self.app.counts()
            first = self.app.store.outbox.oldest_queued_at()
        except Exception:  # a scrape must not fail because the database blinked
            return []
        for status, count in counts.get("deliveries", {}).items():
            depth.add_metric([status], count)
        for status, count in counts.get("subscriptions", {}).items():
            subs.add_metric([status], count)
        oldest.add_metric([], (utcnow() - first).total_seconds() if first else 0.0)
        return [depth, oldest, subs]


async def get_app(request: Request) -> App:
    """The `App` behind this FastAPI application (a dependency of every route). `async`,
    though it awaits nothing: FastAPI runs a plain-`def` dependency in its thread pool, a
    thread hand-off per request for an attribute read."""
    app: App = request.app.state.restock
    return app


AppDep = Annotated[App, Depends(get_app)]


#: no key: a shopper's browser
public = APIRouter()
#: the admin API key
admin = APIRouter(dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)
#: health and metrics
ops = APIRouter(tags=["ops"])


#: the public answer to every sign-up that was not refused: the same for a new and a repeat
#: sign-up, so it tells nobody whether an address was signed up already
ACCEPTED = {"status": "accepted"}


_ACCEPTED_BODY = json.dumps(ACCEPTED, separators=(",", ":")).encode()
_CONFIRM_BODY = json.dumps({**ACCEPTED, "confirm": True}, separators=(",", ":")).encode()


def accepted(outcome: PublicSignUp) -> Response:
    """The public sign-up answer. With double opt-in on for the sign-up's channel it adds
    ``"confirm": true`` (check your inbox): that depends on the channel and the configuration
    only, so a new, a repeat, a honeypot and a suppressed sign-up still answer alike. The
    two bodies are serialised once."""
    return Response(
        _CONFIRM_BODY if outcome.confirm else _ACCEPTED_BODY, 202, media_type="application/json"
    )


def signup_context(request: Request, body: SubscriptionIn, who: Caller) -> SignUpContext:
    """Who sent this sign-up: the client IP (behind `trusted_proxies` only), user agent,
    honeypot and consent texts."""
    app: App = request.app.state.restock
    context = app.public_context(
        request,
        honeypot=body.hp,
        consent_text=body.consent_text,
        consent_version=body.consent_version,
    )
    return attrs.evolve(context, trusted=True) if who.trusted else context


@public.post(
    "/subscriptions",
    status_code=202,
    tags=["sign-up"],
    responses={
        201: {"description": "secret/admin key: new subscription (full record)"},
        200: {"description": "secret/admin key: existing subscription (full record)"},
        429: {"model": ErrorOut, "description": "abuse limit; see Retry-After"},
        **SIGNUP_ERRORS,
    },
)
async def create_subscription(body: SubscriptionIn, request: Request) -> Response:
    """Sign up for a sold-out variant. Public callers get `202 {"status": "accepted"}` for a
    new and a repeat sign-up alike; with the secret or admin key: 201 new, 200 existing (the
    full record). 409 in stock, 422 invalid, 429 over an abuse limit."""
    # `async`: a public sign-up's checks run on the event loop and its write is awaited
    # (App.sign_up_async), with no thread-pool hop; what may block runs in the pool there.
    # The App and the caller are read here, not by dependencies: each dependency FastAPI
    # solves per request cost more than reading them (issue 13)
    app: App = request.app.state.restock
    who = caller(request)
    if not who.trusted:
        return await public_sign_up(app, request, body)
    context = signup_context(request, body, who)
    fields = body.model_dump(exclude=_NOT_FIELDS)
    result = await run_in_threadpool(functools.partial(app.subscribe, **fields, context=context))
    return JSONResponse(
        subscription_json(result.subscription), status_code=201 if result.created else 200
    )


_NOT_FIELDS = {"hp", "consent_text", "consent_version"}


async def public_sign_up(app: App, request: Request, body: SubscriptionIn) -> Response:
    """A shopper's `POST /subscriptions` (no key), from the route or from
    :class:`PublicSignUpFastPath`: raises RestockError for the handlers to answer."""
    context = app.public_context(
        request,
        honeypot=body.hp,
        consent_text=body.consent_text,
        consent_version=body.consent_version,
    )
    fields = body.model_dump(exclude=_NOT_FIELDS)
    return accepted(await app.subscribe_public_async(**fields, context=context))


class PublicSignUpFastPath:
    """The public sign-ups, `POST /subscriptions` and `POST /widget/subscriptions`, answered
    without the framework's per-request layers: FastAPI's routing, dependencies and body
    handling, the body limit and CORS middlewares. It takes a request without an
    Authorization header, with at most one Origin header naming one of `cors_origins` (a
    shopper's browser on the storefront) or none (a server), and a JSON body within the body
    limit that the route's model (:class:`SubscriptionIn`, :class:`WidgetSignUp`) accepts:
    sent as `application/json`, or to the widget's route as `text/plain` with that one
    configured Origin (the widget's CORS "simple" request; the route takes the same,
    :func:`restock_core.widget.simple_sign_up_route`, and refuses any other text/plain).
    The body is validated by pydantic straight from its bytes, the sign-up is the function
    the route calls (:func:`public_sign_up`, :func:`widget_sign_up`), a refusal is answered
    by the route's own handler, and the answer goes out through the CORS middleware's own
    `send` (:func:`restock_core.widget.public_cors`, configured as :class:`PublicCORS`'s), so
    it carries exactly the headers that adds (``Access-Control-Allow-Origin`` and ``Vary:
    Origin`` for an allowed origin, ``Vary: Origin`` without one). Everything else (other
    paths and methods, a preflight, a key, an origin not configured, two Origin headers,
    another content type or two, text/plain without an Origin or to `POST /subscriptions`,
    a body over the limit or one pydantic refuses) goes on, with the
    body read so far replayed, to the middlewares and the route, which answer as they always
    did (413, 422, 400, 401, CORS ...), so the two cannot disagree. It is the outermost
    middleware (inside Starlette's server-error handler, which answers an unexpected
    exception as on the route).

    Why: on a public sign-up the framework's per-request work cost as much CPU as the
    sign-up's own (issue 13; docs/benchmarks.md)."""

    def __init__(self, app: Any, restock: App, limit: int):
        self.app = app
        self.restock = restock
        self.limit = limit
        self.cors = public_cors(app, list(restock.settings.cors_origins))
        self.origins = {origin.encode("latin-1") for origin in restock.settings.cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path != "/subscriptions" and path != "/widget/subscriptions":
            await self.app(scope, receive, send)
            return
        content_type = None
        origin = None
        for name, value in scope["headers"]:
            if name == b"authorization":  # a key: the route
                await self.app(scope, receive, send)
                return
            if name == b"origin":  # a browser: CORS applies, for a configured origin only
                if origin is not None or value not in self.origins:
                    await self.app(scope, receive, send)
                    return
                origin = value
            elif name == b"content-type":
                if content_type is not None:  # two: the route reads the first
                    await self.app(scope, receive, send)
                    return
                content_type = value.partition(b";")[0].strip().lower()
            elif name == b"content-length" and not (value.isdigit() and int(value) <= self.limit):
                await self.app(scope, receive, send)
                return
        # JSON, or the widget's text/plain JSON (a CORS simple request) from a configured
        # origin: a text/plain one without an Origin goes to the route, which refuses it
        if not (
            content_type == b"application/json"
            or (
                content_type == b"text/plain"
                and origin is not None
                and path == "/widget/subscriptions"
            )
        ):
            await self.app(scope, receive, send)
            return
        read = await read_body(receive, self.limit)
        if read is None:  # the client went away
            return
        chunks, seen, complete = read
        if not complete:  # over the limit with more to come: the body limit answers it
            await self.app(scope, _replay(chunks, receive, more=True), send)
            return
        raw = b"".join(chunks)
        response = None
        if seen <= self.limit:
            if path == "/subscriptions":
                response = await self.sign_up(scope, raw)
            else:
                response = await self.widget_sign_up(scope, raw)
        if response is None:
            await self.app(scope, _replay([raw], receive, more=False), send)
            return
        if is_public(scope):  # as PublicCORS would: the CORS middleware's headers
            send = functools.partial(
                self.cors.send, send=send, request_headers=Headers(scope=scope)
            )
        await response(scope, receive, send)

    async def sign_up(self, scope: Scope, raw: bytes) -> Response | None:
        """`POST /subscriptions`: the route's answer, or None for a body the model refuses."""
        try:
            body = SubscriptionIn.model_validate_json(raw)
        except PydanticValidationError:
            return None
        request = Request(scope)
        try:
            return await public_sign_up(self.restock, request, body)
        except RestockError as exc:
            return await restock_error(request, exc)

    async def widget_sign_up(self, scope: Scope, raw: bytes) -> Response | None:
        """`POST /widget/subscriptions`: the route's answer, or None for a refused body."""
        try:
            body = WidgetSignUp.model_validate_json(raw)
        except PydanticValidationError:
            return None
        return await widget_sign_up(self.restock, Request(scope), body)


def _replay(chunks: list[bytes], receive: Receive, *, more: bool) -> Receive:
    """A `receive` that gives `chunks` again, then (with `more`) the rest of the body."""
    pending = list(chunks)

    async def replay() -> MutableMapping[str, Any]:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": more or bool(pending)}
        return await receive()

    return replay


def _item_name(sub: Subscription) -> str:
    name = " - ".join(t for t in (sub.product_title, sub.variant_title) if t)
    return html.escape(name) if name else "this item"


def _button(action: str, label: str) -> str:
    return (
        f"<form method='post' action='{html.escape(action, quote=True)}'>"
        f"<button type='submit'>{html.escape(label)}</button></form>"
    )


STOP_ALL = "Stop all back-in-stock messages to this address"


@public.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    tags=["unsubscribe"],
    responses=UNSUBSCRIBE_ERRORS,
)
def unsubscribe_page(token: str, app: AppDep) -> HTMLResponse:
    """Confirmation page (the email footer and the SMS "Stop" link open it): link scanners
    that GET every URL must not unsubscribe anyone. Its forms post under ``public_url``, so
    it works behind a path prefix. It says what is true for this sign-up and always offers
    to stop every back-in-stock message to the address (a suppression)."""
    sub = app.get_subscription(app.signer.verify(token))
    action = f"{app.settings.public_url.rstrip('/')}/unsubscribe/{token}"
    stop_all = _button(f"{action}?all=1", STOP_ALL)
    item = _item_name(sub)
    if app.is_suppressed(sub.channel, sub.contact):
        return _page(
            "Unsubscribed",
            "<p>This address gets no back-in-stock messages from us any more.</p>",
        )
    if sub.status in (SubscriptionStatus.PENDING, SubscriptionStatus.UNCONFIRMED):
        return _page(
            "Unsubscribe",
            f"<p>You asked to hear when {item} is back in stock. Stop that message?</p>"
            + _button(action, "Stop the message about this item")
            + stop_all,
        )
    if sub.status == SubscriptionStatus.NOTIFIED:
        said = f"<p>We already told you that {item} is back in stock; nothing more about it "
        said += "will be sent. Other items you signed up for are not affected.</p>"
    elif sub.status == SubscriptionStatus.UNSUBSCRIBED:
        said = f"<p>You are unsubscribed from the message about {item}.</p>"
    else:
        said = f"<p>There is nothing more to send you about {item}.</p>"
    return _page("Unsubscribe", said + stop_all)


@public.post("/unsubscribe/{token}", tags=["unsubscribe"], responses=UNSUBSCRIBE_ERRORS)
def unsubscribe(
    token: str,
    request: Request,
    app: AppDep,
    stop_all: Annotated[bool, Query(alias="all")] = False,
) -> Response:
    """One-click unsubscribe (RFC 8058 `List-Unsubscribe=One-Click`) and the forms above.
    ``?all=1`` stops every back-in-stock message to the address: it is suppressed for the
    channel and its pending sign-ups end. One-click after the message was sent (nothing is
    left to stop for this sign-up) does the same, since that is what the click asks for."""
    sub = app.get_subscription(app.signer.verify(token))
    if stop_all or sub.status == SubscriptionStatus.NOTIFIED:
        sub = app.stop_all_messages(token)
        everything = True
    else:
        sub = app.unsubscribe(token)
        everything = False
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(
            {"id": sub.id, "status": str(sub.status), "all_messages_stopped": everything}
        )
    if everything:
        return _page(
            "Unsubscribed",
            "<p>Done: this address will get no more back-in-stock messages from us.</p>",
        )
    return _page(
        "Unsubscribed",
        f"<p>You are unsubscribed: you will not get the message about {_item_name(sub)}. "
        "Other items you signed up for are not affected.</p>",
    )


CONFIRM_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown, tampered or expired confirm link (a page)"}
}


def _confirm_gone() -> HTMLResponse:
    return _page(
        "Link not valid",
        "<p>This confirmation link is not valid any more: it expired or was never ours. "
        "Sign up again on the product page if you still want to hear about the item.</p>",
        status_code=404,
    )


@public.get(
    "/confirm/{token}",
    response_class=HTMLResponse,
    tags=["sign-up"],
    responses=CONFIRM_ERRORS,
)
def confirm_page(token: str, app: AppDep) -> HTMLResponse:
    """Double opt-in: the page the confirmation message links to. It changes nothing (mail
    link scanners GET every URL); its button posts the confirmation."""
    try:
        sub = app.get_subscription(app.confirm_signer.verify(token))
    except NotFoundError:
        return _confirm_gone()
    item = _item_name(sub)
    if sub.status == SubscriptionStatus.UNCONFIRMED:
        action = f"{app.settings.public_url.rstrip('/')}/confirm/{token}"
        return _page(
            "Confirm",
            f"<p>Tell you when {item} is back in stock?</p>"
            + _button(action, "Yes, tell me when it is back"),
        )
    if sub.status == SubscriptionStatus.PENDING:
        return _page("Confirmed", f"<p>Confirmed: we will tell you when {item} is back.</p>")
    return _page("Confirm", f"<p>There is nothing to confirm about {item} any more.</p>")


@public.post("/confirm/{token}", tags=["sign-up"], responses=CONFIRM_ERRORS)
def confirm(token: str, request: Request, app: AppDep) -> Response:
    """Double opt-in: confirm the sign-up (unconfirmed -> pending). Idempotent. A forged
    token or an expired sign-up gets a 404 page (JSON with ``Accept: application/json``)."""
    try:
        sub = app.confirm(token)
    except NotFoundError:
        if "application/json" in request.headers.get("accept", ""):
            raise
        return _confirm_gone()
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"status": str(sub.status)})
    if sub.status == SubscriptionStatus.PENDING:
        return _page(
            "Confirmed",
            f"<p>Confirmed: we will tell you once when {_item_name(sub)} is back in stock.</p>",
        )
    return _page("Confirm", f"<p>There is nothing to confirm about {_item_name(sub)} any more.</p>")


@admin.put("/stock/{variant_id:path}", tags=["stock"])
def put_stock(variant_id: str, body: StockIn, app: AppDep) -> dict[str, Any]:
    """Set stock for the built-in `manual` source (a restock notifies subscribers), and
    optionally the variant's titles, product URL and image for messages. Variant ids may
    contain `/` (the rest of the path is the id)."""
    result = app.set_stock(
        variant_id,
        body.quantity,
        scope=body.scope,
        source=body.source,
        product_title=body.product_title,
        variant_title=body.variant_title,
        url=body.url,
        image_url=body.image_url,
    )
    return {
        "variant_id": variant_id,
        "scope": body.scope or "default",
        "quantity": body.quantity,
        "applied": result.applied == 1,
        "restocks_opened": list(result.restocks_opened),
    }


class DeliveryRetryIn(BaseModel):
    """Which failed deliveries to queue again; every given filter must match."""

    model_config = ConfigDict(extra="forbid")

    restock_id: int | None = Field(None, ge=1, le=2**63 - 1)
    provider: str | None = Field(None, min_length=1, max_length=100)
    reason: str | None = Field(None, min_length=1, max_length=200)
    since: datetime | None = None
    until: datetime | None = None


@admin.post("/deliveries/retry", tags=["admin"])
def retry_deliveries(body: DeliveryRetryIn, app: AppDep) -> dict[str, Any]:
    """Queue failed deliveries again (after fixing a key or a template), by restock,
    provider, failure reason (substring) or creation time range. Suppressed contacts and
    people who signed up again are left out."""
    ids = app.retry_deliveries(
        restock_id=body.restock_id,
        provider=body.provider,
        reason=body.reason,
        since=_aware(body.since),
        until=_aware(body.until),
    )
    return {"requeued": len(ids), "delivery_ids": ids[:1000]}


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@admin.get("/subscriptions", tags=["admin"])
def list_subscriptions(
    app: AppDep,
    variant_id: str | None = None,
    scope: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    after: int | None = Query(None, ge=0, le=2**63 - 1),
) -> dict[str, Any]:
    page = app.list_subscriptions(
        variant_id=variant_id, scope=scope, status=status, limit=limit, after=after
    )
    return {"items": [subscription_json(s) for s in page.items], "next_after": page.next_after}


@admin.get("/subscriptions/{subscription_id}", tags=["admin"])
def get_subscription(subscription_id: int, app: AppDep) -> dict[str, Any]:
    """One subscription, with its conversion (attribution) when it has one."""
    from .commerce.api import conversion_json

    sub = app.get_subscription(subscription_id)
    conversion = app.conversion_of(sub.id)
    return {
        **subscription_json(sub),
        "conversion": conversion_json(conversion) if conversion else None,
    }


class ContactIn(BaseModel):
    """One person, by email address or phone number."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=max_length("email"))
    phone: str | None = Field(default=None, max_length=max_length("phone"))


@admin.get("/contacts/export", tags=["data rights"])
def export_contact(
    app: AppDep,
    email: str | None = Query(None, max_length=max_length("email")),
    phone: str | None = Query(None, max_length=max_length("phone")),
) -> dict[str, Any]:
    """Everything stored about one person: subscriptions, deliveries, consents, suppressions."""
    return app.export_contact(email=email, phone=phone)


@admin.post("/contacts/erase", tags=["data rights"])
def erase_contact(body: ContactIn, app: AppDep) -> dict[str, Any]:
    """Delete one person's subscriptions, deliveries and consent records; a suppression is
    kept as a keyed hash so erasure does not re-enable mail."""
    return app.erase_contact(email=body.email, phone=body.phone)


@admin.get("/suppressions", tags=["data rights"])
def list_suppressions(
    app: AppDep,
    channel: str | None = None,
    after: str | None = Query(None, max_length=400),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The suppression list, a page at a time (`next_after` feeds the next page)."""
    items = app.list_suppressions(channel=channel, after=after, limit=limit)
    last = items[-1] if len(items) == limit else None
    return {"items": items, "next_after": f"{last['channel']}:{last['contact']}" if last else None}


@admin.delete("/suppressions/{channel}/{contact:path}", tags=["data rights"])
def lift_suppression(channel: str, contact: str, app: AppDep) -> dict[str, Any]:
    """Lift a suppression (the person asked to hear from you again)."""
    try:
        chosen = Channel(channel)
    except ValueError:
        raise ValidationError(
            f"unknown channel {channel!r}; use 'email' or 'sms'", field="channel"
        ) from None
    check_text(contact, "contact")
    lifted = app.lift_suppression(chosen, contact)
    if not lifted:
        raise NotFoundError("no such suppression", field="contact")
    return {"channel": str(chosen), "contact": contact, "lifted": True}


@ops.get("/health", responses={503: {"description": "database unreachable"}})
def health(app: AppDep) -> JSONResponse:
    try:
        app.store.ping()
    except Exception as exc:
        # the reason goes to the log only: /health is public and a driver error names hosts
        log.error("health check: database unreachable: %s", exc)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    outages = app.provider_outages()
    if outages:
        # still 200: sign-ups and unsubscribes work; messages wait until the key is fixed
        return JSONResponse(
            {
                "status": "degraded",
                "providers": {
                    pid: {"status": "unauthorized", **details}
                    for pid, details in sorted(outages.items())
                },
            }
        )
    return JSONResponse({"status": "ok"})


@ops.get("/metrics")
def metrics(app: AppDep) -> Response:
    return Response(generate_latest(app.metrics.registry), media_type="text/plain; version=0.0.4")


async def restock_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RestockError)
    status = exc.status_code if 400 <= exc.status_code < 500 else 502
    if exc.status_code >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = retry_after_header(exc.retry_after)
    return JSONResponse(exc.to_dict(), status_code=status, headers=headers)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return error_response(400, "malformed", "request body is not valid JSON")
    if first.get("type") == "extra_forbidden":
        return error_response(422, "invalid", f"unknown field {field!r}", field)
    message = first.get("msg", "invalid request")
    if field:
        message = f"{field}: {message}"
    return error_response(422, "invalid", message, field)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {
        400: "malformed",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
    }
    return error_response(exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail))


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal error; the request was not applied")


def _lifespan(app: App, run_worker: bool) -> Any:
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        thread = None
        if run_worker:
            worker = app.worker()
            thread = threading.Thread(
                target=worker.run, args=(stop,), name="restock-worker", daemon=True
            )
            thread.start()
        try:
            yield
        finally:
            stop.set()
            app.wake_event.set()
            if thread is not None:
                thread.join(timeout=10)

    return lifespan


def create_api(app: App, *, run_worker: bool = False) -> FastAPI:
    """Build the FastAPI application for `app`; with `run_worker`, the worker runs in a
    background thread of the same process (`restock serve`, the embedded default)."""
    api = FastAPI(
        title="restock",
        version="0.1.0",
        description="Back-in-stock notifications: sign-up, unsubscribe, stock updates, admin reads.",
        lifespan=_lifespan(app, run_worker),
    )
    api.state.restock = app
    if not getattr(app.metrics, "queue_collector", None):
        app.metrics.queue_collector = QueueCollector(app)
        app.metrics.registry.register(app.metrics.queue_collector)
    api.add_exception_handler(RestockError, restock_error)
    api.add_exception_handler(RequestValidationError, invalid_request)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(Exception, unexpected)
    from .commerce.api import ROUTERS as commerce_routers

    for router in (public, admin, ops, *commerce_routers):
        api.include_router(router)
    for instance in app.instances:
        plugin_router = instance.obj.routes(app)
        if plugin_router is not None:
            api.include_router(plugin_router, prefix=f"/{instance.id}", tags=[instance.id])

    def register(prefix: str, router: APIRouter) -> None:
        api.include_router(router, prefix="/" + prefix.strip("/"))

    app.registry.pm.hook.register_routes(register=register, app=app)

    # The faces: storefront widget (+ public CORS) and the merchant dashboard at /admin.
    from . import dashboard, widget

    widget.mount(api, app)
    dashboard.mount(api, app)

    api.add_middleware(BodyLimit, limit=app.settings.max_body_bytes)
    # outermost: what it does not answer itself reaches the body limit, CORS and the route
    api.add_middleware(PublicSignUpFastPath, restock=app, limit=app.settings.max_body_bytes)
    return api
