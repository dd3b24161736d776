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
- Refunds: a credit memo (Magento's refund record, `GET /V1/creditmemos`, CreditmemoInterface:
  `order_id`, `created_at`) does not move the order's `created_at`, and the order's `state`
  says too little (a fully refunded order is meant to become `closed`, but a zero-total
  credit memo leaves it `complete`, magento/magento2#22762, and some payment modules leave
  it elsewhere). So each poll also searches the credit memos created since the same cursor,
  reads their orders (`entity_id in …`) and takes back the conversions of every order whose
  lines are all refunded (`qty_refunded` + `qty_canceled` >= `qty_ordered` on every counted
  row). The core takes back whole orders only, so a partial refund keeps the conversion
  (logged).
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
CREDITMEMOS = "/V1/creditmemos"
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


def _quantity(value: Any) -> float:
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def fully_refunded(item: Mapping[str, Any]) -> bool | None:
    """Whether every counted row (no `parent_item_id`, as :func:`parse_order` counts) of a
    `GET /V1/orders` item is refunded or cancelled in full; None when it has no such row."""
    rows = [
        row
        for row in item.get("items") or []
        if isinstance(row, Mapping)
        and not row.get("parent_item_id")
        and _quantity(row.get("qty_ordered")) > 0
    ]
    if not rows:
        return None
    return all(
        _quantity(row.get("qty_refunded")) + _quantity(row.get("qty_canceled"))
        >= _quantity(row.get("qty_ordered"))
        for row in rows
    )


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
        # an order read when already refunded in full counts nothing, as a cancelled one
        cancelled=item.get("state") == "canceled" or fully_refunded(item) is True,
    )


#: the plugin state key (host.plugin_state) of where the next cancellation and refund
#: searches start
CANCELLED_CURSOR = "orders.cancelled_since"


def poll_orders(adapter: Magento2Adapter, *, since: datetime | None = None) -> int:
    """Record every order created since `since` (default: the newest recorded order of this
    source minus a small overlap, else `orders_lookback` seconds ago), then take back the
    conversions of orders cancelled or wholly refunded since the stored cursor (else
    `orders_lookback` seconds ago); the cursor moves to where this poll started minus
    `OVERLAP` and is kept as plugin state, so a restart resumes there. Returns the
    conversions made."""
    started = utcnow()
    made = record_new_orders(adapter, since=since)
    stored = stored_time(adapter.host, adapter.id, CANCELLED_CURSOR)
    cancelled_since = stored or started - timedelta(seconds=adapter.options.orders_lookback)
    removed = take_back_cancellations(adapter, cancelled_since)
    refunded = take_back_refunds(adapter, cancelled_since)
    store_time(adapter.host, adapter.id, CANCELLED_CURSOR, started - OVERLAP)
    if removed:
        log.info("%s: %s conversions taken back for cancelled orders", adapter.id, removed)
    if refunded:
        log.info("%s: %s conversions taken back for refunded orders", adapter.id, refunded)
    return made


def take_back_refunds(adapter: Magento2Adapter, since: datetime) -> int:
    """`GET /V1/creditmemos` with `created_at gteq since`: the orders refunded since; those
    read (`GET /V1/orders`, `entity_id in …`) whose lines are all refunded have their
    conversions taken back (an order never recorded, or already taken back, changes
    nothing). Returns the conversions removed."""
    refunded: dict[str, None] = {}  # order ids, in credit memo order, once each
    for memo in adapter.client.search(
        CREDITMEMOS,
        [[("created_at", since.astimezone(UTC).strftime(TIME_FORMAT), "gteq")]],
        page_size=adapter.options.page_size,
        sort=[("created_at", "ASC")],
        extra=[("fields", "items[entity_id,order_id,created_at],total_count")],
    ):
        order_id = memo.get("order_id")
        if order_id is not None:
            refunded[str(order_id)] = None
    removed = 0
    ids = list(refunded)
    size = adapter.options.page_size
    for start in range(0, len(ids), size):
        for item in adapter.client.search(
            ORDERS,
            [[("entity_id", ",".join(ids[start : start + size]), "in")]],
            page_size=size,
            extra=[
                (
                    "fields",
                    "items[entity_id,items[parent_item_id,qty_ordered,qty_refunded,"
                    "qty_canceled]],total_count",
                )
            ],
        ):
            entity_id = item.get("entity_id")
            whole = fully_refunded(item)
            if entity_id is None or whole is None:
                continue
            if whole:
                removed += len(adapter.host.cancel_order(adapter.id, str(entity_id)))
            else:
                log.info(
                    "%s: order %s is partly refunded; its conversions stay (restock takes "
                    "back whole orders only)",
                    adapter.id,
                    entity_id,
                )
    return removed


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
