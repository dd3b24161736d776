"""Routes the core mounts under `/<instance id>`: a drop-in for Klaviyo's legacy back-in-stock
form (reference/shopify-magento.md §6.2 and the Klaviyo "Set up back in stock for Magento 2"
guide), so a storefront that posts to Klaviyo can post to restock unchanged:

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
    RestockError,
    ValidationError,
    error_body,
)

log = logging.getLogger("restock.magento2")

FORM_PATH = "/onsite/components/back-in-stock/subscribe"
LEGACY_PATH = "/api/v1/catalog/subscribe"
KLAVIYO_ERROR = "There was something wrong with your request. Please try again."
IN_STOCK = "This item is in stock, so there is nothing to wait for. Please reload the page."
FIELDS = ("a", "email", "variant", "platform", "store", "product", "subscribe_for_newsletter")
TRUE = {"1", "true", "yes", "on"}


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

    def _subscribe(sku: str, email: str, scope: str, fields: Mapping[str, str]) -> Any:
        attributes: dict[str, Any] = {"form": "klaviyo-back-in-stock"}
        for name in ("platform", "store"):
            if fields.get(name):
                attributes[name] = fields[name]
        if "subscribe_for_newsletter" in fields:
            attributes["subscribe_for_newsletter"] = (
                fields["subscribe_for_newsletter"].strip().lower() in TRUE
            )
        return app.subscribe(
            sku,
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
            result = await run_in_threadpool(_subscribe, sku, email, scope, fields)
        except InStockError as exc:
            return _errors(409, exc.code, f"{IN_STOCK} ({exc.message})", "variant")
        except ValidationError as exc:
            field = "email" if exc.field in (None, "email", "channel") else exc.field
            message = f"{KLAVIYO_ERROR} ({exc.message})" if field == "email" else exc.message
            return _errors(400, exc.code, message, field)
        except RestockError as exc:
            status = exc.status_code if 400 <= exc.status_code < 500 else 503
            return _errors(status, exc.code, exc.message, exc.field)
        return JSONResponse({"email": result.subscription.contact, "success": True})

    async def form_route(request: Request) -> Response:
        return _cors(request, await subscribe(request))

    async def preflight(request: Request) -> Response:
        response = Response(status_code=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Requested-With"
        response.headers["Access-Control-Max-Age"] = "600"
        return _cors(request, response)

    for path, summary in (
        (FORM_PATH, "Klaviyo back-in-stock form (front-end URL), answered in Klaviyo's shape"),
        (LEGACY_PATH, "Klaviyo v1 catalog/subscribe (server-side URL), same fields and answers"),
    ):
        router.add_api_route(path, form_route, methods=["POST"], summary=summary)
        router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)
    return router
