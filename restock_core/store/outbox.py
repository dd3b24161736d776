"""The delivery outbox, used by workers the way procrastinate's worker uses its job
manager: `claim` a batch (PostgreSQL: `FOR UPDATE SKIP LOCKED`; leases so a dead worker's
claims are taken over), `cancel` what no longer applies, `record` what providers said.
Suppressions caused by a result are written in the transaction that records it."""

from __future__ import annotations

import enum
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import (
    UTCDateTime,
    deliveries,
    processed_events,
    provider_request_members,
    provider_requests,
    subscriptions,
    suppressions,
    utcnow,
)
from ..models import (
    Channel,
    DeliveryEvent,
    DeliveryKind,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from ._base import SUBSCRIPTION_COLUMNS, Db, chunks, subscription_from_row

d = deliveries
s = subscriptions
PENDING = str(SubscriptionStatus.PENDING)
UNCONFIRMED = str(SubscriptionStatus.UNCONFIRMED)
RESTOCK = str(DeliveryKind.RESTOCK)
CONFIRM = str(DeliveryKind.CONFIRM)
#: up to this many distinct provider message ids in one result, UPDATE ... IN per id
_GROUPED_IDS = 4


@attrs.frozen
class ClaimedDelivery:
    delivery_id: int
    attempts: int
    provider: str | None
    subscription: Subscription
    kind: DeliveryKind = DeliveryKind.RESTOCK


@attrs.frozen
class Claim:
    """A batch of deliveries leased to one worker; `token` identifies the lease."""

    token: str
    deliveries: tuple[ClaimedDelivery, ...]


@attrs.frozen
class Sent:
    delivery_id: int
    subscription_id: int
    provider_message_id: str | None


@attrs.frozen
class Retry:
    delivery_id: int
    error: str
    at: datetime
    #: False for a provider pause (429, auth outage): the attempt is given back
    counts: bool = True


@attrs.frozen
class Failed:
    delivery_id: int
    subscription_id: int
    error: str
    #: block this contact for this channel (hard bounce, opted out)
    suppress: tuple[Channel, str] | None = None


@attrs.frozen
class StoredRequest:
    """A provider request whose membership is fixed (see `Provider.stable_requests`)."""

    key: str
    delivery_ids: tuple[int, ...]
    variant_info: dict[str, dict[str, str | None]]


@attrs.frozen
class RetryFilter:
    """Which failed deliveries `Outbox.retry_failed` queues again (all given ones must match)."""

    restock_id: int | None = None
    provider: str | None = None
    reason: str | None = None  # a substring of the delivery's last error
    since: datetime | None = None  # failed deliveries created at or after
    until: datetime | None = None  # ... and before


@attrs.frozen
class Results:
    """What one provider call decided for its messages (see `dispatch.plan_results`)."""

    sent: tuple[Sent, ...] = ()
    retry: tuple[Retry, ...] = ()
    failed: tuple[Failed, ...] = ()


def in_ids(db: Db, column: Any, ids: Sequence[int]) -> Any:
    """`column IN ids` with the ids bound as one value: a JSON array read by `json_each` on
    SQLite, an array compared with `= ANY` on PostgreSQL. An expanding `IN (?, ?, ...)` has
    SQLAlchemy render one placeholder per id on every execution (about 2 µs each: 0.2 s per
    100,000 ids and statement in a fan-out) and is capped by SQLite's parameter limit."""
    return _in_bound(db, column, sa.bindparam(None, id_list(db, ids), type_=_ids_type(db)))


def ids_param(db: Db, column: Any, name: str) -> Any:
    """:func:`in_ids` with the ids left to bind at execution, as ``{name: id_list(db, ids)}``:
    for a statement built once and executed per batch."""
    return _in_bound(db, column, sa.bindparam(name, type_=_ids_type(db)))


def id_list(db: Db, ids: Sequence[int]) -> Any:
    """The ids as :func:`ids_param` binds them: a list (PostgreSQL) or a JSON array."""
    return list(ids) if db.is_postgres else json.dumps(list(ids))


def _in_bound(db: Db, column: Any, param: Any) -> Any:
    if db.is_postgres:
        return column == sa.any_(param)
    return column.in_(sa.select(sa.column("value")).select_from(sa.func.json_each(param)))


def _ids_type(db: Db) -> Any:
    if db.is_postgres:
        from sqlalchemy.dialects.postgresql import ARRAY

        return ARRAY(sa.BigInteger)
    return sa.String


def _mark_sent(which: Any) -> Any:
    """UPDATE the deliveries `which` selects, still held by claim `token`, to sent through
    `provider_id` with provider message id `pmid` at `at` (all bound per execution)."""
    return (
        sa.update(d)
        .where(which, d.c.claim_token == sa.bindparam("token", type_=sa.String))
        .values(
            provider_message_id=sa.bindparam("pmid", type_=sa.String),
            status=str(DeliveryStatus.SENT),
            provider=sa.bindparam("provider_id", type_=sa.String),
            sent_at=sa.bindparam("at", type_=UTCDateTime),
            lease_until=None,
        )
    )


def _utc(value: Any) -> datetime | None:
    """`UTCDateTime`'s result conversion, for columns read without it (see `_load`)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def _json(value: Any) -> Any:
    """The `attributes` column read without SQLAlchemy's JSON type (see `_load`)."""
    if not value or value == "{}":
        return {}
    return json.loads(value) if isinstance(value, str) else value


def add_suppression(db: Db, conn: Connection, channel: str, contact: str, reason: str) -> None:
    conn.execute(
        db.insert(suppressions)
        .values(channel=channel, contact=contact, reason=reason[:1000], created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["channel", "contact"])
    )


#: what a claim reads: the subscription (`Subscription`'s fields, in its order; the two
#: datetimes and `attributes` without their result processors), then the delivery
_RAW = {"created_at", "notified_at", "attributes"}
_CLAIM_COLUMNS = (
    *(sa.type_coerce(c, sa.String) if c.name in _RAW else c for c in SUBSCRIPTION_COLUMNS),
    d.c.id,
    d.c.attempts,
    d.c.provider,
    d.c.kind,
)


class Outbox:
    def __init__(self, db: Db):
        self.db = db

    def claim(
        self, batch_size: int, lease_seconds: float, skip_providers: Sequence[str] = ()
    ) -> Claim | None:
        """Lease up to `batch_size` due deliveries (and ones whose lease ran out), leaving
        out those of `skip_providers` (providers paused by an outage)."""
        now = utcnow()
        token = uuid.uuid4().hex
        params: dict[str, Any] = {
            "now": now,
            "token": token,
            "lease_to": now + timedelta(seconds=lease_seconds),
        }
        if skip_providers:
            params["skip"] = list(skip_providers)
        ids: list[int] = []
        with self.db.engine.begin() as conn:
            for statement in self._claim_statements[bool(skip_providers)]:
                params["n"] = batch_size - len(ids)
                ids.extend(conn.execute(statement, params).scalars())
                if len(ids) >= batch_size:
                    break
        if not ids:
            return None
        return Claim(token, self._load(token, sorted(ids)))

    @functools.cached_property
    def _claim_statements(self) -> dict[bool, tuple[Any, ...]]:
        """The claim's two UPDATEs, without and with (True) providers to skip, built once and
        bound per claim (`now`, `n`, `token`, `lease_to`, skipping also `skip`): expired
        leases first, then queued deliveries. Built per call, each cost SQLAlchemy about
        0.3 ms of statement construction and cache-key work (issue 13)."""
        return {skipping: self._build_claim_statements(skipping) for skipping in (False, True)}

    def _build_claim_statements(self, skipping: bool) -> tuple[Any, ...]:
        now = sa.bindparam("now", type_=UTCDateTime)
        skip = (
            sa.or_(
                d.c.provider.is_(None), d.c.provider.notin_(sa.bindparam("skip", expanding=True))
            )
            if skipping
            else sa.true()
        )
        statements = []
        for condition, order in (
            # expired leases, oldest lease first: ordered by `lease_until` so the partial
            # index ix_deliveries_leased serves it (ordered by id, SQLite walked the whole
            # table on every claim once ANALYZE had run: 0.45 s per claim at 1M rows)
            (
                sa.and_(d.c.status == str(DeliveryStatus.SENDING), d.c.lease_until < now),
                (d.c.lease_until, d.c.id),
            ),
            # queued, in id (= release = sign-up) order, on ix_deliveries_queued
            (
                sa.and_(d.c.status == str(DeliveryStatus.QUEUED), d.c.next_attempt_at <= now),
                (d.c.id,),
            ),
        ):
            due = (
                sa.select(d.c.id)
                .where(condition, skip)
                .order_by(*order)
                .limit(sa.bindparam("n", type_=sa.Integer))
            )
            if self.db.is_postgres:
                due = due.with_for_update(skip_locked=True)
            statements.append(
                sa.update(d)
                .where(d.c.id.in_(due.scalar_subquery()))
                .values(
                    status=str(DeliveryStatus.SENDING),
                    claim_token=sa.bindparam("token", type_=sa.String),
                    lease_until=sa.bindparam("lease_to", type_=UTCDateTime),
                    attempts=d.c.attempts + 1,
                )
                .returning(d.c.id)
            )
        return tuple(statements)

    def _load(self, token: str, ids: Sequence[int]) -> tuple[ClaimedDelivery, ...]:
        """The claimed deliveries with their subscriptions, read by primary key: filtered on
        the claim token alone, SQLite planned `SCAN deliveries` (no index on the token),
        once per claim, so a 1M fan-out spent 480 s in claims (issue 13). The two datetimes
        and the JSON column are read as stored and converted here: SQLAlchemy's result
        processors (a regular expression per SQLite datetime) were half the read's cost."""
        kinds = {str(k): k for k in DeliveryKind}
        channels = {str(c): c for c in Channel}
        statuses = {str(st): st for st in SubscriptionStatus}
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(
                self._load_statement, {"ids": id_list(self.db, ids), "token": token}
            ).all()
        return tuple(
            ClaimedDelivery(
                r[17],
                r[18],
                r[19],
                Subscription(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    channels[r[4]],
                    r[5],
                    statuses[r[6]],
                    _utc(r[7]),  # type: ignore[arg-type]
                    r[8],
                    r[9],
                    r[10],
                    r[11],
                    r[12],
                    r[13],
                    _json(r[14]),
                    _utc(r[15]),
                    r[16],
                ),
                kinds[r[20]],
            )
            for r in rows
        )

    @functools.cached_property
    def _load_statement(self) -> Any:
        """`_load`'s SELECT, built once (bound per claim: `ids`, `token`)."""
        return (
            sa.select(*_CLAIM_COLUMNS)
            .join(d, d.c.subscription_id == s.c.id)
            .where(
                ids_param(self.db, d.c.id, "ids"),
                d.c.claim_token == sa.bindparam("token", type_=sa.String),
                d.c.status == str(DeliveryStatus.SENDING),
            )
            .order_by(d.c.id)
        )

    def cancel(self, token: str, delivery_ids: Sequence[int], reason: str) -> None:
        if not delivery_ids:
            return
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.update(d)
                .where(in_ids(self.db, d.c.id, delivery_ids), d.c.claim_token == token)
                .values(status=str(DeliveryStatus.CANCELLED), lease_until=None, last_error=reason)
            )

    def record(self, token: str, provider_id: str, results: Results) -> None:
        """Write results of deliveries this claim still holds, and the subscription and
        suppression changes they cause, in one transaction."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            if results.sent:
                self._record_sent(conn, token, provider_id, results.sent, now)
            mine = sa.and_(d.c.id == sa.bindparam("did"), d.c.claim_token == token)
            for counts in (True, False):
                retry = [r for r in results.retry if r.counts == counts]
                if not retry:
                    continue
                conn.execute(
                    sa.update(d)
                    .where(mine)
                    .values(
                        status=str(DeliveryStatus.QUEUED),
                        next_attempt_at=sa.bindparam("at", type_=UTCDateTime),
                        last_error=sa.bindparam("err"),
                        lease_until=None,
                        # a pause (429, auth outage) gives the claim's attempt back
                        attempts=d.c.attempts if counts else d.c.attempts - 1,
                    ),
                    [{"did": r.delivery_id, "err": r.error, "at": r.at} for r in retry],
                )
            if results.failed:
                conn.execute(
                    sa.update(d)
                    .where(mine)
                    .values(
                        status=str(DeliveryStatus.FAILED),
                        last_error=sa.bindparam("err"),
                        lease_until=None,
                    ),
                    [{"did": f.delivery_id, "err": f.error} for f in results.failed],
                )
                # a failed confirmation request leaves its sign-up unconfirmed (it expires);
                # a failed restock message fails its pending sign-up
                conn.execute(
                    sa.update(s)
                    .where(
                        s.c.id == sa.bindparam("sid"),
                        s.c.status == PENDING,
                        sa.exists().where(d.c.id == sa.bindparam("did"), d.c.kind == RESTOCK),
                    )
                    .values(
                        status=str(SubscriptionStatus.FAILED),
                        failed_reason=sa.bindparam("err"),
                        updated_at=now,
                    ),
                    [
                        {"sid": f.subscription_id, "err": f.error, "did": f.delivery_id}
                        for f in results.failed
                    ],
                )
                for f in results.failed:
                    if f.suppress is not None:
                        add_suppression(self.db, conn, str(f.suppress[0]), f.suppress[1], f.error)

    def _record_sent(
        self, conn: Connection, token: str, provider_id: str, sent: Sequence[Sent], now: datetime
    ) -> None:
        # set-based: one UPDATE per provider message id when a request has one (SendGrid);
        # one executemany keyed by delivery id when messages have their own (Twilio, Resend
        # batches), instead of one statement per id
        by_pmid: dict[str | None, list[int]] = defaultdict(list)
        for row in sent:
            by_pmid[row.provider_message_id].append(row.delivery_id)
        if len(by_pmid) <= _GROUPED_IDS:
            for pmid, ids in by_pmid.items():
                conn.execute(
                    self._sent_statement,
                    {
                        "ids": id_list(self.db, ids),
                        "token": token,
                        "pmid": pmid,
                        "provider_id": provider_id,
                        "at": now,
                    },
                )
        else:
            conn.execute(
                self._sent_each_statement,
                [
                    {
                        "did": row.delivery_id,
                        "token": token,
                        "pmid": row.provider_message_id,
                        "provider_id": provider_id,
                        "at": now,
                    }
                    for row in sent
                ],
            )
        # the sign-ups of sent restock messages are notified; a sent confirmation request
        # changes nothing on its sign-up (which may have been confirmed meanwhile)
        conn.execute(
            self._notified_statement,
            {"ids": id_list(self.db, [row.delivery_id for row in sent]), "at": now},
        )

    @functools.cached_property
    def _sent_statement(self) -> Any:
        """`_record_sent`'s UPDATE of the deliveries (`ids`) sharing one provider message id,
        built once (bound: `ids`, `token`, `pmid`, `provider_id`, `at`)."""
        return _mark_sent(ids_param(self.db, d.c.id, "ids"))

    @functools.cached_property
    def _sent_each_statement(self) -> Any:
        """The same for one delivery (`did`), executed once per delivery in one executemany
        when messages have their own provider message ids."""
        return _mark_sent(d.c.id == sa.bindparam("did", type_=sa.BigInteger))

    @functools.cached_property
    def _notified_statement(self) -> Any:
        """The sign-ups of sent restock deliveries (`ids`) become notified `at`."""
        at = sa.bindparam("at", type_=UTCDateTime)
        return (
            sa.update(s)
            .where(
                s.c.status == PENDING,
                s.c.id.in_(
                    sa.select(d.c.subscription_id).where(
                        ids_param(self.db, d.c.id, "ids"), d.c.kind == RESTOCK
                    )
                ),
            )
            .values(status=str(SubscriptionStatus.NOTIFIED), notified_at=at, updated_at=at)
        )

    def apply_event(self, event: DeliveryEvent, failure: str | None) -> EventMatch:
        """Apply a provider's later report on a message. `reason` None means the event
        changes nothing (a confirmation): only its replay record is written. Otherwise
        (`failure` is the reason) the delivery and its subscription fail and, when
        `event.suppress`, the contact is blocked for that channel. The replay record and the
        change commit together, so a failed update is not mistaken for a replay."""
        query = sa.select(d.c.id, d.c.subscription_id, d.c.kind, s.c.channel, s.c.contact).join(
            s, s.c.id == d.c.subscription_id
        )
        if event.delivery_id is not None:
            query = query.where(d.c.id == event.delivery_id)
        elif event.provider_message_id:
            query = query.where(d.c.provider_message_id == event.provider_message_id)
        else:
            return EventMatch.UNKNOWN
        with self.db.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                # unknown (yet): the event id is not recorded, so a re-post can still apply
                return EventMatch.UNKNOWN
            if event.event_id and not _first_time(
                self.db, conn, f"{event.provider}:events", event.event_id
            ):
                return EventMatch.REPLAY
            if event.recipient is not None and event.recipient.strip().lower() != row.contact:
                return EventMatch.OTHER_RECIPIENT
            if failure is None:
                return EventMatch.MATCHED
            reason = failure
            if row.kind == RESTOCK:
                # a bounced confirmation request leaves its sign-up unconfirmed; it expires
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == row.subscription_id)
                    .values(
                        status=str(SubscriptionStatus.FAILED),
                        failed_reason=reason[:1000],
                        updated_at=utcnow(),
                    )
                )
            # claim_token cleared: a report that arrives while the worker still holds the
            # delivery (a Twilio callback 50 ms after the 201) is not overwritten by "sent"
            conn.execute(
                sa.update(d)
                .where(d.c.id == row.id)
                .values(
                    status=str(DeliveryStatus.FAILED),
                    last_error=reason[:1000],
                    claim_token=None,
                    lease_until=None,
                    provider_message_id=sa.func.coalesce(
                        d.c.provider_message_id, event.provider_message_id
                    ),
                )
            )
            if event.suppress:
                add_suppression(self.db, conn, row.channel, row.contact, reason)
        return EventMatch.MATCHED

    def requeue(
        self,
        provider: str,
        *,
        delivery_id: int | None,
        provider_message_id: str | None,
        reason: str,
        delay: float,
        max_attempts: int,
        event_id: str | None,
    ) -> bool:
        """Queue a sent (or being sent) delivery again `delay` seconds from now, its
        subscription back to pending; past `max_attempts`, or when the person signed up again
        since, fail it (without suppressing). False for a replayed `event_id`, an unknown
        delivery or one no longer sent; the event id is recorded only for a known delivery."""
        query = sa.select(
            d.c.id,
            d.c.status,
            d.c.attempts,
            d.c.subscription_id,
            d.c.kind,
            s.c.status.label("sub_status"),
            s.c.variant_id,
            s.c.scope,
            s.c.channel,
            s.c.contact,
        ).join(s, s.c.id == d.c.subscription_id)
        if delivery_id is not None:
            query = query.where(d.c.id == delivery_id)
        elif provider_message_id:
            query = query.where(d.c.provider_message_id == provider_message_id)
        else:
            return False
        now = utcnow()
        with self.db.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                return False
            if event_id and not _first_time(self.db, conn, f"{provider}:events", event_id):
                return False
            if row.status not in (DeliveryStatus.SENT, DeliveryStatus.SENDING) or (
                row.sub_status not in (PENDING, SubscriptionStatus.NOTIFIED)
            ):
                return False
            if row.kind != RESTOCK:
                return False  # a confirmation request is not sent again on a soft bounce
            # the person signed up again since: that pending sign-up will be notified, and the
            # database allows one pending sign-up per contact and variant
            signed_up_again = conn.execute(
                sa.select(sa.literal(1)).where(
                    s.c.variant_id == row.variant_id,
                    s.c.scope == row.scope,
                    s.c.channel == row.channel,
                    s.c.contact == row.contact,
                    s.c.status.in_((PENDING, UNCONFIRMED)),
                    s.c.id != row.subscription_id,
                )
            ).first()
            if row.attempts >= max_attempts or signed_up_again:
                why = (
                    reason
                    if signed_up_again
                    else f"gave up after {row.attempts} attempts: {reason}"
                )
                self._fail(conn, row.id, row.subscription_id, why[:1000], now)
                return True
            conn.execute(
                sa.update(d)
                .where(d.c.id == row.id)
                .values(
                    status=str(DeliveryStatus.QUEUED),
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=reason[:1000],
                    claim_token=None,
                    lease_until=None,
                    sent_at=None,
                )
            )
            conn.execute(
                sa.update(s)
                .where(s.c.id == row.subscription_id)
                .values(status=PENDING, notified_at=None, updated_at=now)
            )
            # the provider accepted the earlier request: re-sending it under its key would
            # only replay that answer, so the new attempt goes into a new request
            self._leave_requests(conn, [row.id])
            self.db.wake(conn)
        return True

    # ------------------------------------------------------------------ stable requests

    @staticmethod
    def _leave_requests(conn: Connection, delivery_ids: Sequence[int]) -> None:
        m = provider_request_members
        for chunk in chunks(list(delivery_ids), 900):
            conn.execute(sa.delete(m).where(m.c.delivery_id.in_(chunk)))

    def stored_requests(self, delivery_ids: Sequence[int]) -> dict[int, StoredRequest]:
        """The stored request each of `delivery_ids` belongs to (those in none are absent),
        with every member of that request, in delivery id order."""
        m, r = provider_request_members, provider_requests
        found: dict[int, StoredRequest] = {}
        with self.db.read_engine.connect() as conn:
            request_ids: set[int] = set()
            for chunk in chunks(list(delivery_ids), 900):
                request_ids.update(
                    conn.execute(
                        sa.select(m.c.request_id).where(m.c.delivery_id.in_(chunk))
                    ).scalars()
                )
            if not request_ids:
                return found
            rows = conn.execute(
                sa.select(r.c.id, r.c.request_key, r.c.variant_info, m.c.delivery_id)
                .join(m, m.c.request_id == r.c.id)
                .where(r.c.id.in_(sorted(request_ids)))
                .order_by(r.c.id, m.c.delivery_id)
            ).all()
        members: dict[int, list[int]] = defaultdict(list)
        info: dict[int, tuple[str, dict[str, dict[str, str | None]]]] = {}
        for row in rows:
            members[row.id].append(row.delivery_id)
            info[row.id] = (row.request_key, dict(row.variant_info or {}))
        wanted = set(delivery_ids)
        for request_id, ids in members.items():
            key, variant_info = info[request_id]
            request = StoredRequest(key, tuple(ids), variant_info)
            for delivery_id in ids:
                if delivery_id in wanted:
                    found[delivery_id] = request
        return found

    def store_request(
        self,
        provider: str,
        delivery_ids: Sequence[int],
        variant_info: dict[str, dict[str, str | None]],
    ) -> StoredRequest:
        """Fix a new request's membership and key before its first attempt."""
        key = f"restock-req-{uuid.uuid4().hex}"
        r, m = provider_requests, provider_request_members
        with self.db.engine.begin() as conn:
            request_id = conn.execute(
                sa.insert(r)
                .values(
                    provider=provider,
                    request_key=key,
                    variant_info=variant_info,
                    created_at=utcnow(),
                )
                .returning(r.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(m), [{"delivery_id": i, "request_id": request_id} for i in delivery_ids]
            )
        return StoredRequest(key, tuple(sorted(delivery_ids)), variant_info)

    def delivery_members(self, delivery_ids: Sequence[int]) -> list[tuple[int, int, Subscription]]:
        """(delivery id, attempts, subscription) of deliveries this worker did not claim but
        whose stored request it re-sends (their results are not recorded here)."""
        query = (
            sa.select(s, d.c.id.label("delivery_id"), d.c.attempts.label("delivery_attempts"))
            .join(d, d.c.subscription_id == s.c.id)
            .where(d.c.id.in_(list(delivery_ids)))
            .order_by(d.c.id)
        )
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(r.delivery_id, r.delivery_attempts, subscription_from_row(r)) for r in rows]

    def prune_requests(
        self, older_than: timedelta, *, limit: int | None = None, now: datetime | None = None
    ) -> int:
        """Forget stored requests older than `older_than` (past the provider's key lifetime),
        at most `limit` of them (oldest first). Retention calls it in a loop."""
        r, m = provider_requests, provider_request_members
        cutoff = (now or utcnow()) - older_than
        with self.db.engine.begin() as conn:
            query = sa.select(r.c.id).where(r.c.created_at < cutoff).order_by(r.c.created_at)
            if limit is not None:
                query = query.limit(limit)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return 0
            conn.execute(sa.delete(m).where(m.c.request_id.in_(ids)))
            return conn.execute(sa.delete(r).where(r.c.id.in_(ids))).rowcount or 0

    # ------------------------------------------------------------------ operator retries

    def retry_failed(self, where: RetryFilter, *, limit: int | None = None) -> list[int]:
        """Queue failed deliveries matching `where` again, now, with their attempts reset
        and their subscriptions back to pending. Skipped: contacts suppressed since, and
        people who signed up again for the same item (that sign-up will be notified).
        Returns the ids queued again. Each goes into a new provider request."""
        query = (
            sa.select(d.c.id, d.c.subscription_id)
            .join(s, s.c.id == d.c.subscription_id)
            .where(d.c.status == str(DeliveryStatus.FAILED), d.c.kind == RESTOCK)
            .where(
                ~sa.exists().where(
                    suppressions.c.channel == s.c.channel, suppressions.c.contact == s.c.contact
                )
            )
            .order_by(d.c.id)
        )
        if where.restock_id is not None:
            query = query.where(d.c.restock_id == where.restock_id)
        if where.provider is not None:
            query = query.where(d.c.provider == where.provider)
        if where.reason:
            query = query.where(d.c.last_error.contains(where.reason, autoescape=True))
        if where.since is not None:
            query = query.where(d.c.created_at >= where.since)
        if where.until is not None:
            query = query.where(d.c.created_at < where.until)
        if limit is not None:
            query = query.limit(limit)
        other = s.alias("other")
        now = utcnow()
        queued: list[int] = []
        with self.db.engine.begin() as conn:
            for row in conn.execute(query).all():
                sub = conn.execute(sa.select(s).where(s.c.id == row.subscription_id)).one()
                if sub.status not in (str(SubscriptionStatus.FAILED), PENDING):
                    continue  # unsubscribed or notified by another delivery since
                if sub.status != PENDING:
                    again = conn.execute(
                        sa.select(sa.literal(1)).where(
                            other.c.variant_id == sub.variant_id,
                            other.c.scope == sub.scope,
                            other.c.channel == sub.channel,
                            other.c.contact == sub.contact,
                            other.c.status.in_((PENDING, UNCONFIRMED)),
                        )
                    ).first()
                    if again:
                        continue
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == row.subscription_id)
                    .values(status=PENDING, failed_reason=None, updated_at=now)
                )
                conn.execute(
                    sa.update(d)
                    .where(d.c.id == row.id, d.c.status == str(DeliveryStatus.FAILED))
                    .values(
                        status=str(DeliveryStatus.QUEUED),
                        attempts=0,
                        next_attempt_at=now,
                        claim_token=None,
                        lease_until=None,
                        last_error=None,
                    )
                )
                queued.append(row.id)
            if queued:
                self._leave_requests(conn, queued)
                self.db.wake(conn)
        return queued

    @staticmethod
    def _fail(
        conn: Connection, delivery_id: int, subscription_id: int, why: str, now: datetime
    ) -> None:
        conn.execute(
            sa.update(d)
            .where(d.c.id == delivery_id)
            .values(
                status=str(DeliveryStatus.FAILED),
                last_error=why,
                claim_token=None,
                lease_until=None,
            )
        )
        conn.execute(
            sa.update(s)
            .where(s.c.id == subscription_id)
            .values(status=str(SubscriptionStatus.FAILED), failed_reason=why, updated_at=now)
        )

    def oldest_queued_at(self) -> datetime | None:
        with self.db.read_engine.connect() as conn:
            found: datetime | None = conn.execute(
                sa.select(sa.func.min(d.c.created_at)).where(
                    d.c.status == str(DeliveryStatus.QUEUED)
                )
            ).scalar()
        return found

    def next_attempt_at(self) -> datetime | None:
        with self.db.read_engine.connect() as conn:
            found: datetime | None = conn.execute(
                sa.select(sa.func.min(d.c.next_attempt_at)).where(
                    d.c.status == str(DeliveryStatus.QUEUED)
                )
            ).scalar()
        return found


class EventMatch(enum.Enum):
    """How a delivery event matched the outbox."""

    MATCHED = "matched"  # applied (or, for a confirmation, recorded)
    REPLAY = "replay"  # its event id was handled before
    UNKNOWN = "unknown"  # no delivery has that id / provider message id
    OTHER_RECIPIENT = "other_recipient"  # names another address than the delivery's


def _first_time(db: Db, conn: Connection, source: str, event_id: str) -> bool:
    inserted = conn.execute(
        db.insert(processed_events)
        .values(source=source, event_id=event_id[:255], received_at=utcnow())
        .on_conflict_do_nothing()
        .returning(processed_events.c.event_id)
    ).first()
    return inserted is not None
