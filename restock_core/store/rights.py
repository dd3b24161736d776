"""Data rights: everything stored about one contact (export), erasing it, and the
suppression list (list, lift). See docs/security.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..db import consents, deliveries, subscriptions, suppressions
from ..models import Channel
from ._base import Db, chunks


def _plain(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in row._mapping.items():
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


class ContactStore:
    def __init__(self, db: Db):
        self.db = db

    def export(self, contact: str, hashed: str) -> dict[str, list[dict[str, Any]]]:
        """Every row about `contact`: subscriptions, their deliveries, consent records and
        suppressions (also the hashed one an earlier erasure left), as plain JSON values."""
        with self.db.read_engine.connect() as conn:
            subs = conn.execute(
                sa.select(subscriptions)
                .where(subscriptions.c.contact == contact)
                .order_by(subscriptions.c.id)
            ).all()
            ids = [r.id for r in subs]
            sent: list[Any] = []
            for chunk in chunks(ids, 900):
                sent.extend(
                    conn.execute(
                        sa.select(deliveries)
                        .where(deliveries.c.subscription_id.in_(chunk))
                        .order_by(deliveries.c.id)
                    ).all()
                )
            agreed = conn.execute(
                sa.select(consents).where(consents.c.contact == contact).order_by(consents.c.id)
            ).all()
            blocked = conn.execute(
                sa.select(suppressions).where(suppressions.c.contact.in_([contact, hashed]))
            ).all()
        return {
            "subscriptions": [_plain(r) for r in subs],
            "deliveries": [_plain(r) for r in sent],
            "consents": [_plain(r) for r in agreed],
            "suppressions": [_plain(r) for r in blocked],
        }

    def erase(self, contact: str, hashed: str) -> dict[str, int]:
        """Delete every subscription of `contact` (their deliveries and consent records go
        with them) in one transaction. A suppression (the person opted out or bounced) is
        kept, with the contact replaced by `hashed`, so erasure never re-enables mail."""
        with self.db.engine.begin() as conn:
            ids = list(
                conn.execute(
                    sa.select(subscriptions.c.id).where(subscriptions.c.contact == contact)
                ).scalars()
            )
            removed_deliveries = 0
            for chunk in chunks(ids, 900):
                removed_deliveries += conn.execute(
                    sa.delete(deliveries).where(deliveries.c.subscription_id.in_(chunk))
                ).rowcount
                conn.execute(sa.delete(consents).where(consents.c.subscription_id.in_(chunk)))
                conn.execute(sa.delete(subscriptions).where(subscriptions.c.id.in_(chunk)))
            removed_consents = conn.execute(
                sa.delete(consents).where(consents.c.contact == contact)
            ).rowcount
            kept = 0
            for row in conn.execute(
                sa.select(suppressions).where(suppressions.c.contact == contact)
            ).all():
                conn.execute(
                    self.db.insert(suppressions)
                    .values(
                        channel=row.channel,
                        contact=hashed,
                        reason="erased; was: "
                        + (row.reason or "").replace(contact, "[erased]")[:900],
                        created_at=row.created_at,
                    )
                    .on_conflict_do_nothing(index_elements=["channel", "contact"])
                )
                kept += 1
            conn.execute(sa.delete(suppressions).where(suppressions.c.contact == contact))
        return {
            "subscriptions": len(ids),
            "deliveries": removed_deliveries,
            "consents": removed_consents,
            "suppressions_kept_hashed": kept,
        }

    def suppressions(
        self, channel: Channel | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """A page of the suppression list in (channel, contact) order; `after` is the last
        `channel:contact` of the previous page."""
        query = sa.select(suppressions).order_by(suppressions.c.channel, suppressions.c.contact)
        if channel is not None:
            query = query.where(suppressions.c.channel == str(channel))
        if after is not None:
            after_channel, _, after_contact = after.partition(":")
            query = query.where(
                sa.tuple_(suppressions.c.channel, suppressions.c.contact)
                > sa.tuple_(sa.literal(after_channel), sa.literal(after_contact))
            )
        with self.db.read_engine.connect() as conn:
            return [_plain(r) for r in conn.execute(query.limit(limit))]


__all__ = ["ContactStore"]
