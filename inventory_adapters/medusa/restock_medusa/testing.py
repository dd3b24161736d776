"""A fake Medusa v2 backend for tests: it speaks the documented wire format
(reference/medusa.md §3) on 127.0.0.1 through restock_core.testing.FakeHTTPServer.

>>> fake = FakeMedusa(); fake.server.start(); ...; fake.server.stop()
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from restock_core import StockKey
from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply

PK = "pk_test_0123456789abcdef"  # linked to SC_A and SC_B
PK_B = "pk_test_only_channel_b"  # linked to SC_B only
SK = "sk_test_secret_abcdef"
SC_A = "sc_01A"
SC_B = "sc_01B"
LOC_A = "sloc_A"
LOC_B = "sloc_B"
EVENT_SECRET = "whsec-medusa-test-secret"

NOT_ALLOWED = {
    "type": "not_allowed",
    "message": "A valid publishable key is required to proceed with the request",
}


class FakeMedusa:
    """In-memory Medusa: variants with per-channel available stock, publishable keys linked to
    sales channels, a secret API key for the Admin API."""

    def __init__(self, page_cap: int | None = None):
        self.lock = threading.Lock()
        # variant id -> {title, product_id, manage_inventory, allow_backorder, item}
        self.variants: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.stock: dict[tuple[str, str], int] = {}  # (variant, channel) -> available
        self.orders: dict[str, dict[str, Any]] = {}  # id -> Admin API order
        self.keys = {PK: [SC_A, SC_B], PK_B: [SC_B]}
        self.channel_locations = {SC_A: [LOC_A], SC_B: [LOC_B]}
        self.page_cap = page_cap
        self.forced: int | None = None
        self.server = FakeHTTPServer(self.handle)
        for index in (1, 2, 3):
            self.add_variant(f"variant_{index}", stock={SC_A: 0, SC_B: 0})

    # ------------------------------------------------------------------ state

    def add_variant(
        self,
        variant_id: str,
        *,
        stock: dict[str, int] | None = None,
        managed: bool = True,
        product: str = "prod_shirt",
    ) -> None:
        with self.lock:
            self.products.setdefault(
                product,
                {
                    "id": product,
                    "title": "Blue Shirt",
                    "handle": "blue-shirt",
                    "thumbnail": "https://cdn.example/shirt.png",
                },
            )
            self.variants[variant_id] = {
                "id": variant_id,
                "title": f"Size {variant_id[-1].upper()}",
                "product_id": product,
                "manage_inventory": managed,
                "allow_backorder": False,
                "item": "iitem_" + variant_id,
            }
            for channel, quantity in (stock or {}).items():
                self.stock[(variant_id, channel)] = quantity

    def add_order(
        self,
        order_id: str,
        *,
        variant_id: str,
        email: str,
        created_at: str,
        quantity: int = 1,
        unit_price: float = 20,
        customer_id: str | None = None,
        status: str = "pending",
        is_draft_order: bool = False,
    ) -> dict[str, Any]:
        """An order as `GET /admin/orders/{id}?fields=…` answers it (reference/samples/
        orders-medusa-admin-order.json): major units, lower-case currency code."""
        total = unit_price * quantity
        order = {
            "id": order_id,
            "display_id": len(self.orders) + 1,
            "status": status,
            "email": email,
            "customer_id": customer_id,
            "currency_code": "eur",
            "sales_channel_id": SC_A,
            "created_at": created_at,
            "canceled_at": created_at if status == "canceled" else None,
            "is_draft_order": is_draft_order,
            "total": total,
            "items": [
                {
                    "id": f"ordli_{order_id}",
                    "title": "M / Black",
                    "variant_id": variant_id,
                    "product_id": self.variants.get(variant_id, {}).get("product_id"),
                    "quantity": quantity,
                    "unit_price": unit_price,
                    "total": total,
                }
            ],
        }
        with self.lock:
            self.orders[order_id] = order
        return order

    def set_stock(self, key: StockKey, quantity: int | None) -> None:
        channels = [SC_A, SC_B] if key.scope == "default" else [key.scope]
        with self.lock:
            if key.variant_id not in self.variants:
                raise KeyError(key.variant_id)
            self.variants[key.variant_id]["manage_inventory"] = quantity is not None
            for channel in channels:
                self.stock[(key.variant_id, channel)] = quantity or 0

    def unauthorized(self) -> None:
        self.forced = 401

    def requests_made(self) -> int:
        return len(self.server.requests)

    def store_requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path.startswith("/store/")]

    @property
    def url(self) -> str:
        return self.server.url

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: RecordedRequest) -> Reply:
        if self.forced == 401:
            return Reply(401, {"message": "Unauthorized"})
        if request.path.startswith("/store/"):
            return self._store(request)
        if request.path.startswith("/admin/"):
            return self._admin(request)
        return Reply(404, {"type": "not_found", "message": f"Cannot GET {request.path}"})

    def _page(self, request: RecordedRequest, name: str, items: list[Any]) -> Reply:
        limit = int(request.query.get("limit", ["20"])[0])
        if self.page_cap:
            limit = min(limit, self.page_cap)
        offset = int(request.query.get("offset", ["0"])[0])
        return Reply(
            200,
            {
                name: items[offset : offset + limit],
                "count": len(items),
                "offset": offset,
                "limit": limit,
            },
        )

    def _fields(self, request: RecordedRequest) -> list[str]:
        return [f for f in ",".join(request.query.get("fields", [])).split(",") if f]

    def _variant_json(self, variant: dict[str, Any], fields: list[str], channel: str | None):
        out = {k: variant[k] for k in ("id", "title", "manage_inventory", "allow_backorder")}
        wants_quantity = "+inventory_quantity" in fields or "inventory_quantity" in fields
        if wants_quantity and variant["manage_inventory"]:
            out["inventory_quantity"] = self.stock.get((variant["id"], channel or ""), 0)
        return out

    def _store(self, request: RecordedRequest) -> Reply:
        key = request.headers.get("x-publishable-api-key")
        if not key:
            return Reply(
                400,
                {
                    "type": "not_allowed",
                    "message": "Publishable API key required in the request header: "
                    "x-publishable-api-key. You can manage your keys in settings in the dashboard.",
                },
            )
        if key not in self.keys:
            return Reply(400, NOT_ALLOWED)
        channels = self.keys[key]
        asked = request.query.get("sales_channel_id")
        if len(channels) == 1:
            channel: str | None = channels[0]
        elif asked and len(asked) == 1:
            channel = asked[0]
            if channel not in channels:
                return Reply(
                    400,
                    {
                        "type": "invalid_data",
                        "message": "Requested sales channel is not part of the publishable key",
                    },
                )
        else:
            channel = None
        fields = self._fields(request)
        if request.path == "/store/product-variants":
            if channel is None and "+inventory_quantity" in fields:
                return Reply(
                    400,
                    {
                        "type": "invalid_data",
                        "message": "Inventory availability cannot be calculated in the given "
                        "context. Either provide a single sales channel id or configure a single "
                        "sales channel in the publishable key",
                    },
                )
            ids = request.query.get("id[]", [])
            with self.lock:
                items: list[dict[str, Any]] = [
                    self._variant_json(self.variants[v], fields, channel)
                    for v in ids
                    if v in self.variants
                ]
            return self._page(request, "variants", items)
        if request.path == "/store/products":
            ids = request.query.get("variants[id][]", [])
            with self.lock:
                products = []
                for product in self.products.values():
                    variants = [
                        v for v in self.variants.values() if v["product_id"] == product["id"]
                    ]
                    if not any(v["id"] in ids for v in variants):
                        continue
                    sub = [f.split(".", 1)[1].lstrip("+") for f in fields if "variants." in f]
                    body = dict(product)
                    body["variants"] = [
                        self._variant_json(v, ["+" + f for f in sub], channel) for v in variants
                    ]
                    products.append(body)
            return self._page(request, "products", products)
        return Reply(404, {"type": "not_found", "message": f"Cannot GET {request.path}"})

    def _admin(self, request: RecordedRequest) -> Reply:
        expected = "Basic " + base64.b64encode(f"{SK}:".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Reply(401, {"message": "Unauthorized"})
        with self.lock:
            if request.path == "/admin/stock-locations":
                channel = request.query.get("sales_channel_id[]", [""])[0]
                items: list[dict[str, Any]] = [
                    {"id": loc} for loc in self.channel_locations.get(channel, [])
                ]
                return self._page(request, "stock_locations", items)
            if request.path == "/admin/product-variants":
                items = []
                for v in request.query.get("id[]", []):
                    variant = self.variants.get(v)
                    if variant is None:
                        continue
                    levels = [
                        {
                            "location_id": self.channel_locations[sc][0],
                            "available_quantity": self.stock.get((v, sc), 0),
                        }
                        for sc in (SC_A, SC_B)
                    ]
                    items.append(
                        {
                            "id": v,
                            "title": variant["title"],
                            "manage_inventory": variant["manage_inventory"],
                            "product": self.products[variant["product_id"]],
                            "inventory_items": [
                                {
                                    "inventory_item_id": variant["item"],
                                    "required_quantity": 1,
                                    "inventory": {"id": variant["item"], "location_levels": levels},
                                }
                            ]
                            if variant["manage_inventory"]
                            else [],
                        }
                    )
                return self._page(request, "variants", items)
            if request.path.startswith("/admin/orders/"):
                order = self.orders.get(request.path.rsplit("/", 1)[-1])
                if order is None:
                    return Reply(
                        404,
                        {"type": "not_found", "message": f"Order id not found: {request.path}"},
                    )
                return Reply(200, {"order": order})
            if request.path == "/admin/orders":
                since = request.query.get("created_at[$gte]", [""])[0]
                listed = sorted(
                    (o for o in self.orders.values() if o["created_at"] >= since),
                    key=lambda o: o["created_at"],
                )
                return self._page(request, "orders", listed)
            if request.path == "/admin/inventory-items":
                wanted = request.query.get("id[]", [])
                items = [
                    {"id": v["item"], "variants": [{"id": v["id"]}]}
                    for v in self.variants.values()
                    if v["item"] in wanted
                ]
                return self._page(request, "inventory_items", items)
        return Reply(404, {"type": "not_found", "message": f"Cannot GET {request.path}"})


def medusa_options(url: str, **extra: Any) -> dict[str, Any]:
    """plugins.toml-shaped options for the adapter pointed at `url`."""
    options: dict[str, Any] = {
        "base_url": url,
        "publishable_key": PK,
        "admin_token": SK,
        "event_secret": EVENT_SECRET,
        "storefront_url": "https://shop.example",
        "publishable_keys": {SC_B: PK_B},
        "retry_backoff": 0.0,
    }
    options.update(extra)
    return options
