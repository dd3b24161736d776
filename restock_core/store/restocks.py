"""Restocks and their release: claiming due waves, queueing one delivery per released
subscriber (INSERT ... SELECT, so subscribers stream through the database), closing waves."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..db import UTCDateTime, deliveries, restocks, subscriptions, utcnow
from ..models import Channel, DeliveryStatus, Restock, RestockStatus, SubscriptionStatus
from ._base import Db, restock_from_row, utc_param
from .outbox import in_ids
from .stock import ACTIVE

log = logging.getLogger("restock.store")

#: (created_at, id) of the last subscriber a wave released
Cursor = tuple[datetime, int]


def _due(now: Any) -> Any:
    """Open restocks whose (next) wave is due at `now` and whose lease (if any) ran out."""
    return sa.and_(
        restocks.c.status == str(RestockStatus.OPEN),
        restocks.c.next_wave_at <= now,
        sa.or_(restocks.c.lease_until.is_(None), restocks.c.lease_until < now),
    )


#: is any restock due? Asked before every dispatch round, so built once (bound: `now`)
_ANY_DUE = sa.select(restocks.c.id).where(_due(sa.bindparam("now", type_=UTCDateTime))).limit(1)


class RestockStore:
    def __init__(self, db: Db):
        self.db = db

    def get(self, restock_id: int) -> Restock:
        with self.db.read_engine.connect() as conn:
            row = conn.execute(sa.select(restocks).where(restocks.c.id == restock_id)).one()
        return restock_from_row(row)

    def claim_due(self, limit: int, lease_seconds: float) -> list[Restock]:
        """Lease open restocks whose (next) wave is due and nobody else holds. Asked before
        every dispatch round, so it looks first on the read engine and opens a write
        transaction only when something is due (during a fan-out nothing is, and the lease
        write cost a commit per batch)."""
        now = utcnow()
        with self.db.read_engine.connect() as conn:
            if conn.execute(_ANY_DUE, {"now": now}).first() is None:
                return []
        condition = _due(now)
        due = (
            sa.select(restocks.c.id).where(condition).order_by(restocks.c.next_wave_at).limit(limit)
        )
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        claim = (
            sa.update(restocks)
            .where(restocks.c.id.in_(due.scalar_subquery()))
            .values(lease_until=now + timedelta(seconds=lease_seconds))
            .returning(*restocks.c)
        )
        with self.db.engine.begin() as conn:
            return [restock_from_row(r) for r in conn.execute(claim).all()]

    def postpone(self, restock_id: int, seconds: float, note: str) -> None:
        self._update(
            restock_id,
            next_wave_at=utcnow() + timedelta(seconds=seconds),
            lease_until=None,
            note=note,
        )

    def finish(self, restock_id: int, status: RestockStatus, note: str) -> None:
        self._update(
            restock_id, status=str(status), finished_at=utcnow(), lease_until=None, note=note
        )

    def end_wave(
        self,
        restock: Restock,
        *,
        quantity: int,
        next_wave_in: float | None,
        released: int,
        total: int,
    ) -> None:
        """Close a wave: schedule the next one `next_wave_in` seconds from now, or (None)
        mark the restock done."""
        values: dict[str, Any] = {
            "waves": restock.waves + 1,
            "lease_until": None,
            "quantity": quantity,
        }
        if next_wave_in is not None:
            values["next_wave_at"] = utcnow() + timedelta(seconds=next_wave_in)
            values["note"] = f"wave {restock.waves + 1}: released {released}"
        else:
            values.update(
                status=str(RestockStatus.DONE), finished_at=utcnow(), note=f"released {total}"
            )
        self._update(restock.id, **values)

    def _update(self, restock_id: int, **values: Any) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(restocks).where(restocks.c.id == restock_id).values(**values))

    def _unreleased(self, restock: Restock, channels: Any) -> Any:
        s = subscriptions
        active = sa.select(sa.literal(1)).where(
            deliveries.c.subscription_id == s.c.id,
            deliveries.c.status.in_(ACTIVE),
            deliveries.c.kind == "restock",
        )
        if self.db.is_postgres:
            # OFFSET 0 keeps the NOT EXISTS a per-row probe of the subscription's deliveries
            # (uq_deliveries_subscription_restock, leading subscription_id):
            # pulled up into an anti join, with statistics taken before the wave (13 active
            # deliveries expected, 20,000 found) PostgreSQL chose a nested loop over every
            # active delivery, 13 s per 5,000-row chunk (docs/benchmarks.md, issue 13)
            active = active.offset(sa.literal_column("0"))
        return sa.and_(
            s.c.source == restock.source,
            s.c.variant_id == restock.variant_id,
            s.c.scope == restock.scope,
            s.c.status == str(SubscriptionStatus.PENDING),
            s.c.channel.in_([str(c) for c in channels]),
            ~sa.exists(active),
        )

    def has_unreleased(self, restock: Restock, channels: Any) -> bool:
        with self.db.read_engine.connect() as conn:
            found = conn.execute(
                sa.select(sa.literal(1)).where(self._unreleased(restock, channels)).limit(1)
            ).first()
        return found is not None

    def release(
        self,
        restock: Restock,
        want: int,
        cursor: Cursor | None,
        routing: Mapping[Channel, str],
        lease_seconds: float,
    ) -> tuple[list[int], Cursor | None]:
        """Queue one delivery per released subscriber, oldest sign-up first, routed to the
        provider instance `routing` names for its channel. `cursor` is where the previous
        chunk of this wave ended, so released rows are not scanned again."""
        s = subscriptions
        insert = self._release_insert(restock, want, cursor, routing)
        with self.db.engine.begin() as conn:
            ids = list(conn.execute(insert).scalars())
            if ids:
                last = conn.execute(
                    sa.select(s.c.created_at, s.c.id)
                    .where(in_ids(self.db, s.c.id, ids))
                    .order_by(s.c.created_at.desc(), s.c.id.desc())
                    .limit(1)
                ).one()
                cursor = (last.created_at, last.id)
                conn.execute(
                    sa.update(restocks)
                    .where(restocks.c.id == restock.id)
                    .values(
                        released=restocks.c.released + len(ids),
                        lease_until=utcnow() + timedelta(seconds=lease_seconds),
                    )
                )
                self.db.wake(conn)
        return ids, cursor

    def _release_insert(
        self,
        restock: Restock,
        want: int,
        cursor: Cursor | None,
        routing: Mapping[Channel, str],
    ) -> Any:
        """INSERT INTO deliveries ... SELECT the next `want` unreleased subscribers."""
        s = subscriptions
        now = utcnow()
        where = self._unreleased(restock, routing)
        if cursor is not None:
            where = sa.and_(
                where,
                sa.tuple_(s.c.created_at, s.c.id)
                > sa.tuple_(sa.literal(cursor[0], UTCDateTime), sa.literal(cursor[1])),
            )
        provider = sa.case({str(ch): pid for ch, pid in routing.items()}, value=s.c.channel)
        chosen = (
            sa.select(
                s.c.id,
                sa.literal(restock.id),
                s.c.channel,
                provider,
                sa.literal(str(DeliveryStatus.QUEUED)),
                sa.literal(0),
                utc_param(now),
                utc_param(now),
                sa.literal(restock.waves + 1),  # the wave this release belongs to
            )
            .where(where)
            .order_by(s.c.created_at, s.c.id)
            .limit(want)
        )
        return (
            sa.insert(deliveries)
            .from_select(
                [
                    "subscription_id",
                    "restock_id",
                    "channel",
                    "provider",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "wave",
                ],
                chosen,
            )
            .returning(deliveries.c.subscription_id)
        )

    def next_wave_at(self) -> datetime | None:
        with self.db.read_engine.connect() as conn:
            found: datetime | None = conn.execute(
                sa.select(sa.func.min(restocks.c.next_wave_at)).where(
                    restocks.c.status == str(RestockStatus.OPEN)
                )
            ).scalar()
        return found

    def refresh_statistics(self) -> None:
        """A big release turns over most rows of the hot tables faster than autovacuum
        analyzes them; with stale statistics PostgreSQL walks the dead entries of the
        pending-only index instead of the primary key (measured: 3x slower result updates)."""
        if not self.db.is_postgres:
            return
        try:
            with self.db.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE subscriptions"))
                conn.execute(sa.text("ANALYZE deliveries"))
        except Exception as exc:  # statistics are an optimisation, never a reason to stop
            log.warning("ANALYZE after a large release failed: %s", exc)
