"""The store: every query restock makes lives in this package, grouped by aggregate.

    store.subscriptions   sign-ups, reads, pages, unsubscribe, pending keys
    store.stock           stored quantities; recording updates opens restocks
    store.restocks        due waves, releasing subscribers into the outbox
    store.outbox          claim / cancel / record deliveries; provider delivery events
    store.suppressions    contacts that bounced or opted out
    store.events          webhook replay protection
    store.meta            installation-wide values (the generated signing secret, plugin
                          state, the schedule of plugins' periodic tasks)
    store.catalog         message content set by trusted callers (the manual source)
    store.contacts        data rights: export or erase one contact, the suppression list
    store.products        the product upsert's variants (titles, URL, image)
    store.orders          platform orders and the conversions they make (attribution)
    store.webhooks        the outgoing-webhook delivery log
    store.dashboard       the merchant dashboard's reads (demand, subscribers, restocks ...)

Values come back as attrs classes from :mod:`restock_core.models`, statuses as enums. Nothing
here imports from the modules above it (app, worker, api, plugins)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .. import db as tables
from ..db import processed_events, suppressions, utcnow
from ..models import Channel
from ._base import MAX_ROW_ID, WAKE_CHANNEL, Db
from .catalog import CatalogStore
from .dashboard import DashboardStore
from .orders import OrderStore
from .outbox import Claim, ClaimedDelivery, EventMatch, Failed, Outbox, Results, Retry, Sent
from .outbox import add_suppression as _add_suppression
from .products import ProductStore
from .restocks import Cursor, RestockStore
from .retention import PurgeCounts, RetentionStore
from .rights import ContactStore
from .stock import Recorded, StockStore
from .subscriptions import SubscriptionStore
from .webhooks import WebhookDelivery, WebhookLog

#: built once: every sign-up runs it (a statement built per call cost twice its run, issue 13)
_SUPPRESSED = (
    sa.select(sa.literal(1))
    .where(
        suppressions.c.channel == sa.bindparam("channel"),
        suppressions.c.contact.in_([sa.bindparam("contact"), sa.bindparam("hashed")]),
    )
    .limit(1)
)


class SuppressionStore:
    def __init__(self, db: Db):
        self.db = db

    def contains(self, channel: Channel, contact: str, hashed: str | None = None) -> bool:
        """Whether `contact` (or, after an erasure, its `hashed` form) is suppressed."""
        with self.db.read_engine.connect() as conn:
            found = conn.execute(
                _SUPPRESSED,
                {"channel": str(channel), "contact": contact, "hashed": hashed or contact},
            ).first()
        return found is not None

    def remove(self, channel: Channel, contact: str, hashed: str | None = None) -> bool:
        """True when `contact` (or its `hashed` form) was suppressed for `channel` (and no
        longer is)."""
        names = [contact] if hashed is None else [contact, hashed]
        with self.db.engine.begin() as conn:
            result = conn.execute(
                sa.delete(suppressions).where(
                    suppressions.c.channel == str(channel), suppressions.c.contact.in_(names)
                )
            )
        return bool(result.rowcount)

    def add(self, channel: Channel, contact: str, reason: str) -> None:
        with self.db.engine.begin() as conn:
            _add_suppression(self.db, conn, str(channel), contact, reason)


class EventStore:
    def __init__(self, db: Db):
        self.db = db

    def seen(self, source: str, event_id: str) -> bool:
        """Record a webhook/event id; True when it was handled before (a replay)."""
        with self.db.engine.begin() as conn:
            inserted = conn.execute(
                self.db.insert(processed_events)
                .values(source=source, event_id=event_id[:255], received_at=utcnow())
                .on_conflict_do_nothing()
                .returning(processed_events.c.event_id)
            ).first()
        return inserted is None


class MetaStore:
    def __init__(self, db: Db):
        self.db = db

    def get_or_create(
        self, key: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)
    ) -> str:
        """The stored value of `key`; `make()` is stored the first time (concurrent first
        calls agree on one value). A value already stored is read without a write
        transaction."""
        meta = tables.meta
        found = self.get(key)
        if found:
            return found
        with self.db.engine.begin() as conn:
            found = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
            if found:
                return str(found)
            conn.execute(
                self.db.insert(meta)
                .values(key=key, value=make())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return str(conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one())

    def get(self, key: str) -> str | None:
        meta = tables.meta
        with self.db.read_engine.connect() as conn:
            found = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
        return None if found is None else str(found)

    def put(self, key: str, value: str) -> None:
        """Store `value` under `key` (an upsert: concurrent writers leave one of the values)."""
        meta = tables.meta
        insert = self.db.insert(meta).values(key=key, value=value)
        with self.db.engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["key"], set_={"value": insert.excluded.value}
                )
            )

    def claim_due(self, key: str, now: str, next_at: str, latest: str) -> tuple[bool, str]:
        """A schedule shared by every process: `key` holds when something is next due (a
        sortable UTC timestamp string). When it is due (`<= now`, missing, or later than
        `latest`, e.g. after the interval was shortened), move it to `next_at` and answer
        ``(True, next_at)``: this caller runs it, concurrent callers get False. Otherwise
        ``(False, <stored due time>)``."""
        meta = tables.meta
        with self.db.engine.begin() as conn:
            conn.execute(
                self.db.insert(meta)
                .values(key=key, value=now)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            claimed = conn.execute(
                sa.update(meta)
                .where(meta.c.key == key, sa.or_(meta.c.value <= now, meta.c.value > latest))
                .values(value=next_at)
            ).rowcount
            if claimed:
                return True, next_at
            due = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one()
            return False, str(due)

    def delete(self, key: str) -> None:
        meta = tables.meta
        with self.db.engine.begin() as conn:
            conn.execute(sa.delete(meta).where(meta.c.key == key))

    def with_prefix(self, prefix: str) -> dict[str, str]:
        meta = tables.meta
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(meta.c.key, meta.c.value).where(meta.c.key.startswith(prefix))
            ).all()
        return {row.key[len(prefix) :]: row.value for row in rows}


class Store(Db):
    """All of restock's storage over one database (and, on SQLite, a read-only engine)."""

    def __init__(self, engine: Engine, read_engine: Engine | None = None):
        super().__init__(engine, read_engine or engine, tables.is_postgres(engine))
        self.subscriptions = SubscriptionStore(self)
        self.stock = StockStore(self)
        self.restocks = RestockStore(self)
        self.outbox = Outbox(self)
        self.suppressions = SuppressionStore(self)
        self.events = EventStore(self)
        self.meta = MetaStore(self)
        self.catalog = CatalogStore(self)
        self.products = ProductStore(self)
        self.contacts = ContactStore(self)
        self.orders = OrderStore(self)
        self.webhooks = WebhookLog(self)
        self.dashboard = DashboardStore(self)
        self.retention = RetentionStore(self)

    @classmethod
    def from_url(cls, url: str) -> Store:
        engine = tables.create_engine(url)
        read_engine = (
            engine if tables.is_postgres(engine) else tables.create_engine(url, for_reads=True)
        )
        return cls(engine, read_engine)

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.read_engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows by status of subscriptions and deliveries."""
        out: dict[str, dict[str, int]] = {}
        with self.read_engine.connect() as conn:
            for name, table in (
                ("subscriptions", tables.subscriptions),
                ("deliveries", tables.deliveries),
            ):
                rows = conn.execute(
                    sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
                )
                out[name] = {status: count for status, count in rows}
        return out

    def next_due_at(self) -> list[datetime]:
        """When the next queued delivery and the next restock wave are due (if any)."""
        found = [self.outbox.next_attempt_at(), self.restocks.next_wave_at()]
        return [t for t in found if t is not None]

    def dispose(self) -> None:
        self.subscriptions.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


__all__ = [
    "MAX_ROW_ID",
    "WAKE_CHANNEL",
    "Claim",
    "ClaimedDelivery",
    "Cursor",
    "EventMatch",
    "Failed",
    "PurgeCounts",
    "Recorded",
    "Results",
    "Retry",
    "Sent",
    "Store",
    "WebhookDelivery",
    "WebhookLog",
]
