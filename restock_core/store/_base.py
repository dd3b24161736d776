"""What every part of the store shares: engines, dialect-aware inserts, row mappers."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db import UTCDateTime, subscriptions
from ..models import Channel, Restock, RestockStatus, Subscription, SubscriptionStatus
from ..web import chunks as chunks

log = logging.getLogger("restock.store")

WAKE_CHANNEL = "restock_wake"
MAX_ROW_ID = 2**63 - 1  # BIGINT; larger numbers cannot name a row


class Db:
    """The engines and the wake-up signal; handed to every aggregate's store."""

    def __init__(self, engine: Engine, read_engine: Engine, is_postgres: bool):
        self.engine = engine
        #: for reads only; on SQLite it does not queue behind the writer
        self.read_engine = read_engine
        self.is_postgres = is_postgres
        #: set when there is new work for workers in this process
        self.wake_event = threading.Event()

    def insert(self, table: sa.Table) -> Any:
        """An INSERT supporting ON CONFLICT DO NOTHING on both backends."""
        if self.is_postgres:
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    def wake(self, conn: Connection | None = None) -> None:
        """Tell workers there is work: in this process directly, in others by NOTIFY (sent
        when `conn`'s transaction commits)."""
        self.wake_event.set()
        if self.is_postgres and conn is not None:
            conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": WAKE_CHANNEL})

    def listen(self, stop: threading.Event) -> threading.Thread | None:
        """PostgreSQL: LISTEN for wake-ups from other processes (API processes, other
        workers) in a thread, setting `wake_event` for each, until `stop` is set."""
        if not self.is_postgres:
            return None
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def listen() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {WAKE_CHANNEL}")
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                self.wake_event.set()
                except Exception as exc:
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
                    stop.wait(1.0)

        thread = threading.Thread(target=listen, name="restock-listen", daemon=True)
        thread.start()
        return thread


def utc_param(value: datetime) -> Any:
    return sa.literal(value, UTCDateTime)


def subscription_from_row(row: Any) -> Subscription:
    m = row._mapping
    return Subscription(
        id=m["id"],
        variant_id=m["variant_id"],
        scope=m["scope"],
        source=m["source"],
        channel=Channel(m["channel"]),
        contact=m["contact"],
        status=SubscriptionStatus(m["status"]),
        created_at=m["created_at"],
        customer_id=m["customer_id"],
        product_id=m["product_id"],
        locale=m["locale"],
        product_title=m["product_title"],
        variant_title=m["variant_title"],
        url=m["url"],
        attributes=m["attributes"] or {},
        notified_at=m["notified_at"],
        failed_reason=m["failed_reason"],
    )


#: the columns `subscription_from_values` reads, in its order (a claim selects these first)
SUBSCRIPTION_COLUMNS = tuple(
    subscriptions.c[name]
    for name in (
        "id",
        "variant_id",
        "scope",
        "source",
        "channel",
        "contact",
        "status",
        "created_at",
        "customer_id",
        "product_id",
        "locale",
        "product_title",
        "variant_title",
        "url",
        "attributes",
        "notified_at",
        "failed_reason",
    )
)
_CHANNELS = {str(c): c for c in Channel}
_STATUSES = {str(s): s for s in SubscriptionStatus}


def subscription_from_values(v: Any) -> Subscription:
    """A Subscription from a row that starts with `SUBSCRIPTION_COLUMNS`, by position: the
    claim builds 1,000 per batch and `_mapping` look-ups by name were a third of its cost."""
    return Subscription(
        v[0],
        v[1],
        v[2],
        v[3],
        _CHANNELS[v[4]],
        v[5],
        _STATUSES[v[6]],
        v[7],
        v[8],
        v[9],
        v[10],
        v[11],
        v[12],
        v[13],
        v[14] or {},
        v[15],
        v[16],
    )


def restock_from_row(row: Any) -> Restock:
    m = row._mapping
    return Restock(
        id=m["id"],
        source=m["source"],
        variant_id=m["variant_id"],
        scope=m["scope"],
        quantity=m["quantity"],
        detected_at=m["detected_at"],
        released=m["released"],
        waves=m["waves"],
        status=RestockStatus(m["status"]),
    )
