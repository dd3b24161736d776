"""A fake Magento 2 REST API (MSI) for tests and benchmarks.

It speaks the wire format of reference/shopify-magento.md §4 and samples/magento-*.json:
`/rest/<store_code>/V1/...` and `/rest/V1/...`, `Authorization: Bearer <token>` (401 with
Magento's `{"message", "parameters"}` body otherwise), searchCriteria filter groups (filters
OR'ed inside a group, groups AND'ed; eq, neq, in, nin, like), sortOrders, pageSize and
currentPage (a page past the end answers the last page again, as Magento's collections do),
`total_count`, `are-products-salable` (skus[i] or skus=a,b), `get-product-salable-quantity`
(reservations and the out-of-stock threshold), the website stock resolver, stock-source links
and a product search. 404 for unknown routes.

Salable quantities follow Magento's MSI (Adobe, "Check salable quantities",
https://developer.adobe.com/commerce/webapi/rest/inventory/check-salable-quantity/, and
"Reservations", https://developer.adobe.com/commerce/php/development/components/inventory-management/reservations/;
source: magento/inventory InventorySales/Model/GetProductSalableQty.php):

- placing an order appends a *negative* reservation for (SKU, stock); shipping or cancelling
  appends the compensating positive one. Source-item quantities change only at shipment;
- `get-product-salable-quantity/{sku}/{stockId}` answers a bare number: 0 when the stock index
  says not salable, else the stock's quantity (in-stock source items summed) + reservations -
  the out-of-stock threshold (`min_qty`); 404 NoSuchEntity for an unknown SKU, 400 for a
  product type without source items (configurable, bundle, ...);
- `are-products-salable` reads the stock *index* (`is_salable`), which Magento refreshes from
  source items; reservations reach it only when the reservations consumer reindexes, so the
  fake, like a shop whose consumer has not run, ignores them there.

Run it alone (for bench/bench_reconcile_magento2.py)::

    python -m restock_magento2.fake --skus 5000 --available 0 --port 0
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import attrs

from restock_core import StockKey
from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply

TOKEN = "m2-integration-token-abc123"
_FILTER = re.compile(
    r"^searchCriteria\[filter_groups\]\[(\d+)\]\[filters\]\[(\d+)\]\[(field|value|condition_type)\]$"
)
_SORT = re.compile(r"^searchCriteria\[sortOrders\]\[(\d+)\]\[(field|direction)\]$")
_PATH = re.compile(r"^/rest(?:/(?P<store>[A-Za-z0-9_]+))?/V1(?P<route>/.*)$")
NO_ROUTE = {"message": "Request does not match any route.", "parameters": []}


@attrs.define
class FakeProduct:
    id: int
    sku: str
    name: str
    url_key: str
    image: str | None = None
    type_id: str = "simple"


def parse_search(query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """searchCriteria query parameters -> {"groups": [[(field, value, cond)]], "sort": [...],
    "page_size": int | None, "current_page": int}. ValueError for malformed input."""
    groups: dict[int, dict[int, dict[str, str]]] = {}
    sorts: dict[int, dict[str, str]] = {}
    for name, values in query.items():
        value = values[-1] if values else ""
        match = _FILTER.match(name)
        if match:
            g, f, part = int(match[1]), int(match[2]), match[3]
            groups.setdefault(g, {}).setdefault(f, {})[part] = value
            continue
        match = _SORT.match(name)
        if match:
            sorts.setdefault(int(match[1]), {})[match[2]] = value
    parsed_groups = []
    for g in sorted(groups):
        group = []
        for f in sorted(groups[g]):
            spec = groups[g][f]
            if "field" not in spec or "value" not in spec:
                raise ValueError(f"filter_groups[{g}][filters][{f}] needs field and value")
            group.append((spec["field"], spec["value"], spec.get("condition_type") or "eq"))
        parsed_groups.append(group)
    page_size = query.get("searchCriteria[pageSize]")
    current = query.get("searchCriteria[currentPage]")
    return {
        "groups": parsed_groups,
        "sort": [
            (sorts[s].get("field", ""), sorts[s].get("direction", "ASC")) for s in sorted(sorts)
        ],
        "page_size": int(page_size[-1]) if page_size else None,
        "current_page": int(current[-1]) if current else 1,
    }


def _predicate(field: str, value: str, condition: str) -> Any:
    """One filter as a test on an item; values compare case-insensitively, as MySQL's default
    collation does."""
    wanted = value.casefold()

    def actual(item: Mapping[str, Any]) -> str:
        return str(item.get(field, "")).casefold()

    if condition == "eq":
        return lambda item: actual(item) == wanted
    if condition == "neq":
        return lambda item: actual(item) != wanted
    if condition in ("in", "nin"):
        values = {v.strip() for v in wanted.split(",")}
        if condition == "in":
            return lambda item: actual(item) in values
        return lambda item: actual(item) not in values
    if condition in ("gt", "gteq", "lt", "lteq", "from", "to"):
        # Magento compares in SQL; its "Y-m-d H:i:s" times compare correctly as strings
        # (developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/)
        compare = {
            "gt": str.__gt__,
            "gteq": str.__ge__,
            "from": str.__ge__,
            "lt": str.__lt__,
            "lteq": str.__le__,
            "to": str.__le__,
        }[condition]
        return lambda item: compare(actual(item), wanted)
    if condition == "like":
        pattern = re.compile("^" + re.escape(wanted).replace("%", ".*") + "$")
        return lambda item: pattern.match(actual(item)) is not None
    raise ValueError(f'condition_type "{condition}" is not supported by the fake')


def search(items: list[dict[str, Any]], query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Magento's SearchResults for `items` under the request's searchCriteria."""
    criteria = parse_search(query)
    groups = [[_predicate(*f) for f in group] for group in criteria["groups"]]
    found = [item for item in items if all(any(p(item) for p in group) for group in groups)]
    for field, direction in reversed(criteria["sort"]):
        found.sort(key=lambda i: str(i.get(field, "")).casefold(), reverse=direction == "DESC")
    total = len(found)
    size = criteria["page_size"]
    if size:
        last = max(1, math.ceil(total / size))
        page = min(max(1, criteria["current_page"]), last)  # Magento clamps past the end
        found = found[(page - 1) * size : page * size]
    echo: dict[str, Any] = {
        "filter_groups": [
            {"filters": [{"field": f, "value": v, "condition_type": c} for f, v, c in group]}
            for group in criteria["groups"]
        ]
    }
    if size:
        echo["page_size"] = size
        echo["current_page"] = criteria["current_page"]
    return {"items": found, "search_criteria": echo, "total_count": total}


class FakeMagento:
    """Products, MSI source items, stocks and websites in memory, behind FakeHTTPServer."""

    def __init__(self, *, token: str = TOKEN):
        self.token = token
        self.products: dict[str, FakeProduct] = {}
        #: (lower sku, source code) -> {"sku", "source_code", "quantity", "status"}
        self.source_items: dict[tuple[str, str], dict[str, Any]] = {}
        self.stocks: dict[int, list[str]] = {1: ["default"], 2: ["central", "east"]}
        self.websites: dict[str, int] = {"base": 1, "na_site": 2}
        #: (lower sku, stock id) -> salable, overriding "quantity > 0 in the stock's sources"
        self.salable_override: dict[tuple[str, int], bool] = {}
        #: (lower sku, stock id) -> sum of reservations (negative: ordered, not yet shipped)
        self.reservations: dict[tuple[str, int], float] = {}
        #: lower sku -> out-of-stock threshold ("min_qty"; Magento's default is 0)
        self.min_qty: dict[str, float] = {}
        #: seconds each get-product-salable-quantity answer takes (a slow shop), and the most
        #: such requests seen in flight at once
        self.salable_delay = 0.0
        self.salable_in_flight = 0
        self.salable_max_in_flight = 0
        self.status: int | None = None  # answer every request with this status
        self.control_calls = 0
        self.scope_aliases: dict[str, int] = {}
        #: sales orders for GET /V1/orders, in creation order
        self.orders: list[dict[str, Any]] = []
        #: credit memos (refunds) for GET /V1/creditmemos, in creation order
        self.creditmemos: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self.server = FakeHTTPServer(self.handle)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeMagento:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeMagento:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control

    def add_product(
        self,
        sku: str,
        *,
        name: str | None = None,
        url_key: str | None = None,
        image: str | None = None,
    ) -> FakeProduct:
        with self._lock:
            product = self.products.get(sku.lower())
            if product is None:
                product = FakeProduct(
                    id=len(self.products) + 1,
                    sku=sku,
                    name=name or f"Product {sku}",
                    url_key=url_key or sku.lower().replace(" ", "-"),
                    image=image,
                )
                self.products[sku.lower()] = product
            return product

    def set_source_item(
        self, sku: str, source: str, quantity: float, status: int | None = None
    ) -> None:
        with self._lock:
            self.add_product(sku)
            self.source_items[(sku.lower(), source)] = {
                "sku": self.products[sku.lower()].sku,
                "source_code": source,
                "quantity": quantity,
                "status": (1 if quantity > 0 else 0) if status is None else status,
            }

    def place_order(self, sku: str, quantity: float, stock_id: int = 1) -> None:
        """An order placed and not yet shipped: a reservation of -quantity on the stock; the
        source items keep their quantity until the shipment deducts it."""
        with self._lock:
            key = (sku.lower(), stock_id)
            self.reservations[key] = self.reservations.get(key, 0.0) - quantity

    def ship_order(self, sku: str, quantity: float, source: str = "default", stock_id: int = 1):
        """The shipment: the source item loses the quantity and the compensating reservation
        (+quantity) brings the stock's reservations back."""
        with self._lock:
            item = self.source_items[(sku.lower(), source)]
            item["quantity"] = item["quantity"] - quantity
            if item["quantity"] <= 0:
                item["status"] = 0
            key = (sku.lower(), stock_id)
            self.reservations[key] = self.reservations.get(key, 0.0) + quantity

    def remove_source_items(self, sku: str) -> None:
        with self._lock:
            for key in [k for k in self.source_items if k[0] == sku.lower()]:
                del self.source_items[key]

    def stock_of_scope(self, scope: str) -> int:
        """Which stock `set_stock` writes for a scope: `scope_aliases` (a test's names for the
        adapter's configured scopes), "default" = 1, a stock id, or a website code."""
        if scope in self.scope_aliases:
            return self.scope_aliases[scope]
        if scope == "default":
            return 1
        if scope.isdigit():
            return int(scope)
        return self.websites[scope]

    def set_stock(self, key: StockKey, quantity: int | None) -> None:
        """Contract helper: `quantity` in the first source of the scope's stock, 0 in the
        others; None removes the SKU's source items (Magento then knows nothing of it)."""
        sources = self.stocks[self.stock_of_scope(key.scope)]
        if quantity is None:
            self.add_product(key.variant_id)
            self.remove_source_items(key.variant_id)
            return
        for index, source in enumerate(sources):
            self.set_source_item(key.variant_id, source, quantity if index == 0 else 0)

    def add_order(
        self,
        entity_id: int,
        *,
        sku: str,
        email: str,
        created_at: str,
        qty: int = 1,
        price: float = 22.0,
        customer_id: int | None = None,
        state: str = "new",
        currency: str = "USD",
    ) -> dict[str, Any]:
        """A sales order shaped like Magento's (AdobeDocs commerce-webapi
        rest/tutorials/orders/order-create-order.md; magento/magento2#22562): a configurable
        parent row carrying the price and the child's SKU, and its simple child row with
        `parent_item_id` and price 0. `created_at` is "Y-m-d H:i:s" without a zone."""
        parent_id = entity_id * 10
        total = price * qty
        order = {
            "entity_id": entity_id,
            "increment_id": f"{entity_id:09d}",
            "customer_email": email,
            "customer_id": customer_id,
            "customer_is_guest": 0 if customer_id else 1,
            "created_at": created_at,
            "updated_at": created_at,
            "order_currency_code": currency,
            "base_currency_code": currency,
            "grand_total": total,
            "base_grand_total": total,
            "total_refunded": 0,
            "state": state,
            "status": "canceled" if state == "canceled" else "pending",
            "store_id": 1,
            "items": [
                {
                    "item_id": parent_id,
                    "order_id": entity_id,
                    "product_id": 1562,
                    "product_type": "configurable",
                    "sku": sku,
                    "name": "Radiant Tee",
                    "qty_ordered": qty,
                    "qty_refunded": 0,
                    "qty_canceled": 0,
                    "price": price,
                    "base_price": price,
                    "row_total": total,
                    "amount_refunded": 0,
                },
                {
                    "item_id": parent_id + 1,
                    "order_id": entity_id,
                    "parent_item_id": parent_id,
                    "product_id": 1553,
                    "product_type": "simple",
                    "sku": sku,
                    "name": f"Radiant Tee-{sku}",
                    "qty_ordered": qty,
                    "qty_refunded": 0,
                    "qty_canceled": 0,
                    "price": 0,
                    "base_price": 0,
                    "row_total": 0,
                    "amount_refunded": 0,
                    "parent_item": {"item_id": parent_id, "sku": sku, "price": price},
                },
            ],
        }
        with self._lock:
            self.orders.append(order)
        return order

    def cancel_order(self, entity_id: int, updated_at: str) -> None:
        """Cancel an order as the admin (or `POST /V1/orders/{id}/cancel`) does: `state` and
        `status` become "canceled" and `updated_at` moves ("Y-m-d H:i:s", UTC), which is what
        a search on `updated_at` finds (AdobeDocs commerce-webapi
        rest/tutorials/orders/order-create-order.md lists both fields on the order)."""
        with self._lock:
            for order in self.orders:
                if order["entity_id"] == entity_id:
                    order.update(state="canceled", status="canceled", updated_at=updated_at)
                    return
        raise KeyError(entity_id)

    def refund_order(self, entity_id: int, qty: float, created_at: str) -> dict[str, Any]:
        """Refund `qty` units of the order's line as a credit memo does (`POST
        /V1/order/{id}/refund`, or the admin's Credit Memo): a credit memo shaped like
        Magento's CreditmemoInterface, one item per order item (CreditmemoItemInterface:
        `order_item_id`, `sku`, `qty`, `price`, `row_total`; the configurable parent carries the
        price, its simple child 0), and on the order each item's `qty_refunded` and
        `amount_refunded`, `total_refunded`, and, once every unit is refunded, `state` and
        `status` "closed"; `updated_at` moves. Times are "Y-m-d H:i:s" (UTC).

        Sources: the routes in magento/magento2 app/code/Magento/Sales/etc/webapi.xml
        (`GET /V1/creditmemos` takes searchCriteria like `/V1/orders`), the fields in
        app/code/Magento/Sales/Api/Data/CreditmemoInterface.php and
        CreditmemoItemInterface.php (https://github.com/magento/magento2); a zero-total memo
        leaves the order `complete` (magento/magento2#22762), so state is not the signal."""
        with self._lock:
            order = next((o for o in self.orders if o["entity_id"] == entity_id), None)
            if order is None:
                raise KeyError(entity_id)
            memo_id = len(self.creditmemos) + 1
            lines: list[dict[str, Any]] = []
            refunded = 0.0
            for item in order["items"]:
                amount = item["price"] * qty
                item["qty_refunded"] += qty
                item["amount_refunded"] += amount
                refunded += amount
                lines.append(
                    {
                        "entity_id": memo_id * 100 + len(lines),
                        "parent_id": memo_id,
                        "order_item_id": item["item_id"],
                        "product_id": item["product_id"],
                        "sku": item["sku"],
                        "name": item["name"],
                        "qty": qty,
                        "price": item["price"],
                        "base_price": item["base_price"],
                        "row_total": amount,
                        "base_row_total": amount,
                    }
                )
            order["total_refunded"] += refunded
            order["updated_at"] = created_at
            if all(i["qty_refunded"] >= i["qty_ordered"] for i in order["items"]):
                order.update(state="closed", status="closed")
            memo = {
                "entity_id": memo_id,
                "increment_id": f"{memo_id:09d}",
                "order_id": entity_id,
                "invoice_id": None,
                "store_id": order["store_id"],
                "state": 2,  # refunded (1 open, 3 canceled)
                "created_at": created_at,
                "updated_at": created_at,
                "order_currency_code": order["order_currency_code"],
                "base_currency_code": order["base_currency_code"],
                "subtotal": refunded,
                "grand_total": refunded,
                "base_grand_total": refunded,
                "adjustment": 0,
                "items": lines,
            }
            self.creditmemos.append(memo)
        return memo

    def unauthorized(self) -> None:
        self.token = "revoked-" + self.token

    def requests_made(self) -> int:
        """Magento requests received so far (control calls of a separate-process fake excluded)."""
        return len(self.server.requests) - self.control_calls

    def received(self, route: str) -> list[RecordedRequest]:
        """Requests whose path ends with `route` (e.g. "/V1/inventory/source-items")."""
        return [r for r in self.server.requests if r.path.endswith(route)]

    def queue(self, reply: Reply, *, times: int = 1) -> None:
        self.server.queue(reply, times=times)

    # ------------------------------------------------------------------ salable

    def stock_quantity(self, sku: str, stock_id: int) -> float | None:
        """The stock index's quantity: in-stock source items summed over the stock's sources;
        None when the SKU has no source item in them."""
        items = [
            item
            for source in self.stocks.get(stock_id, [])
            if (item := self.source_items.get((sku.lower(), source))) is not None
        ]
        if not items:
            return None
        return sum(item["quantity"] for item in items if item["status"] == 1)

    def is_salable(self, sku: str, stock_id: int) -> bool:
        """The stock index's `is_salable` (no reservations: see the module docstring)."""
        override = self.salable_override.get((sku.lower(), stock_id))
        if override is not None:
            return override
        quantity = self.stock_quantity(sku, stock_id)
        return quantity is not None and quantity > self.min_qty.get(sku.lower(), 0.0)

    def salable_quantity(self, sku: str, stock_id: int) -> float:
        """GetProductSalableQty::execute: 0 unless the index says salable, else quantity +
        reservations - min_qty."""
        if not self.is_salable(sku, stock_id):
            return 0
        return (
            (self.stock_quantity(sku, stock_id) or 0.0)
            + self.reservations.get((sku.lower(), stock_id), 0.0)
            - self.min_qty.get(sku.lower(), 0.0)
        )

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/__fake/"):
            return self._control(request)
        if self.status is not None:
            return Reply(
                self.status,
                {"message": "Internal Error. Details are available in Magento log file."},
            )
        match = _PATH.match(request.path)
        if match is None:
            return Reply(404, NO_ROUTE)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(
                401,
                {
                    "message": "The consumer isn't authorized to access %resources.",
                    "parameters": {"resources": "Magento_InventoryApi::source"},
                },
            )
        route = match["route"]
        if request.method != "GET":
            return Reply(404, NO_ROUTE)
        try:
            with self._lock:
                reply = self._route(route, request)
        except (ValueError, KeyError) as exc:
            return Reply(400, {"message": str(exc), "parameters": []})
        if self.salable_delay and route.startswith("/inventory/get-product-salable-quantity/"):
            with self._lock:
                self.salable_in_flight += 1
                self.salable_max_in_flight = max(self.salable_max_in_flight, self.salable_in_flight)
            time.sleep(self.salable_delay)
            with self._lock:
                self.salable_in_flight -= 1
        return reply

    def _route(self, route: str, request: RecordedRequest) -> Reply:
        query = request.query
        if route == "/inventory/source-items":
            return Reply(200, search(self._candidates(query), query))
        if route == "/inventory/are-products-salable":
            stock = query.get("stockId")
            if not stock or not stock[-1].isdigit():
                return Reply(
                    400,
                    {
                        "message": '"%fieldName" is required. Enter and try again.',
                        "parameters": {"fieldName": "stockId"},
                    },
                )
            stock_id = int(stock[-1])
            skus = [
                v for name in sorted(k for k in query if k.startswith("skus")) for v in query[name]
            ]
            if len(skus) == 1 and "," in skus[0]:
                skus = skus[0].split(",")
            if not skus:
                return Reply(
                    400,
                    {
                        "message": '"%fieldName" is required. Enter and try again.',
                        "parameters": {"fieldName": "skus"},
                    },
                )
            return Reply(
                200,
                [
                    {"sku": s, "stock_id": stock_id, "salable": self.is_salable(s, stock_id)}
                    for s in skus
                ],
            )
        if route == "/orders":
            return Reply(200, search(list(self.orders), query))
        if route == "/creditmemos":
            return Reply(200, search(list(self.creditmemos), query))
        if route.startswith("/inventory/get-product-salable-quantity/"):
            parts = route.split("/")
            if len(parts) != 5 or not parts[4].isdigit():
                return Reply(404, NO_ROUTE)
            sku = unquote(parts[3])
            product = self.products.get(sku.lower())
            if product is None:
                return Reply(
                    404,
                    {
                        "message": "The product that was requested doesn't exist. Verify the "
                        "product and try again.",
                        "parameters": [],
                    },
                )
            if product.type_id not in ("simple", "virtual", "downloadable"):
                return Reply(
                    400,
                    {
                        "message": "Can't check requested quantity for products without Source "
                        "Items support.",
                        "parameters": [],
                    },
                )
            quantity = self.salable_quantity(sku, int(parts[4]))
            # a PHP float: 75.0 is sent as 75 (the docs' example), 0.5 as 0.5
            return Reply(200, int(quantity) if quantity == int(quantity) else quantity)
        if route == "/products":
            items = [
                {
                    "id": p.id,
                    "entity_id": p.id,
                    "sku": p.sku,
                    "name": p.name,
                    "custom_attributes": [
                        {"attribute_code": "url_key", "value": p.url_key},
                        *([{"attribute_code": "image", "value": p.image}] if p.image else []),
                    ],
                }
                for p in self.products.values()
            ]
            body = search(items, query)
            for item in body["items"]:
                item.pop("entity_id", None)
            return Reply(200, body)
        if route.startswith("/inventory/stock-resolver/website/"):
            code = route.rsplit("/", 1)[-1]
            if code not in self.websites:
                return Reply(
                    404,
                    {
                        "message": 'No linked stock found for type "%1" and code "%2".',
                        "parameters": ["website", code],
                    },
                )
            stock_id = self.websites[code]
            return Reply(
                200,
                {
                    "stock_id": stock_id,
                    "name": f"Stock {stock_id}",
                    "extension_attributes": {"sales_channels": [{"type": "website", "code": code}]},
                },
            )
        if route == "/inventory/stock-source-links":
            links = [
                {"stock_id": stock_id, "source_code": source, "priority": priority}
                for stock_id, sources in self.stocks.items()
                for priority, source in enumerate(sources, start=1)
            ]
            return Reply(200, search(links, query))
        return Reply(404, NO_ROUTE)

    def _candidates(self, query: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
        """Source items that can match: only the named SKUs' when a group filters on `sku`
        alone (so a benchmark's fake does not scan every item per request)."""
        for group in parse_search(query)["groups"]:
            if all(field == "sku" and cond in ("eq", "in") for field, _, cond in group):
                skus = {
                    s.strip().lower()
                    for _, value, cond in group
                    for s in (value.split(",") if cond == "in" else [value])
                }
                sources = {source for _, source in self.source_items}
                return [
                    dict(item)
                    for sku in skus
                    for source in sources
                    if (item := self.source_items.get((sku, source))) is not None
                ]
        return [dict(item) for item in self.source_items.values()]

    def _control(self, request: RecordedRequest) -> Reply:
        """Out-of-band control for a fake running in another process (benchmarks)."""
        with self._lock:
            self.control_calls += 1  # control calls are not Magento requests
            if request.path == "/__fake/stats":
                return Reply(200, {"requests": self.requests_made()})
            if request.path == "/__fake/stock" and request.method == "POST":
                data = json.loads(request.body or b"{}")
                for sku in data.get("skus") or [p.sku for p in self.products.values()]:
                    for scope in data.get("scopes", ["default"]):
                        self.set_stock(StockKey(sku, scope), data.get("quantity"))
                return Reply(200, {"ok": True})
        return Reply(404, NO_ROUTE)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Magento 2 REST API on 127.0.0.1")
    parser.add_argument("--skus", type=int, default=1000)
    parser.add_argument("--available", type=int, default=0)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args(argv)
    fake = FakeMagento(token=args.token)
    for n in range(args.skus):
        sku = f"SKU-{n:06d}"
        for sources in fake.stocks.values():
            for index, source in enumerate(sources):
                fake.set_source_item(sku, source, args.available if index == 0 else 0)
    fake.start()
    print(fake.url, flush=True)
    try:
        sys.stdin.read()  # run until the parent closes our stdin
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
