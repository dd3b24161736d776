"""The Medusa v2 inventory adapter: options, HTTP client, availability and descriptions.

Stock is read per sales channel (= restock scope) in one batched Store API call per channel:
``GET /store/product-variants?id[]=…&fields=id,manage_inventory,allow_backorder,+inventory_quantity``
with the publishable key (reference/medusa.md §3). ``inventory_quantity`` there is the
*available* quantity (stocked − reserved) in the key's / the requested channel.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
import httpx

from restock_core import (
    AdapterError,
    InventoryAdapter,
    PluginHost,
    Secret,
    StockKey,
    VariantInfo,
    http_url,
    not_negative,
    parse_retry_after,
    positive,
)

log = logging.getLogger("restock.medusa")

DEFAULT_SCOPE = "default"
STORE_ROUTES = ("product-variants", "products")


@attrs.frozen
class MedusaOptions:
    """Options of the `medusa` inventory adapter (see docs/plugins/medusa.md)."""

    #: the Medusa backend, e.g. "https://api.shop.example" (no trailing /store)
    base_url: str = attrs.field(validator=http_url)
    #: Store API publishable key (`pk_…`), sent as `x-publishable-api-key`
    publishable_key: Secret | None = None
    #: Admin API credential: a secret API key `sk_…` (sent as Basic auth) or a JWT (Bearer)
    admin_token: Secret | None = None
    #: read stock through the Admin API (levels per channel location) instead of the Store API
    use_admin_api: bool = False
    #: restock scope -> Medusa sales channel id; unmapped scopes are sales channel ids
    #: themselves, and "default" means "the publishable key's only channel"
    sales_channels: dict[str, str] = attrs.field(factory=dict)
    #: sales channel id -> publishable key linked to it (publishable keys are public)
    publishable_keys: dict[str, str] = attrs.field(factory=dict)
    #: shared secret for `POST /<id>/events` (HMAC-SHA256) and outgoing restocked posts
    event_secret: Secret | None = None
    #: seconds an event's timestamp may differ from now (replay window)
    event_tolerance: float = attrs.field(default=300.0, validator=positive)
    #: storefront base URL for product links: <storefront_url>/products/<handle>
    storefront_url: str | None = attrs.field(default=None, validator=http_url)
    #: "product-variants" (Medusa >= 2.11.2) or "products" (older v2)
    store_route: str = attrs.field(default="product-variants")
    timeout: float = attrs.field(default=10.0, validator=positive)
    #: seconds between reconciliation passes (safety net next to events)
    poll_interval: float | None = attrs.field(default=300.0, validator=positive)
    #: variants per request
    max_batch_size: int = attrs.field(default=100, validator=positive)
    #: retries of 429 / 5xx / network errors before an AdapterError
    max_retries: int = attrs.field(default=3, validator=not_negative)
    #: first retry wait in seconds (doubles; a Retry-After header wins)
    retry_backoff: float = attrs.field(default=0.5, validator=not_negative)
    #: POST the v1 plugin's `{variant_id, emails}` shape here after each released batch
    forward_restocked_url: str | None = attrs.field(default=None, validator=http_url)
    #: seconds between order catch-up reads (Admin API) for revenue attribution; unset = none
    orders_poll_interval: float | None = attrs.field(default=None, validator=positive)
    #: seconds of orders the first catch-up reads when no order of this source is recorded yet
    orders_lookback: float = attrs.field(default=86400.0, validator=positive)

    @store_route.validator
    def _check_route(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in STORE_ROUTES:
            raise ValueError(f"store_route must be one of {', '.join(STORE_ROUTES)}, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.use_admin_api and self.admin_token is None:
            raise ValueError("use_admin_api = true needs admin_token (a secret API key sk_…)")
        if not self.use_admin_api and self.publishable_key is None and not self.publishable_keys:
            raise ValueError(
                "publishable_key is required to read stock through the Store API "
                "(or set use_admin_api = true with admin_token)"
            )
        if self.orders_poll_interval is not None and self.admin_token is None:
            raise ValueError(
                "orders_poll_interval needs admin_token (orders are read with the Admin API)"
            )
        if self.max_batch_size > 1000:
            raise ValueError(f"max_batch_size must be at most 1000, got {self.max_batch_size}")


class MedusaClient:
    """httpx with the Medusa auth headers, retries and error classification."""

    def __init__(self, options: MedusaOptions, *, transport: httpx.BaseTransport | None = None):
        self.options = options
        self.http = httpx.Client(
            base_url=options.base_url.rstrip("/"),
            timeout=httpx.Timeout(options.timeout),
            headers={"accept": "application/json", "user-agent": "restock-medusa/0.1.0"},
            transport=transport,
        )
        self.requests_made = 0

    def close(self) -> None:
        self.http.close()

    def admin_headers(self) -> dict[str, str]:
        token = self.options.admin_token
        if token is None:
            raise AdapterError("medusa: the Admin API is needed here but admin_token is not set")
        value = token.value
        if value.startswith("sk_"):
            encoded = base64.b64encode(f"{value}:".encode()).decode()
            return {"authorization": f"Basic {encoded}"}
        return {"authorization": f"Bearer {value}"}

    def get(
        self, path: str, params: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.requests_made += 1
            try:
                response = self.http.get(path, params=params, headers=dict(headers or {}))
            except httpx.HTTPError as exc:
                if attempt <= self.options.max_retries:
                    self._sleep(attempt, None)
                    continue
                raise AdapterError(
                    f"medusa: GET {path} failed after {attempt} attempts: {type(exc).__name__}"
                ) from None
            status = response.status_code
            if status == 429 or status >= 500:
                if attempt <= self.options.max_retries:
                    self._sleep(attempt, response.headers.get("retry-after"))
                    continue
                raise AdapterError(
                    f"medusa: GET {path} answered {status} after {attempt} attempts"
                    + (" (rate limited)" if status == 429 else "")
                )
            if status >= 400:
                raise AdapterError(f"medusa: GET {path} answered {status}: {_message(response)}")
            try:
                return response.json()
            except ValueError:
                raise AdapterError(f"medusa: GET {path} did not answer JSON") from None

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.options.retry_backoff * (2 ** (attempt - 1))
        waited = parse_retry_after(retry_after)
        if waited is not None:
            delay = waited
        time.sleep(min(max(delay, 0.0), 30.0))


def _message(response: httpx.Response) -> str:
    """Medusa errors are `{type, message}`; keep the message short and free of secrets."""
    try:
        body = response.json()
    except ValueError:
        return {401: "unauthorized", 404: "not found"}.get(response.status_code, "error")
    if isinstance(body, Mapping):
        text = str(body.get("message") or body.get("type") or "error")
    else:
        text = "error"
    if response.status_code == 401 or (
        isinstance(body, Mapping) and body.get("type") == "not_allowed" and "key" in text.lower()
    ):
        text = f"unauthorized ({text}); check the publishable key / admin token"
    if response.status_code == 404:
        text = (
            f"not found ({text}); is base_url a Medusa v2 backend? Medusa before 2.11.2 has no "
            "/store/product-variants: set store_route = 'products'"
        )
    return text[:300]


class MedusaAdapter(InventoryAdapter):
    """Inventory adapter for Medusa v2 (Store API by default, Admin API where configured)."""

    name = "medusa"

    def __init__(
        self, options: MedusaOptions, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.options = options
        self.poll_interval = options.poll_interval
        self.max_batch_size = options.max_batch_size
        self.client = MedusaClient(options, transport=transport)
        self.id = "medusa"
        self._scope_of_channel = {sc: scope for scope, sc in options.sales_channels.items()}
        self._channel_of_key = {key: sc for sc, key in options.publishable_keys.items()}
        self._locations: dict[str, list[str] | None] = {}
        self._order_poller: Any = None

    def __repr__(self) -> str:
        return f"MedusaAdapter(id={self.id!r}, base_url={self.options.base_url!r})"

    # ------------------------------------------------------------------ lifecycle

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.id = instance_id
        interval = self.options.orders_poll_interval
        if interval is not None and self._order_poller is None:
            from .orders import OrderPoller

            self._order_poller = OrderPoller(
                f"{instance_id} orders", interval, self.poll_orders, self.options.timeout + 5
            )
            self._order_poller.start()

    def observers(self) -> list[object]:
        """With `forward_restocked_url`, an observer that forwards this adapter's restocks
        to the storefront in the v1 plugin's event shape."""
        if not self.options.forward_restocked_url:
            return []
        from .events import RestockedForwarder

        return [RestockedForwarder(self)]

    def routes(self, app: PluginHost) -> Any:
        from .routes import build_router

        return build_router(self, app)

    def close(self) -> None:
        if self._order_poller is not None:
            self._order_poller.close()
        self.client.close()

    def poll_orders(self, since: datetime | None = None) -> int:
        """Revenue attribution's catch-up read: record the orders created since `since`
        (default: the newest recorded order minus 10 minutes, else `orders_lookback` seconds
        ago) through the Admin API. Returns the conversions made. With
        `orders_poll_interval` a thread runs it on that schedule."""
        from .orders import default_since, poll_orders

        return poll_orders(self, since or default_since(self, self.options.orders_lookback))

    # ------------------------------------------------------------------ scopes

    def channel_for_scope(self, scope: str) -> str | None:
        """The sales channel id a scope reads from; None = the publishable key decides."""
        if scope in self.options.sales_channels:
            return self.options.sales_channels[scope]
        return None if scope == DEFAULT_SCOPE else scope

    def scope_for_channel(self, channel: str | None) -> str:
        if channel is None:
            return DEFAULT_SCOPE
        return self._scope_of_channel.get(channel, channel)

    def channel_for_publishable_key(self, key: str | None) -> str | None:
        """Sales channel of a storefront's publishable key, when configured."""
        if not key:
            return None
        return self._channel_of_key.get(key)

    def _store_headers(self, channel: str | None) -> dict[str, str]:
        key = self.options.publishable_keys.get(channel or "") if channel else None
        if key is None and self.options.publishable_key is not None:
            key = self.options.publishable_key.value
        if key is None:
            raise AdapterError(
                f"medusa: no publishable key for sales channel {channel or '(default)'}; "
                "set publishable_key or publishable_keys"
            )
        return {"x-publishable-api-key": key}

    # ------------------------------------------------------------------ availability

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        found: dict[StockKey, int | None] = {key: None for key in keys}
        by_scope: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            if key.variant_id not in by_scope[key.scope]:
                by_scope[key.scope].append(key.variant_id)
        for scope, variant_ids in by_scope.items():
            channel = self.channel_for_scope(scope)
            for start in range(0, len(variant_ids), self.max_batch_size):
                chunk = variant_ids[start : start + self.max_batch_size]
                if self.options.use_admin_api:
                    quantities = self._admin_quantities(chunk, channel)
                else:
                    quantities = self._store_quantities(chunk, channel)
                for variant_id, quantity in quantities.items():
                    key = StockKey(variant_id, scope)
                    if key in found:
                        found[key] = quantity
        return found

    @staticmethod
    def _quantity(variant: Mapping[str, Any]) -> int | None:
        if variant.get("manage_inventory") is False:
            return None  # not tracked: always purchasable, never "restocked"
        quantity = variant.get("inventory_quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int | float):
            return None
        return int(quantity)

    def _store_quantities(self, variant_ids: Sequence[str], channel: str | None) -> dict[str, Any]:
        headers = self._store_headers(channel)
        wanted = set(variant_ids)
        out: dict[str, int | None] = {}
        if self.options.store_route == "product-variants":
            params: list[tuple[str, Any]] = [("id[]", v) for v in variant_ids]
            params.append(("fields", "id,manage_inventory,allow_backorder,+inventory_quantity"))
            if channel:
                params.append(("sales_channel_id", channel))
            for variant in self._paged("/store/product-variants", params, "variants", headers):
                if isinstance(variant, Mapping) and variant.get("id") in wanted:
                    out[variant["id"]] = self._quantity(variant)
            return out
        params = [("variants[id][]", v) for v in variant_ids]
        params.append(
            ("fields", "id,variants.id,variants.manage_inventory,+variants.inventory_quantity")
        )
        if channel:
            params.append(("sales_channel_id", channel))
        for product in self._paged("/store/products", params, "products", headers):
            for variant in (product or {}).get("variants") or []:
                if isinstance(variant, Mapping) and variant.get("id") in wanted:
                    out[variant["id"]] = self._quantity(variant)
        return out

    def _paged(
        self,
        path: str,
        params: list[tuple[str, Any]],
        name: str,
        headers: Mapping[str, str],
    ) -> list[Any]:
        limit = self.max_batch_size
        offset = 0
        items: list[Any] = []
        while True:
            body = self.client.get(
                path, [*params, ("limit", limit), ("offset", offset)], headers=headers
            )
            page = body.get(name) if isinstance(body, Mapping) else None
            if not isinstance(page, list):
                raise AdapterError(f"medusa: GET {path} answered without a {name!r} list")
            items.extend(page)
            count = body.get("count")
            offset += len(page)
            if not page or not isinstance(count, int) or offset >= count:
                return items

    # Admin API: per-channel availability computed as getVariantAvailability does (§3).
    def _channel_locations(self, channel: str | None) -> list[str] | None:
        """Stock location ids of a channel; None = all locations (the "default" scope)."""
        if channel is None:
            return None
        if channel not in self._locations:
            body = self.client.get(
                "/admin/stock-locations",
                [("sales_channel_id[]", channel), ("fields", "id"), ("limit", 1000)],
                headers=self.client.admin_headers(),
            )
            self._locations[channel] = [
                loc["id"] for loc in body.get("stock_locations") or [] if "id" in loc
            ]
        return self._locations[channel]

    def _admin_quantities(self, variant_ids: Sequence[str], channel: str | None) -> dict[str, Any]:
        locations = self._channel_locations(channel)
        params: list[tuple[str, Any]] = [("id[]", v) for v in variant_ids]
        params.append(
            (
                "fields",
                "id,manage_inventory,*inventory_items,*inventory_items.inventory,"
                "*inventory_items.inventory.location_levels",
            )
        )
        out: dict[str, int | None] = {}
        variants = self._paged(
            "/admin/product-variants", params, "variants", self.client.admin_headers()
        )
        for variant in variants:
            if not isinstance(variant, Mapping) or variant.get("id") not in variant_ids:
                continue
            if variant.get("manage_inventory") is False:
                out[variant["id"]] = None
                continue
            per_item = []
            for link in variant.get("inventory_items") or []:
                required = link.get("required_quantity") or 1
                levels = (link.get("inventory") or {}).get("location_levels") or []
                available = sum(
                    int(level.get("available_quantity") or 0)
                    for level in levels
                    if locations is None or level.get("location_id") in locations
                )
                per_item.append(available // int(required))
            out[variant["id"]] = min(per_item) if per_item else None
        return out

    # ------------------------------------------------------------------ variants

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]:
        """Titles, product URL and thumbnail. The Store API's product-variants route does not
        expose product fields (checked on 2.21.2), so the store path lists the products that
        contain the variants: `GET /store/products?variants[id][]=…` (one call per batch)."""
        ids = list(dict.fromkeys(variant_ids))
        out: dict[str, VariantInfo] = {}
        for start in range(0, len(ids), self.max_batch_size):
            chunk = ids[start : start + self.max_batch_size]
            if self.options.use_admin_api:
                params: list[tuple[str, Any]] = [("id[]", v) for v in chunk]
                params.append(
                    ("fields", "id,title,product.id,product.title,product.handle,product.thumbnail")
                )
                headers = self.client.admin_headers()
                for variant in self._paged("/admin/product-variants", params, "variants", headers):
                    if isinstance(variant, Mapping) and variant.get("id") in chunk:
                        out[variant["id"]] = self._info(variant, variant.get("product") or {})
                continue
            params = [("variants[id][]", v) for v in chunk]
            params.append(("fields", "id,title,handle,thumbnail,variants.id,variants.title"))
            headers = self._store_headers(None)
            for product in self._paged("/store/products", params, "products", headers):
                for variant in (product or {}).get("variants") or []:
                    if isinstance(variant, Mapping) and variant.get("id") in chunk:
                        out[variant["id"]] = self._info(variant, product)
        return out

    def _info(self, variant: Mapping[str, Any], product: Mapping[str, Any]) -> VariantInfo:
        url = None
        handle = product.get("handle")
        if self.options.storefront_url and handle:
            url = f"{self.options.storefront_url.rstrip('/')}/products/{handle}"
        return VariantInfo(
            title=variant.get("title"),
            product_title=product.get("title"),
            url=url,
            image_url=product.get("thumbnail"),
        )

    def variants_of_inventory_items(self, item_ids: Sequence[str]) -> list[str]:
        """Map inventory item ids (`iitem_…`) to variant ids through the Admin API."""
        if not item_ids or self.options.admin_token is None:
            return []
        params: list[tuple[str, Any]] = [("id[]", i) for i in item_ids]
        params.append(("fields", "id,variants.id"))
        found: list[str] = []
        items = self._paged(
            "/admin/inventory-items", params, "inventory_items", self.client.admin_headers()
        )
        for item in items:
            for variant in (item or {}).get("variants") or []:
                if variant.get("id") and variant["id"] not in found:
                    found.append(variant["id"])
        return found
