"""The Shopify inventory adapter: batched availability and descriptions through the GraphQL
Admin API `nodes(ids: …)` query (reference/shopify-magento.md §2.3), and the logic behind the
`inventory_levels/update` webhook (§1): map the inventory item to its variant, re-read the
variant's availability and record it as observed at the time of that read (the webhook's
whole-second `updated_at` only orders deliveries of one level)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from restock_core import (
    AdapterError,
    InventoryAdapter,
    PeriodicTask,
    PluginHost,
    StockKey,
    StockUpdate,
    VariantInfo,
    utcnow,
)

from .client import QueryTooCostly, ShopifyGraphQL
from .options import DEFAULT_SCOPE, ShopifyOptions, numeric_id, to_gid

log = logging.getLogger("restock.shopify")

MAX_IDS = 250  # "Requests return an error if an input array exceeds 250 items"
ITEM_CACHE_SIZE = 50_000

_LEVELS = """
        inventoryLevels(first: {first}) {{
          edges {{ node {{ location {{ id }} quantities(names: ["available"]) {{ name quantity }} }} }}
        }}"""

AVAILABILITY_QUERY = """query RestockAvailability($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    id
    ... on ProductVariant {{
      inventoryQuantity
      inventoryItem {{
        id
        tracked{levels}
      }}
    }}
  }}
}}"""

ITEM_VARIANT_QUERY = """query RestockItemVariant($id: ID!) {
  inventoryItem(id: $id) {
    id
    variant { id }
  }
}"""

DESCRIBE_QUERY = """query RestockDescribe($ids: [ID!]!) {
  nodes(ids: $ids) {
    id
    ... on ProductVariant {
      title
      image { url }
      product { title handle featuredImage { url } }
    }
  }
}"""


def _available(level: Mapping[str, Any]) -> int:
    for quantity in level.get("quantities") or ():
        if isinstance(quantity, Mapping) and quantity.get("name") == "available":
            value = quantity.get("quantity")
            return int(value) if isinstance(value, int) else 0
    return 0


class ShopifyAdapter(InventoryAdapter):
    """Reads stock from one Shopify shop. See docs/plugins/shopify.md."""

    name = "shopify"
    max_batch_size = MAX_IDS

    def __init__(self, options: ShopifyOptions, *, transport: Any = None):
        self.options = options
        self.poll_interval = options.poll_interval
        self.client = ShopifyGraphQL(options, transport=transport)
        self.id = "shopify"
        self._lock = threading.Lock()
        self._item_variant: OrderedDict[str, str | None] = OrderedDict()
        self._level_seen: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        from .order_sync import OrderSync

        self.order_sync = OrderSync(self)

    def __repr__(self) -> str:
        return f"ShopifyAdapter(shop={self.options.shop!r}, id={self.id!r})"

    # ------------------------------------------------------------------ lifecycle

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.id = instance_id

    def periodic_tasks(self) -> list[PeriodicTask]:
        """With `orders_poll_interval`: the order reconciliation, run by the worker."""
        interval = self.options.orders_poll_interval
        return [] if interval is None else [PeriodicTask("orders", interval, self.poll_orders)]

    def close(self) -> None:
        self.client.close()

    def poll_orders(self, since: datetime | None = None) -> int:
        """One order reconciliation pass (GraphQL `orders` by `updated_at`): records orders
        whose webhook never arrived, takes back conversions of cancelled ones. Returns the
        conversions made. With `orders_poll_interval` the worker runs it on that schedule
        (:meth:`periodic_tasks`); the cursor is plugin state, so it survives restarts."""
        return self.order_sync.run(since)

    def routes(self, app: PluginHost) -> Any:
        from .orders import build_orders_router
        from .routes import build_router

        if self._host is None:
            self.bind(app, self.id)
        router = build_router(self)
        router.include_router(build_orders_router(self))
        return router

    # ------------------------------------------------------------------ availability

    def _needs_levels(self, scopes: set[str]) -> bool:
        return any(self.options.scope_locations(s) is not None for s in scopes)

    def _cost_per_node(self, levels: bool) -> int:
        # variant 1 + inventoryItem 1 (+ connection 2 + first × (level, location, quantities))
        cost = 3
        if levels:
            cost += 2 + 3 * self.options.max_locations
        return cost

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        """`{key: available}`; None for an unknown variant, an untracked item or an unknown
        scope. One `nodes` query per chunk of variants covers every scope asked for."""
        found: dict[StockKey, int | None] = {key: None for key in keys}
        wanted: dict[str, list[StockKey]] = defaultdict(list)
        for key in keys:
            gid = to_gid("ProductVariant", key.variant_id)
            if gid is None or not self.options.knows_scope(key.scope):
                continue
            wanted[gid].append(key)
        if not wanted:
            return found
        levels = self._needs_levels({k.scope for ks in wanted.values() for k in ks})
        size = max(1, min(MAX_IDS, self.options.max_query_cost // self._cost_per_node(levels)))
        query = AVAILABILITY_QUERY.format(
            levels=_LEVELS.format(first=self.options.max_locations) if levels else ""
        )
        ids = list(wanted)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            for gid, node in self._nodes(query, chunk):
                for key in wanted[gid]:
                    found[key] = self._quantity(node, key.scope)
        return found

    def _nodes(self, query: str, ids: list[str]) -> list[tuple[str, Any]]:
        """Run a `nodes(ids:)` query; halve the chunk when Shopify finds it too costly."""
        try:
            data = self.client.execute(query, {"ids": ids})
        except QueryTooCostly as exc:
            if len(ids) == 1:
                raise AdapterError(
                    f"shopify: query too costly even for one variant: {exc}"
                ) from None
            half = len(ids) // 2
            log.info("shopify: query too costly for %s ids; splitting", len(ids))
            return self._nodes(query, ids[:half]) + self._nodes(query, ids[half:])
        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            raise AdapterError("shopify: GraphQL answer has no nodes list")
        out = []
        for position, gid in enumerate(ids):
            node = nodes[position] if position < len(nodes) else None
            if isinstance(node, Mapping) and node.get("id") not in (None, gid):
                node = next(
                    (n for n in nodes if isinstance(n, Mapping) and n.get("id") == gid), None
                )
            out.append((gid, node))
        return out

    def _quantity(self, node: Any, scope: str) -> int | None:
        if not isinstance(node, Mapping):
            return None  # unknown or deleted variant (Relay: null node)
        item = node.get("inventoryItem")
        if not isinstance(item, Mapping):
            return None
        if isinstance(item.get("id"), str) and isinstance(node.get("id"), str):
            self._remember_item(item["id"], node["id"])
        if item.get("tracked") is False:
            return None
        locations = self.options.scope_locations(scope)
        if locations is None:
            quantity = node.get("inventoryQuantity")
            return quantity if isinstance(quantity, int) else None
        connection = item.get("inventoryLevels")
        edges = connection.get("edges") if isinstance(connection, Mapping) else None
        if not isinstance(edges, list):
            return None
        if len(edges) >= self.options.max_locations:
            log.warning(
                "shopify: %s is stocked at %s or more locations; raise max_locations to count all",
                node.get("id"),
                self.options.max_locations,
            )
        wanted = set(locations)
        total = 0
        for edge in edges:
            level = edge.get("node") if isinstance(edge, Mapping) else None
            if not isinstance(level, Mapping):
                continue
            location = level.get("location")
            if isinstance(location, Mapping) and location.get("id") in wanted:
                total += _available(level)
        return total

    def normalize_variant_id(self, variant_id: str) -> str:
        """Sign-ups may say "123" or the gid; store the gid, which webhooks and polls report."""
        gid = to_gid("ProductVariant", variant_id)
        if gid is None:
            raise ValueError(
                f"not a Shopify variant id: {variant_id!r} (use 123 or gid://shopify/ProductVariant/123)"
            )
        return gid

    # ------------------------------------------------------------------ describe

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]:
        """Title, product title, storefront URL and image for templates."""
        gids: dict[str, list[str]] = defaultdict(list)
        for variant_id in variant_ids:
            gid = to_gid("ProductVariant", variant_id)
            if gid is not None:
                gids[gid].append(variant_id)
        out: dict[str, VariantInfo] = {}
        ids = list(gids)
        size = max(1, min(MAX_IDS, self.options.max_query_cost // 6))
        for start in range(0, len(ids), size):
            for gid, node in self._nodes(DESCRIBE_QUERY, ids[start : start + size]):
                if not isinstance(node, Mapping):
                    continue
                info = self._info(gid, node)
                for variant_id in gids[gid]:
                    out[variant_id] = info
        return out

    def _info(self, gid: str, node: Mapping[str, Any]) -> VariantInfo:
        found = node.get("product")
        product: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        title = node.get("title")
        if title == "Default Title":  # Shopify's name for the only variant of a product
            title = None
        handle = product.get("handle")
        url = None
        if isinstance(handle, str) and handle:
            url = f"{self.options.storefront}/products/{handle}?variant={numeric_id(gid)}"
        image = node.get("image") if isinstance(node.get("image"), Mapping) else None
        if not image or not image.get("url"):
            featured = product.get("featuredImage")
            image = featured if isinstance(featured, Mapping) else None
        return VariantInfo(
            title=title if isinstance(title, str) else None,
            product_title=product.get("title") if isinstance(product.get("title"), str) else None,
            url=url,
            image_url=image.get("url") if image else None,
        )

    # ------------------------------------------------------------------ webhooks

    def _remember_item(self, item_gid: str, variant_gid: str | None) -> None:
        with self._lock:
            self._item_variant[item_gid] = variant_gid
            self._item_variant.move_to_end(item_gid)
            while len(self._item_variant) > ITEM_CACHE_SIZE:
                self._item_variant.popitem(last=False)

    def variant_for_item(self, item_gid: str) -> str | None:
        """The variant gid of an inventory item (cached; availability reads fill the cache)."""
        with self._lock:
            if item_gid in self._item_variant:
                self._item_variant.move_to_end(item_gid)
                return self._item_variant[item_gid]
        data = self.client.execute(ITEM_VARIANT_QUERY, {"id": item_gid})
        item = data.get("inventoryItem")
        variant = item.get("variant") if isinstance(item, Mapping) else None
        variant_gid = variant.get("id") if isinstance(variant, Mapping) else None
        variant_gid = variant_gid if isinstance(variant_gid, str) else None
        if item is not None:  # do not cache "not found": the item may be created later
            self._remember_item(item_gid, variant_gid)
        return variant_gid

    def scopes_for_location(self, location_gid: str) -> list[str]:
        scopes = []
        default = self.options.default_locations
        if default is None or location_gid in default:
            scopes.append(DEFAULT_SCOPE)
        for name in self.options.scopes:
            if location_gid in (self.options.scope_locations(name) or ()):
                scopes.append(name)
        return scopes

    def _newer_than_seen(self, level: tuple[str, str], updated_at: datetime) -> bool:
        """False for a delivery strictly older than the last one seen for this level. Equal
        times are not stale: `updated_at` has whole seconds, so two changes inside one second
        carry the same value (replays are caught earlier by the webhook and event ids)."""
        with self._lock:
            last = self._level_seen.get(level)
            if last is not None and last > updated_at:
                return False
            self._level_seen[level] = updated_at
            self._level_seen.move_to_end(level)
            while len(self._level_seen) > ITEM_CACHE_SIZE:
                self._level_seen.popitem(last=False)
            return True

    def apply_inventory_level(self, payload: Mapping[str, Any], updated_at: datetime) -> str:
        """Handle one verified, de-duplicated `inventory_levels/update` body. The body's
        `available` is one location's number and may be stale, so the variant's scopes are
        re-read through GraphQL and recorded as observed at the time of that read.

        `updated_at` (the body's, whole seconds) only drops deliveries older than one already
        handled for the same level. It is not the observation time: a reconciliation read at
        10:00:50.4 is newer than "10:00:50", so a change at 10:00:50.7 stamped with the body's
        time would be dropped as stale until the next poll. Returns what happened (for logs
        and tests)."""
        item_gid = to_gid("InventoryItem", payload.get("inventory_item_id"))
        location_gid = to_gid("Location", payload.get("location_id"))
        if item_gid is None or location_gid is None:
            return "ignored: no inventory_item_id/location_id"
        scopes = self.scopes_for_location(location_gid)
        if not scopes:
            return "ignored: location counts toward no scope"
        if not self._newer_than_seen((item_gid, location_gid), updated_at):
            return "stale"
        variant_gid = self.variant_for_item(item_gid)
        if variant_gid is None:
            return "ignored: unknown inventory item"
        if not self._has_pending(variant_gid):
            return "ignored: no pending subscribers"
        keys = [StockKey(variant_gid, scope) for scope in scopes]
        found = self.availability(keys)
        observed_at = utcnow()  # after the read, as the reconciliation pass stamps its reads
        updates = [StockUpdate(key, found.get(key), observed_at) for key in keys]
        result = self.host.record_stock(self.id, updates)
        if result.stale and not result.applied:
            return "stale"
        return f"recorded {result.applied} (restocks opened: {len(result.restocks_opened)})"

    def _has_pending(self, variant_gid: str) -> bool:
        page = self.host.list_subscriptions(variant_id=variant_gid, status="pending", limit=1)
        return bool(page.items)
