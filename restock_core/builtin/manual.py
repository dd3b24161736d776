"""The manual inventory source: stock is whatever `PUT /stock/{variant}` or
`restock stock set` last said, so the whole flow runs with no commerce platform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from restock_core import InventoryAdapter, PluginHost, StockKey, VariantInfo, hookimpl


@attrs.frozen
class ManualOptions:
    #: optional product URL pattern for templates, e.g. "https://shop.example/v/{variant_id}"
    url_template: str | None = None


class ManualAdapter(InventoryAdapter):
    name = "manual"
    poll_interval = None
    accepts_stock_updates = True
    #: `availability` reads restock's own stock table (`host.stock_quantities`), so a
    #: sign-up's stock check is made by the sign-up writer, in its transaction, one read
    #: per group (an adapter without it is asked in the thread pool: it may call a platform)
    local_stock = True

    def __init__(self, options: ManualOptions | None = None):
        self.options = options or ManualOptions()
        self.id = "manual"

    def bind(self, app: PluginHost, instance_id: str) -> None:
        super().bind(app, instance_id)
        self.id = instance_id

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        return self.host.stock_quantities(self.id, keys)

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]:
        """What the admin set with `PUT /stock` or `restock stock set` (titles, URL, image);
        a missing URL comes from `url_template`."""
        found = dict(self.host.catalog(self.id, variant_ids))
        if self.options.url_template:
            for v in variant_ids:
                info = found.get(v, VariantInfo())
                if info.url is None:
                    url = self.options.url_template.format(variant_id=v)
                    found[v] = attrs.evolve(info, url=url)
        return found


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "manual",
        ManualAdapter,
        options=ManualOptions,
        description="Stock set by hand through the HTTP API or the CLI",
    )
