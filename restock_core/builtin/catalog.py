"""The catalog inventory source: stock comes from the product upsert
(`POST /api/v1/products`, secret API key), so a shop on a platform restock has no plugin
for needs none. A variant the upsert brings back to at least `inventory_required` opens a
restock like any adapter's webhook (docs/api.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from restock_core import InventoryAdapter, PluginHost, StockKey, hookimpl


class CatalogAdapter(InventoryAdapter):
    name = "catalog"
    poll_interval = None
    accepts_stock_updates = False  # stock comes only from the product upsert

    def __init__(self) -> None:
        self.id = "catalog"

    def bind(self, host: PluginHost, instance_id: str) -> None:
        super().bind(host, instance_id)
        self.id = instance_id

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        return self.host.stock_quantities(self.id, keys)


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "catalog",
        CatalogAdapter,
        description="Stock and titles pushed by your backend: POST /api/v1/products",
    )
