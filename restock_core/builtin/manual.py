"""The manual inventory source: stock is whatever `PUT /stock/{variant}` or
`restock stock set` last said, so the whole flow runs with no commerce platform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import sqlalchemy as sa

from restock_core.db import stock
from restock_core.hookspecs import hookimpl
from restock_core.models import StockKey, VariantInfo


@attrs.frozen
class ManualOptions:
    #: optional product URL pattern for templates, e.g. "https://shop.example/v/{variant_id}"
    url_template: str | None = None


class ManualAdapter:
    name = "manual"
    poll_interval = None
    accepts_stock_updates = True

    def __init__(self, options: ManualOptions | None = None):
        self.options = options or ManualOptions()
        self.app: Any = None
        self.id = "manual"

    def bind(self, app: Any, instance_id: str) -> None:
        self.app = app
        self.id = instance_id

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        found: dict[StockKey, int | None] = {key: None for key in keys}
        if not keys:
            return found
        variant_ids = sorted({k.variant_id for k in keys})
        with self.app.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(stock.c.variant_id, stock.c.scope, stock.c.quantity).where(
                    stock.c.source == self.id, stock.c.variant_id.in_(variant_ids)
                )
            )
            for variant_id, scope, quantity in rows:
                key = StockKey(variant_id, scope)
                if key in found:
                    found[key] = quantity
        return found

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]:
        if not self.options.url_template:
            return {}
        return {
            v: VariantInfo(url=self.options.url_template.format(variant_id=v)) for v in variant_ids
        }


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "manual",
        ManualAdapter,
        options=ManualOptions,
        description="Stock set by hand through the HTTP API or the CLI",
    )
