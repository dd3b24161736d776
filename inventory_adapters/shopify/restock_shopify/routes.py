"""Routes the core mounts under `/<instance id>`:

- `POST /webhooks/inventory_levels/update`: Shopify's webhook, HMAC-verified on the raw body
  before anything is parsed, de-duplicated, answered at once and applied in the background;
- `GET|POST /proxy/subscribe`: storefront sign-up through a Shopify app proxy (signed query).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from restock_core import (
    RateLimitedError,
    RestockError,
    error_response,
    parse_iso_utc,
    retry_after_header,
    utcnow,
)

from .options import DEFAULT_SCOPE, to_gid
from .signatures import verify_proxy, verify_webhook

if TYPE_CHECKING:
    from datetime import datetime

    from .adapter import ShopifyAdapter

log = logging.getLogger("restock.shopify")

TOPIC = "inventory_levels/update"


def _restock_error(exc: RestockError) -> JSONResponse:
    status = exc.status_code if 400 <= exc.status_code < 500 else 502
    headers = retry_after_header(exc.retry_after) if isinstance(exc, RateLimitedError) else None
    return JSONResponse(exc.to_dict(), status_code=status, headers=headers)


def _other_shop(adapter: ShopifyAdapter, domain: str | None) -> bool:
    shop = adapter.options.shop.lower()
    if not domain or not shop.endswith(".myshopify.com"):
        return False
    return domain.lower() != shop


def build_router(adapter: ShopifyAdapter) -> APIRouter:
    router = APIRouter()
    options = adapter.options

    def process(payload: dict[str, Any], updated_at: datetime, delivery: str) -> None:
        try:
            outcome = adapter.apply_inventory_level(payload, updated_at)
            log.info("shopify webhook %s: %s", delivery, outcome)
        except Exception as exc:  # answered already; reconciliation catches up
            log.warning(
                "shopify webhook %s could not be applied (%s: %s); the next reconciliation "
                "pass will pick the change up",
                delivery,
                type(exc).__name__,
                exc,
            )

    @router.post("/webhooks/inventory_levels/update", tags=["webhooks"])
    async def inventory_levels_update(request: Request, background: BackgroundTasks) -> Any:
        """Shopify `inventory_levels/update`: 401 on a bad or missing signature, 400 on a
        malformed body, 200 otherwise (duplicates and stale deliveries change nothing)."""
        if options.client_secret is None:
            return error_response(401, "unauthorized", "webhooks need the client_secret option")
        raw = await request.body()
        signature = request.headers.get("x-shopify-hmac-sha256")
        if not signature:
            return error_response(401, "unauthorized", "missing X-Shopify-Hmac-Sha256 header")
        if not verify_webhook(raw, signature, options.client_secret.value):
            return error_response(401, "unauthorized", "invalid X-Shopify-Hmac-Sha256 signature")
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "malformed", "request body is not valid JSON")
        if not isinstance(payload, dict):
            return error_response(400, "malformed", "request body must be a JSON object")
        topic = request.headers.get("x-shopify-topic")
        if topic and topic != TOPIC:
            return JSONResponse({"status": "ignored", "reason": f"topic {topic}"})
        if _other_shop(adapter, request.headers.get("x-shopify-shop-domain")):
            return JSONResponse({"status": "ignored", "reason": "another shop"})
        item = payload.get("inventory_item_id")
        location = payload.get("location_id")
        if to_gid("InventoryItem", item) is None or to_gid("Location", location) is None:
            return error_response(
                400, "malformed", "inventory_item_id and location_id must be Shopify ids"
            )
        webhook_id = request.headers.get("x-shopify-webhook-id")
        event_id = request.headers.get("x-shopify-event-id")
        ids = []
        if webhook_id:
            ids.append(f"webhook:{webhook_id}")
        if event_id:  # one merchant action may touch several levels: key on the level too
            ids.append(f"event:{event_id}:{TOPIC}:{item}:{location}")
        if ids:
            seen = await run_in_threadpool(
                lambda: [adapter.host.seen_event(adapter.id, i) for i in ids]
            )
            if any(seen):
                return JSONResponse({"status": "duplicate"})
        # orders deliveries of one level only; the re-read is stamped with its own time
        updated_at = (
            parse_iso_utc(payload.get("updated_at"))
            or parse_iso_utc(request.headers.get("x-shopify-triggered-at"))
            or utcnow()
        )
        background.add_task(process, payload, updated_at, webhook_id or event_id or "-")
        return JSONResponse({"status": "accepted"})

    @router.api_route("/proxy/subscribe", methods=["GET", "POST"], tags=["sign-up"])
    async def proxy_subscribe(request: Request) -> Any:
        """Storefront sign-up through a Shopify app proxy (shop.example/apps/<prefix>/subscribe).
        The signed query proves Shopify forwarded it; fields may also come in a POST body."""
        if options.client_secret is None:
            return error_response(
                401, "unauthorized", "the app proxy needs the client_secret option"
            )
        query = request.query_params.multi_items()
        if not verify_proxy(query, options.client_secret.value):
            return error_response(401, "unauthorized", "missing or invalid app proxy signature")
        signed = dict(query)
        if options.proxy_max_age is not None:
            try:
                age = abs(time.time() - int(signed.get("timestamp", "")))
            except ValueError:
                return error_response(401, "unauthorized", "app proxy timestamp is missing")
            if age > options.proxy_max_age:
                return error_response(401, "unauthorized", "app proxy request is too old")
        if _other_shop(adapter, signed.get("shop")):
            return error_response(
                401, "unauthorized", "app proxy request was signed for another shop"
            )
        fields: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            content_type = request.headers.get("content-type", "")
            if raw and "json" in content_type:
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    return error_response(400, "malformed", "request body is not valid JSON")
                if not isinstance(body, dict):
                    return error_response(400, "malformed", "request body must be a JSON object")
                fields.update(body)
            elif raw:
                fields.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        for key in ("variant_id", "email", "phone", "channel", "scope", "locale"):
            if key not in fields and key in signed:
                fields[key] = signed[key]
        variant = to_gid("ProductVariant", fields.get("variant_id"))
        if variant is None:
            return error_response(
                422,
                "invalid",
                "variant_id must be a Shopify variant id (123 or gid://shopify/ProductVariant/123)",
                "variant_id",
            )
        customer = signed.get("logged_in_customer_id") or None  # signed; never from the body
        customer_id = to_gid("Customer", customer) if customer else None

        def text(name: str) -> str | None:
            value = fields.get(name)
            return value if isinstance(value, str) and value.strip() else None

        # Shopify's proxy, not the shopper, is our peer: the signature proves Shopify sent
        # this, and the right-most X-Forwarded-For entry is the one its proxy wrote.
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        context = adapter.host.public_context(request, ip=hops[-1] or None)
        try:
            outcome = await run_in_threadpool(
                lambda: adapter.host.subscribe_public(
                    variant,
                    context=context,
                    email=text("email"),
                    phone=text("phone"),
                    channel=text("channel"),
                    scope=text("scope") or DEFAULT_SCOPE,
                    source=adapter.id,
                    customer_id=customer_id,
                    locale=text("locale"),
                )
            )
        except RestockError as exc:
            return _restock_error(exc)
        # the same answer for a new and a repeat sign-up: a storefront visitor learns
        # nothing about who else signed up
        answer: dict[str, Any] = {"status": "accepted", "channel": outcome.channel}
        if outcome.confirm:
            answer["confirm"] = True
        return JSONResponse(answer, status_code=202)

    return router
