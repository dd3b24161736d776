"""Orders for revenue attribution (docs/attribution.md), reference/orders.md §2:

- `order.placed` (payload `{ id }`, emitted by completeCartWorkflow and
  convertDraftOrderWorkflow) reaches restock through the forwarder subscriber
  (restock-forwarder.ts) at `POST /<id>/events`; the order itself is read with the Admin API
  `GET /admin/orders/{id}?fields=…` (the event is only a hint), `order.canceled` takes the
  order's conversions back;
- a catch-up read, `GET /admin/orders?created_at[$gte]=…&order=created_at`, paged by
  `count`, catches orders whose event never arrived (`adapter.poll_orders()`; every
  `orders_poll_interval` seconds as a periodic task the worker runs). It resumes where the
  previous read started (minus 10 minutes), a cursor kept as plugin state
  (`host.set_plugin_state`, in the database), so a restart does not re-read everything;
  without one it starts at the newest order recorded for this source (minus 10 minutes) or
  `orders_lookback` seconds back. An order read twice counts once (the store keys orders
  by source and id).

Medusa v2 amounts are in major units; an item's `total` is requested explicitly (totals are
only computed when asked for). Draft orders (`is_draft_order`) and canceled ones count nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from restock_core import Order, OrderLine, parse_iso_utc, store_time, stored_time, utcnow

if TYPE_CHECKING:
    from .adapter import MedusaAdapter

log = logging.getLogger("restock.medusa")

ORDER_PLACED = "order.placed"
ORDER_CANCELED = "order.canceled"
ORDER_EVENTS = (ORDER_PLACED, ORDER_CANCELED)
FIELDS = ",".join(
    [
        "id",
        "display_id",
        "status",
        "email",
        "customer_id",
        "currency_code",
        "sales_channel_id",
        "created_at",
        "canceled_at",
        "is_draft_order",
        "total",
        "items.id",
        "items.variant_id",
        "items.product_id",
        "items.quantity",
        "items.unit_price",
        "items.total",
    ]
)
PAGE = 100


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Mapping):  # BigNumber as JSON: {"value": "20", "precision": 20}
        value = value.get("value")
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def parse_order(order: Mapping[str, Any], source: str) -> Order | None:
    """An Admin API order as a restock Order; None without an id or a creation time."""
    order_id = order.get("id")
    placed_at = parse_iso_utc(order.get("created_at"))
    if not isinstance(order_id, str) or not order_id or placed_at is None:
        return None
    lines = []
    for item in order.get("items") or []:
        if not isinstance(item, Mapping):
            continue
        variant = item.get("variant_id")
        quantity = item.get("quantity")
        if not isinstance(variant, str) or not variant:
            continue
        if not isinstance(quantity, int | float) or isinstance(quantity, bool) or quantity <= 0:
            continue
        total = _decimal(item.get("total"))
        if total is None:
            total = (_decimal(item.get("unit_price")) or Decimal(0)) * int(quantity)
        lines.append(OrderLine(variant, int(quantity), total))
    email = order.get("email")
    customer = order.get("customer_id")
    return Order(
        source=source,
        order_id=order_id,
        placed_at=placed_at,
        currency=str(order.get("currency_code") or "").upper()[:3] or "XXX",
        lines=tuple(lines),
        email=email if isinstance(email, str) and email else None,
        customer_id=customer if isinstance(customer, str) and customer else None,
        total=_decimal(order.get("total")),
        cancelled=order.get("status") == "canceled" or bool(order.get("canceled_at")),
        test=bool(order.get("is_draft_order")),  # drafts are not sales
    )


def fetch_order(adapter: MedusaAdapter, order_id: str) -> Mapping[str, Any] | None:
    body = adapter.client.get(
        f"/admin/orders/{order_id}",
        {"fields": FIELDS},
        headers=adapter.client.admin_headers(),
    )
    order = body.get("order") if isinstance(body, Mapping) else None
    return order if isinstance(order, Mapping) else None


def handle_order_event(
    adapter: MedusaAdapter, name: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """`order.placed` / `order.canceled` from the forwarder: read the order, record it."""
    payload = data.get("data")
    order_id = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(order_id, str) or not order_id:
        return {"status": "ignored", "reason": "the event names no order id"}
    if name == ORDER_CANCELED:
        removed = adapter.host.cancel_order(adapter.id, order_id)
        return {"status": "cancelled", "conversions_removed": len(removed)}
    found = fetch_order(adapter, order_id)
    order = parse_order(found, adapter.id) if found is not None else None
    if order is None:
        return {"status": "ignored", "reason": f"order {order_id} could not be read"}
    made = adapter.host.record_orders([order])
    return {"status": "recorded", "order_id": order_id, "conversions": len(made)}


def poll_orders(adapter: MedusaAdapter, since: datetime) -> int:
    """Record every order created since `since` (Admin API, paged by `count`); returns the
    conversions made."""
    offset = 0
    made = 0
    started = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    while True:
        body = adapter.client.get(
            "/admin/orders",
            {
                "created_at[$gte]": started,
                "order": "created_at",
                "limit": str(PAGE),
                "offset": str(offset),
                "fields": FIELDS,
            },
            headers=adapter.client.admin_headers(),
        )
        orders = body.get("orders") if isinstance(body, Mapping) else None
        if not isinstance(orders, list) or not orders:
            break
        parsed = [parse_order(o, adapter.id) for o in orders if isinstance(o, Mapping)]
        made += len(adapter.host.record_orders([o for o in parsed if o is not None]))
        offset += len(orders)
        count = body.get("count")
        if not isinstance(count, int) or offset >= count:
            break
    return made


#: the plugin state key of the catch-up read's cursor
CURSOR = "orders.since"
OVERLAP = timedelta(minutes=10)


def default_since(adapter: MedusaAdapter, lookback: float) -> datetime:
    """The stored cursor, else the newest recorded order minus `OVERLAP`, else `lookback`
    seconds ago."""
    stored = stored_time(adapter.host, adapter.id, CURSOR)
    if stored is not None:
        return stored
    latest = adapter.host.latest_order_at(adapter.id)
    return latest - OVERLAP if latest else utcnow() - timedelta(seconds=lookback)


def catch_up(adapter: MedusaAdapter, since: datetime | None, lookback: float) -> int:
    """One catch-up read from `since` (default: :func:`default_since`); on success the
    cursor moves to where it started minus `OVERLAP`."""
    started = utcnow()
    made = poll_orders(adapter, since or default_since(adapter, lookback))
    store_time(adapter.host, adapter.id, CURSOR, started - OVERLAP)
    if made:
        log.info("%s: %s conversions from the catch-up read", adapter.id, made)
    return made
