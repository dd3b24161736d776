"""Tables and engines. SQLAlchemy Core (not the ORM): the hot paths are set-based
(INSERT ... SELECT for a release, UPDATE ... RETURNING for a claim) and must stream.

The same tables run on SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .clock import utcnow as utcnow  # re-exported for older imports

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: the sign-ups that hold the one active slot per (variant, scope, channel, contact)
ACTIVE_WHERE = "status IN ('pending', 'unconfirmed')"
FINISHED_WHERE = "status IN ('notified', 'unsubscribed', 'failed')"

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("variant_id", sa.String(255), nullable=False),
    sa.Column("scope", sa.String(255), nullable=False, server_default="default"),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("channel", sa.String(10), nullable=False),
    sa.Column("contact", sa.String(320), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
    sa.Column("customer_id", sa.String(255)),
    sa.Column("product_id", sa.String(255)),
    sa.Column("locale", sa.String(35)),
    sa.Column("product_title", sa.String(500)),
    sa.Column("variant_title", sa.String(500)),
    sa.Column("url", sa.String(2000)),
    sa.Column("attributes", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("notified_at", UTCDateTime),
    sa.Column("failed_reason", sa.String(1000)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(
        "uq_subscriptions_one_pending",
        "variant_id",
        "scope",
        "channel",
        "contact",
        unique=True,
        sqlite_where=sa.text(ACTIVE_WHERE),
        postgresql_where=sa.text(ACTIVE_WHERE),
    ),
    # double opt-in expiry: the unconfirmed sign-ups, oldest first
    sa.Index(
        "ix_subscriptions_unconfirmed",
        "created_at",
        sqlite_where=sa.text("status = 'unconfirmed'"),
        postgresql_where=sa.text("status = 'unconfirmed'"),
    ),
    # retention: finished rows by when they finished (a pending row is never in it)
    sa.Index(
        "ix_subscriptions_finished",
        "status",
        "updated_at",
        sqlite_where=sa.text(FINISHED_WHERE),
        postgresql_where=sa.text(FINISHED_WHERE),
    ),
    sa.Index("ix_subscriptions_release", "source", "variant_id", "scope", "status", "created_at"),
    sa.Index("ix_subscriptions_contact", "contact"),
    # attribution: orders name a platform customer id as well as an email or phone
    sa.Index("ix_subscriptions_customer", "customer_id", "variant_id"),
)

# Pending sign-ups per variant, kept by database triggers on `subscriptions` (migration
# 0003_faces): the dashboard's demand page reads counts here instead of counting 1,000,000 rows.
demand = sa.Table(
    "demand",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("variant_id", sa.String(255), primary_key=True),
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("pending", sa.Integer, nullable=False, server_default="0"),
    sa.Column("product_title", sa.String(500)),
    sa.Column("variant_title", sa.String(500)),
    sa.Index("ix_demand_pending", "pending"),
)

stock = sa.Table(
    "stock",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("variant_id", sa.String(255), primary_key=True),
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("quantity", sa.Integer),
    sa.Column("observed_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

restocks = sa.Table(
    "restocks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("variant_id", sa.String(255), nullable=False),
    sa.Column("scope", sa.String(255), nullable=False),
    sa.Column("quantity", sa.Integer),
    sa.Column("detected_at", UTCDateTime, nullable=False),
    # open: waiting for its (next) wave; done: everyone released; ended: stock ran out again
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("next_wave_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("released", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waves", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("note", sa.String(1000)),
    sa.Index("ix_restocks_due", "status", "next_wave_at"),
    sa.Index(
        "uq_restocks_one_open",
        "source",
        "variant_id",
        "scope",
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    ),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "subscription_id",
        BigId,
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # NULL for a double opt-in confirmation (kind "confirm")
    sa.Column("restock_id", BigId, sa.ForeignKey("restocks.id", ondelete="CASCADE")),
    sa.Column("channel", sa.String(10), nullable=False),
    sa.Column("provider", sa.String(100)),
    sa.Column("status", sa.String(20), nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("claim_token", sa.String(40)),
    sa.Column("provider_message_id", sa.String(255)),
    sa.Column("last_error", sa.String(1000)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    # the restock's wave that released it (1, 2, ...); NULL for rows from before 0007
    sa.Column("wave", sa.Integer),
    # restock: a back-in-stock message; confirm: a double opt-in confirmation request
    sa.Column("kind", sa.String(10), nullable=False, server_default="restock"),
    # also serves every look-up of a subscription's deliveries (its leading column); an index
    # on (subscription_id, status) moved its entry on every state change (0009)
    sa.UniqueConstraint("subscription_id", "restock_id", name="uq_deliveries_subscription_restock"),
    # Claims walk the queue in id (= release) order and stop after a batch; a partial index
    # keeps that walk on queued rows only. An index on next_attempt_at tempted PostgreSQL into
    # sorting the whole queue for every claim.
    sa.Index(
        "ix_deliveries_queued",
        "id",
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    ),
    sa.Index(
        "ix_deliveries_leased",
        "lease_until",
        sqlite_where=sa.text("status = 'sending'"),
        postgresql_where=sa.text("status = 'sending'"),
    ),
    sa.Index("ix_deliveries_provider_message", "provider", "provider_message_id"),
    # counts per restock and wave (dashboard, an index-only scan); also serves the restock
    # foreign key and `requeue --restock`
    sa.Index("ix_deliveries_restock_wave", "restock_id", "wave", "status"),
)

# Provider requests whose membership must not change between attempts (Resend batches under
# one Idempotency-Key): written before the first attempt, so a retry re-sends exactly these
# deliveries under the same key and with the same variant details, whatever changed since.
provider_requests = sa.Table(
    "provider_requests",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("request_key", sa.String(100), nullable=False, unique=True),
    # {"<source>\t<variant id>": {title, product_title, url, image_url}}: what was rendered
    sa.Column("variant_info", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_provider_requests_created", "created_at"),
)

provider_request_members = sa.Table(
    "provider_request_members",
    metadata,
    sa.Column(
        "delivery_id",
        BigId,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "request_id",
        BigId,
        sa.ForeignKey("provider_requests.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Index("ix_provider_request_members_request", "request_id"),
)

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("channel", sa.String(10), primary_key=True),
    sa.Column("contact", sa.String(320), primary_key=True),
    sa.Column("reason", sa.String(1000)),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Message content set by a trusted caller (admin `PUT /stock`, `restock stock set`) for sources
# that keep no catalog of their own, like the built-in `manual` one.
catalog = sa.Table(
    "catalog",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("variant_id", sa.String(255), primary_key=True),
    sa.Column("product_title", sa.String(500)),
    sa.Column("variant_title", sa.String(500)),
    sa.Column("url", sa.String(2000)),
    sa.Column("image_url", sa.String(2000)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# What the person agreed to, when and from where: one row per sign-up that stored something.
consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "subscription_id",
        BigId,
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("channel", sa.String(10), nullable=False),
    sa.Column("contact", sa.String(320), nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(500)),
    sa.Column("text", sa.String(2000)),
    sa.Column("version", sa.String(100)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_consents_subscription", "subscription_id"),
    sa.Index("ix_consents_contact", "contact"),
)

# Webhook deliveries already handled (Shopify webhook ids, Svix ids ...): replays change nothing.
processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
)

meta = sa.Table(
    "restock_meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# ---------------------------------------------------------------- commerce (docs/api.md)

# The product upsert's catalog (POST /api/v1/products): titles, URL and image per variant,
# the snapshots sign-ups take their message content from. Stock lives in `stock`.
catalog_variants = sa.Table(
    "catalog_variants",
    metadata,
    sa.Column("source", sa.String(100), primary_key=True),
    sa.Column("variant_id", sa.String(255), primary_key=True),
    sa.Column("product_id", sa.String(255), nullable=False),
    sa.Column("product_title", sa.String(500)),
    sa.Column("variant_title", sa.String(500)),
    sa.Column("sku", sa.String(255)),
    sa.Column("url", sa.String(2000)),
    sa.Column("image_url", sa.String(2000)),
    sa.Column("price_cents", sa.BigInteger),
    sa.Column("currency", sa.String(3)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_catalog_variants_product", "source", "product_id"),
)

# Orders seen, one row per platform order id (the idempotency key of attribution).
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("order_id", sa.String(255), nullable=False),
    sa.Column("placed_at", UTCDateTime, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("total", sa.Numeric(18, 4)),
    sa.Column("status", sa.String(20), nullable=False),  # placed | cancelled | test
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("source", "order_id", name="uq_orders_source_order"),
)

# One conversion per subscription at most (the unique key makes re-delivered orders harmless).
# A conversion outlives its subscription: retention purges old subscriptions, and the
# conversion (revenue, variant, when notified) stays for the Revenue page with
# subscription_id NULL.
conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "subscription_id",
        BigId,
        sa.ForeignKey("subscriptions.id", ondelete="SET NULL"),
    ),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("order_id", sa.String(255), nullable=False),
    sa.Column("variant_id", sa.String(255), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("revenue", sa.Numeric(18, 4), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("ordered_at", UTCDateTime, nullable=False),
    sa.Column("notified_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subscription_id", name="uq_conversions_subscription"),
    sa.Index("ix_conversions_order", "source", "order_id"),
    sa.Index("ix_conversions_report", "notified_at", "variant_id"),
)

# The outgoing-webhook delivery log (the built-in `webhook` observer plugin).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("endpoint", sa.String(100), nullable=False),  # the plugin instance id
    sa.Column("event", sa.String(100), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # pending -> delivered | failed
    sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.String(1000)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime),
    sa.Index("ix_webhook_deliveries_due", "endpoint", "status", "next_attempt_at"),
)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def normalize_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use psycopg 3 for both."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: how long a writer waits for the in-process write lock (SQLite's busy_timeout, the same)
WRITE_LOCK_TIMEOUT = 30.0

_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(database: str | None) -> threading.Lock:
    """One lock per SQLite database file in this process, shared by every engine on it (an
    in-memory database is private to its engine)."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return threading.Lock()
    key = os.path.realpath(database)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())


class _SerializedConnection(sqlite3.Connection):
    """A pysqlite connection whose write transactions take `write_lock` (shared by every
    connection to the same file in this process) from BEGIN IMMEDIATE until COMMIT or
    ROLLBACK has returned. Writers then queue in-process and are woken the moment the
    lock is free, instead of polling SQLite's write lock from its busy handler, which
    sleeps in steps of up to 100 ms (issue 13: p99 of seconds while the lock sat free).
    Other processes still meet SQLite's own lock and busy_timeout."""

    write_lock: threading.Lock
    _holds_write_lock = False

    def acquire_write_lock(self) -> None:
        if not self.write_lock.acquire(timeout=WRITE_LOCK_TIMEOUT):
            raise sqlite3.OperationalError("database is locked (in-process write lock)")
        self._holds_write_lock = True

    def release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_write_lock()


def create_engine(url: str, *, for_reads: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`. On SQLite every write transaction takes the write lock up front
    (BEGIN IMMEDIATE), after an in-process lock per database file that serializes this
    process's writers (see :class:`_SerializedConnection`); an engine `for_reads` begins
    deferred, so reads run beside a writer (WAL) instead of queueing behind it. Pools are
    sized for FastAPI's thread pool (40 threads)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        if not for_reads:
            lock = _write_lock(sa.engine.make_url(url).database)
            connect_args["factory"] = type(
                "SerializedConnection", (_SerializedConnection,), {"write_lock": lock}
            )
        database = sa.engine.make_url(url).database
        in_memory = not database or database == ":memory:" or "mode=memory" in url
        if not in_memory:  # SQLAlchemy gives in-memory SQLite a pool without these sizes
            # Connections past pool_size are closed on return and opened again (13 ms with
            # the pragmas, measured): keep one per request thread for reads.
            kwargs.setdefault("pool_size", 40 if for_reads else 10)
            kwargs.setdefault("max_overflow", 20 if for_reads else 40)
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; take the write lock up front so
        # two writers never deadlock upgrading read locks (SQLAlchemy's documented recipe).
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        if for_reads:

            @event.listens_for(engine, "begin")
            def _begin_read(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN")

        else:

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                dbapi = conn.connection.dbapi_connection
                dbapi.acquire_write_lock()
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except BaseException:
                    dbapi.release_write_lock()
                    raise

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


# ---------------------------------------------------------------------- test databases
# Database-level administration for the shipped pytest plugin (a fresh PostgreSQL schema per
# test); application queries live in the store.

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ping(url: str) -> None:
    """Connect to `url` and run one query; raises when the database cannot be used."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def create_schema(admin_url: str, schema: str) -> None:
    _schema_ddl(admin_url, f"CREATE SCHEMA {_checked_schema(schema)}")


def drop_schema(admin_url: str, schema: str) -> None:
    _schema_ddl(admin_url, f"DROP SCHEMA {_checked_schema(schema)} CASCADE")


def _checked_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def _schema_ddl(admin_url: str, statement: str) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()
