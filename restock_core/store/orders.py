"""Orders and conversions: storing platform orders once and the conversions they make.

Attribution runs set-based, a batch of orders per transaction: the new orders go in with
ON CONFLICT DO NOTHING (a re-delivered webhook finds its order already there and converts
nothing), one indexed read fetches the notified subscriptions any of them can match (by
contact or customer id, variant and notification time), the pure rules in
:mod:`restock_core.attribution` pick the conversions, and they go in keyed by subscription
(once per subscription, also against a concurrent batch)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..attribution import Candidate, contacts_of, is_attributable, match
from ..db import conversions, orders, subscriptions, utcnow
from ..models import Conversion, Order, SubscriptionStatus
from ._base import Db, chunks

s = subscriptions
c = conversions
NOTIFIED = str(SubscriptionStatus.NOTIFIED)
#: keeps every IN list well under SQLite's parameter limit
IN_CHUNK = 1000


def conversion_from_row(row: Any) -> Conversion:
    m = row._mapping
    return Conversion(
        id=m["id"],
        subscription_id=m["subscription_id"],
        source=m["source"],
        order_id=m["order_id"],
        variant_id=m["variant_id"],
        quantity=m["quantity"],
        revenue=Decimal(m["revenue"]),
        currency=m["currency"],
        ordered_at=m["ordered_at"],
        notified_at=m["notified_at"],
        recorded_at=m["recorded_at"],
    )


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, Decimal):
        return str(value)
    return value


def _status(order: Order) -> str:
    return "test" if order.test else "cancelled" if order.cancelled else "placed"


class OrderStore:
    def __init__(self, db: Db):
        self.db = db

    def record(self, batch: Sequence[Order], window: timedelta) -> list[Conversion]:
        """Store `batch` (orders already stored are skipped) and the conversions the new
        ones make. Returns the conversions recorded."""
        if not batch:
            return []
        now = utcnow()
        unique: dict[tuple[str, str], Order] = {}
        for order in batch:
            unique.setdefault((order.source, order.order_id), order)
        recorded: list[Conversion] = []
        with self.db.engine.begin() as conn:
            new = self._insert_orders(conn, list(unique.values()), now)
            attributable = [o for o in new if is_attributable(o)]
            for part in chunks(attributable, IN_CHUNK):
                recorded.extend(self._convert(conn, part, window, now))
        return recorded

    def _insert_ignore(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """executemany INSERT ... ON CONFLICT DO NOTHING. On SQLite the values are converted
        here (datetimes in SQLAlchemy's own "Y-m-d H:M:S.f" UTC text, decimals as text in a
        NUMERIC column) and handed to the driver: SQLAlchemy's per-row parameter processing
        made these inserts five times slower (bench/bench_attribution.py)."""
        if not rows:
            return
        if self.db.is_postgres:
            conn.execute(self.db.insert(table).on_conflict_do_nothing(), rows)
            return
        columns = list(rows[0])
        for name in columns:
            table.c[name]  # noqa: B018 - a KeyError for a column that does not exist
        statement = (
            f"INSERT OR IGNORE INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        conn.exec_driver_sql(
            statement, [tuple(_sqlite_value(row[name]) for name in columns) for row in rows]
        )

    def _insert_orders(self, conn: Connection, batch: list[Order], now: datetime) -> list[Order]:
        """Insert the orders; return those that were not stored before."""
        new: list[Order] = []
        for part in chunks(batch, IN_CHUNK):
            stored = {
                (src, oid)
                for src, oid in conn.execute(
                    sa.select(orders.c.source, orders.c.order_id).where(
                        orders.c.source.in_(sorted({o.source for o in part})),
                        orders.c.order_id.in_(sorted({o.order_id for o in part})),
                    )
                )
            }
            fresh = [o for o in part if (o.source, o.order_id) not in stored]
            if not fresh:
                continue
            # no RETURNING: a plain executemany is several times cheaper. An order a
            # concurrent call stored in between is converted by both; the unique key on
            # conversions.subscription_id keeps that to one conversion each.
            self._insert_ignore(
                conn,
                orders,
                [
                    {
                        "source": o.source,
                        "order_id": o.order_id,
                        "placed_at": o.placed_at,
                        "currency": o.currency,
                        "total": o.total,
                        "status": _status(o),
                        "received_at": now,
                    }
                    for o in fresh
                ],
            )
            new.extend(fresh)
        return new

    def _convert(
        self, conn: Connection, part: Sequence[Order], window: timedelta, now: datetime
    ) -> list[Conversion]:
        contacts = sorted({x for o in part for x in contacts_of(o)})
        customers = sorted({o.customer_id for o in part if o.customer_id})
        wanted = {line.variant_id for o in part for line in o.lines}
        sources = {o.source for o in part}
        if not wanted or not (contacts or customers):
            return []
        earliest = min(o.placed_at for o in part) - window
        latest = max(o.placed_at for o in part)
        seen: dict[int, Candidate] = {}
        # one read per way of naming a person, each on its index; variant and source are
        # checked by `match`, not here: as SQL terms they tempt SQLite (no statistics) into
        # walking every notified row of each variant through ix_subscriptions_release
        for column, values in ((s.c.contact, contacts), (s.c.customer_id, customers)):
            if not values:
                continue
            query = (
                sa.select(
                    s.c.id,
                    s.c.source,
                    s.c.variant_id,
                    s.c.contact,
                    s.c.customer_id,
                    s.c.notified_at,
                )
                .select_from(s.outerjoin(c, c.c.subscription_id == s.c.id))
                .where(
                    column.in_(values),
                    s.c.status == NOTIFIED,
                    s.c.notified_at >= earliest,
                    s.c.notified_at <= latest,
                    c.c.id.is_(None),
                )
            )
            for sid, src, variant, contact, customer, notified in conn.execute(query):
                if variant in wanted and src in sources:
                    seen[sid] = Candidate(sid, src, variant, contact, customer, notified)
        candidates = list(seen.values())
        if not candidates:
            return []
        by_person: dict[str, list[Candidate]] = {}
        for candidate in candidates:
            by_person.setdefault(candidate.contact, []).append(candidate)
            if candidate.customer_id:
                by_person.setdefault("customer:" + candidate.customer_id, []).append(candidate)
        taken: set[int] = set()
        found: list[Conversion] = []
        for order in sorted(part, key=lambda o: (o.placed_at, o.order_id)):
            keys = [*contacts_of(order)]
            if order.customer_id:
                keys.append("customer:" + order.customer_id)
            mine = {id(x): x for key in keys for x in by_person.get(key, ())}
            made = match(order, mine.values(), window, taken)
            taken.update(x.subscription_id for x in made)
            found.extend(made)
        if not found:
            return []
        rows = [
            {
                "subscription_id": x.subscription_id,
                "source": x.source,
                "order_id": x.order_id,
                "variant_id": x.variant_id,
                "quantity": x.quantity,
                "revenue": x.revenue,
                "currency": x.currency,
                "ordered_at": x.ordered_at,
                "notified_at": x.notified_at,
                "recorded_at": now,
            }
            for x in found
        ]
        if self.db.is_postgres:
            # RETURNING the key: a concurrent batch may have converted one meanwhile
            inserted = {
                sid
                for (sid,) in conn.execute(
                    self.db.insert(c)
                    .on_conflict_do_nothing(index_elements=["subscription_id"])
                    .returning(c.c.subscription_id),
                    rows,
                )
            }
        else:
            # SQLite: this transaction holds the write lock since it began and the
            # candidates were read in it unconverted, so every row goes in
            self._insert_ignore(conn, c, rows)
            inserted = {x.subscription_id for x in found}
        return [attrs.evolve(x, recorded_at=now) for x in found if x.subscription_id in inserted]

    def cancel(self, source: str, order_id: str) -> list[Conversion]:
        """The platform cancelled (or refunded) an order: mark it and take back its
        conversions. Returns the conversions removed."""
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.update(orders)
                .where(orders.c.source == source, orders.c.order_id == order_id)
                .values(status="cancelled")
            )
            removed = conn.execute(
                sa.delete(c).where(c.c.source == source, c.c.order_id == order_id).returning(*c.c)
            ).all()
        return [conversion_from_row(r) for r in removed]

    def is_stored(self, source: str, order_id: str) -> bool:
        with self.db.read_engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(sa.literal(1)).where(
                        orders.c.source == source, orders.c.order_id == order_id
                    )
                ).first()
                is not None
            )

    def latest_placed_at(self, source: str) -> datetime | None:
        """When the newest stored order of `source` was placed (where a poll resumes)."""
        with self.db.read_engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(orders.c.placed_at)).where(orders.c.source == source)
            ).scalar()
        return value  # type: ignore[no-any-return]  # max() keeps the column's UTC type

    def conversion_of(self, subscription_id: int) -> Conversion | None:
        with self.db.read_engine.connect() as conn:
            row = conn.execute(sa.select(c).where(c.c.subscription_id == subscription_id)).first()
        return None if row is None else conversion_from_row(row)

    def report(
        self,
        *,
        start: datetime | None,
        end: datetime | None,
        variant_id: str | None,
        variant_limit: int = 1000,
    ) -> dict[str, Any]:
        """Totals for subscriptions notified in [start, end): how many were notified, how
        many converted, revenue per currency, and the same per variant (most notified first,
        at most `variant_limit` variants)."""
        where = [s.c.status == NOTIFIED, s.c.notified_at.is_not(None)]
        if start is not None:
            where.append(s.c.notified_at >= start)
        if end is not None:
            where.append(s.c.notified_at < end)
        if variant_id is not None:
            where.append(s.c.variant_id == variant_id)
        joined = s.outerjoin(c, c.c.subscription_id == s.c.id)
        # conversions whose subscription retention purged: counted from the conversion alone
        # (it keeps when the person was notified and the variant)
        kept: list[Any] = [c.c.subscription_id.is_(None)]
        if start is not None:
            kept.append(c.c.notified_at >= start)
        if end is not None:
            kept.append(c.c.notified_at < end)
        if variant_id is not None:
            kept.append(c.c.variant_id == variant_id)
        with self.db.read_engine.connect() as conn:
            orphans = conn.execute(
                sa.select(
                    c.c.variant_id,
                    c.c.currency,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(c.c.quantity), 0),
                    sa.func.coalesce(sa.func.sum(c.c.revenue), 0),
                )
                .where(*kept)
                .group_by(c.c.variant_id, c.c.currency)
            ).all()
            notified, converted = conn.execute(
                sa.select(sa.func.count(), sa.func.count(c.c.id)).select_from(joined).where(*where)
            ).one()
            totals = conn.execute(
                sa.select(
                    c.c.currency,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(c.c.quantity), 0),
                    sa.func.coalesce(sa.func.sum(c.c.revenue), 0),
                )
                .select_from(joined)
                .where(*where, c.c.id.is_not(None))
                .group_by(c.c.currency)
                .order_by(c.c.currency)
            ).all()
            per_variant = conn.execute(
                sa.select(s.c.variant_id, sa.func.count(), sa.func.count(c.c.id))
                .select_from(joined)
                .where(*where)
                .group_by(s.c.variant_id)
                .order_by(sa.func.count().desc(), s.c.variant_id)
                .limit(variant_limit)
            ).all()
            shown = [v for v, _, _ in per_variant]
            revenue: dict[str, dict[str, Decimal]] = {}
            for part in chunks(shown, IN_CHUNK):
                for variant, currency, amount in conn.execute(
                    sa.select(c.c.variant_id, c.c.currency, sa.func.sum(c.c.revenue))
                    .select_from(joined)
                    .where(*where, c.c.id.is_not(None), s.c.variant_id.in_(part))
                    .group_by(c.c.variant_id, c.c.currency)
                ):
                    revenue.setdefault(variant, {})[currency] = Decimal(amount)
        sums: dict[str, list[Any]] = {cur: [int(n), int(q), Decimal(a)] for cur, n, q, a in totals}
        variants: dict[str, list[int]] = {v: [int(n), int(k)] for v, n, k in per_variant}
        for variant, currency, count, quantity, amount in orphans:
            notified, converted = notified + count, converted + count
            row = sums.setdefault(currency, [0, 0, Decimal(0)])
            row[0], row[1], row[2] = row[0] + count, row[1] + quantity, row[2] + Decimal(amount)
            pair = variants.setdefault(variant, [0, 0])
            pair[0], pair[1] = pair[0] + count, pair[1] + count
            per = revenue.setdefault(variant, {})
            per[currency] = per.get(currency, Decimal(0)) + Decimal(amount)
        ranked = sorted(variants.items(), key=lambda item: (-item[1][0], item[0]))
        return {
            "notified": int(notified),
            "converted": int(converted),
            "totals": [
                {
                    "currency": currency,
                    "conversions": count,
                    "quantity": quantity,
                    "revenue": amount,
                }
                for currency, (count, quantity, amount) in sorted(sums.items())
            ],
            "variants": [
                {
                    "variant_id": variant,
                    "notified": n,
                    "converted": k,
                    "revenue": revenue.get(variant, {}),
                }
                for variant, (n, k) in ranked[:variant_limit]
            ],
        }
