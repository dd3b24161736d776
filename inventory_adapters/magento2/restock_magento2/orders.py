"""Orders for revenue attribution (docs/attribution.md), by polling: Magento Open Source sends
no webhooks, so `GET /V1/orders` is searched on `created_at` from where the last poll got to
(reference/orders.md §3; developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/).

- Pages are counted from `total_count`: past the end Magento answers the last page again
  (magento/magento2#3787), which the client already handles.
- `created_at` carries no zone ("2017-08-21 22:22:19"); Magento keeps it in UTC.
- A configurable product is two rows: the `configurable` parent with the price and the
  child's SKU, and the `simple` child with `parent_item_id` and price 0; bundle children carry
  their own prices under a priced parent. Only rows without `parent_item_id` are counted, so
  nothing is counted twice, and the SKU (restock's Magento variant id) is the parent row's.
- `state = canceled` counts nothing. A cancellation after the order was first read moves
  the order's `updated_at`, so each poll also searches `state eq canceled` AND `updated_at
  gteq <cursor>` (two filter groups = AND, same page) and takes those orders' conversions
  back.
- Cursors, both in the database so a restart resumes where the last poll got to: the
  created_at search starts at the newest recorded order of this source minus `OVERLAP` (the
  orders table is the cursor: Magento sends no webhooks, so only this poll records orders,
  and the time is Magento's own), else `orders_lookback` seconds back. The cancellation
  search starts where the previous poll started minus `OVERLAP`, kept as plugin state
  (`host.set_plugin_state`), so a cancellation during a long downtime is still found;
  without one, `orders_lookback` seconds back.
- `orders_poll_interval` makes the poll a periodic task (`adapter.periodic_tasks()`), run by
  the worker only (restock_core/periodic.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from restock_core import Order, OrderLine, store_time, stored_time, utcnow

if TYPE_CHECKING:
    from .adapter import Magento2Adapter

log = logging.getLogger("restock.magento2")

ORDERS = "/V1/orders"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: re-read this much before the newest stored order (orders committed out of order)
OVERLAP = timedelta(minutes=10)
RECORD_BATCH = 500


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.strptime(value.strip()[:19], TIME_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def parse_order(item: Mapping[str, Any], source: str) -> Order | None:
    """A Magento sales order (`GET /V1/orders` item) as a restock Order; None when it has
    no id or no creation time."""
    entity_id = item.get("entity_id")
    placed_at = parse_time(item.get("created_at"))
    if entity_id is None or placed_at is None:
        return None
    lines = []
    for row in item.get("items") or []:
        if not isinstance(row, Mapping) or row.get("parent_item_id"):
            continue
        sku = row.get("sku")
        quantity = row.get("qty_ordered")
        try:
            units = int(float(quantity)) if quantity is not None else 0
        except (TypeError, ValueError):
            units = 0
        if not isinstance(sku, str) or not sku or units <= 0:
            continue
        revenue = row.get("row_total")
        amount = _decimal(revenue) if revenue is not None else _decimal(row.get("price")) * units
        lines.append(OrderLine(sku, units, amount))
    customer = item.get("customer_id")
    email = item.get("customer_email")
    currency = item.get("order_currency_code") or item.get("base_currency_code") or "USD"
    return Order(
        source=source,
        order_id=str(entity_id),
        placed_at=placed_at,
        currency=str(currency).upper()[:3],
        lines=tuple(lines),
        email=email if isinstance(email, str) and email else None,
        customer_id=str(customer) if customer not in (None, "", 0) else None,
        total=_decimal(item.get("grand_total")),
        cancelled=item.get("state") == "canceled",
    )


#: the plugin state key (host.plugin_state) of where the next cancellation search starts
CANCELLED_CURSOR = "orders.cancelled_since"


def poll_orders(adapter: Magento2Adapter, *, since: datetime | None = None) -> int:
    """Record every order created since `since` (default: the newest recorded order of this
    source minus a small overlap, else `orders_lookback` seconds ago), then take back the
    conversions of orders cancelled since the stored cancellation cursor (else
    `orders_lookback` seconds ago); the cursor moves to where this poll started minus
    `OVERLAP` and is kept as plugin state, so a restart resumes there. Returns the
    conversions made."""
    started = utcnow()
    made = record_new_orders(adapter, since=since)
    stored = stored_time(adapter.host, adapter.id, CANCELLED_CURSOR)
    cancelled_since = stored or started - timedelta(seconds=adapter.options.orders_lookback)
    removed = take_back_cancellations(adapter, cancelled_since)
    store_time(adapter.host, adapter.id, CANCELLED_CURSOR, started - OVERLAP)
    if removed:
        log.info("%s: %s conversions taken back for cancelled orders", adapter.id, removed)
    return made


def take_back_cancellations(adapter: Magento2Adapter, since: datetime) -> int:
    """`GET /V1/orders` with `updated_at gteq since` AND `state eq canceled`: each order's
    conversions are taken back (an order never recorded, or already taken back, changes
    nothing). Returns the conversions removed."""
    removed = 0
    for item in adapter.client.search(
        ORDERS,
        [
            [("updated_at", since.astimezone(UTC).strftime(TIME_FORMAT), "gteq")],
            [("state", "canceled", "eq")],
        ],
        page_size=adapter.options.page_size,
        sort=[("updated_at", "ASC")],
        extra=[("fields", "items[entity_id,state,updated_at],total_count")],
    ):
        entity_id = item.get("entity_id")
        if entity_id is not None and item.get("state") == "canceled":
            removed += len(adapter.host.cancel_order(adapter.id, str(entity_id)))
    return removed


def record_new_orders(adapter: Magento2Adapter, *, since: datetime | None = None) -> int:
    """Record every order created since `since` (see :func:`poll_orders`)."""
    host = adapter.host
    if since is None:
        latest = host.latest_order_at(adapter.id)
        since = (
            latest - OVERLAP
            if latest is not None
            else utcnow() - timedelta(seconds=adapter.options.orders_lookback)
        )
    batch: list[Order] = []
    made = 0
    for item in adapter.client.search(
        ORDERS,
        [[("created_at", since.astimezone(UTC).strftime(TIME_FORMAT), "gteq")]],
        page_size=adapter.options.page_size,
        sort=[("created_at", "ASC")],
    ):
        order = parse_order(item, adapter.id)
        if order is not None:
            batch.append(order)
        if len(batch) >= RECORD_BATCH:
            made += len(host.record_orders(batch))
            batch = []
    if batch:
        made += len(host.record_orders(batch))
    return made
