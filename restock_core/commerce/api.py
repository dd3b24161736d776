"""HTTP routes for a shop's backend (secret API key), shaped like Sequenzy's Commerce API
so code written for it works by changing the base URL and key (docs/api.md):

- ``POST /api/v1/back-in-stock``: sign a customer up; ``{"success": true, "subscriberId"}``;
- ``POST /api/v1/products``: the batch product upsert, an inventory source of its own;
- ``POST /orders`` (also ``/api/v1/orders``): orders for revenue attribution;
- ``GET /reports/conversions``: conversions, revenue per currency and conversion rate
  (secret or admin key).

Errors keep restock's envelope and add ``"success": false``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import AppDep, ErrorOut, http_error, invalid_request, restock_error
from ..app import App
from ..attribution import cents
from ..builtin.catalog import CatalogAdapter
from ..clock import utcnow
from ..errors import RestockError, ValidationError
from ..models import Conversion, Order, OrderLine, StockKey, StockUpdate
from ..plugins import PluginInstance
from ..signup import max_length
from ..stock import MAX_QUANTITY
from .auth import require_secret_key, require_secret_or_admin_key

#: products per upsert (Sequenzy: 1-100) and variants per product
MAX_PRODUCTS = 100
MAX_VARIANTS = 250
MAX_ORDER_ITEMS = 500
ID = max_length("variant_id")
TITLE = max_length("product_title")
URL = max_length("url")


class SequenzyRoute(APIRoute):
    """Errors as ``{"success": false, "error": {...}}`` (Sequenzy callers test `success`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except RestockError as exc:
                return _flag(await restock_error(request, exc))
            except RequestValidationError as exc:
                return _flag(await invalid_request(request, exc))
            except StarletteHTTPException as exc:
                return _flag(await http_error(request, exc))

        return handler


def _flag(response: JSONResponse) -> JSONResponse:
    body = json.loads(bytes(response.body))
    return JSONResponse({"success": False, **body}, status_code=response.status_code)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422)
}

#: the secret API key (a shop's backend)
commerce = APIRouter(
    route_class=SequenzyRoute,
    dependencies=[Depends(require_secret_key)],
    responses=ERRORS,
    tags=["commerce"],
)
#: reports: the secret or the admin key
reports = APIRouter(
    dependencies=[Depends(require_secret_or_admin_key)], responses=ERRORS, tags=["reports"]
)


def catalog_instance(app: App) -> PluginInstance | None:
    return next((i for i in app.adapters.values() if isinstance(i.obj, CatalogAdapter)), None)


# ---------------------------------------------------------------------- back in stock


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str = Field(min_length=1, max_length=max_length("email"))
    externalId: str | None = Field(default=None, max_length=max_length("customer_id"))
    firstName: str | None = Field(default=None, max_length=200)
    lastName: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = None


class BackInStockIn(BaseModel):
    """Sequenzy's body: ``{productId, variantId?, productTitle?, variantTitle?, customer}``."""

    model_config = ConfigDict(extra="ignore")

    productId: str = Field(min_length=1, max_length=max_length("product_id"))
    variantId: str | None = Field(default=None, min_length=1, max_length=ID)
    productTitle: str | None = Field(default=None, max_length=TITLE)
    variantTitle: str | None = Field(default=None, max_length=max_length("variant_title"))
    customer: CustomerIn


@commerce.post("/api/v1/back-in-stock")
def back_in_stock(body: BackInStockIn, app: AppDep) -> JSONResponse:
    """Register a customer's request to be told when a product (variant) is back:
    ``{"success": true, "subscriberId": "..."}`` (200 for a new and a repeat request). Titles
    default to the catalog's (product upsert); a variant in stock answers 409."""
    variant_id = body.variantId or body.productId
    catalog = catalog_instance(app)
    source = catalog.id if catalog is not None else app.adapter_instance(None).id
    stored = app.store.products.get(source, [variant_id]).get(variant_id, {})
    attributes: dict[str, Any] = dict(body.customer.attributes or {})
    if body.customer.firstName is not None:
        attributes["first_name"] = body.customer.firstName
    if body.customer.lastName is not None:
        attributes["last_name"] = body.customer.lastName
    if stored.get("image_url"):
        attributes.setdefault("image_url", stored["image_url"])
    result = app.subscribe(
        variant_id,
        email=body.customer.email,
        source=source,
        customer_id=body.customer.externalId,
        product_id=body.productId,
        product_title=body.productTitle or stored.get("product_title"),
        variant_title=body.variantTitle or stored.get("variant_title"),
        url=stored.get("url"),
        attributes=attributes,
    )
    return JSONResponse({"success": True, "subscriberId": str(result.subscription.id)})


# ---------------------------------------------------------------------- product upsert


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    variantId: str = Field(min_length=1, max_length=ID)
    title: str | None = Field(default=None, max_length=max_length("variant_title"))
    sku: str | None = Field(default=None, max_length=255)
    imageUrl: str | None = Field(default=None, max_length=URL)
    url: str | None = Field(default=None, max_length=URL)
    priceCents: int | None = Field(default=None, ge=0, le=2**53)
    compareAtPriceCents: int | None = Field(default=None, ge=0, le=2**53)
    inStock: bool | None = None
    inventoryQuantity: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    productId: str = Field(min_length=1, max_length=max_length("product_id"))
    title: str | None = Field(default=None, max_length=TITLE)
    description: str | None = Field(default=None, max_length=20_000)
    imageUrl: str | None = Field(default=None, max_length=URL)
    url: str | None = Field(default=None, max_length=URL)
    priceCents: int | None = Field(default=None, ge=0, le=2**53)
    compareAtPriceCents: int | None = Field(default=None, ge=0, le=2**53)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    inStock: bool | None = None
    inventoryQuantity: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    variants: list[VariantIn] | None = Field(default=None, max_length=MAX_VARIANTS)


class ProductsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    products: list[ProductIn] = Field(min_length=1, max_length=MAX_PRODUCTS)


def _quantity(quantity: int | None, in_stock: bool | None) -> int | None:
    """What the upsert says about stock: a quantity, else in/out of stock (in stock with no
    quantity counts as plenty), else nothing (no stock update)."""
    if quantity is not None:
        return max(0, quantity)
    if in_stock is not None:
        return MAX_QUANTITY if in_stock else 0
    return None


def _set(model: BaseModel, name: str) -> bool:
    return name in model.model_fields_set


@commerce.post("/api/v1/products")
def upsert_products(body: ProductsIn, app: AppDep) -> JSONResponse:
    """Create or update up to 100 products with their variants (partial: omitted fields keep
    their stored values, an explicit null clears one). A variant whose `inventoryQuantity`
    (or `inStock`) brings it back opens a restock for its waiting subscribers."""
    catalog = catalog_instance(app)
    if catalog is None:
        raise ValidationError(
            'no catalog source is configured; add [[plugins]] resolve = "catalog" to '
            "plugins.toml to push products and stock",
            field="products",
        )
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    updates: list[StockUpdate] = []
    now = utcnow()
    for p_index, product in enumerate(body.products):
        variants = product.variants or []
        if not variants:  # a product without variants is its own variant (Sequenzy)
            variants = [
                VariantIn(
                    variantId=product.productId,
                    **{
                        k: getattr(product, k)
                        for k in ("inStock", "inventoryQuantity")
                        if _set(product, k)
                    },
                )
            ]
        quantities: list[int | None] = []
        for v_index, variant in enumerate(variants):
            if variant.variantId in seen:
                raise ValidationError(
                    f"variant {variant.variantId!r} appears twice in this request",
                    field=f"products.{p_index}.variants.{v_index}.variantId",
                )
            seen.add(variant.variantId)
            row: dict[str, Any] = {"variant_id": variant.variantId, "product_id": product.productId}
            for column, model, name in (
                ("product_title", product, "title"),
                ("variant_title", variant, "title"),
                ("sku", variant, "sku"),
                ("url", variant, "url"),
                ("image_url", variant, "imageUrl"),
                ("price_cents", variant, "priceCents"),
                ("currency", product, "currency"),
            ):
                if _set(model, name):
                    row[column] = getattr(model, name)
            for column, name in (
                ("url", "url"),
                ("image_url", "imageUrl"),
                ("price_cents", "priceCents"),
            ):
                if column not in row and _set(product, name):
                    row[column] = getattr(product, name)  # product-level defaults
            rows.append(row)
            quantity = _quantity(
                variant.inventoryQuantity,
                variant.inStock if variant.inStock is not None else product.inStock,
            )
            quantities.append(quantity)
            if quantity is not None:
                updates.append(StockUpdate(StockKey(variant.variantId), quantity, now))
        if product.variants and product.productId not in seen:
            # sign-ups that named only the product: it is in stock when any variant is
            known = [q for q in quantities if q is not None]
            total = _quantity(product.inventoryQuantity, product.inStock)
            if total is None and known:
                total = min(MAX_QUANTITY, sum(known))
            if total is not None:
                updates.append(StockUpdate(StockKey(product.productId), total, now))
    app.store.products.upsert(catalog.id, rows)
    result = app.record_stock(catalog.id, updates)
    stored = app.store.products.get(catalog.id, [r["variant_id"] for r in rows])
    stock = app.stock_quantities(catalog.id, [StockKey(r["variant_id"]) for r in rows])
    products: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = stored[row["variant_id"]]
        quantity = stock.get(StockKey(row["variant_id"]))
        product_json = products.setdefault(
            item["product_id"],
            {
                "productId": item["product_id"],
                "provider": "api",
                "title": item["product_title"],
                "currency": item["currency"],
                "inStock": False,
                "variants": [],
            },
        )
        in_stock = quantity is not None and quantity >= app.settings.inventory_required
        product_json["inStock"] = product_json["inStock"] or in_stock
        product_json["variants"].append(
            {
                "variantId": item["variant_id"],
                "title": item["variant_title"],
                "sku": item["sku"],
                "priceCents": item["price_cents"],
                "inStock": in_stock,
                "inventoryQuantity": quantity,
            }
        )
    return JSONResponse(
        {
            "success": True,
            "upserted": len(products),
            "backInStockEventsTriggered": len(result.restocks_opened),
            "products": list(products.values()),
        }
    )


# ---------------------------------------------------------------------- orders


class OrderCustomerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str | None = Field(default=None, max_length=max_length("email"))
    phone: str | None = Field(default=None, max_length=max_length("phone"))
    externalId: str | None = Field(default=None, max_length=max_length("customer_id"))


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    productId: str = Field(min_length=1, max_length=max_length("product_id"))
    variantId: str | None = Field(default=None, min_length=1, max_length=ID)
    sku: str | None = Field(default=None, max_length=255)
    title: str | None = Field(default=None, max_length=TITLE)
    quantity: int = Field(ge=1, le=1_000_000)
    priceCents: int | None = Field(default=None, ge=0, le=2**53)


class OrderIn(BaseModel):
    """Sequenzy's order body (``orderId`` is the idempotency key), plus ``source``."""

    model_config = ConfigDict(extra="ignore")

    orderId: str = Field(min_length=1, max_length=255)
    totalCents: int = Field(ge=0, le=2**53)
    currency: str = Field(min_length=3, max_length=3)
    customer: OrderCustomerIn
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_ORDER_ITEMS)
    status: Literal["placed", "cancelled", "fulfilled", "refunded"] = "placed"
    orderedAt: datetime | None = None
    test: bool = False
    #: the inventory source whose variant ids the items use (default: the catalog source,
    #: else the only configured one)
    source: str | None = Field(default=None, max_length=100)


def conversion_json(conversion: Conversion) -> dict[str, Any]:
    return {
        "subscription_id": conversion.subscription_id,
        "source": conversion.source,
        "order_id": conversion.order_id,
        "variant_id": conversion.variant_id,
        "quantity": conversion.quantity,
        "revenue": money(conversion.revenue),
        "currency": conversion.currency,
        "ordered_at": conversion.ordered_at.isoformat(),
        "notified_at": conversion.notified_at.isoformat(),
    }


def money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


@commerce.post("/orders")
@commerce.post("/api/v1/orders")
def post_order(body: OrderIn, app: AppDep) -> JSONResponse:
    """Record an order for revenue attribution. The same `orderId` again changes nothing
    (`"duplicate": true`); `cancelled` / `refunded` takes back the order's conversions."""
    customer = body.customer
    if not (customer.email or customer.phone or customer.externalId):
        raise ValidationError(
            "customer needs an email, a phone or an externalId", field="customer.email"
        )
    if body.source is not None:
        source = app.adapter_instance(body.source).id
    else:
        catalog = catalog_instance(app)
        source = catalog.id if catalog is not None else app.adapter_instance(None).id
    currency = body.currency.upper()
    priced = any(item.priceCents is not None for item in body.items)
    lines = tuple(
        OrderLine(
            item.variantId or item.productId,
            item.quantity,
            cents(item.priceCents * item.quantity)
            if item.priceCents is not None
            else (cents(body.totalCents) if not priced and len(body.items) == 1 else Decimal(0)),
        )
        for item in body.items
    )
    placed_at = body.orderedAt or utcnow()
    if placed_at.tzinfo is None:
        placed_at = placed_at.replace(tzinfo=UTC)
    cancelled = body.status in ("cancelled", "refunded")
    order = Order(
        source=source,
        order_id=body.orderId,
        placed_at=placed_at,
        currency=currency,
        lines=lines,
        email=customer.email,
        phone=customer.phone,
        customer_id=customer.externalId,
        total=cents(body.totalCents),
        cancelled=cancelled,
        test=body.test,
    )
    duplicate = app.store.orders.is_stored(source, body.orderId)
    made = app.record_orders([order])
    removed = app.cancel_order(source, body.orderId) if cancelled and duplicate else []
    return JSONResponse(
        {
            "success": True,
            "orderId": body.orderId,
            "status": body.status,
            "duplicate": duplicate,
            "conversions": [conversion_json(c) for c in made],
            "conversionsRemoved": len(removed),
        }
    )


# ---------------------------------------------------------------------- reports


def _parse_time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field} must be an ISO 8601 date or time, got {value[:40]!r}", field=field
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def rate(converted: int, notified: int) -> float:
    return round(converted / notified, 6) if notified else 0.0


@reports.get("/reports/conversions")
def conversions_report(
    app: AppDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    variant_id: Annotated[str | None, Query(max_length=ID)] = None,
) -> dict[str, Any]:
    """Subscriptions notified in [from, to): how many, how many converted (the rate), revenue
    per currency, and the same per variant (the 1,000 most notified)."""
    begin = _parse_time(start, "from")
    finish = _parse_time(end, "to")
    report = app.store.orders.report(start=begin, end=finish, variant_id=variant_id)
    return {
        "from": begin.isoformat() if begin else None,
        "to": finish.isoformat() if finish else None,
        "variant_id": variant_id,
        "attribution_window_days": app.settings.attribution_window,
        "notified": report["notified"],
        "converted": report["converted"],
        "conversion_rate": rate(report["converted"], report["notified"]),
        "totals": [{**t, "revenue": money(t["revenue"])} for t in report["totals"]],
        "variants": [
            {
                **v,
                "conversion_rate": rate(v["converted"], v["notified"]),
                "revenue": {cur: money(amount) for cur, amount in v["revenue"].items()},
            }
            for v in report["variants"]
        ],
    }


ROUTERS = (commerce, reports)
