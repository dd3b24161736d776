"""The outgoing-webhook delivery log: one row per event per endpoint, claimed with a lease
and retried with backoff by the `webhook` plugin's sender (docs/plugins/webhook.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa

from ..db import utcnow, webhook_deliveries
from ._base import Db

w = webhook_deliveries
PENDING = "pending"


@attrs.frozen
class WebhookDelivery:
    id: int
    endpoint: str
    event: str
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


def _from_row(row: Any) -> WebhookDelivery:
    m = row._mapping
    return WebhookDelivery(
        id=m["id"],
        endpoint=m["endpoint"],
        event=m["event"],
        body=m["body"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        created_at=m["created_at"],
        last_status=m["last_status"],
        last_error=m["last_error"],
        delivered_at=m["delivered_at"],
    )


class WebhookLog:
    def __init__(self, db: Db):
        self.db = db

    def add(self, endpoint: str, event: str, body: str) -> int:
        now = utcnow()
        with self.db.engine.begin() as conn:
            return int(
                conn.execute(
                    sa.insert(w)
                    .values(
                        endpoint=endpoint,
                        event=event,
                        body=body,
                        status=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                    .returning(w.c.id)
                ).scalar_one()
            )

    def claim(self, endpoint: str, limit: int, lease: float) -> list[WebhookDelivery]:
        """Take up to `limit` due deliveries of `endpoint` for `lease` seconds (a sender
        that dies leaves them to the next one after the lease)."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            due = (
                sa.select(w.c.id)
                .where(
                    w.c.endpoint == endpoint,
                    w.c.status == PENDING,
                    w.c.next_attempt_at <= now,
                    sa.or_(w.c.lease_until.is_(None), w.c.lease_until < now),
                )
                .order_by(w.c.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                sa.update(w)
                .where(w.c.id.in_(ids))
                .values(lease_until=now + timedelta(seconds=lease))
            )
            rows = conn.execute(sa.select(w).where(w.c.id.in_(ids)).order_by(w.c.id)).all()
        return [_from_row(r) for r in rows]

    def delivered(self, delivery_id: int, status: int) -> None:
        now = utcnow()
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.update(w)
                .where(w.c.id == delivery_id)
                .values(
                    status="delivered",
                    attempts=w.c.attempts + 1,
                    last_status=status,
                    last_error=None,
                    lease_until=None,
                    delivered_at=now,
                )
            )

    def attempt_failed(
        self, delivery_id: int, status: int | None, error: str, retry_in: float | None
    ) -> None:
        """Record a failed attempt: try again in `retry_in` seconds, or give up (None)."""
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": w.c.attempts + 1,
            "last_status": status,
            "last_error": error[:1000],
            "lease_until": None,
        }
        if retry_in is None:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = now + timedelta(seconds=retry_in)
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(w).where(w.c.id == delivery_id).values(**values))

    def recent(self, endpoint: str, limit: int = 100) -> list[WebhookDelivery]:
        """The newest deliveries of `endpoint`, newest first (the delivery log)."""
        with self.db.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(w).where(w.c.endpoint == endpoint).order_by(w.c.id.desc()).limit(limit)
            ).all()
        return [_from_row(r) for r in rows]

    def next_due_at(self, endpoint: str) -> datetime | None:
        with self.db.read_engine.connect() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(sa.func.min(w.c.next_attempt_at)).where(
                    w.c.endpoint == endpoint, w.c.status == PENDING
                )
            ).scalar()
