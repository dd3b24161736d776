"""The storefront "Notify me" widget: `GET /widget.js`, the public availability route it asks,
its sign-up route, and CORS for the exact origins in `[restock] cors_origins`.

Everything here is public (no key): answers are small and cacheable, leak no stock counts
(sold out: yes or no), and accept no content that could reach a message (titles and URLs
come from the adapter, never from the shopper's browser)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    InStockError,
    RateLimitedError,
    RestockError,
    ValidationError,
)
from ..models import Channel, StockKey
from ..web import retry_after_header

if TYPE_CHECKING:
    from ..app import App

STATIC = Path(__file__).parent / "static"
#: paths a storefront page on another origin may call (everything else stays same-origin)
PUBLIC_PATHS = ("/widget.js", "/widget/availability", "/widget/subscriptions")
#: core paths shared with admin routes: only these methods are public (CORS)
PUBLIC_METHODS = {"/subscriptions": frozenset({"POST"})}
AVAILABILITY_TTL = 30.0  # seconds: the browser/CDN cache and our own per-variant cache
_CACHE_LIMIT = 10_000
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


def public_cors(app: ASGIApp, origins: list[str]) -> CORSMiddleware:
    """Starlette's CORS middleware as the public paths use it (:class:`PublicCORS`, and the
    sign-up fast path in `restock_core.api`, which sends its answers through this one's
    `send` so they carry exactly the headers the middleware adds)."""
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        allow_credentials=False,
        max_age=600,
    )


class PublicCORS:
    """CORS for the public widget paths only, for exactly the configured origins; credentials
    are never allowed, so no cookie (the dashboard's) travels with a storefront request."""

    def __init__(self, app: ASGIApp, origins: list[str]):
        self.app = app
        self.cors = public_cors(app, origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_public(scope):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path the router matches: `path` less `root_path` (as Starlette's routing does)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root) :]
    return path


def is_public(scope: Scope) -> bool:
    """The widget's paths, and the core's public sign-up (`POST /subscriptions`; the admin
    `GET /subscriptions` on the same path never answers cross-origin). The path is the one
    the router matches: behind a proxy prefix (`root_path`, which uvicorn puts in front of
    `path`) too."""
    path = route_path(scope)
    if path in PUBLIC_PATHS:
        return True
    if path not in PUBLIC_METHODS:
        return False
    method = scope.get("method", "")
    if method == "OPTIONS":  # a preflight names the method it asks for
        headers = dict(scope.get("headers") or [])
        method = headers.get(b"access-control-request-method", b"").decode("latin-1")
    return method in PUBLIC_METHODS[path]


class _ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class _ErrorOut(BaseModel):
    error: _ErrorDetail


def _documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": _ErrorOut} for code in (*codes, 400, 413, 422)}


class WidgetSignUp(BaseModel):
    """What the widget posts. Deliberately narrow: no titles, URLs or attributes."""

    model_config = ConfigDict(extra="forbid")

    variant_id: str = Field(min_length=1, max_length=255)
    scope: str | None = Field(default=None, min_length=1, max_length=255)
    source: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    consent: bool = False
    locale: str | None = Field(default=None, max_length=35)
    #: the honeypot: a hidden field people never fill; bots that fill every input do
    hp: str | None = Field(default=None, max_length=500)


class Availability:
    """Sold out or not, per (source, variant, scope), cached briefly so a busy product page
    does not turn into one platform API call per shopper."""

    def __init__(self, app: App):
        self.app = app
        self._cache: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def sold_out(self, source: str, variant_id: str, scope: str) -> bool:
        """The same rule a sign-up uses: in stock means at least `inventory_required` known
        units; unknown or untracked stock does not hide the form (the sign-up accepts it)."""
        key = (source, variant_id, scope)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        stock_key = StockKey(variant_id, scope)
        try:
            quantity = self.app.adapters[source].obj.availability([stock_key]).get(stock_key)
        except Exception:  # platform down: show the form; the sign-up re-checks
            quantity = None
        result = not (quantity is not None and quantity >= self.app.settings.inventory_required)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = (now + AVAILABILITY_TTL, result)
        return result


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


#: the widget's sign-up body type across origins: CORS-safelisted, so no preflight
SIMPLE_TYPE = "text/plain"


def is_simple_type(content_type: str | None) -> bool:
    """Whether a Content-Type is `text/plain` (parameters such as the charset aside)."""
    return (content_type or "").partition(";")[0].strip().lower() == SIMPLE_TYPE


def simple_origin_refused(origins: list[str], allowed: Collection[str]) -> JSONResponse | None:
    """The 403 for a `text/plain` sign-up whose `Origin` headers (`origins`) are not exactly
    one of `allowed` (`cors_origins`); None when it may go on.

    Why: a text/plain POST is a CORS "simple" request, which a browser sends from any page
    (a `fetch()`, a plain `<form enctype="text/plain">`) without asking first; only the
    answer is hidden from a page not allowed. The preflight a JSON POST needs is what used
    to keep other pages from signing people up; for text/plain this check does that job. A
    missing `Origin` is refused too: every browser sends one with a POST, and servers post
    `application/json`."""
    if len(origins) == 1 and origins[0] in allowed:
        return None
    return _error(
        403,
        "origin_not_allowed",
        "a text/plain sign-up must come from a storefront page listed in cors_origins; "
        "servers send Content-Type: application/json",
    )


def _as_json(scope: Scope) -> Scope:
    """`scope` with its Content-Type header(s) replaced by `application/json`."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


def simple_sign_up_route(allowed: Collection[str]) -> type[APIRoute]:
    """The route class of `POST /widget/subscriptions`: it takes a `text/plain` body as JSON
    (the widget's CORS "simple" request), after :func:`simple_origin_refused`. The request
    is then handed to FastAPI's own handler as `application/json`, so a text/plain body gets
    exactly the answers a JSON one gets (400 malformed, 422, ...)."""
    origins = frozenset(allowed)

    class SimpleSignUpRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                if is_simple_type(request.headers.get("content-type")):
                    refused = simple_origin_refused(request.headers.getlist("origin"), origins)
                    if refused is not None:
                        return refused
                    request = Request(_as_json(request.scope), request.receive)
                return await handler(request)

            return route

    return SimpleSignUpRoute


async def widget_sign_up(app: App, request: Request, body: WidgetSignUp) -> JSONResponse:
    """`POST /widget/subscriptions`, from the route or from the sign-up fast path
    (`restock_core.api.PublicSignUpFastPath`): every refusal is answered here."""
    if not body.consent:
        return _error(422, "consent_required", "please confirm the consent box", "consent")
    context = app.public_context(
        request,
        honeypot=body.hp,
        consent_text="widget consent checkbox",
        consent_version="widget",
    )
    try:
        outcome = await app.subscribe_public_async(
            body.variant_id,
            context=context,
            email=body.email,
            phone=body.phone,
            scope=body.scope,
            source=body.source,
            locale=body.locale,
            attributes={"form": "widget"},
        )
    except InStockError:
        return _error(409, "in_stock", "this variant is in stock", "variant_id")
    except RateLimitedError as exc:
        answer = _error(429, exc.code, exc.message, exc.field)
        answer.headers.update(retry_after_header(exc.retry_after))
        return answer
    except RestockError as exc:
        status = exc.status_code if 400 <= exc.status_code < 500 else 503
        return _error(status, exc.code, exc.message, exc.field)
    channel = "sms" if body.phone and not body.email else "email"
    # the same answer for a new, a repeat, a honeypot-caught and a suppressed sign-up;
    # `confirm` (double opt-in) depends on the channel only, so it leaks nothing
    return JSONResponse(
        {"status": "subscribed", "channel": channel, "confirm": outcome.confirm},
        status_code=201,
    )


def build_router(app: App) -> APIRouter:
    router = APIRouter(tags=["widget"])
    script = (STATIC / "widget.js").read_bytes()
    etag = '"' + hashlib.sha256(script).hexdigest()[:20] + '"'
    availability = Availability(app)

    @router.get("/widget.js", include_in_schema=False)
    def widget_js(request: Request) -> Response:
        """The storefront script (dependency-free; see docs/widget.md)."""
        headers = {"Cache-Control": "public, max-age=300", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)

    @router.get("/widget/availability", responses=_documented())
    def widget_availability(
        variant: str = Query(min_length=1, max_length=255),
        scope: str = Query("default", min_length=1, max_length=255),
        source: str | None = Query(None, max_length=100),
    ) -> JSONResponse:
        """Whether a variant is sold out (no count), and which channels a sign-up may use."""
        if not _ID.fullmatch(variant) or not _ID.fullmatch(scope):
            return _error(422, "invalid", "variant and scope must be printable text", "variant")
        try:
            instance = app.adapter_instance(source)
        except ValidationError as exc:
            return _error(422, exc.code, exc.message, exc.field)
        normalize = getattr(instance.obj, "normalize_variant_id", None)
        if callable(normalize):
            try:
                variant = normalize(variant)
            except ValueError as exc:
                return _error(422, "invalid", str(exc), "variant")
        sold_out = availability.sold_out(instance.id, variant, scope)
        channels = [str(c) for c in (Channel.EMAIL, Channel.SMS) if c in app.routing]
        return JSONResponse(
            {"sold_out": sold_out, "channels": channels if sold_out else []},
            headers={"Cache-Control": f"public, max-age={int(AVAILABILITY_TTL)}"},
        )

    async def widget_subscribe(body: WidgetSignUp, request: Request) -> JSONResponse:
        """The widget's sign-up, a public one (docs/security.md): consent required; abuse
        limits and `before_subscribe` apply; a filled honeypot, a repeat sign-up and a
        suppressed contact get the same answer as a new sign-up, and nothing is stored
        for the first and the last. The body is JSON, sent as `application/json` or, by
        the widget across origins, as `text/plain` (no CORS preflight): a text/plain one
        must carry exactly one `Origin` listed in `cors_origins` (else 403
        `origin_not_allowed`). `async`, like `POST /subscriptions`: the checks run on the
        event loop and the write is awaited (`App.subscribe_public_async`)."""
        return await widget_sign_up(app, request, body)

    schema = {"$ref": "#/components/schemas/WidgetSignUp"}
    router.add_api_route(
        "/widget/subscriptions",
        widget_subscribe,
        methods=["POST"],
        status_code=201,
        responses={
            200: {"description": "already signed up"},
            403: {"model": _ErrorOut, "description": "text/plain from an origin not allowed"},
            **_documented(409, 503),
        },
        openapi_extra={"requestBody": {"content": {"text/plain": {"schema": schema}}}},
        route_class_override=simple_sign_up_route(app.settings.cors_origins),
    )
    return router


def mount(api: FastAPI, app: App) -> None:
    """Add the widget routes and the public CORS policy to the HTTP API."""
    api.include_router(build_router(app))
    api.add_middleware(PublicCORS, origins=list(app.settings.cors_origins))


__all__ = [
    "PUBLIC_PATHS",
    "SIMPLE_TYPE",
    "PublicCORS",
    "WidgetSignUp",
    "build_router",
    "is_public",
    "mount",
    "public_cors",
    "route_path",
    "simple_origin_refused",
    "simple_sign_up_route",
    "widget_sign_up",
]
