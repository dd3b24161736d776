"""What every part of the store shares: engines, dialect-aware inserts, row mappers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db import UTCDateTime
from ..models import Channel, Restock, RestockStatus, Subscription, SubscriptionStatus

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


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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
