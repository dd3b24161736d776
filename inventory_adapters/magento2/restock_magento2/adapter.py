"""The `magento2` inventory adapter: batched MSI stock reads and product descriptions.

Magento Open Source has no outbound webhooks, so the reconciliation poll (`poll_interval`) is
the signal: the core calls `availability` for every (SKU, scope) with pending subscribers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from restock_core import AdapterError, InventoryAdapter, PluginHost, StockKey, VariantInfo, chunks

from .client import MagentoClient, MagentoHTTPError
from .options import DEFAULT_SCOPE, Magento2Options, ScopeStock

log = logging.getLogger("restock.magento2")

SOURCE_ITEMS = "/V1/inventory/source-items"
ARE_SALABLE = "/V1/inventory/are-products-salable"
SALABLE_QTY = "/V1/inventory/get-product-salable-quantity/{sku}/{stock_id}"
PRODUCTS = "/V1/products"
STOCK_RESOLVER = "/V1/inventory/stock-resolver/website/{code}"
STOCK_SOURCE_LINKS = "/V1/inventory/stock-source-links"

RESOLVED_TTL = 3600.0  # seconds a resolved scope (website -> stock -> sources) is kept
UNKNOWN_TTL = 300.0  # seconds an unresolvable scope is remembered as unknown
NO_IMAGE = ("", "no_selection")


def _quantity(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _attributes(product: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for attribute in product.get("custom_attributes") or []:
        if isinstance(attribute, Mapping) and isinstance(attribute.get("attribute_code"), str):
            found[attribute["attribute_code"]] = attribute.get("value")
    return found


class Magento2Adapter(InventoryAdapter):
    """Reads stock from Magento 2 MSI. Variant ids are SKUs; scopes are MSI stocks."""

    name = "magento2"

    def __init__(self, options: Magento2Options, *, transport: httpx.BaseTransport | None = None):
        self.options = options
        self.poll_interval = options.poll_interval
        self.max_batch_size = options.max_batch_size
        self.id = self.name
        self.client = MagentoClient(options, name=self.id, transport=transport)
        self._configured = options.configured_scopes()
        self._resolved: dict[str, tuple[float, ScopeStock | None]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._order_poller: Any = None
        #: where the next search for cancelled orders starts (orders.poll_orders)
        self.cancellations_since: Any = None

    def __repr__(self) -> str:
        return f"Magento2Adapter({self.options.rest_root!r})"

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.id = instance_id
        self.client.name = instance_id
        if self.options.orders_poll_interval is not None and self._order_poller is None:
            from .orders import OrderPoller

            self._order_poller = OrderPoller(self, self.options.orders_poll_interval)
            self._order_poller.start()

    def close(self) -> None:
        if self._order_poller is not None:
            self._order_poller.close()
        self.client.close()

    def poll_orders(self) -> int:
        """One pass over new orders for revenue attribution; returns the conversions made."""
        from .orders import poll_orders

        return poll_orders(self)

    def routes(self, app: PluginHost) -> Any:
        from .routes import build_router

        return build_router(self, app)

    # ------------------------------------------------------------------ scopes

    def resolve_scope(self, scope: str) -> ScopeStock | None:
        """The stock and sources a scope counts, or None when it names nothing known."""
        configured = self._configured.get(scope)
        if configured is None:
            configured = next(
                (
                    s
                    for s in self._configured.values()
                    if scope.isdigit() and s.stock_id == int(scope)
                ),
                None,
            )
        if configured is not None and configured.sources:
            return configured
        now = time.monotonic()
        with self._lock:
            cached = self._resolved.get(scope)
        if cached is not None and cached[0] > now:
            return cached[1]
        if configured is None and not self.options.resolve_scopes:
            found = None
        else:
            found = self._resolve(scope, configured)
        with self._lock:
            self._resolved[scope] = (now + (RESOLVED_TTL if found else UNKNOWN_TTL), found)
        return found

    def _resolve(self, scope: str, configured: ScopeStock | None) -> ScopeStock | None:
        stock_id: int | None
        if configured is not None:
            stock_id = configured.stock_id
        elif scope.isdigit():
            stock_id = int(scope)
        else:
            stock_id = self._website_stock(scope)
        if stock_id is None:
            return None
        sources = self._stock_sources(stock_id)
        if not sources:
            return None
        return ScopeStock(stock_id, sources)

    def _website_stock(self, code: str) -> int | None:
        try:
            body = self.client.get(STOCK_RESOLVER.format(code=quote(code, safe="")))
        except MagentoHTTPError as exc:
            if exc.status == 404:  # no such website (Magento answers 404 NoSuchEntity)
                return None
            raise
        stock_id = body.get("stock_id") if isinstance(body, dict) else None
        return stock_id if isinstance(stock_id, int) and not isinstance(stock_id, bool) else None

    def _stock_sources(self, stock_id: int) -> tuple[str, ...]:
        links = self.client.search(
            STOCK_SOURCE_LINKS,
            [[("stock_id", str(stock_id), "eq")]],
            page_size=self.options.page_size,
        )
        return tuple(
            dict.fromkeys(
                str(link["source_code"])
                for link in links
                if isinstance(link.get("source_code"), str)
            )
        )

    def scope_for_store(self, store: str | None) -> str:
        """The Klaviyo form's `store` (id or code) -> a scope name (see docs)."""
        if store:
            mapped = self.options.store_scopes.get(store)
            if mapped:
                return mapped
            if store in self._configured:
                return store
        return DEFAULT_SCOPE

    # ------------------------------------------------------------------ availability

    def availability(self, keys: Sequence[StockKey]) -> dict[StockKey, int | None]:
        """Quantities for a batch, None for SKUs Magento does not know (or has no source item
        for in the scope's sources). One source-item search per scope and batch sums the
        in-stock source items over the scope's sources. With `salable_check` (the default)
        the quantity recorded is Magento's *salable* quantity instead: what is left after
        reservations (orders placed, not yet shipped) and the out-of-stock threshold."""
        result: dict[StockKey, int | None] = {}
        by_scope: dict[str, list[StockKey]] = defaultdict(list)
        for key in keys:
            by_scope[key.scope].append(key)
        for scope, scope_keys in by_scope.items():
            stock = self.resolve_scope(scope)
            if stock is None:
                if scope not in self._warned:
                    self._warned.add(scope)
                    log.warning(
                        "%s: scope %r is not a configured stock, stock id or website code; "
                        "its quantities are unknown",
                        self.id,
                        scope,
                    )
                result.update(dict.fromkeys(scope_keys))
                continue
            for chunk in chunks(scope_keys, self.max_batch_size):
                found = self._read(stock, [k.variant_id for k in chunk])
                for key in chunk:
                    result[key] = found.get(key.variant_id.lower())
        return result

    def _read(self, stock: ScopeStock, skus: Sequence[str]) -> dict[str, int | None]:
        """lower-cased SKU -> quantity (Magento compares SKUs case-insensitively)."""
        unique = list(dict.fromkeys(skus))
        totals: dict[str, float] = {}
        sources = set(stock.sources)
        for item in self._source_items(unique, stock.sources):
            sku = item.get("sku")
            if not isinstance(sku, str) or item.get("source_code") not in sources:
                continue
            key = sku.lower()
            totals.setdefault(key, 0.0)
            if str(item.get("status")) == "1":
                totals[key] += max(0.0, _quantity(item.get("quantity")))
        found: dict[str, int | None] = {}
        for sku in unique:
            total = totals.get(sku.lower())
            found[sku.lower()] = None if total is None else int(total)
        if self.options.salable_check:
            # Reservations only ever lower the physical quantity, so a SKU with nothing in
            # stock is 0 without asking. For the rest: are-products-salable (a batch, from
            # the stock index) for the edge, then the salable quantity of each salable SKU:
            # Magento has no batch salable-quantity endpoint (reference §4.4).
            stocked = [s for s in unique if (found.get(s.lower()) or 0) > 0]
            salable = self._salable(stocked, stock.stock_id) if stocked else {}
            asked = []
            for sku in stocked:
                if salable.get(sku.lower()) is False:
                    found[sku.lower()] = 0
                else:
                    asked.append(sku)
            quantities = self._salable_quantities(asked, stock.stock_id)
            for sku, quantity in zip(asked, quantities, strict=True):
                found[sku.lower()] = quantity
        return found

    def _salable_quantities(self, skus: Sequence[str], stock_id: int) -> list[int | None]:
        """`_salable_qty` for each SKU, `salable_concurrency` requests at a time."""
        workers = min(self.options.salable_concurrency, len(skus))
        if workers <= 1:
            return [self._salable_qty(sku, stock_id) for sku in skus]
        with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.id}-salable") as pool:
            return list(pool.map(lambda sku: self._salable_qty(sku, stock_id), skus))

    def _source_items(
        self, skus: Sequence[str], sources: Sequence[str]
    ) -> Iterable[dict[str, Any]]:
        # the `in` condition splits its value on commas, so SKUs with a comma go one by one
        plain = [s for s in skus if "," not in s]
        groups: list[list[tuple[str, str, str]]] = []
        if plain:
            groups.append([("sku", ",".join(plain), "in")])
        groups += [[("sku", s, "eq")] for s in skus if "," in s]
        source_filter = [("source_code", ",".join(sources), "in")]
        for sku_filter in groups:
            yield from self.client.search(
                SOURCE_ITEMS,
                [sku_filter, source_filter],
                page_size=self.options.page_size,
                sort=[("sku", "ASC"), ("source_code", "ASC")],
            )

    def _salable(self, skus: Sequence[str], stock_id: int) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for chunk in chunks(list(skus), self.options.salable_batch_size):
            params = [(f"skus[{i}]", sku) for i, sku in enumerate(chunk)]
            params.append(("stockId", str(stock_id)))
            body = self.client.get(ARE_SALABLE, params)
            if not isinstance(body, list):
                raise AdapterError(f"{self.id}: are-products-salable did not answer a list")
            for row in body:
                if isinstance(row, Mapping) and isinstance(row.get("sku"), str):
                    out[row["sku"].lower()] = row.get("salable") is True
        return out

    def _salable_qty(self, sku: str, stock_id: int) -> int | None:
        """`GET /V1/inventory/get-product-salable-quantity/{sku}/{stockId}`: a bare number,
        the stock's quantity plus its reservations (negative for orders not yet shipped)
        minus the out-of-stock threshold, or 0 when the stock index says not salable
        (Magento_InventorySales GetProductSalableQty; Adobe's "Check salable quantities"
        page, https://developer.adobe.com/commerce/webapi/rest/inventory/check-salable-quantity/).
        None when Magento no longer knows the SKU (404 NoSuchEntity) or cannot count it (400,
        a product type without source items)."""
        path = SALABLE_QTY.format(sku=quote(sku, safe=""), stock_id=stock_id)
        try:
            body = self.client.get(path)
        except MagentoHTTPError as exc:
            if exc.status == 404 and not exc.no_route:
                return None
            if exc.status == 400:
                log.warning("%s: salable quantity of %r: %s", self.id, sku, exc)
                return None
            raise
        if isinstance(body, str):
            try:
                body = float(body)
            except ValueError:
                body = None
        if isinstance(body, bool) or not isinstance(body, int | float):
            raise AdapterError(
                f"{self.id}: get-product-salable-quantity answered {str(body)[:50]!r}, not a number"
            )
        return max(0, int(body))

    # ------------------------------------------------------------------ describe

    def product_url(self, sku: str, product: Mapping[str, Any] | None = None) -> str | None:
        options = self.options
        attributes = _attributes(product or {})
        url_key = attributes.get("url_key")
        if options.product_url_template:
            values = {
                "sku": quote(sku, safe=""),
                "url_key": quote(str(url_key or ""), safe=""),
                "id": str((product or {}).get("id", "")),
                "store": options.store_code,
            }
            return options.product_url_template.format_map(values)
        if isinstance(url_key, str) and url_key:
            return f"{options.storefront}/{quote(url_key)}{options.url_suffix}"
        return None

    def describe(self, variant_ids: Sequence[str]) -> dict[str, VariantInfo]:
        """Name, link and image per SKU: one `GET /V1/products` search per batch (or only the
        URL template when describe_products is false)."""
        skus = list(dict.fromkeys(variant_ids))
        if not self.options.describe_products:
            if not self.options.product_url_template:
                return {}
            return {sku: VariantInfo(url=self.product_url(sku)) for sku in skus}
        products: dict[str, Mapping[str, Any]] = {}
        plain = [s for s in skus if "," not in s]
        filters = [("sku", ",".join(c), "in") for c in chunks(plain, self.max_batch_size)]
        filters += [("sku", s, "eq") for s in skus if "," in s]
        for sku_filter in filters:
            for item in self.client.search(
                PRODUCTS,
                [[sku_filter]],
                page_size=self.options.page_size,
                extra=[("fields", "items[id,sku,name,custom_attributes],total_count")],
            ):
                if isinstance(item.get("sku"), str):
                    products[item["sku"].lower()] = item
        out: dict[str, VariantInfo] = {}
        for sku in skus:
            product = products.get(sku.lower())
            if product is None:
                if self.options.product_url_template:
                    out[sku] = VariantInfo(url=self.product_url(sku))
                continue
            name = product.get("name") if isinstance(product.get("name"), str) else None
            image = _attributes(product).get("image")
            image_url = None
            if isinstance(image, str) and image not in NO_IMAGE:
                image_url = f"{self.options.storefront}/media/catalog/product/{image.lstrip('/')}"
            out[sku] = VariantInfo(
                title=name,
                product_title=name,
                url=self.product_url(sku, product),
                image_url=image_url,
            )
        return out

    def sku_for_product_id(self, product_id: str) -> str | None:
        """A Magento product entity id -> its SKU (for `form_variant = "product_id"`)."""
        for product in self.client.search(
            PRODUCTS,
            [[("entity_id", product_id, "eq")]],
            page_size=1,
            extra=[("fields", "items[id,sku],total_count")],
        ):
            sku = product.get("sku")
            if isinstance(sku, str) and sku:
                return sku
            break
        return None
