"""Order reconciliation through the GraphQL Admin API: catches orders whose `orders/create`
webhook never arrived and cancellations whose `orders/cancelled` webhook was lost.

Shopify's docs this follows:

- the `orders` query (shopify.dev/docs/api/admin-graphql/latest/queries/orders): the search
  syntax `query: "updated_at:>='2024-05-01T00:00:00Z'"`, `sortKey: UPDATED_AT`, cursor
  pagination with `first`/`after` and `pageInfo { hasNextPage endCursor }`
  (shopify.dev/docs/api/usage/pagination-graphql; at most 250 per page). Without the
  `read_all_orders` scope only the last 60 days are visible;
- the `Order` object (shopify.dev/docs/api/admin-graphql/latest/objects/Order): `id`,
  `legacyResourceId` (the REST / webhook id, so an order seen through both counts once),
  `createdAt`, `updatedAt`, `cancelledAt`, `test`, `email`, `phone`, `customer { id }`,
  `currencyCode` (the shop currency), `totalPriceSet`;
- the `LineItem` object (shopify.dev/docs/api/admin-graphql/latest/objects/LineItem):
  `variant { id }`, `quantity`, `currentQuantity` ("excluding refunded and removed units")
  and `originalUnitPriceSet { shopMoney }`. Revenue is `originalUnitPriceSet.shopMoney ×
  currentQuantity`, exactly what the webhook path counts (`price_set.shop_money ×
  current_quantity`), so an order gives the same number whichever way it arrives
  (`discountedTotalSet` would include refunded and removed units);
- cost-based rate limits (shopify.dev/docs/api/usage/rate-limits): a query's requested cost
  is 2 per connection plus `first` × the cost of one node (1 per object); one query may not
  exceed 1000. The page size is computed from `max_query_cost` like the `nodes` batches,
  halved when Shopify still answers MAX_COST_EXCEEDED, and THROTTLED answers are waited out
  by the client (`extensions.cost.throttleStatus`).

Every order updated since the cursor is recorded (`record_orders`: an order already stored
counts nothing), and each one with `cancelledAt` has its conversions taken back
(`cancel_order`, idempotent). The cursor is where the previous pass started minus
`OVERLAP`, kept as plugin state (`host.set_plugin_state`, in the database): a restart
resumes there, so a cancellation during a downtime longer than `orders_lookback` is still
read. Without a stored cursor (the first pass ever) the read starts at the newest recorded
order of this shop (minus `OVERLAP`) or `orders_lookback` seconds back, whichever is
earlier. With `orders_poll_interval` the pass is a periodic task the worker runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from restock_core import (
    AdapterError,
    Order,
    OrderLine,
    parse_iso_utc,
    store_time,
    stored_time,
    utcnow,
)

from .client import QueryTooCostly
from .options import numeric_id, to_gid

if TYPE_CHECKING:
    from .adapter import ShopifyAdapter

log = logging.getLogger("restock.shopify")

#: re-read this much before the previous pass (search index lag, clocks)
OVERLAP = timedelta(minutes=10)
#: the plugin state key of the cursor
CURSOR = "orders.updated_since"
MAX_PAGE = 250

ORDERS_QUERY = """query RestockOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    nodes {
      id
      legacyResourceId
      createdAt
      updatedAt
      cancelledAt
      test
      email
      phone
      currencyCode
      customer { id }
      totalPriceSet { shopMoney { amount currencyCode } }
      lineItems(first: %(lines)d) {
        nodes {
          quantity
          currentQuantity
          variant { id }
          originalUnitPriceSet { shopMoney { amount currencyCode } }
        }
        pageInfo { hasNextPage }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}"""


def order_cost(lines: int) -> int:
    """Requested cost of one order node: the order, customer, totalPriceSet + shopMoney
    (4 objects), the lineItems connection (2) and per line item: the item, variant,
    originalUnitPriceSet and shopMoney (4)."""
    return 4 + 2 + 4 * lines


def page_size(max_query_cost: int, lines: int) -> int:
    return max(1, min(MAX_PAGE, (max_query_cost - 2) // order_cost(lines)))


def _amount(money_bag: Any) -> Decimal | None:
    shop = money_bag.get("shopMoney") if isinstance(money_bag, Mapping) else None
    value = shop.get("amount") if isinstance(shop, Mapping) else None
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def parse_graphql_order(node: Mapping[str, Any], source: str) -> Order | None:
    """A GraphQL Admin `Order` node as a restock Order (None without an id or createdAt).
    The order id is the numeric `legacyResourceId`, the id webhooks carry."""
    gid = node.get("id")
    legacy = node.get("legacyResourceId")
    order_id = str(legacy) if legacy else numeric_id(gid) if isinstance(gid, str) else None
    placed_at = parse_iso_utc(node.get("createdAt"))
    currency = node.get("currencyCode")
    if not order_id or not order_id.isdigit() or placed_at is None:
        return None
    lines = []
    connection = node.get("lineItems")
    items = connection.get("nodes") if isinstance(connection, Mapping) else None
    for item in items or ():
        if not isinstance(item, Mapping):
            continue
        variant = item.get("variant")
        variant_id = (
            to_gid("ProductVariant", variant.get("id")) if isinstance(variant, Mapping) else None
        )
        quantity = item.get("currentQuantity", item.get("quantity"))
        if variant_id is None or not isinstance(quantity, int) or quantity <= 0:
            continue
        price = _amount(item.get("originalUnitPriceSet")) or Decimal(0)
        lines.append(OrderLine(variant_id, quantity, price * quantity))
    customer = node.get("customer")
    customer_gid = customer.get("id") if isinstance(customer, Mapping) else None
    return Order(
        source=source,
        order_id=order_id,
        placed_at=placed_at,
        currency=currency.upper() if isinstance(currency, str) and len(currency) == 3 else "XXX",
        lines=tuple(lines),
        email=_text(node.get("email")),
        phone=_text(node.get("phone")),
        customer_id=to_gid("Customer", customer_gid) if customer_gid else None,
        total=_amount(node.get("totalPriceSet")),
        cancelled=bool(node.get("cancelledAt")),
        test=bool(node.get("test")),
    )


def search_time(when: datetime) -> str:
    return when.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class OrderSync:
    """The reconciliation read of one adapter; its cursor is plugin state."""

    def __init__(self, adapter: ShopifyAdapter) -> None:
        self.adapter = adapter
        self._lock = threading.Lock()

    @property
    def since(self) -> datetime | None:
        """The stored cursor: where the next pass starts (None before the first pass)."""
        return stored_time(self.adapter.host, self.adapter.id, CURSOR)

    def first_since(self) -> datetime:
        adapter = self.adapter
        lookback = utcnow() - timedelta(seconds=adapter.options.orders_lookback)
        latest = adapter.host.latest_order_at(adapter.id)
        return min(lookback, latest - OVERLAP) if latest is not None else lookback

    def run(self, since: datetime | None = None) -> int:
        """One pass over the orders updated since `since` (default: the cursor). Returns the
        conversions made (cancellations taken back are logged)."""
        with self._lock:  # one pass at a time per adapter
            started = utcnow()
            start = since or self.since or self.first_since()
            made = self._read(start)
            adapter = self.adapter
            store_time(adapter.host, adapter.id, CURSOR, started - OVERLAP)
            if made:
                log.info("%s: %s conversions from the order reconciliation", adapter.id, made)
            return made

    def _read(self, since: datetime) -> int:
        adapter = self.adapter
        options = adapter.options
        lines = options.orders_max_lines
        query = ORDERS_QUERY % {"lines": lines}
        size = page_size(options.max_query_cost, lines)
        search = f"updated_at:>='{search_time(since)}'"
        after: str | None = None
        made = removed = 0
        while True:
            variables = {"first": size, "after": after, "query": search}
            try:
                data = adapter.client.execute(query, variables)
            except QueryTooCostly as exc:
                if size == 1:
                    raise AdapterError(
                        f"shopify: orders query too costly even for one order: {exc}"
                    ) from None
                size = max(1, size // 2)
                log.info("shopify: orders query too costly; %s orders per page now", size)
                continue
            connection = data.get("orders")
            if not isinstance(connection, Mapping) or not isinstance(connection.get("nodes"), list):
                raise AdapterError("shopify: GraphQL answer has no orders connection")
            batch = []
            for node in connection["nodes"]:
                if not isinstance(node, Mapping):
                    continue
                order = parse_graphql_order(node, adapter.id)
                if order is None:
                    continue
                more = node.get("lineItems", {}).get("pageInfo", {}).get("hasNextPage")
                if more:
                    log.warning(
                        "shopify: order %s has more than %s line items; raise orders_max_lines "
                        "to count them all",
                        order.order_id,
                        lines,
                    )
                batch.append(order)
            made += len(adapter.host.record_orders(batch))
            for order in batch:
                if order.cancelled:
                    removed += len(adapter.host.cancel_order(adapter.id, order.order_id))
            info = connection.get("pageInfo")
            cursor = info.get("endCursor") if isinstance(info, Mapping) else None
            if not (isinstance(info, Mapping) and info.get("hasNextPage") and cursor):
                break
            after = str(cursor)
        if removed:
            log.info("%s: %s conversions taken back for cancelled orders", adapter.id, removed)
        return made
