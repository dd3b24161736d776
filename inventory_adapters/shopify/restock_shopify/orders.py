"""Orders for revenue attribution (docs/attribution.md): the `orders/create` webhook, and
`orders/cancelled` taking conversions back (reference/orders.md §1).

The body is the REST `Order` resource (shopify.dev/docs/api/admin-rest/latest/resources/webhook,
.../resources/order). Signed and de-duplicated exactly like the inventory webhook
(`X-Shopify-Hmac-Sha256` over the raw body, `X-Shopify-Webhook-Id`;
shopify.dev/docs/apps/build/events/verify-deliveries). Read: `id` (the idempotency key),
top-level `email` / `phone` first (the 2025-01 `customer` object may lack them),
`customer.id` (stored as its gid, as app-proxy sign-ups store it), `created_at` (the window;
`processed_at` can be back-dated on import), `currency` (the shop's) with each line's
`price_set.shop_money` × `current_quantity` (units minus removed ones; `price` is "before
discounts"), `test` and `cancelled_at` (count nothing)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from restock_core import Order, OrderLine, RestockError, error_response, parse_iso_utc

from .options import to_gid
from .signatures import verify_webhook

if TYPE_CHECKING:
    from .adapter import ShopifyAdapter

log = logging.getLogger("restock.shopify")

ORDERS_CREATE = "orders/create"
ORDERS_CANCELLED = "orders/cancelled"


class NotAnOrder(ValueError):
    pass


def _money(line: Mapping[str, Any]) -> Decimal:
    shop = ((line.get("price_set") or {}).get("shop_money") or {}).get("amount")
    value = shop if shop is not None else line.get("price")
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def parse_order(payload: Mapping[str, Any], source: str) -> Order:
    """A Shopify REST `Order` (webhook body) as a restock :class:`Order`."""
    order_id = payload.get("id")
    if not isinstance(order_id, int) or isinstance(order_id, bool):
        raise NotAnOrder("id must be a Shopify order id")
    placed_at = parse_iso_utc(payload.get("created_at")) or parse_iso_utc(
        payload.get("processed_at")
    )
    if placed_at is None:
        raise NotAnOrder("created_at is missing or not a time")
    currency = payload.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise NotAnOrder("currency must be an ISO 4217 code")
    found = payload.get("customer")
    customer: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    lines = []
    for item in payload.get("line_items") or []:
        if not isinstance(item, Mapping):
            continue
        variant = to_gid("ProductVariant", item.get("variant_id"))
        if variant is None:  # custom items and deleted variants
            continue
        quantity = item.get("current_quantity", item.get("quantity"))
        if not isinstance(quantity, int) or quantity <= 0:
            continue
        lines.append(OrderLine(variant, quantity, _money(item) * quantity))

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value.strip() else None

    return Order(
        source=source,
        order_id=str(order_id),
        placed_at=placed_at,
        currency=currency.upper(),
        lines=tuple(lines),
        email=text(payload.get("email"))
        or text(payload.get("contact_email"))
        or text(customer.get("email")),
        phone=text(payload.get("phone")) or text(customer.get("phone")),
        customer_id=to_gid("Customer", customer.get("id")) if customer.get("id") else None,
        total=_decimal(payload.get("total_price")),
        cancelled=bool(payload.get("cancelled_at")),
        test=bool(payload.get("test")),
    )


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def build_orders_router(adapter: ShopifyAdapter) -> APIRouter:
    router = APIRouter()
    options = adapter.options

    async def receive(request: Request, topic: str) -> Any:
        if options.client_secret is None:
            return error_response(401, "unauthorized", "webhooks need the client_secret option")
        raw = await request.body()
        signature = request.headers.get("x-shopify-hmac-sha256")
        if not signature or not verify_webhook(raw, signature, options.client_secret.value):
            return error_response(
                401, "unauthorized", "missing or invalid X-Shopify-Hmac-Sha256 signature"
            )
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "malformed", "request body is not valid JSON")
        if not isinstance(payload, dict):
            return error_response(400, "malformed", "request body must be a JSON object")
        sent_topic = request.headers.get("x-shopify-topic")
        if sent_topic and sent_topic != topic:
            return JSONResponse({"status": "ignored", "reason": f"topic {sent_topic}"})
        domain = request.headers.get("x-shopify-shop-domain")
        shop = options.shop.lower()
        if domain and shop.endswith(".myshopify.com") and domain.lower() != shop:
            return JSONResponse({"status": "ignored", "reason": "another shop"})
        try:
            order = parse_order(payload, adapter.id)
        except NotAnOrder as exc:
            return error_response(400, "malformed", str(exc))

        # no webhook-id bookkeeping: the order id is the idempotency key (a re-delivery, or
        # the same order through another webhook subscription, counts nothing)
        def apply() -> dict[str, Any]:
            if topic == ORDERS_CANCELLED:
                removed = adapter.host.cancel_order(adapter.id, order.order_id)
                return {"status": "cancelled", "conversions_removed": len(removed)}
            made = adapter.host.record_orders([order])
            return {"status": "recorded", "conversions": len(made)}

        try:
            return JSONResponse(await run_in_threadpool(apply))
        except RestockError as exc:
            status = exc.status_code if 400 <= exc.status_code < 500 else 502
            return JSONResponse(exc.to_dict(), status_code=status)

    @router.post("/webhooks/orders/create", tags=["webhooks"])
    async def orders_create(request: Request) -> Any:
        """Shopify `orders/create`: recorded for revenue attribution (401 bad signature,
        400 malformed; the same order again counts nothing)."""
        return await receive(request, ORDERS_CREATE)

    @router.post("/webhooks/orders/cancelled", tags=["webhooks"])
    async def orders_cancelled(request: Request) -> Any:
        """Shopify `orders/cancelled`: the order's conversions are taken back."""
        return await receive(request, ORDERS_CANCELLED)

    return router
