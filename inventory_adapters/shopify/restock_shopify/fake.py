"""A fake Shopify GraphQL Admin API for tests and benchmarks (not a GraphQL engine).

It answers the adapter's operations the way Shopify does (reference/shopify-magento.md
§2): `nodes(ids: …)` with `null` for unknown ids, an error for an id that is not a global id,
an error above 250 ids, `extensions.cost` on every answer; `inventoryItem(id:)`; and
`orders(first:, after:, sortKey: UPDATED_AT, query: "updated_at:>='…'")` (see
`_orders`). It checks the
access token, records every request and can throttle (the THROTTLED sample), refuse (401),
vanish (404), fail (500) or find a query too costly.

Run it alone (for bench/bench_reconcile_shopify.py)::

    python -m restock_shopify.fake --variants 10000 --available 0
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs

from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply

from .signatures import proxy_signature, webhook_signature

TOKEN = "shpat_fake_access_token_1234"
_GID = re.compile(r"^gid://shopify/(?P<kind>[A-Za-z]+)/(?P<id>\d+)$")

THROTTLED = {
    "errors": [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ],
    "extensions": {
        "cost": {
            "requestedQueryCost": 70,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": 1000,
                "currentlyAvailable": 66,
                "restoreRate": 50,
            },
        }
    },
}


@attrs.define
class FakeVariant:
    id: int
    item_id: int
    levels: dict[int, int]  # location id -> available
    tracked: bool = True
    title: str = "M"
    product_title: str = "Blue Shirt"
    handle: str = "blue-shirt"
    image_url: str | None = "https://cdn.shopify.com/s/files/blue-shirt.jpg"


class FakeShopify:
    def __init__(self, *, token: str = TOKEN, api_version: str = "2025-01"):
        self.token = token
        self.api_version = api_version
        self.variants: dict[int, FakeVariant] = {}
        self.items: dict[int, int] = {}
        self.status: int | None = None  # answer every GraphQL request with this status
        self.throttle_left = 0
        self.throttle_status = 200
        self.max_ids_per_query: int | None = None  # above: MAX_COST_EXCEEDED
        self.orders: dict[int, dict[str, Any]] = {}  # id -> REST Order (order_payload)
        self._lock = threading.Lock()
        self.server = FakeHTTPServer(self.handle)
        # answer without Nagle's delay (headers and body go out in two writes): keeps
        # benchmark figures about the adapter, not about delayed ACKs
        handler_class = getattr(getattr(self.server, "_server", None), "RequestHandlerClass", None)
        if handler_class is not None:
            handler_class.disable_nagle_algorithm = True

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> FakeShopify:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> FakeShopify:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_variant(
        self,
        variant_id: int,
        *,
        levels: dict[int, int] | None = None,
        available: int = 0,
        item_id: int | None = None,
        **fields: Any,
    ) -> FakeVariant:
        item_id = item_id if item_id is not None else variant_id + 1_000_000
        variant = FakeVariant(variant_id, item_id, dict(levels or {1: available}), **fields)
        with self._lock:
            self.variants[variant_id] = variant
            self.items[item_id] = variant_id
        return variant

    def set_available(self, variant_id: int, quantity: int, location: int = 1) -> None:
        with self._lock:
            self.variants[variant_id].levels[location] = quantity

    def add_order(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Store an order (an `order_payload` body): the webhook it would send, and what the
        GraphQL `orders` query answers for it."""
        with self._lock:
            self.orders[int(payload["id"])] = payload
        return payload

    def cancel_order(self, order_id: int, when: datetime | None = None) -> None:
        """Cancel an order as the admin does: `cancelledAt` set, `updatedAt` moves."""
        stamp = (when or datetime.now(UTC)).isoformat()
        with self._lock:
            order = self.orders[order_id]
            order.update(cancelled_at=stamp, updated_at=stamp, cancel_reason="customer")

    def graphql_requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path.endswith("/graphql.json")]

    def requests_made(self) -> int:
        return len(self.graphql_requests())

    def throttle(self, times: int = 1, *, status: int = 200) -> None:
        self.throttle_left = times
        self.throttle_status = status

    # ------------------------------------------------------------------ answering

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/_fake/stats":
            return Reply(200, {"requests": self.requests_made()})
        if (
            request.path != f"/admin/api/{self.api_version}/graphql.json"
            or request.method != "POST"
        ):
            return Reply(404, {"errors": "Not Found"})
        if self.status == 401 or request.headers.get("x-shopify-access-token") != self.token:
            return Reply(
                401,
                {
                    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
                },
            )
        if self.status is not None:
            return Reply(self.status, {"errors": "Internal Server Error"})
        with self._lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                return Reply(self.throttle_status, THROTTLED)
        try:
            body = request.json
            query = body["query"]
            variables = body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return Reply(400, {"errors": "Bad Request"})
        with self._lock:
            return Reply(200, self._answer(query, variables))

    def _cost(self, cost: int) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": cost,
                "throttleStatus": {
                    "maximumAvailable": 2000.0,
                    "currentlyAvailable": 2000 - cost,
                    "restoreRate": 100.0,
                },
            }
        }

    def _answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if "nodes(ids: $ids)" in query:
            ids = variables.get("ids")
            if not isinstance(ids, list):
                return _error("Variable $ids of type [ID!]! was provided invalid value", "INVALID")
            if len(ids) > 250:
                return _error(
                    f"The input array size of {len(ids)} is greater than the maximum allowed of 250.",
                    "MAX_INPUT_SIZE_EXCEEDED",
                )
            if self.max_ids_per_query is not None and len(ids) > self.max_ids_per_query:
                return _error(
                    "Query cost is 1250, which exceeds the single query max cost limit (1000).",
                    "MAX_COST_EXCEEDED",
                )
            nodes = []
            for gid in ids:
                match = _GID.match(gid) if isinstance(gid, str) else None
                if match is None:
                    return _error(f"Invalid global id '{gid}'", "argumentLiteralsIncompatible")
                nodes.append(self._node(match["kind"], int(match["id"]), query))
            return {"data": {"nodes": nodes}, "extensions": self._cost(len(ids) * 3)}
        if "orders(" in query:
            return self._orders(query, variables)
        if "inventoryItem(id: $id)" in query:
            match = _GID.match(str(variables.get("id")))
            if match is None or match["kind"] != "InventoryItem":
                return _error(
                    f"Invalid global id '{variables.get('id')}'", "argumentLiteralsIncompatible"
                )
            variant_id = self.items.get(int(match["id"]))
            item = None
            if variant_id is not None:
                item = {
                    "id": match.group(0),
                    "variant": {"id": f"gid://shopify/ProductVariant/{variant_id}"},
                }
            return {"data": {"inventoryItem": item}, "extensions": self._cost(2)}
        return _error("Field is not supported by the fake", "undefinedField")

    def _orders(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """`orders(first:, after:, sortKey: UPDATED_AT, query:)` as the Admin API answers
        (shopify.dev/docs/api/admin-graphql/latest/queries/orders): the `updated_at:>=` search
        filter, opaque cursors and `pageInfo { hasNextPage endCursor }`
        (shopify.dev/docs/api/usage/pagination-graphql), `first` at most 250, and the
        requested cost (2 per connection + first × node cost, 1 per object;
        shopify.dev/docs/api/usage/rate-limits) refused above 1000 with MAX_COST_EXCEEDED.
        Order nodes carry the fields of the `Order` / `LineItem` objects the adapter asks
        for, built from the stored REST order."""
        first = variables.get("first")
        if not isinstance(first, int) or not 0 < first <= 250:
            return _error("first must be between 1 and 250", "BAD_REQUEST")
        found = re.search(r"lineItems\(first: (\d+)\)", query)
        lines = int(found.group(1)) if found else 0
        per_order = 4 + (2 + 4 * lines if found else 0)
        requested = 2 + first * per_order
        if requested > 1000:
            return _error(
                f"Query cost is {requested}, which exceeds the single query max cost limit (1000).",
                "MAX_COST_EXCEEDED",
            )
        search = str(variables.get("query") or "")
        since = re.search(r"updated_at:>=?'?([^' ]+)'?", search)
        floor = _parse_time(since.group(1)) if since else None
        if since and floor is None:
            return _error(f"Invalid search query: {search}", "INVALID")

        def key(order: dict[str, Any]) -> tuple[datetime, int]:
            return (
                _parse_time(order["updated_at"]) or datetime.min.replace(tzinfo=UTC),
                order["id"],
            )

        listed = sorted(
            (o for o in self.orders.values() if floor is None or key(o)[0] >= floor), key=key
        )
        after = variables.get("after")
        if after:
            try:
                stamp, number = base64.b64decode(after).decode().rsplit("|", 1)
                position = (datetime.fromisoformat(stamp), int(number))
            except (ValueError, UnicodeDecodeError):
                return _error(f"Invalid cursor for current pagination sort: {after}", "INVALID")
            listed = [o for o in listed if key(o) > position]
        page = listed[:first]
        nodes = [self._order_node(order, lines) for order in page]
        end = None
        if page:
            last_time, last_id = key(page[-1])
            end = base64.b64encode(f"{last_time.isoformat()}|{last_id}".encode()).decode()
        actual = 2 + sum(4 + 2 + 4 * len(n["lineItems"]["nodes"]) for n in nodes)
        cost = self._cost(requested)
        cost["cost"]["actualQueryCost"] = actual
        return {
            "data": {
                "orders": {
                    "nodes": nodes,
                    "pageInfo": {"hasNextPage": len(listed) > first, "endCursor": end},
                }
            },
            "extensions": cost,
        }

    @staticmethod
    def _order_node(order: dict[str, Any], lines: int) -> dict[str, Any]:
        currency = order["currency"]

        def money(amount: str) -> dict[str, Any]:
            return {
                "shopMoney": {"amount": amount, "currencyCode": currency},
                "presentmentMoney": {"amount": amount, "currencyCode": currency},
            }

        customer = order.get("customer")
        items = order.get("line_items") or []
        return {
            "id": f"gid://shopify/Order/{order['id']}",
            "legacyResourceId": str(order["id"]),
            "createdAt": order["created_at"],
            "updatedAt": order["updated_at"],
            "cancelledAt": order.get("cancelled_at"),
            "test": bool(order.get("test")),
            "email": order.get("email"),
            "phone": order.get("phone"),
            "currencyCode": currency,
            "customer": {"id": f"gid://shopify/Customer/{customer['id']}"} if customer else None,
            "totalPriceSet": money(order["total_price"]),
            "lineItems": {
                "nodes": [
                    {
                        "quantity": item["quantity"],
                        "currentQuantity": item.get("current_quantity", item["quantity"]),
                        "variant": (
                            {"id": f"gid://shopify/ProductVariant/{item['variant_id']}"}
                            if item.get("variant_id")
                            else None
                        ),
                        "originalUnitPriceSet": money(item["price"]),
                    }
                    for item in items[:lines]
                ],
                "pageInfo": {"hasNextPage": len(items) > lines},
            },
        }

    def _node(self, kind: str, number: int, query: str) -> dict[str, Any] | None:
        if kind == "InventoryItem" and number in self.items:
            return {"id": f"gid://shopify/InventoryItem/{number}"}
        variant = self.variants.get(number) if kind == "ProductVariant" else None
        if variant is None:
            return None
        node: dict[str, Any] = {"id": f"gid://shopify/ProductVariant/{number}"}
        if "inventoryQuantity" in query:
            node["inventoryQuantity"] = sum(variant.levels.values()) if variant.tracked else 0
        if "inventoryItem {" in query:
            item: dict[str, Any] = {
                "id": f"gid://shopify/InventoryItem/{variant.item_id}",
                "tracked": variant.tracked,
            }
            first = re.search(r"inventoryLevels\(first: (\d+)\)", query)
            if first:
                levels = list(variant.levels.items())[: int(first.group(1))]
                item["inventoryLevels"] = {
                    "edges": [
                        {
                            "node": {
                                "location": {"id": f"gid://shopify/Location/{location}"},
                                "quantities": [{"name": "available", "quantity": quantity}],
                            }
                        }
                        for location, quantity in levels
                    ]
                }
            node["inventoryItem"] = item
        if "product {" in query:
            node["title"] = variant.title
            node["image"] = {"url": variant.image_url} if variant.image_url else None
            node["product"] = {
                "title": variant.product_title,
                "handle": variant.handle,
                "featuredImage": None,
            }
        return node


class ScopedFake:
    """`InventoryAdapterContract`'s `adapter_fake`: maps a StockKey's scope onto locations.
    `scope_locations[scope]` = the scope's location numbers, or None for "every location"."""

    def __init__(self, fake: FakeShopify, scope_locations: dict[str, list[int] | None]):
        self.fake = fake
        self.scope_locations = scope_locations

    def set_stock(self, key: Any, quantity: int | None) -> None:
        number = int(str(key.variant_id).rsplit("/", 1)[-1])
        if number not in self.fake.variants:
            self.fake.add_variant(number)
        variant = self.fake.variants[number]
        variant.tracked = quantity is not None
        locations = self.scope_locations[key.scope]
        if locations is None:
            variant.levels = {1: quantity or 0}
        else:  # stock outside the scope (location 1) must not count
            variant.levels = {1: 50, **{location: 0 for location in locations}}
            variant.levels[locations[0]] = quantity or 0

    def unauthorized(self) -> None:
        self.fake.status = 401

    def requests_made(self) -> int:
        return self.fake.requests_made()


def webhook_headers(
    raw: bytes,
    secret: str | None,
    *,
    shop: str = "example.myshopify.com",
    webhook_id: str | None = None,
    event_id: str | None = None,
    topic: str = "inventory_levels/update",
) -> dict[str, str]:
    """The headers Shopify sends with a webhook (§1.2), signed with `secret` (None: unsigned)."""
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }
    if secret is not None:
        headers["X-Shopify-Hmac-Sha256"] = webhook_signature(raw, secret)
    if webhook_id:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    if event_id:
        headers["X-Shopify-Event-Id"] = event_id
    return headers


def proxy_query(
    secret: str,
    *,
    shop: str = "example.myshopify.com",
    timestamp: float | None = None,
    **params: Any,
) -> dict[str, str]:
    """Query parameters as a Shopify app proxy forwards them: shop, path_prefix, timestamp,
    logged_in_customer_id, the storefront's own parameters, and the signature."""
    query = {
        "shop": shop,
        "path_prefix": "/apps/restock",
        "timestamp": str(int(time.time() if timestamp is None else timestamp)),
        "logged_in_customer_id": "",
        **{key: str(value) for key, value in params.items()},
    }
    query["signature"] = proxy_signature(query, secret)
    return query


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _error(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake Shopify GraphQL Admin API")
    parser.add_argument("--variants", type=int, default=10_000)
    parser.add_argument("--available", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeShopify()
    for number in range(1, args.variants + 1):
        fake.add_variant(number, available=args.available)
    fake.start()
    print(fake.url, flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        fake.stop()


if __name__ == "__main__":
    main()


def order_payload(
    order_id: int,
    *,
    variant: int,
    email: str | None,
    quantity: int = 1,
    price: str = "49.99",
    created_at: datetime | None = None,
    customer_id: int | None = None,
    test: bool = False,
    cancelled_at: datetime | None = None,
    currency: str = "USD",
) -> dict[str, Any]:
    """An `orders/create` webhook body: the REST `Order` resource with the fields of
    Shopify's documented sample (shopify.dev/docs/api/admin-rest/latest/resources/webhook;
    reference/samples/orders-shopify-orders-create-webhook.json): top-level `email`,
    `customer` (may be null, e.g. POS), `line_items[].variant_id`, `current_quantity`,
    `price` and `price_set` as decimal strings in the shop currency."""
    when = (created_at or datetime.now(UTC)).isoformat()
    total = f"{Decimal(price) * quantity:.2f}"
    money = {"amount": price, "currency_code": currency}
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{order_id % 10000}",
        "email": email,
        "contact_email": email,
        "phone": None,
        "created_at": when,
        "processed_at": when,
        "updated_at": when,
        "cancelled_at": cancelled_at.isoformat() if cancelled_at else None,
        "cancel_reason": "customer" if cancelled_at else None,
        "test": test,
        "financial_status": "paid",
        "currency": currency,
        "presentment_currency": currency,
        "total_price": total,
        "total_price_set": {
            "shop_money": {"amount": total, "currency_code": currency},
            "presentment_money": {"amount": total, "currency_code": currency},
        },
        "source_name": "web",
        "customer": (
            {
                "id": customer_id,
                "email": email,
                "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
            }
            if customer_id
            else None
        ),
        "line_items": [
            {
                "id": order_id * 10 + 1,
                "admin_graphql_api_id": f"gid://shopify/LineItem/{order_id * 10 + 1}",
                "product_id": 788032119674292922,
                "variant_id": variant,
                "sku": f"SKU-{variant}",
                "name": "Shirt",
                "quantity": quantity,
                "current_quantity": quantity,
                "price": price,
                "price_set": {"shop_money": money, "presentment_money": money},
            }
        ],
    }
