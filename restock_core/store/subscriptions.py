"""Subscriptions: sign-up inserts, reads, pages, unsubscribe."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..db import ACTIVE_WHERE, deliveries, stock, subscriptions, suppressions, utcnow
from ..errors import ContactLimitError, InStockError, RestockError, SuppressedError
from ..models import (
    Channel,
    DeliveryKind,
    DeliveryStatus,
    StockKey,
    Subscription,
    SubscriptionStatus,
)
from ._base import Db, chunks, subscription_from_row
from .catalog import consent_row, consents

log = logging.getLogger("restock")

s = subscriptions
PENDING = str(SubscriptionStatus.PENDING)
UNCONFIRMED = str(SubscriptionStatus.UNCONFIRMED)
#: the statuses that hold a contact's one active sign-up per item
ACTIVE = (PENDING, UNCONFIRMED)
#: the advisory-lock namespace of the contact limit (`pg_advisory_xact_lock(int, int)`)
CONTACT_LOCKS = 0x72737463


def contact_lock_keys(contacts: Iterable[str]) -> list[int]:
    """One 32-bit key per contact, sorted: every writer takes them in the same order, so
    two transactions locking overlapping contacts cannot deadlock."""
    return sorted(
        {
            int.from_bytes(hashlib.blake2b(c.encode(), digest_size=4).digest(), "big", signed=True)
            for c in contacts
        }
    )


def lock_contacts(conn: Connection, contacts: Iterable[str]) -> None:
    """PostgreSQL: hold each contact's advisory lock until this transaction ends, before
    counting the contact's active sign-ups. Why: under READ COMMITTED, two API processes
    signing the same contact up at once each counted only committed rows and both inserted,
    so parallel requests spread over several processes could overrun the per-contact limit.
    With the lock the second writer waits for the first one's commit and counts its rows.
    (SQLite's writers are serialised already.) Keys are hashes: two contacts sharing one
    only wait for each other."""
    conn.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(:space, key) FROM (SELECT key FROM "
            "unnest(CAST(:keys AS integer[])) WITH ORDINALITY AS k(key, n) ORDER BY n) AS keys"
        ),
        {"space": CONTACT_LOCKS, "keys": contact_lock_keys(contacts)},
    ).all()


@attrs.frozen
class ConfirmPlan:
    """Double opt-in for one sign-up: it is stored `unconfirmed` and a confirmation request
    is queued in the outbox for `provider`. A repeat sign-up of a still unconfirmed contact
    queues another one only when the last is older than `resend_after`, and never more than
    `max_sends` in all."""

    provider: str | None
    resend_after: timedelta
    max_sends: int


class SubscriptionStore:
    def __init__(self, db: Db):
        self.db = db

    def insert_or_get(
        self,
        values: Mapping[str, Any],
        *,
        consent: Mapping[str, Any] | None = None,
        fill_customer_id: bool = True,
        max_active: int | None = None,
        confirm: ConfirmPlan | None = None,
        suppression_hash: str | None = None,
        stock_required: int | None = None,
        in_stock: bool = False,
    ) -> tuple[Subscription, bool] | None:
        """Insert a pending subscription, or return the pending one for the same (variant,
        scope, channel, contact), filling a missing customer_id when `fill_customer_id`.
        None when a concurrent change freed the slot between the two steps (the caller tries
        again). A new row gets its `consent` record in the same transaction. With
        `max_active`, a contact that already has that many pending subscriptions (one indexed
        count) gets :class:`ContactLimitError` and nothing is stored. With `confirm` a new
        row is `unconfirmed` and a confirmation request is queued with it (see
        :class:`ConfirmPlan`); an unconfirmed sign-up counts as active like a pending one.

        The checks that read the database run in the same transaction, before anything is
        stored, in this order: with `suppression_hash` (the contact's keyed hash), a
        suppressed contact (or hash) on the sign-up's channel gets :class:`SuppressedError`;
        `in_stock` (decided by the caller, e.g. from a platform's API) gets
        :class:`InStockError`, as does, with `stock_required`, a stored quantity of the
        sign-up's (source, variant, scope) of at least that much (restock's own stock
        table: the ``manual`` source); then the contact limit.

        The sign-up is handed to this store's :class:`SignUpWriter`, which stores the
        sign-ups queued at that moment together, in one transaction (group commit); the call
        returns once the transaction holding its row has committed."""
        return self.writer.submit(
            SignUpWrite(
                values=dict(values),
                consent=consent,
                fill_customer_id=fill_customer_id,
                max_active=max_active,
                confirm=confirm,
                suppression_hash=suppression_hash,
                stock_required=stock_required,
                in_stock=in_stock,
            )
        )

    async def insert_or_get_async(
        self,
        values: Mapping[str, Any],
        *,
        consent: Mapping[str, Any] | None = None,
        fill_customer_id: bool = True,
        max_active: int | None = None,
        confirm: ConfirmPlan | None = None,
        suppression_hash: str | None = None,
        stock_required: int | None = None,
        in_stock: bool = False,
    ) -> tuple[Subscription, bool] | None:
        """:meth:`insert_or_get` for a caller on an asyncio event loop: no thread waits; the
        writer resolves an asyncio future once the transaction holding the row has
        committed (or the check refused it)."""
        write = SignUpWrite(
            values=dict(values),
            consent=consent,
            fill_customer_id=fill_customer_id,
            max_active=max_active,
            confirm=confirm,
            suppression_hash=suppression_hash,
            stock_required=stock_required,
            in_stock=in_stock,
            done=None,
        )
        result: tuple[Subscription, bool] | None = await self.writer.submit_async(write)
        return result

    @functools.cached_property
    def writer(self) -> SignUpWriter:
        return SignUpWriter(self)

    def close(self) -> None:
        """Stop the sign-up writer thread (if one was started)."""
        if "writer" in self.__dict__:
            self.writer.close()

    def _row_values(self, write: SignUpWrite, now: datetime) -> dict[str, Any]:
        return {
            **write.values,
            "status": UNCONFIRMED if write.confirm is not None else PENDING,
            "attributes": dict(write.values.get("attributes") or {}),
            "created_at": now,
            "updated_at": now,
        }

    def _store_group(self, writes: Sequence[SignUpWrite]) -> list[SignUpWrite]:
        """Store `writes` (one per contact, all with the same columns) in one transaction:
        the checks (one suppression query, one stock read, one per-contact count), one
        multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, the consent records and
        confirmation requests of the new rows. Answers the ones it decided (new rows,
        refusals, contact limits) once the transaction has committed; returns the rest
        (repeats: an active row exists) for the one-at-a-time path. Raises (nothing is
        answered, nothing is stored) when the transaction fails.

        On SQLite the statements go to the pysqlite connection directly, with the values
        converted once per group: SQLAlchemy's per-row parameter processing cost ten times
        the statements' own work (issue 13)."""
        now = utcnow()
        decided: list[tuple[SignUpWrite, Any]] = []
        repeats: list[SignUpWrite] = []
        with self.db.engine.begin() as conn:
            raw = None if self.db.is_postgres else conn.connection.driver_connection
            refused = self._refusals(conn, writes, raw)
            if refused:
                decided.extend(refused.items())
                writes = [w for w in writes if w not in refused]
            limited = [w for w in writes if w.max_active is not None]
            counts: dict[str, int] = {}
            if limited:
                counts = self._active_counts(conn, {w.values["contact"] for w in limited}, raw)
            inserting: dict[tuple[str, str, str, str], SignUpWrite] = {}
            for w in writes:
                if w.max_active is not None and counts.get(w.values["contact"], 0) >= w.max_active:
                    decided.append((w, _contact_limit(w.values["channel"])))
                else:
                    inserting[_key(w.values)] = w
            stored: list[tuple[SignUpWrite, Subscription]] = []
            if inserting:
                if raw is not None:
                    stored = self._insert_raw(raw, inserting, now)
                else:
                    insert = (
                        self.db.insert(s)
                        .on_conflict_do_nothing(
                            index_elements=["variant_id", "scope", "channel", "contact"],
                            index_where=sa.text(ACTIVE_WHERE),
                        )
                        .returning(*s.c)
                    )
                    rows = conn.execute(
                        insert, [self._row_values(w, now) for w in inserting.values()]
                    )
                    stored = [
                        (
                            inserting.pop((r.variant_id, r.scope, r.channel, r.contact)),
                            subscription_from_row(r),
                        )
                        for r in rows
                    ]
            consent_rows = []
            confirmations = []
            for w, sub in stored:
                if w.consent is not None:
                    consent_rows.append(
                        consent_row(sub.id, str(sub.channel), sub.contact, w.consent)
                    )
                if w.confirm is not None:
                    confirmations.append(
                        _confirmation_row(sub.id, str(sub.channel), w.confirm.provider, now)
                    )
                decided.append((w, (sub, True)))
            repeats.extend(inserting.values())
            if consent_rows:
                if raw is not None:
                    self._consents_raw(raw, consent_rows, now)
                else:
                    conn.execute(sa.insert(consents), consent_rows)
            if confirmations:
                conn.execute(sa.insert(deliveries), confirmations)
                self.db.wake(conn)
        for w, outcome in decided:  # committed: now the answers may go out
            w.answer(outcome)
        return repeats

    @functools.cached_property
    def _sqlite_params(self) -> tuple[Any, Any]:
        """SQLAlchemy's own conversions of a datetime and of a JSON value for SQLite, so the
        direct statements store exactly what the Core ones do."""
        dialect = self.db.engine.dialect
        when = s.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        as_json = s.c.attributes.type.dialect_impl(dialect).bind_processor(dialect)
        return when, as_json

    def _insert_raw(
        self,
        raw: Any,
        inserting: dict[tuple[str, str, str, str], SignUpWrite],
        now: datetime,
    ) -> list[tuple[SignUpWrite, Subscription]]:
        """The group's multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING on pysqlite;
        pops the inserted writes from `inserting` and returns them with their rows (built
        from the values given: every column is known but the id)."""
        when, as_json = self._sqlite_params
        stamp = when(now) if when else now
        empty = as_json({}) if as_json else {}
        params: list[Any] = []
        for w in inserting.values():
            v = w.values
            params.extend(v[name] for name in _RAW_VALUE_COLUMNS)
            attributes = v.get("attributes")
            params.append(as_json(attributes) if attributes and as_json else empty)
            params.append(UNCONFIRMED if w.confirm is not None else PENDING)
            params.append(stamp)
            params.append(stamp)
        found = raw.execute(_raw_insert_sql(len(inserting)), params).fetchall()
        stored = []
        for row_id, variant_id, scope, channel, contact in found:
            w = inserting.pop((variant_id, scope, channel, contact))
            v = w.values
            stored.append(
                (
                    w,
                    Subscription(
                        id=row_id,
                        variant_id=variant_id,
                        scope=scope,
                        source=v["source"],
                        channel=Channel(channel),
                        contact=contact,
                        status=SubscriptionStatus.UNCONFIRMED
                        if w.confirm is not None
                        else SubscriptionStatus.PENDING,
                        created_at=now,
                        customer_id=v["customer_id"],
                        product_id=v["product_id"],
                        locale=v["locale"],
                        product_title=v["product_title"],
                        variant_title=v["variant_title"],
                        url=v["url"],
                        attributes=dict(v.get("attributes") or {}),
                    ),
                )
            )
        return stored

    def _consents_raw(self, raw: Any, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
        when, _ = self._sqlite_params
        stamp = when(now) if when else now
        raw.executemany(
            "INSERT INTO consents (subscription_id, channel, contact, ip, user_agent, text, "
            "version, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r["subscription_id"],
                    r["channel"],
                    r["contact"],
                    r["ip"],
                    r["user_agent"],
                    r["text"],
                    r["version"],
                    stamp,
                )
                for r in rows
            ],
        )

    def _active_counts(self, conn: Connection, contacts: set[str], raw: Any) -> dict[str, int]:
        """Active (pending or unconfirmed) sign-ups per contact, for the contact limit (on
        PostgreSQL after taking the contacts' locks: :func:`lock_contacts`)."""
        names = sorted(contacts)
        if self.db.is_postgres:
            lock_contacts(conn, contacts)
        if raw is not None:
            return dict(
                raw.execute(
                    "SELECT contact, count(*) FROM subscriptions WHERE contact IN "
                    f"({_marks(len(names))}) AND {ACTIVE_WHERE} GROUP BY contact",
                    names,
                ).fetchall()
            )
        return {
            contact: n
            for contact, n in conn.execute(
                sa.select(s.c.contact, sa.func.count())
                .where(s.c.contact.in_(names), s.c.status.in_(ACTIVE))
                .group_by(s.c.contact)
            )
        }

    def _store_one(self, write: SignUpWrite) -> tuple[Subscription, bool] | None:
        """One sign-up in its own transaction: the general path (repeats, a group that
        failed)."""
        values = write.values
        now = utcnow()
        row_values = self._row_values(write, now)
        confirm = write.confirm
        with self.db.engine.begin() as conn:
            refused = self._refusals(conn, [write])
            if refused:
                raise refused[write]
            if write.max_active is not None:
                if self.db.is_postgres:
                    lock_contacts(conn, {values["contact"]})
                active = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(s)
                    .where(s.c.contact == values["contact"], s.c.status.in_(ACTIVE))
                ).scalar_one()
                if active >= write.max_active:
                    raise _contact_limit(values["channel"])
            insert = (
                self.db.insert(s)
                .values(**row_values)
                .on_conflict_do_nothing(
                    index_elements=["variant_id", "scope", "channel", "contact"],
                    index_where=sa.text(ACTIVE_WHERE),
                )
                .returning(*s.c)
            )
            row = conn.execute(insert).first()
            if row is not None:
                if write.consent is not None:
                    conn.execute(
                        sa.insert(consents).values(
                            consent_row(row.id, values["channel"], values["contact"], write.consent)
                        )
                    )
                if confirm is not None:
                    self._queue_confirmation(conn, row.id, row.channel, confirm.provider, now)
                return subscription_from_row(row), True
            existing = conn.execute(
                sa.select(s).where(
                    s.c.variant_id == values["variant_id"],
                    s.c.scope == values["scope"],
                    s.c.channel == values["channel"],
                    s.c.contact == values["contact"],
                    s.c.status.in_(ACTIVE),
                )
            ).first()
            if existing is None:
                return None
            if confirm is not None and existing.status == UNCONFIRMED:
                self._maybe_resend(conn, existing.id, existing.channel, confirm, now)
            customer_id = values.get("customer_id")
            if write.fill_customer_id and customer_id and not existing.customer_id:
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == existing.id)
                    .values(customer_id=customer_id, updated_at=now)
                )
                existing = conn.execute(sa.select(s).where(s.c.id == existing.id)).one()
            return subscription_from_row(existing), False

    def _refusals(
        self, conn: Connection, writes: Sequence[SignUpWrite], raw: Any = None
    ) -> dict[SignUpWrite, RestockError]:
        """The sign-ups among `writes` that their checks refuse (see :meth:`insert_or_get`),
        with the error each gets: one suppression query and one stock read for all of them."""
        checked = [w for w in writes if w.suppression_hash is not None]
        local = [w for w in writes if w.stock_required is not None]
        if not checked and not local and not any(w.in_stock for w in writes):
            return {}
        suppressed: set[tuple[str, str]] = set()
        if checked:
            names = sorted(
                {w.values["contact"] for w in checked} | {str(w.suppression_hash) for w in checked}
            )
            # the channel too: the primary key (channel, contact) is searched, not scanned
            channels = sorted({w.values["channel"] for w in checked})
            if raw is not None:
                found_names = raw.execute(
                    f"SELECT channel, contact FROM suppressions WHERE channel IN "
                    f"({_marks(len(channels))}) AND contact IN ({_marks(len(names))})",
                    [*channels, *names],
                ).fetchall()
            else:
                found_names = conn.execute(
                    _SUPPRESSED_AMONG, {"channels": channels, "names": names}
                ).all()
            suppressed = {(ch, c) for ch, c in found_names}
        quantities: dict[tuple[str, str, str], int | None] = {}
        if local:
            sources = sorted({w.values["source"] for w in local})
            variant_ids = sorted({w.values["variant_id"] for w in local})
            if raw is not None:
                found = raw.execute(
                    "SELECT source, variant_id, scope, quantity FROM stock WHERE source IN "
                    f"({_marks(len(sources))}) AND variant_id IN ({_marks(len(variant_ids))})",
                    [*sources, *variant_ids],
                ).fetchall()
            else:
                found = conn.execute(
                    _STOCK_AMONG, {"sources": sources, "variant_ids": variant_ids}
                ).all()
            quantities = {(src, v, sc): q for src, v, sc, q in found}
        refused: dict[SignUpWrite, RestockError] = {}
        for w in writes:
            channel = w.values["channel"]
            if w.suppression_hash is not None and (
                (channel, w.values["contact"]) in suppressed
                or (channel, w.suppression_hash) in suppressed
            ):
                refused[w] = _suppressed(channel)
            elif w.in_stock:
                refused[w] = _in_stock()
            elif w.stock_required is not None:
                quantity = quantities.get(
                    (w.values["source"], w.values["variant_id"], w.values["scope"])
                )
                if quantity is not None and quantity >= w.stock_required:
                    refused[w] = _in_stock()
        return refused

    def _queue_confirmation(
        self,
        conn: Connection,
        subscription_id: int,
        channel: str,
        provider: str | None,
        now: datetime,
    ) -> None:
        conn.execute(
            sa.insert(deliveries).values(_confirmation_row(subscription_id, channel, provider, now))
        )
        self.db.wake(conn)

    def _maybe_resend(
        self, conn: Connection, subscription_id: int, channel: str, plan: ConfirmPlan, now: datetime
    ) -> None:
        """A repeat sign-up of an unconfirmed contact: another confirmation request, at most
        one per `resend_after` and `max_sends` in all (nobody can make the shop mail a
        stranger without end)."""
        d = deliveries
        sent, last = conn.execute(
            sa.select(sa.func.count(), sa.func.max(d.c.created_at)).where(
                d.c.subscription_id == subscription_id, d.c.kind == str(DeliveryKind.CONFIRM)
            )
        ).one()
        if sent >= plan.max_sends:
            return
        if last is not None:
            last = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
            if last.tzinfo is None:
                last = last.replace(tzinfo=now.tzinfo)
            if now - last < plan.resend_after:
                return
        self._queue_confirmation(conn, subscription_id, channel, plan.provider, now)

    def confirm(self, subscription_id: int) -> bool:
        """Double opt-in: an unconfirmed sign-up becomes pending. False when it is not (or
        no longer) unconfirmed: confirmed before, expired, unsubscribed."""
        with self.db.engine.begin() as conn:
            changed = conn.execute(
                sa.update(s)
                .where(s.c.id == subscription_id, s.c.status == UNCONFIRMED)
                .values(status=PENDING, updated_at=utcnow())
            ).rowcount
        return bool(changed)

    def expire_unconfirmed(self, older_than: datetime, *, chunk: int = 500) -> int:
        """Delete sign-ups still unconfirmed that were made before `older_than` (with their
        confirmation deliveries and consent records), `chunk` rows per transaction."""
        total = 0
        while True:
            with self.db.engine.begin() as conn:
                ids = list(
                    conn.execute(
                        sa.select(s.c.id)
                        .where(s.c.status == UNCONFIRMED, s.c.created_at < older_than)
                        .order_by(s.c.created_at)
                        .limit(chunk)
                    ).scalars()
                )
                if not ids:
                    return total
                conn.execute(sa.delete(deliveries).where(deliveries.c.subscription_id.in_(ids)))
                conn.execute(sa.delete(consents).where(consents.c.subscription_id.in_(ids)))
                conn.execute(sa.delete(s).where(s.c.id.in_(ids), s.c.status == UNCONFIRMED))
            total += len(ids)
            if len(ids) < chunk:
                return total

    def get(self, subscription_id: int) -> Subscription | None:
        with self.db.read_engine.connect() as conn:
            row = conn.execute(sa.select(s).where(s.c.id == subscription_id)).first()
        return None if row is None else subscription_from_row(row)

    def by_ids(self, ids: Sequence[int]) -> list[Subscription]:
        """The subscriptions `ids` names, oldest sign-up first."""
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(s).where(s.c.id.in_(list(ids))).order_by(s.c.created_at, s.c.id)
            ).all()
        return [subscription_from_row(r) for r in rows]

    def page(
        self,
        *,
        variant_id: str | None,
        scope: str | None,
        status: SubscriptionStatus | None,
        contact: str | None,
        limit: int,
        after: int | None,
    ) -> list[Subscription]:
        """Up to `limit` subscriptions with id above `after`, by id."""
        query = sa.select(s).order_by(s.c.id).limit(limit)
        for column, value in (
            (s.c.variant_id, variant_id),
            (s.c.scope, scope),
            (s.c.status, None if status is None else str(status)),
            (s.c.contact, contact),
        ):
            if value is not None:
                query = query.where(column == value)
        if after is not None:
            query = query.where(s.c.id > after)
        with self.db.read_engine.connect() as conn:
            return [subscription_from_row(r) for r in conn.execute(query)]

    def unsubscribe(self, subscription_id: int) -> None:
        """Unsubscribe a pending (or unconfirmed) subscription and cancel its queued
        delivery, together."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.update(s)
                .where(s.c.id == subscription_id, s.c.status.in_(ACTIVE))
                .values(status=str(SubscriptionStatus.UNSUBSCRIBED), updated_at=now)
            )
            conn.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.subscription_id == subscription_id,
                    deliveries.c.status == str(DeliveryStatus.QUEUED),
                )
                .values(status=str(DeliveryStatus.CANCELLED), last_error="unsubscribed")
            )

    def unsubscribe_contact(self, channel: Channel, contact: str, reason: str) -> int:
        """Unsubscribe every pending subscription of `contact` on `channel` and cancel their
        queued deliveries, in one transaction. Returns how many subscriptions it ended."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            ids = list(
                conn.execute(
                    sa.select(s.c.id).where(
                        s.c.channel == str(channel),
                        s.c.contact == contact,
                        s.c.status.in_(ACTIVE),
                    )
                ).scalars()
            )
            for chunk in chunks(ids, 900):
                conn.execute(
                    sa.update(s)
                    .where(s.c.id.in_(chunk), s.c.status.in_(ACTIVE))
                    .values(
                        status=str(SubscriptionStatus.UNSUBSCRIBED),
                        failed_reason=reason[:1000],
                        updated_at=now,
                    )
                )
                conn.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.subscription_id.in_(chunk),
                        deliveries.c.status == str(DeliveryStatus.QUEUED),
                    )
                    .values(status=str(DeliveryStatus.CANCELLED), last_error=reason[:1000])
                )
        return len(ids)

    def pending_keys(self, source: str, variant_ids: Sequence[str]) -> list[StockKey]:
        """The (variant, scope) pairs among `variant_ids` with pending subscribers at `source`."""
        if not variant_ids:
            return []
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.c.variant_id, s.c.scope)
                .where(
                    s.c.source == source,
                    s.c.status == PENDING,
                    s.c.variant_id.in_(list(variant_ids)),
                )
                .group_by(s.c.variant_id, s.c.scope)
                .order_by(s.c.variant_id, s.c.scope)
            )
            return [StockKey(v, scope) for v, scope in rows]

    def pending_key_page(self, source: str, after: StockKey | None, size: int) -> list[StockKey]:
        """Every (variant, scope) with pending subscribers at `source`, a page at a time, in
        key order (for reconciliation)."""
        query = (
            sa.select(s.c.variant_id, s.c.scope)
            .where(s.c.source == source, s.c.status == PENDING)
            .group_by(s.c.variant_id, s.c.scope)
            .order_by(s.c.variant_id, s.c.scope)
            .limit(size)
        )
        if after is not None:
            query = query.where(
                sa.tuple_(s.c.variant_id, s.c.scope) > sa.tuple_(after.variant_id, after.scope)
            )
        with self.db.read_engine.connect() as conn:
            return [StockKey(v, sc) for v, sc in conn.execute(query)]


#: the sign-up writer's checks, one statement per group (built once)
_SUPPRESSED_AMONG = sa.select(suppressions.c.channel, suppressions.c.contact).where(
    suppressions.c.channel.in_(sa.bindparam("channels", expanding=True)),
    suppressions.c.contact.in_(sa.bindparam("names", expanding=True)),
)
_STOCK_AMONG = sa.select(stock.c.source, stock.c.variant_id, stock.c.scope, stock.c.quantity).where(
    stock.c.source.in_(sa.bindparam("sources", expanding=True)),
    stock.c.variant_id.in_(sa.bindparam("variant_ids", expanding=True)),
)


#: the value columns of a sign-up row in `_raw_insert_sql`'s order (then attributes,
#: status, created_at, updated_at)
_RAW_VALUE_COLUMNS = (
    "variant_id",
    "scope",
    "source",
    "channel",
    "contact",
    "customer_id",
    "product_id",
    "locale",
    "product_title",
    "variant_title",
    "url",
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


@functools.lru_cache(maxsize=300)
def _raw_insert_sql(rows: int) -> str:
    """The multi-row sign-up INSERT for pysqlite (qmark parameters), by row count."""
    columns = (*_RAW_VALUE_COLUMNS, "attributes", "status", "created_at", "updated_at")
    one = f"({_marks(len(columns))})"
    return (
        f"INSERT INTO subscriptions ({', '.join(columns)}) VALUES {', '.join([one] * rows)} "
        f"ON CONFLICT (variant_id, scope, channel, contact) WHERE {ACTIVE_WHERE} DO NOTHING "
        "RETURNING id, variant_id, scope, channel, contact"
    )


def _suppressed(channel: str) -> SuppressedError:
    return SuppressedError(
        f"this {'address' if channel == 'email' else 'number'} bounced or opted out "
        f"earlier and cannot receive {channel} notifications",
        field="email" if channel == "email" else "phone",
    )


def _in_stock() -> InStockError:
    return InStockError(
        "this item is in stock; sign-ups are for sold-out items", field="variant_id"
    )


def _key(values: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (values["variant_id"], values["scope"], values["channel"], values["contact"])


def _contact_limit(channel: str) -> ContactLimitError:
    return ContactLimitError(
        "too many active sign-ups for this contact; try again later",
        field="email" if channel == "email" else "phone",
        retry_after=3600,
    )


def _confirmation_row(
    subscription_id: int, channel: str, provider: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "subscription_id": subscription_id,
        "restock_id": None,
        "kind": str(DeliveryKind.CONFIRM),
        "channel": channel,
        "provider": provider,
        "status": str(DeliveryStatus.QUEUED),
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


_UNANSWERED = object()


@attrs.define(eq=False)
class SignUpWrite:
    """One queued sign-up and, once stored, its answer (the stored subscription and whether
    it is new, None for a lost race, or the exception to raise in the caller).

    A thread caller waits on `done`; an asyncio caller (``done=None``) awaits `future`,
    which the writer resolves on the caller's loop once the answer is known."""

    values: dict[str, Any]
    consent: Mapping[str, Any] | None
    fill_customer_id: bool
    max_active: int | None
    confirm: ConfirmPlan | None
    #: the checks made in the writer's transaction (see `SubscriptionStore.insert_or_get`)
    suppression_hash: str | None = None
    stock_required: int | None = None
    in_stock: bool = False
    outcome: Any = _UNANSWERED
    done: threading.Event | None = attrs.field(factory=threading.Event)
    future: asyncio.Future[Any] | None = None
    released: bool = False

    def answer(self, outcome: Any) -> None:
        if self.outcome is _UNANSWERED:
            self.outcome = outcome
            if self.done is not None:
                self.done.set()

    def result(self) -> tuple[Subscription, bool] | None:
        assert self.done is not None, "an asyncio sign-up: await its future"
        self.done.wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        result: tuple[Subscription, bool] | None = self.outcome
        return result


def _resolve(writes: Sequence[SignUpWrite]) -> None:
    """On the callers' event loop: hand each answered asyncio sign-up its outcome."""
    for w in writes:
        future = w.future
        if future is None or future.done():  # the request was cancelled meanwhile
            continue
        if isinstance(w.outcome, BaseException):
            future.set_exception(w.outcome)
        else:
            future.set_result(w.outcome)


def _release(writes: Sequence[SignUpWrite]) -> None:
    """Wake the asyncio callers among `writes` that have their answer: one call into each
    event loop for all of them (a thread caller was woken by `answer`)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[SignUpWrite]] = {}
    for w in writes:
        if w.future is not None and not w.released and w.outcome is not _UNANSWERED:
            w.released = True
            by_loop.setdefault(w.future.get_loop(), []).append(w)
    for loop, answered in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(_resolve, answered)


class SignUpWriter:
    """Group commit for sign-ups: one thread takes every sign-up queued at that moment (up
    to `max_group`) and stores them in one transaction, then answers each caller. On SQLite
    this replaces N writers queueing for the database's write lock (and N BEGIN/COMMIT
    pairs) with one writer; on PostgreSQL it saves round trips and commits.

    A caller is answered only after the transaction holding its row has committed. A
    group whose transaction fails is stored again one sign-up per transaction, so a bad
    sign-up fails alone and the others are stored; repeats (an active row exists) and a
    second sign-up of the same contact in one group take that one-at-a-time path too."""

    def __init__(self, store: SubscriptionStore, *, max_group: int = 256):
        self.store = store
        self.max_group = max_group
        self._queue: queue.SimpleQueue[SignUpWrite | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._closed = False
        #: how many groups were stored and their sizes (for benchmarks and tests)
        self.groups = 0
        self.grouped = 0

    def _enqueue(self, write: SignUpWrite) -> bool:
        """Hand `write` to the writer thread (started on first use); False once closed."""
        with self._start:
            if self._closed:
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="restock-signup-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(write)
            return True

    def submit(self, write: SignUpWrite) -> tuple[Subscription, bool] | None:
        """Queue `write` for the writer thread and wait for its answer. After `close` (the
        App is closing) the caller's thread stores it itself."""
        inline = not self._enqueue(write)
        if inline:
            self.store_group([write])
        return write.result()

    def submit_async(self, write: SignUpWrite) -> asyncio.Future[Any]:
        """Queue `write` (made with ``done=None``) from an asyncio event loop; the future
        gets its answer. After `close` it is stored in the loop's default executor."""
        loop = asyncio.get_running_loop()
        write.future = loop.create_future()
        inline = not self._enqueue(write)
        if inline:
            loop.run_in_executor(None, self.store_group, [write])
        return write.future

    def close(self) -> None:
        """Store what is queued, then stop the thread."""
        with self._start:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)
        while True:  # nothing is left waiting, whatever happened to the thread
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.store_group([item])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.store_group(group)
                    return
                group.append(item)
            self.store_group(group)

    def store_group(self, writes: Sequence[SignUpWrite]) -> None:
        """Store `writes` and answer every one of them (never raises)."""
        try:
            batch: list[SignUpWrite] = []
            later: list[SignUpWrite] = []
            contacts: set[str] = set()
            columns = None
            for w in writes:
                if columns is None:
                    columns = frozenset(w.values)
                if w.values["contact"] in contacts or frozenset(w.values) != columns:
                    later.append(w)
                else:
                    contacts.add(w.values["contact"])
                    batch.append(w)
            if len(batch) > 1:
                try:
                    later.extend(self.store._store_group(batch))
                    self.groups += 1
                    self.grouped += len(batch)
                    _release(batch)  # committed: answer them before the one-by-one rest
                except Exception:
                    log.warning(
                        "storing %d sign-ups together failed; storing them one by one",
                        len(batch),
                        exc_info=True,
                    )
                    later = [w for w in writes if w.outcome is _UNANSWERED]
            else:
                later = list(writes)
            for w in later:
                try:
                    w.answer(self.store._store_one(w))
                except Exception as exc:
                    w.answer(exc)
        except BaseException as exc:  # pragma: no cover - never leave a caller waiting
            for w in writes:
                w.answer(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            _release(writes)
