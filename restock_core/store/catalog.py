"""Message content set by trusted callers, and consent records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..db import catalog, consents, utcnow
from ..models import VariantInfo
from ._base import Db, chunks

#: the catalog columns a trusted caller may set, in the order of VariantInfo's names
CONTENT_COLUMNS = ("product_title", "variant_title", "url", "image_url")


class CatalogStore:
    def __init__(self, db: Db):
        self.db = db

    def set(self, source: str, variant_id: str, content: Mapping[str, str | None]) -> None:
        """Store the given content columns for (source, variant); columns not given keep
        their value. Nothing happens when `content` is empty."""
        values = {k: v for k, v in content.items() if k in CONTENT_COLUMNS}
        if not values:
            return
        now = utcnow()
        with self.db.engine.begin() as conn:
            conn.execute(
                self.db.insert(catalog)
                .values(source=source, variant_id=variant_id, updated_at=now, **values)
                .on_conflict_do_update(
                    index_elements=["source", "variant_id"], set_={**values, "updated_at": now}
                )
            )

    def describe(self, source: str, variant_ids: Sequence[str]) -> dict[str, VariantInfo]:
        """The stored content of `variant_ids` at `source` (variants without any are absent)."""
        out: dict[str, VariantInfo] = {}
        with self.db.read_engine.connect() as conn:
            for chunk in chunks(list(variant_ids), 900):
                rows = conn.execute(
                    sa.select(catalog).where(
                        catalog.c.source == source, catalog.c.variant_id.in_(chunk)
                    )
                )
                for row in rows:
                    out[row.variant_id] = VariantInfo(
                        title=row.variant_title,
                        product_title=row.product_title,
                        url=row.url,
                        image_url=row.image_url,
                    )
        return out


def consent_row(
    subscription_id: int, channel: str, contact: str, consent: Mapping[str, Any]
) -> dict[str, Any]:
    """The `consents` row for a stored sign-up (values already checked and cut to size)."""
    return {
        "subscription_id": subscription_id,
        "channel": channel,
        "contact": contact,
        "ip": consent.get("ip"),
        "user_agent": consent.get("user_agent"),
        "text": consent.get("text"),
        "version": consent.get("version"),
        "created_at": utcnow(),
    }


__all__ = ["CONTENT_COLUMNS", "CatalogStore", "consent_row", "consents"]
