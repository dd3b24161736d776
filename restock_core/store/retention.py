"""Retention: purge what is no longer needed, in small transactions.

Finished sign-ups (notified, unsubscribed, failed) older than their category's days go with
their deliveries and consent records; consent records of finished sign-ups go on their own
schedule; stored provider requests after theirs. Suppressions are never touched (erasing an
opt-out would re-enable mail) and conversions stay, their subscription_id set to NULL, so the
Revenue page keeps its figures. Every step deletes at most `chunk` rows per transaction, so
a large first purge never holds SQLite's write lock for long."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa

from ..db import consents, conversions, deliveries, provider_requests, subscriptions
from ..models import SubscriptionStatus
from ._base import Db
from .outbox import Outbox

s = subscriptions
FINISHED = ("notified", "unsubscribed", "failed")
ACTIVE = (str(SubscriptionStatus.PENDING), str(SubscriptionStatus.UNCONFIRMED))


@attrs.frozen
class PurgeCounts:
    """Rows purged (or, in a dry run, that would be) per category."""

    notified: int = 0
    unsubscribed: int = 0
    failed: int = 0
    consents: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class RetentionStore:
    def __init__(self, db: Db):
        self.db = db

    def purge(
        self,
        days: dict[str, float],
        *,
        now: datetime,
        dry_run: bool = False,
        chunk: int = 500,
    ) -> PurgeCounts:
        """Purge every category `days` names (category -> days to keep)."""
        found: dict[str, int] = {}
        for status in FINISHED:
            if status in days:
                cutoff = now - timedelta(days=days[status])
                where = sa.and_(s.c.status == status, s.c.updated_at < cutoff)
                found[status] = (
                    self._count(s, where) if dry_run else self._purge_subscriptions(where, chunk)
                )
        if "consents" in days:
            cutoff = now - timedelta(days=days["consents"])
            where = sa.and_(
                consents.c.created_at < cutoff,
                ~sa.exists().where(s.c.id == consents.c.subscription_id, s.c.status.in_(ACTIVE)),
            )
            found["consents"] = (
                self._count(consents, where)
                if dry_run
                else self._delete_chunked(consents, consents.c.id, where, chunk)
            )
        if "requests" in days:
            older = timedelta(days=days["requests"])
            if dry_run:
                where = provider_requests.c.created_at < now - older
                found["requests"] = self._count(provider_requests, where)
            else:
                outbox = Outbox(self.db)
                total = 0
                while True:
                    gone = outbox.prune_requests(older, limit=chunk, now=now)
                    total += gone
                    if gone < chunk:
                        break
                found["requests"] = total
        return PurgeCounts(**found)

    def _count(self, table: sa.Table, where: Any) -> int:
        with self.db.read_engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar()
                or 0
            )

    def _delete_chunked(self, table: sa.Table, key: Any, where: Any, chunk: int) -> int:
        total = 0
        while True:
            with self.db.engine.begin() as conn:
                ids = list(conn.execute(sa.select(key).where(where).limit(chunk)).scalars())
                if ids:
                    conn.execute(sa.delete(table).where(key.in_(ids)))
            total += len(ids)
            if len(ids) < chunk:
                return total

    def _purge_subscriptions(self, where: Any, chunk: int) -> int:
        total = 0
        while True:
            with self.db.engine.begin() as conn:
                ids = list(
                    conn.execute(
                        sa.select(s.c.id).where(where).order_by(s.c.updated_at).limit(chunk)
                    ).scalars()
                )
                if ids:
                    conn.execute(
                        sa.update(conversions)
                        .where(conversions.c.subscription_id.in_(ids))
                        .values(subscription_id=None)
                    )
                    conn.execute(sa.delete(deliveries).where(deliveries.c.subscription_id.in_(ids)))
                    conn.execute(sa.delete(consents).where(consents.c.subscription_id.in_(ids)))
                    conn.execute(sa.delete(s).where(s.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < chunk:
                return total
