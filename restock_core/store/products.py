"""The product upsert's catalog (`POST /api/v1/products`): what a variant is
called, where it is and what it looks like, per source. Upserts are partial: a field the
caller leaves out keeps its stored value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..db import catalog_variants, utcnow
from ._base import Db, chunks

cv = catalog_variants
#: the columns an upsert may set besides the key
FIELDS = (
    "product_id",
    "product_title",
    "variant_title",
    "sku",
    "url",
    "image_url",
    "price_cents",
    "currency",
)


class ProductStore:
    def __init__(self, db: Db):
        self.db = db

    def upsert(self, source: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or update variants; each row has `variant_id`, `product_id` and any of
        :data:`FIELDS` (only the keys present are written)."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            for row in rows:
                values = {k: row[k] for k in FIELDS if k in row}
                insert = self.db.insert(cv).values(
                    source=source, variant_id=row["variant_id"], updated_at=now, **values
                )
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["source", "variant_id"],
                        set_={**{k: insert.excluded[k] for k in values}, "updated_at": now},
                    )
                )

    def get(self, source: str, variant_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored rows of `variant_ids` at `source`, by variant id."""
        out: dict[str, dict[str, Any]] = {}
        with self.db.read_engine.connect() as conn:
            for part in chunks(list(variant_ids), 500):
                for row in conn.execute(
                    sa.select(cv).where(cv.c.source == source, cv.c.variant_id.in_(part))
                ):
                    out[row.variant_id] = dict(row._mapping)
        return out

    def variants_of(self, source: str, product_ids: Sequence[str]) -> dict[str, list[str]]:
        """The stored variant ids of each product."""
        out: dict[str, list[str]] = {}
        with self.db.read_engine.connect() as conn:
            for part in chunks(list(product_ids), 500):
                for product_id, variant_id in conn.execute(
                    sa.select(cv.c.product_id, cv.c.variant_id)
                    .where(cv.c.source == source, cv.c.product_id.in_(part))
                    .order_by(cv.c.product_id, cv.c.variant_id)
                ):
                    out.setdefault(product_id, []).append(variant_id)
        return out
