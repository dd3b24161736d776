"""Stock: the last known quantity per (source, variant, scope), and the restocks that a rise
opens. One batch of updates is one transaction with one read of the stored rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import db as tables
from ..db import deliveries, restocks, stock, subscriptions, utcnow
from ..models import DeliveryStatus, RestockStatus, StockKey, StockUpdate, SubscriptionStatus
from ..stock import Known, diff_stock
from ._base import Db

ACTIVE = (str(DeliveryStatus.QUEUED), str(DeliveryStatus.SENDING))


@attrs.frozen
class Recorded:
    applied: int
    stale: int
    #: (restock id, key, quantity) for every restock this batch opened
    opened: tuple[tuple[int, StockKey, int], ...]


#: built once: every public sign-up's stock check runs it, and building and cache-keying a
#: new statement per call cost more than running it (issue 13)
_QUANTITIES = sa.select(stock.c.variant_id, stock.c.scope, stock.c.quantity).where(
    stock.c.source == sa.bindparam("source"),
    stock.c.variant_id.in_(sa.bindparam("variant_ids", expanding=True)),
)


class StockStore:
    def __init__(self, db: Db):
        self.db = db

    def quantities(self, source: str, keys: Sequence[StockKey]) -> dict[StockKey, int | None]:
        """The stored quantity of each key (None when unknown)."""
        found: dict[StockKey, int | None] = {key: None for key in keys}
        if not keys:
            return found
        variant_ids = sorted({k.variant_id for k in keys})
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(_QUANTITIES, {"source": source, "variant_ids": variant_ids})
            for variant_id, scope, quantity in rows:
                key = StockKey(variant_id, scope)
                if key in found:
                    found[key] = quantity
        return found

    def record(
        self, source: str, updates: Sequence[StockUpdate], *, required: int, trigger_delay_ms: int
    ) -> Recorded:
        """Apply updates newer than the stored observation; open a restock for each key that
        rose to `required` or more while it has pending subscribers nobody is sending to."""
        now = utcnow()
        keys = sorted({u.key for u in updates}, key=lambda k: (k.variant_id, k.scope))
        with self.db.engine.begin() as conn:
            current = self._lock_current(conn, source, keys, now)
            diff = diff_stock(current, updates, required)
            self._write(conn, source, diff.inserts, diff.changes, now)
            opened = []
            for key, quantity in diff.rising.items():
                restock_id = self._open_restock(conn, source, key, quantity, now, trigger_delay_ms)
                if restock_id is not None:
                    opened.append((restock_id, key, quantity))
            if opened:
                self.db.wake(conn)
        return Recorded(diff.applied, diff.stale, tuple(opened))

    def _lock_current(
        self, conn: Connection, source: str, keys: Sequence[StockKey], now: datetime
    ) -> dict[StockKey, Known]:
        if self.db.is_postgres:
            # make the rows exist, then lock them in key order: concurrent batches
            # touching the same keys queue up instead of deadlocking
            placeholder = datetime.min.replace(tzinfo=now.tzinfo)
            conn.execute(
                self.db.insert(stock)
                .values(
                    [
                        {
                            "source": source,
                            "variant_id": k.variant_id,
                            "scope": k.scope,
                            "quantity": None,
                            "observed_at": placeholder,
                            "updated_at": now,
                        }
                        for k in keys
                    ]
                )
                .on_conflict_do_nothing()
            )
        current: dict[StockKey, Known] = {}
        for start in range(0, len(keys), 500):
            chunk = [(k.variant_id, k.scope) for k in keys[start : start + 500]]
            query = (
                sa.select(stock.c.variant_id, stock.c.scope, stock.c.quantity, stock.c.observed_at)
                .where(
                    stock.c.source == source,
                    # SQLite cannot search the primary key with a row-value IN list: alone,
                    # it scanned every stock row of the source per chunk (a reconciliation
                    # pass grew quadratically); the plain IN makes it an index search
                    stock.c.variant_id.in_(sorted({v for v, _ in chunk})),
                    sa.tuple_(stock.c.variant_id, stock.c.scope).in_(chunk),
                )
                .order_by(stock.c.variant_id, stock.c.scope)
            )
            if self.db.is_postgres:
                query = query.with_for_update()
            for v, sc, quantity, observed in conn.execute(query):
                current[StockKey(v, sc)] = (quantity, observed)
        return current

    @staticmethod
    def _write(
        conn: Connection,
        source: str,
        inserts: Sequence[tuple[StockKey, int | None, datetime]],
        changes: Any,
        now: datetime,
    ) -> None:
        if inserts:
            conn.execute(
                sa.insert(stock),
                [
                    {
                        "source": source,
                        "variant_id": key.variant_id,
                        "scope": key.scope,
                        "quantity": quantity,
                        "observed_at": observed,
                        "updated_at": now,
                    }
                    for key, quantity, observed in inserts
                ],
            )
        if changes:
            conn.execute(
                sa.update(stock)
                .where(
                    stock.c.source == source,
                    stock.c.variant_id == sa.bindparam("v"),
                    stock.c.scope == sa.bindparam("sc"),
                )
                .values(
                    quantity=sa.bindparam("q"),
                    observed_at=sa.bindparam("o", type_=tables.UTCDateTime),
                    updated_at=now,
                ),
                [
                    {"v": key.variant_id, "sc": key.scope, "q": quantity, "o": observed}
                    for key, (quantity, observed) in changes.items()
                ],
            )

    def _open_restock(
        self,
        conn: Connection,
        source: str,
        key: StockKey,
        quantity: int,
        now: datetime,
        trigger_delay_ms: int,
    ) -> int | None:
        s = subscriptions
        pending = conn.execute(
            sa.select(sa.literal(1))
            .where(
                s.c.source == source,
                s.c.variant_id == key.variant_id,
                s.c.scope == key.scope,
                s.c.status == str(SubscriptionStatus.PENDING),
                ~sa.exists().where(
                    deliveries.c.subscription_id == s.c.id,
                    deliveries.c.status.in_(ACTIVE),
                    deliveries.c.kind == "restock",
                ),
            )
            .limit(1)
        ).first()
        if pending is None:
            return None
        insert = (
            self.db.insert(restocks)
            .values(
                source=source,
                variant_id=key.variant_id,
                scope=key.scope,
                quantity=quantity,
                detected_at=now,
                status=str(RestockStatus.OPEN),
                next_wave_at=now + timedelta(milliseconds=trigger_delay_ms),
                released=0,
                waves=0,
            )
            .on_conflict_do_nothing(
                index_elements=["source", "variant_id", "scope"],
                index_where=sa.text("status = 'open'"),
            )
            .returning(restocks.c.id)
        )
        restock_id: int | None = conn.execute(insert).scalar()
        return restock_id
