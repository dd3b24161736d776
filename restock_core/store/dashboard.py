"""The merchant dashboard's queries (`restock_core/dashboard` renders them): reads return
attrs values; its one write of its own, requeueing failed deliveries, is here too. Lifting a
suppression is `SuppressionStore.remove`.

Lists are keyset-paginated (a cursor of the last row's sort key, never OFFSET), so the 1000th
page costs what the first does. The demand counts come from the `demand` table that
triggers on `subscriptions` keep exact (migration 0003_faces)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db import UTCDateTime, deliveries, restocks, subscriptions, suppressions, utcnow
from ..db import demand as demand_table
from ._base import Db

s = subscriptions
d = deliveries
dm = demand_table

SORTS = ("pending", "variant")
PAGE = 50


@attrs.frozen
class DemandRow:
    source: str
    variant_id: str
    scope: str
    pending: int
    oldest: datetime | None
    last_week: int  # sign-ups in the last 7 days that are still pending (the trend)
    product_title: str | None = None
    variant_title: str | None = None


@attrs.frozen
class DemandPage:
    rows: tuple[DemandRow, ...]
    next_cursor: str | None


@attrs.frozen
class SubscriberRow:
    id: int
    source: str
    variant_id: str
    scope: str
    channel: str
    contact: str
    status: str
    created_at: datetime
    notified_at: datetime | None
    failed_reason: str | None
    locale: str | None
    product_title: str | None
    variant_title: str | None


@attrs.frozen
class WaveRow:
    """One wave of a restock: the deliveries it released and where they are now."""

    wave: int | None  # None: deliveries released before waves were recorded (0007)
    released: int
    sent: int
    failed: int
    pending: int  # queued + sending
    cancelled: int


@attrs.frozen
class RestockRow:
    id: int
    source: str
    variant_id: str
    scope: str
    quantity: int | None
    detected_at: datetime
    status: str
    released: int
    waves: int
    next_wave_at: datetime
    finished_at: datetime | None
    note: str | None
    deliveries: dict[str, int]  # queued / sending / sent / failed / cancelled
    still_pending: int  # subscribers of the variant still waiting
    wave_rows: tuple[WaveRow, ...] = ()  # oldest first; the "earlier" group (None) first


@attrs.frozen
class FailureRow:
    provider: str | None
    reason: str
    count: int


@attrs.frozen
class SuppressionRow:
    channel: str
    contact: str
    reason: str | None
    created_at: datetime


@attrs.frozen
class ProviderHealth:
    provider: str
    sent: int
    failed: int
    retrying: int  # queued again after a transient failure
    last_error: str | None


def _encode(values: Sequence[Any]) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, sort: str) -> list[Any] | None:
    """A cursor from the previous page, or None when absent or not one of ours."""
    if not cursor:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != 4:
            return None
        first, *keys = values
        if not all(isinstance(k, str) for k in keys):
            return None
        if sort == "pending" and not (isinstance(first, int) and not isinstance(first, bool)):
            return None
        return [first, *keys]
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _demand_query(q: str | None, sort: str, after: list[Any] | None, limit: int | None) -> Any:
    keys = (dm.c.variant_id, dm.c.scope, dm.c.source)
    query = sa.select(dm).where(dm.c.pending > 0)
    if q:
        pattern = _like(q)
        query = query.where(
            sa.or_(
                dm.c.variant_id.ilike(pattern, escape="\\"),
                dm.c.product_title.ilike(pattern, escape="\\"),
                dm.c.variant_title.ilike(pattern, escape="\\"),
            )
        )
    if after is not None:
        first, *rest = after
        later_keys = sa.tuple_(*keys) > sa.tuple_(*[sa.literal(k) for k in rest])
        if sort == "pending":
            query = query.where(
                sa.or_(dm.c.pending < first, sa.and_(dm.c.pending == first, later_keys))
            )
        else:
            query = query.where(later_keys)
    if sort == "pending":
        query = query.order_by(dm.c.pending.desc(), *keys)
    else:
        query = query.order_by(*keys)
    if limit is not None:
        query = query.limit(limit)
    return query


_WAIT_PART = (
    "SELECT {i} AS i,"
    " (SELECT min(created_at) FROM subscriptions WHERE source = :s{i} AND variant_id = :v{i}"
    " AND scope = :c{i} AND status = 'pending') AS oldest,"
    " (SELECT count(*) FROM subscriptions WHERE source = :s{i} AND variant_id = :v{i}"
    " AND scope = :c{i} AND status = 'pending' AND created_at >= :week_ago) AS recent"
)


def _waits(
    conn: Connection, rows: Sequence[Any], week_ago: datetime
) -> list[tuple[datetime | None, int]]:
    """(oldest pending sign-up, pending sign-ups of the last 7 days) per row, in one
    statement: two lookups on the release index (source, variant_id, scope, status,
    created_at) per row, never a scan of a variant's whole history. Plain SQL text: building
    the same 100 subqueries as expressions cost more than running them."""
    if not rows:
        return []
    sql = " UNION ALL ".join(_WAIT_PART.format(i=i) for i in range(len(rows)))
    statement = (
        sa.text(sql)
        .bindparams(sa.bindparam("week_ago", type_=UTCDateTime))
        .columns(i=sa.Integer, oldest=UTCDateTime, recent=sa.Integer)
    )
    params: dict[str, Any] = {"week_ago": week_ago}
    for i, r in enumerate(rows):
        params[f"s{i}"], params[f"v{i}"], params[f"c{i}"] = r.source, r.variant_id, r.scope
    found = {i: (oldest, int(recent or 0)) for i, oldest, recent in conn.execute(statement, params)}
    return [found[i] for i in range(len(rows))]


def _demand_rows(conn: Connection, rows: Sequence[Any]) -> list[DemandRow]:
    waits = _waits(conn, rows, utcnow() - timedelta(days=7))
    return [
        DemandRow(
            source=r.source,
            variant_id=r.variant_id,
            scope=r.scope,
            pending=int(r.pending),
            oldest=oldest,
            last_week=recent,
            product_title=r.product_title,
            variant_title=r.variant_title,
        )
        for r, (oldest, recent) in zip(rows, waits, strict=True)
    ]


def demand(
    engine: Engine,
    *,
    q: str | None = None,
    sort: str = "pending",
    cursor: str | None = None,
    limit: int = PAGE,
) -> DemandPage:
    """Variants with pending sign-ups, most wanted first (or by variant id), from the
    trigger-kept `demand` table."""
    if sort not in SORTS:
        sort = "pending"
    after = decode_cursor(cursor, sort)
    with engine.connect() as conn:
        rows = conn.execute(_demand_query(q, sort, after, limit + 1)).all()
        items = tuple(_demand_rows(conn, rows[:limit]))
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        first: Any = last.pending if sort == "pending" else ""
        next_cursor = _encode([first, last.variant_id, last.scope, last.source])
    return DemandPage(items, next_cursor)


def demand_all(
    engine: Engine, *, q: str | None = None, sort: str = "pending"
) -> Iterator[DemandRow]:
    """Every demand row in page order, streamed (the CSV export)."""
    if sort not in SORTS:
        sort = "pending"
    with engine.connect() as reader, engine.connect() as lookups:
        result = reader.execution_options(stream_results=True, yield_per=500).execute(
            _demand_query(q, sort, None, None)
        )
        for batch in result.partitions(500):
            yield from _demand_rows(lookups, batch)


def _subscriber(row: Any) -> SubscriberRow:
    return SubscriberRow(
        id=row.id,
        source=row.source,
        variant_id=row.variant_id,
        scope=row.scope,
        channel=row.channel,
        contact=row.contact,
        status=row.status,
        created_at=row.created_at,
        notified_at=row.notified_at,
        failed_reason=row.failed_reason,
        locale=row.locale,
        product_title=row.product_title,
        variant_title=row.variant_title,
    )


def _subscribers_query(
    *,
    source: str | None,
    variant_id: str | None,
    scope: str | None,
    status: str | None,
    contact: str | None,
) -> Any:
    query = sa.select(
        s.c.id,
        s.c.source,
        s.c.variant_id,
        s.c.scope,
        s.c.channel,
        s.c.contact,
        s.c.status,
        s.c.created_at,
        s.c.notified_at,
        s.c.failed_reason,
        s.c.locale,
        s.c.product_title,
        s.c.variant_title,
    ).order_by(s.c.id)
    for column, value in (
        (s.c.source, source),
        (s.c.variant_id, variant_id),
        (s.c.scope, scope),
        (s.c.status, status),
        (s.c.contact, contact),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def subscribers(
    engine: Engine,
    *,
    source: str | None = None,
    variant_id: str | None = None,
    scope: str | None = None,
    status: str | None = None,
    contact: str | None = None,
    after: int | None = None,
    limit: int = PAGE,
) -> tuple[tuple[SubscriberRow, ...], int | None]:
    """Subscriptions of one variant, or of one contact (support and data-rights requests),
    oldest first; returns (rows, next `after`)."""
    query = _subscribers_query(
        source=source, variant_id=variant_id, scope=scope, status=status, contact=contact
    ).limit(limit + 1)
    if after is not None:
        query = query.where(s.c.id > after)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    items = tuple(_subscriber(r) for r in rows[:limit])
    return items, (items[-1].id if len(rows) > limit else None)


def subscribers_all(engine: Engine, **filters: Any) -> Iterator[SubscriberRow]:
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=1000).execute(
            _subscribers_query(**filters)
        )
        for row in result:
            yield _subscriber(row)


def _wave_rows(counts: dict[int | None, dict[str, int]]) -> tuple[WaveRow, ...]:
    return tuple(
        WaveRow(
            wave=wave,
            released=sum(by_status.values()),
            sent=by_status.get("sent", 0),
            failed=by_status.get("failed", 0),
            pending=by_status.get("queued", 0) + by_status.get("sending", 0),
            cancelled=by_status.get("cancelled", 0),
        )
        for wave, by_status in sorted(counts.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
    )


def restock_list(
    engine: Engine, *, before: int | None = None, limit: int = PAGE
) -> tuple[tuple[RestockRow, ...], int | None]:
    """Restocks, newest first, with their deliveries by status and by wave: one grouped
    query over the page's restocks (an index-only scan of ix_deliveries_restock_wave)."""
    query = sa.select(restocks).order_by(restocks.c.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(restocks.c.id < before)
    with engine.connect() as conn:
        rows = conn.execute(query).all()[: limit + 1]
        shown = rows[:limit]
        counts: dict[int, dict[str, int]] = {r.id: {} for r in shown}
        by_wave: dict[int, dict[int | None, dict[str, int]]] = {r.id: {} for r in shown}
        if shown:
            for restock_id, wave, status, count in conn.execute(
                sa.select(d.c.restock_id, d.c.wave, d.c.status, sa.func.count())
                .where(d.c.restock_id.in_([r.id for r in shown]))
                .group_by(d.c.restock_id, d.c.wave, d.c.status)
            ):
                totals = counts[restock_id]
                totals[status] = totals.get(status, 0) + count
                by_wave[restock_id].setdefault(wave, {})[status] = count
        waiting: dict[tuple[str, str, str], int] = {}
        for r in shown:
            key = (r.source, r.variant_id, r.scope)
            if key not in waiting:
                waiting[key] = conn.execute(
                    sa.select(sa.func.count()).where(
                        s.c.source == r.source,
                        s.c.variant_id == r.variant_id,
                        s.c.scope == r.scope,
                        s.c.status == "pending",
                    )
                ).scalar_one()
    items = tuple(
        RestockRow(
            id=r.id,
            source=r.source,
            variant_id=r.variant_id,
            scope=r.scope,
            quantity=r.quantity,
            detected_at=r.detected_at,
            status=r.status,
            released=r.released,
            waves=r.waves,
            next_wave_at=r.next_wave_at,
            finished_at=r.finished_at,
            note=r.note,
            deliveries=counts[r.id],
            still_pending=waiting[(r.source, r.variant_id, r.scope)],
            wave_rows=_wave_rows(by_wave[r.id]),
        )
        for r in shown
    )
    return items, (items[-1].id if len(rows) > limit else None)


def failures(engine: Engine, *, limit: int = 50) -> tuple[FailureRow, ...]:
    """Failed deliveries by provider and reason (the reason's first 80 characters, so one
    bounce message per address does not make one row per address)."""
    reason = sa.func.substr(sa.func.coalesce(d.c.last_error, "(no reason)"), 1, 80).label("reason")
    query = (
        sa.select(d.c.provider, reason, sa.func.count().label("n"))
        .where(d.c.status == "failed")
        .group_by(d.c.provider, reason)
        .order_by(sa.text("n DESC"), d.c.provider, reason)
        .limit(limit)
    )
    with engine.connect() as conn:
        return tuple(FailureRow(p, r, n) for p, r, n in conn.execute(query))


def provider_health(engine: Engine, *, hours: int = 24) -> dict[str, ProviderHealth]:
    """Per provider over the last `hours`: sent, failed for good, being retried, last error."""
    since = utcnow() - timedelta(hours=hours)
    out: dict[str, ProviderHealth] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                d.c.provider,
                sa.func.sum(sa.case((d.c.status == "sent", 1), else_=0)),
                sa.func.sum(sa.case((d.c.status == "failed", 1), else_=0)),
                sa.func.sum(
                    sa.case((sa.and_(d.c.status == "queued", d.c.attempts > 0), 1), else_=0)
                ),
            )
            .where(d.c.provider.is_not(None), d.c.created_at >= since)
            .group_by(d.c.provider)
        ).all()
        for provider, sent, failed, retrying in rows:
            last = conn.execute(
                sa.select(d.c.last_error)
                .where(
                    d.c.provider == provider, d.c.last_error.is_not(None), d.c.created_at >= since
                )
                .order_by(d.c.id.desc())
                .limit(1)
            ).scalar()
            out[provider] = ProviderHealth(
                provider, int(sent or 0), int(failed or 0), int(retrying or 0), last
            )
    return out


def suppression_list(
    engine: Engine, *, contact: str | None = None, limit: int = 100
) -> tuple[SuppressionRow, ...]:
    query = (
        sa.select(suppressions)
        .order_by(suppressions.c.created_at.desc(), suppressions.c.channel, suppressions.c.contact)
        .limit(limit)
    )
    if contact:
        query = query.where(suppressions.c.contact == contact)
    with engine.connect() as conn:
        return tuple(
            SuppressionRow(r.channel, r.contact, r.reason, r.created_at)
            for r in conn.execute(query)
        )


def requeue_failed(engine: Engine, *, provider: str | None = None) -> list[int]:
    """Queue failed deliveries again, with fresh attempts, and make their subscriptions
    pending again. Skipped: contacts still suppressed, subscriptions that are no longer
    `failed` (unsubscribed), and people who have signed up again since (one pending each)."""
    now = utcnow()
    other = s.alias("other")
    query = (
        sa.select(d.c.id, d.c.subscription_id)
        .join(s, s.c.id == d.c.subscription_id)
        .where(
            d.c.status == "failed",
            s.c.status == "failed",
            ~sa.exists().where(
                suppressions.c.channel == s.c.channel, suppressions.c.contact == s.c.contact
            ),
            ~sa.exists().where(
                other.c.variant_id == s.c.variant_id,
                other.c.scope == s.c.scope,
                other.c.channel == s.c.channel,
                other.c.contact == s.c.contact,
                other.c.status == "pending",
            ),
        )
    )
    if provider:
        query = query.where(d.c.provider == provider)
    with engine.begin() as conn:
        rows = conn.execute(query).all()
        delivery_ids = [r.id for r in rows]
        subscription_ids = sorted({r.subscription_id for r in rows})
        for start in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[start : start + 500]
            conn.execute(
                sa.update(d)
                .where(d.c.id.in_(chunk), d.c.status == "failed")
                .values(
                    status="queued",
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    claim_token=None,
                    last_error=sa.func.substr(
                        "requeued from the dashboard; was: " + sa.func.coalesce(d.c.last_error, ""),
                        1,
                        1000,
                    ),
                )
            )
        for start in range(0, len(subscription_ids), 500):
            chunk = subscription_ids[start : start + 500]
            conn.execute(
                sa.update(s)
                .where(s.c.id.in_(chunk), s.c.status == "failed")
                .values(status="pending", failed_reason=None, updated_at=now)
            )
    return delivery_ids


def _day(column: Any, postgres: bool) -> Any:
    if postgres:
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)  # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS...'


def per_day(engine: Engine, what: str, *, days: int = 30) -> list[tuple[date, int]]:
    """Sign-ups ("signups") or notifications sent ("sent") per UTC day, oldest first, with
    zero days filled in."""
    postgres = engine.dialect.name == "postgresql"
    today = utcnow().date()
    start = today - timedelta(days=days - 1)
    since = datetime(start.year, start.month, start.day, tzinfo=utcnow().tzinfo)
    if what == "signups":
        column, where = s.c.created_at, [s.c.created_at >= since]
    else:
        column, where = d.c.sent_at, [d.c.status == "sent", d.c.sent_at >= since]
    day = _day(column, postgres).label("day")
    with engine.connect() as conn:
        found = {
            str(k): int(n)
            for k, n in conn.execute(sa.select(day, sa.func.count()).where(*where).group_by(day))
        }
    return [
        (start + timedelta(days=i), found.get((start + timedelta(days=i)).isoformat(), 0))
        for i in range(days)
    ]


def variant_snapshot(
    engine: Engine, source: str, variant_id: str, scope: str
) -> tuple[str | None, str | None, str | None]:
    """(product_title, variant_title, url) from the latest sign-up of a variant that has
    them, for message previews of variants the adapter cannot describe."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(s.c.product_title, s.c.variant_title, s.c.url)
            .where(
                s.c.source == source,
                s.c.variant_id == variant_id,
                s.c.scope == scope,
                sa.or_(s.c.product_title.is_not(None), s.c.url.is_not(None)),
            )
            .order_by(s.c.id.desc())
            .limit(1)
        ).first()
    return (row[0], row[1], row[2]) if row else (None, None, None)


class DashboardStore:
    """`store.dashboard`: the functions above over this store's engines (reads on the
    read engine, so on SQLite they run beside the writer)."""

    def __init__(self, db: Db):
        self.db = db

    def demand(self, **kwargs: Any) -> DemandPage:
        return demand(self.db.read_engine, **kwargs)

    def demand_all(self, **kwargs: Any) -> Iterator[DemandRow]:
        return demand_all(self.db.read_engine, **kwargs)

    def subscribers(self, **kwargs: Any) -> tuple[tuple[SubscriberRow, ...], int | None]:
        return subscribers(self.db.read_engine, **kwargs)

    def subscribers_all(self, **kwargs: Any) -> Iterator[SubscriberRow]:
        return subscribers_all(self.db.read_engine, **kwargs)

    def restocks(self, **kwargs: Any) -> tuple[tuple[RestockRow, ...], int | None]:
        return restock_list(self.db.read_engine, **kwargs)

    def failures(self, **kwargs: Any) -> tuple[FailureRow, ...]:
        return failures(self.db.read_engine, **kwargs)

    def provider_health(self, **kwargs: Any) -> dict[str, ProviderHealth]:
        return provider_health(self.db.read_engine, **kwargs)

    def suppressions(self, **kwargs: Any) -> tuple[SuppressionRow, ...]:
        return suppression_list(self.db.read_engine, **kwargs)

    def requeue_failed(self, *, provider: str | None = None) -> list[int]:
        """Queue failed deliveries again (see `requeue_failed`) and wake the workers."""
        ids = requeue_failed(self.db.engine, provider=provider)
        if ids:
            self.db.wake()
        return ids

    def per_day(self, what: str, *, days: int = 30) -> list[tuple[date, int]]:
        return per_day(self.db.read_engine, what, days=days)

    def variant_snapshot(
        self, source: str, variant_id: str, scope: str
    ) -> tuple[str | None, str | None, str | None]:
        return variant_snapshot(self.db.read_engine, source, variant_id, scope)
