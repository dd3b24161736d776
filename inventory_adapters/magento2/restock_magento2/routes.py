"""Routes the core mounts under `/<instance id>`: drop-ins for Klaviyo's back-in-stock sign-up
requests, so a storefront that posts to Klaviyo can post to restock unchanged.

Klaviyo's current client API (reference/shopify-magento.md §6.1; klaviyo/openapi
`openapi/stable/apis/create_client_back_in_stock_subscription.json`;
https://developers.klaviyo.com/en/reference/create_client_back_in_stock_subscription):

- ``POST /client/back-in-stock-subscriptions?company_id=<public key>`` with a `revision` header
  and a JSON:API body (``type: "back-in-stock-subscription"``, ``attributes.channels``,
  ``attributes.profile.data.attributes.email / phone_number``,
  ``relationships.variant.data.id`` = ``integrationType:::catalogId:::externalId``); 202 with
  no body; errors as ``{"errors": [{"id", "status", "code", "title", "detail", "source":
  {"pointer" | "parameter"}}]}`` (Klaviyo's ClientError), with restock's ``error`` added.

The legacy form (§6.2 and the Klaviyo "Set up back in stock for Magento 2" guide), retired by
Klaviyo in June 2024 but still in storefront themes:

- ``POST /onsite/components/back-in-stock/subscribe`` (the front-end form's URL);
- ``POST /api/v1/catalog/subscribe`` (the server-side variant of the same request).

Both take form fields `a`, `email`, `variant`, `platform`, `store`, optional `product` and
`subscribe_for_newsletter` (form-encoded or multipart) and answer in Klaviyo's shapes, with
restock's own ``{"error": {code, message, field}}`` added next to them:

- success: 200 ``{"email": "<address>", "success": true}`` (a repeat sign-up too);
- missing field: 400 ``{"status": 400, "message": "There was something wrong with your
  request: * email * This field is required.", "success": false, "error": {...}}``;
- invalid email, wrong `a`, in stock, suppressed: ``{"errors": ["..."], "data": {},
  "success": false, "error": {...}}`` with 400 (invalid), 409 (in stock), 422 (suppressed).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from restock_core import (
    AdapterError,
    InStockError,
    PluginHost,
    RateLimitedError,
    RestockError,
    SignUpContext,
    ValidationError,
    error_body,
    normalize_email,
    normalize_phone,
    retry_after_header,
)

log = logging.getLogger("restock.magento2")

FORM_PATH = "/onsite/components/back-in-stock/subscribe"
LEGACY_PATH = "/api/v1/catalog/subscribe"
KLAVIYO_ERROR = "There was something wrong with your request. Please try again."
IN_STOCK = "This item is in stock, so there is nothing to wait for. Please reload the page."
FIELDS = ("a", "email", "variant", "platform", "store", "product", "subscribe_for_newsletter")
TRUE = {"1", "true", "yes", "on"}

CLIENT_PATH = "/client/back-in-stock-subscriptions"
JSON_API = "application/vnd.api+json"
BIS_TYPE = "back-in-stock-subscription"
#: the channels Klaviyo's schema allows; restock sends EMAIL and SMS
KLAVIYO_CHANNELS = {"EMAIL": "email", "SMS": "sms", "PUSH": None, "WHATSAPP": None}
REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]{1,32})?$")
VARIANT_SEPARATOR = ":::"
PROFILE = "/data/attributes/profile/data/attributes"
CORS_HEADERS = "Content-Type, X-Requested-With, revision"


def _errors(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """Klaviyo's `{"errors": [...], "data": {}, "success": false}` plus restock's error."""
    body = {"errors": [message], "data": {}, "success": False, **error_body(code, message, field)}
    return JSONResponse(body, status_code=status)


def _missing(fields: list[str]) -> JSONResponse:
    """Klaviyo's missing-field shape: `{"status": 400, "message": "... * email * ..."}`."""
    detail = " ".join(f"* {name} * This field is required." for name in fields)
    message = f"There was something wrong with your request: {detail}"
    body = {
        "status": 400,
        "message": message,
        "success": False,
        "error": {"code": "invalid", "message": message, "field": fields[0]},
    }
    return JSONResponse(body, status_code=400)


async def _form(request: Request) -> dict[str, str] | None:
    """The first value of each field, from a urlencoded, multipart or JSON body; None when
    the body cannot be read."""
    content_type = request.headers.get("content-type", "").lower()
    values: dict[str, str] = {}
    try:
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            for name in FIELDS:
                value = form.get(name)
                if isinstance(value, str):
                    values[name] = value
            return values
        raw = await request.body()
        if content_type.startswith("application/json"):
            data = json.loads(raw or b"{}")
            if not isinstance(data, Mapping):
                return None
            for name in FIELDS:
                value = data.get(name)
                if isinstance(value, str | int | bool) and value is not None:
                    values[name] = str(value).lower() if isinstance(value, bool) else str(value)
            return values
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (ValueError, UnicodeDecodeError):
        return None
    except Exception:  # a malformed multipart body
        return None
    for name in FIELDS:
        if parsed.get(name):
            values[name] = parsed[name][0]
    return values


class KlaviyoError(Exception):
    """One entry of Klaviyo's ClientError body, with restock's own `error` next to it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str = "invalid",
        title: str = "Invalid input.",
        pointer: str | None = None,
        parameter: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(detail)
        self.headers = dict(headers or {})
        self.status = status
        self.detail = detail
        self.code = code
        self.title = title
        self.pointer = pointer
        self.parameter = parameter
        self.field = field

    def response(self) -> JSONResponse:
        entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": {"pointer": self.pointer}
            if self.pointer
            else {"parameter": self.parameter}
            if self.parameter
            else {},
        }
        field = self.field or self.parameter or (self.pointer or "").rsplit("/", 1)[-1] or None
        return JSONResponse(
            {"errors": [entry], **error_body(self.code, self.detail, field)},
            status_code=self.status,
            media_type=JSON_API,
            headers=self.headers or None,
        )


def _object(value: Any, pointer: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise KlaviyoError(400, f"'{pointer}' must be an object.", pointer=pointer)
    return value


def _text(value: Any, pointer: str, *, limit: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KlaviyoError(400, f"'{pointer}' must be a string.", pointer=pointer)
    value = value.strip()
    if len(value) > limit:
        raise KlaviyoError(400, f"'{pointer}' is longer than {limit} characters.", pointer=pointer)
    return value or None


def parse_client_subscription(body: Any) -> dict[str, Any]:
    """Klaviyo's ClientBISSubscriptionCreateQuery -> {"channels", "email", "phone",
    "integration", "catalog", "external_id"}; KlaviyoError (400) for what the schema refuses."""
    data = _object(_object(body, "/").get("data"), "/data")
    if data.get("type") != BIS_TYPE:
        raise KlaviyoError(
            400,
            f"'type' must be '{BIS_TYPE}', got {str(data.get('type'))[:50]!r}.",
            pointer="/data/type",
        )
    attributes = _object(data.get("attributes"), "/data/attributes")
    channels = attributes.get("channels")
    if not isinstance(channels, list) or not channels:
        raise KlaviyoError(
            400,
            "'channels' is required: a list such as [\"EMAIL\"].",
            pointer="/data/attributes/channels",
        )
    if len(channels) > len(KLAVIYO_CHANNELS) or any(c not in KLAVIYO_CHANNELS for c in channels):
        raise KlaviyoError(
            400,
            "'channels' items must be one of EMAIL, PUSH, SMS, WHATSAPP.",
            pointer="/data/attributes/channels",
        )
    profile = _object(attributes.get("profile"), "/data/attributes/profile")
    profile_data = _object(profile.get("data"), "/data/attributes/profile/data")
    if profile_data.get("type") != "profile":
        raise KlaviyoError(
            400, "'type' must be 'profile'.", pointer="/data/attributes/profile/data/type"
        )
    person = _object(profile_data.get("attributes"), PROFILE)
    email = _text(person.get("email"), f"{PROFILE}/email", limit=320)
    phone = _text(person.get("phone_number"), f"{PROFILE}/phone_number", limit=40)
    relationships = _object(data.get("relationships"), "/data/relationships")
    variant = _object(
        _object(relationships.get("variant"), "/data/relationships/variant").get("data"),
        "/data/relationships/variant/data",
    )
    if variant.get("type") != "catalog-variant":
        raise KlaviyoError(
            400,
            "'type' must be 'catalog-variant'.",
            pointer="/data/relationships/variant/data/type",
        )
    variant_id = _text(variant.get("id"), "/data/relationships/variant/data/id", limit=600)
    parts = (variant_id or "").split(VARIANT_SEPARATOR)
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise KlaviyoError(
            400,
            "'id' must look like integrationType:::catalogId:::externalId, "
            "e.g. $custom:::$default:::SKU-1.",
            pointer="/data/relationships/variant/data/id",
            field="variant",
        )
    return {
        "channels": list(dict.fromkeys(channels)),
        "email": email,
        "phone": phone,
        "integration": parts[0],
        "catalog": parts[1],
        "external_id": parts[2].strip(),
    }


def build_router(adapter: Any, app: PluginHost) -> APIRouter:
    router = APIRouter()
    options = adapter.options
    origins = set(options.cors_origins)

    def _cors(request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin and ("*" in origins or origin in origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            response.headers["Vary"] = "Origin"
        return response

    def _subscribe(
        request: Request, sku: str, email: str, scope: str, fields: Mapping[str, str]
    ) -> Any:
        """A shopper's sign-up from the storefront form: public limits, the
        before_subscribe hook, and an answer that is the same for a repeat sign-up."""
        attributes: dict[str, Any] = {"form": "klaviyo-back-in-stock"}
        for name in ("platform", "store"):
            if fields.get(name):
                attributes[name] = fields[name]
        if "subscribe_for_newsletter" in fields:
            attributes["subscribe_for_newsletter"] = (
                fields["subscribe_for_newsletter"].strip().lower() in TRUE
            )
        return app.subscribe_public(
            sku,
            context=app.public_context(request),
            email=email,
            scope=scope,
            source=adapter.id,
            product_id=(fields.get("product") or None),
            attributes=attributes,
        )

    async def subscribe(request: Request) -> Response:
        fields = await _form(request)
        if fields is None:
            return _errors(400, "malformed", KLAVIYO_ERROR + " (the form could not be read)")
        email = (fields.get("email") or "").strip()
        variant = (fields.get("variant") or "").strip()
        missing = [name for name, value in (("email", email), ("variant", variant)) if not value]
        if missing:
            return _missing(missing)
        expected = options.klaviyo_company_id
        if expected is not None and (fields.get("a") or "").strip() != expected:
            return _errors(400, "invalid", KLAVIYO_ERROR + " (unknown company id 'a')", "a")
        sku = variant
        if options.form_variant == "product_id":
            try:
                found = await run_in_threadpool(adapter.sku_for_product_id, variant)
            except AdapterError as exc:
                log.warning("%s: looking up product %s failed: %s", adapter.id, variant, exc)
                return _errors(503, "unavailable", KLAVIYO_ERROR, "variant")
            if found is None:
                return _errors(400, "invalid", f"unknown product id {variant!r}", "variant")
            sku = found
        scope = adapter.scope_for_store((fields.get("store") or "").strip() or None)
        try:
            await run_in_threadpool(_subscribe, request, sku, email, scope, fields)
        except RateLimitedError as exc:
            answer = _errors(429, exc.code, exc.message, exc.field)
            answer.headers.update(retry_after_header(exc.retry_after))
            return answer
        except InStockError as exc:
            return _errors(409, exc.code, f"{IN_STOCK} ({exc.message})", "variant")
        except ValidationError as exc:
            field = "email" if exc.field in (None, "email", "channel") else exc.field
            message = f"{KLAVIYO_ERROR} ({exc.message})" if field == "email" else exc.message
            return _errors(400, exc.code, message, field)
        except RestockError as exc:
            status = exc.status_code if 400 <= exc.status_code < 500 else 503
            return _errors(status, exc.code, exc.message, exc.field)
        return JSONResponse({"email": email, "success": True})

    async def form_route(request: Request) -> Response:
        return _cors(request, await subscribe(request))

    async def sku_for(external_id: str) -> str:
        if options.form_variant != "product_id":
            return external_id
        try:
            found = await run_in_threadpool(adapter.sku_for_product_id, external_id)
        except AdapterError as exc:
            log.warning("%s: looking up product %s failed: %s", adapter.id, external_id, exc)
            raise KlaviyoError(
                503,
                "The service is temporarily unavailable. Please try again later.",
                code="service_unavailable",
                title="Service unavailable.",
                pointer="/data/relationships/variant/data/id",
                field="variant",
            ) from None
        if found is None:
            raise KlaviyoError(
                400,
                f"Unknown catalog variant {external_id!r}.",
                pointer="/data/relationships/variant/data/id",
                field="variant",
            )
        return found

    def contacts(parsed: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(restock channel, normalised contact) for each requested channel restock sends;
        a requested channel without its contact is skipped while another one has it."""
        wanted = [c for c in (KLAVIYO_CHANNELS[name] for name in parsed["channels"]) if c]
        if not wanted:
            raise KlaviyoError(
                400,
                "None of the requested channels is available here; use EMAIL or SMS.",
                pointer="/data/attributes/channels",
            )
        found: list[tuple[str, str]] = []
        missing: str | None = None
        for channel in wanted:
            if channel == "email":
                if parsed["email"] is None:
                    missing = missing or f"{PROFILE}/email"
                    continue
                try:
                    found.append((channel, normalize_email(parsed["email"])))
                except ValidationError as exc:
                    raise KlaviyoError(400, exc.message, pointer=f"{PROFILE}/email") from None
            else:
                if parsed["phone"] is None:
                    missing = missing or f"{PROFILE}/phone_number"
                    continue
                try:
                    found.append((channel, normalize_phone(parsed["phone"])))
                except ValidationError as exc:
                    raise KlaviyoError(
                        400, exc.message, pointer=f"{PROFILE}/phone_number"
                    ) from None
        if not found:
            name = "email" if (missing or "").endswith("email") else "phone_number"
            raise KlaviyoError(
                400, f"'{name}' is required for the requested channel.", pointer=missing
            )
        return found

    def client_subscribe(
        context: SignUpContext,
        sku: str,
        scope: str,
        found: list[tuple[str, str]],
        parsed: Mapping[str, Any],
        revision: str,
    ) -> int:
        """Sign up each (channel, contact) as a public caller (a suppressed contact answers
        like any other); a channel no configured provider sends is skipped while another
        one can be signed up. Returns the number of channels signed up (new or repeat)."""
        attributes = {
            "form": "klaviyo-client-api",
            "revision": revision,
            "variant": VARIANT_SEPARATOR.join(
                (parsed["integration"], parsed["catalog"], parsed["external_id"])
            ),
        }
        made = 0
        skipped: RestockError | None = None
        for channel, contact in found:
            try:
                app.subscribe_public(
                    sku,
                    context=context,
                    email=contact if channel == "email" else None,
                    phone=contact if channel == "sms" else None,
                    channel=channel,
                    scope=scope,
                    source=adapter.id,
                    attributes=attributes,
                )
            except ValidationError as exc:
                if exc.field != "channel":  # contacts were checked before: not offered here
                    raise
                skipped = exc
                continue
            made += 1
        if not made and skipped is not None:
            raise skipped
        return made

    async def client_route(request: Request) -> Response:
        try:
            return _cors(request, await client_subscription(request))
        except KlaviyoError as exc:
            return _cors(request, exc.response())

    async def client_subscription(request: Request) -> Response:
        company = (request.query_params.get("company_id") or "").strip()
        if not company:
            raise KlaviyoError(
                400, "The 'company_id' query parameter is required.", parameter="company_id"
            )
        expected = options.klaviyo_company_id
        if expected is not None and company != expected:
            raise KlaviyoError(400, "Invalid 'company_id'.", parameter="company_id")
        revision = (request.headers.get("revision") or "").strip()
        if not revision:
            raise KlaviyoError(
                400, "The 'revision' header is required (YYYY-MM-DD).", parameter="revision"
            )
        if not REVISION.match(revision):
            raise KlaviyoError(
                400,
                f"Invalid 'revision' header {revision[:40]!r}; use YYYY-MM-DD[.suffix].",
                parameter="revision",
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (JSON_API, "application/json"):
            raise KlaviyoError(
                415,
                f"Content-Type must be {JSON_API}.",
                code="unsupported_media_type",
                title="Unsupported media type.",
                parameter="Content-Type",
            )
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise KlaviyoError(400, "The request body is not valid JSON.", pointer="/") from None
        parsed = parse_client_subscription(body)
        found = contacts(parsed)
        sku = await sku_for(parsed["external_id"])
        catalog = parsed["catalog"]
        scope = adapter.scope_for_store(None if catalog == "$default" else catalog)
        try:
            context = app.public_context(request)
            await run_in_threadpool(client_subscribe, context, sku, scope, found, parsed, revision)
        except RateLimitedError as exc:
            # Klaviyo's own 429: `throttled` with Retry-After
            raise KlaviyoError(
                429,
                exc.message,
                code="throttled",
                title="Request was throttled.",
                headers=retry_after_header(exc.retry_after),
            ) from None
        except InStockError as exc:
            raise KlaviyoError(
                409,
                f"{IN_STOCK} ({exc.message})",
                code="in_stock",
                title="Conflict.",
                pointer="/data/relationships/variant/data/id",
                field="variant",
            ) from None
        except ValidationError as exc:
            if exc.field == "channel":
                raise KlaviyoError(
                    400,
                    f"{exc.message}; ask for another channel.",
                    pointer="/data/attributes/channels",
                ) from None
            raise KlaviyoError(400, exc.message, code="invalid", field=exc.field) from None
        except RestockError as exc:
            status = exc.status_code if 400 <= exc.status_code < 500 else 503
            raise KlaviyoError(status, exc.message, code=exc.code, title="Error.") from None
        return Response(status_code=202)

    async def preflight(request: Request) -> Response:
        response = Response(status_code=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return _cors(request, response)

    for path, summary in (
        (FORM_PATH, "Klaviyo back-in-stock form (front-end URL), answered in Klaviyo's shape"),
        (LEGACY_PATH, "Klaviyo v1 catalog/subscribe (server-side URL), same fields and answers"),
    ):
        router.add_api_route(path, form_route, methods=["POST"], summary=summary)
        router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)
    router.add_api_route(
        CLIENT_PATH,
        client_route,
        methods=["POST"],
        status_code=202,
        summary="Klaviyo client API: create a back-in-stock subscription (JSON:API, 202)",
    )
    router.add_api_route(CLIENT_PATH, preflight, methods=["OPTIONS"], include_in_schema=False)
    return router
