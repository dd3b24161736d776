"""The worker: releases restocks in waves, dispatches the delivery outbox and runs
reconciliation polls. Several workers may run against one PostgreSQL; claims use
`FOR UPDATE SKIP LOCKED` and leases, so a dead worker's claims are taken over."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from .db import UTCDateTime, deliveries, restocks, subscriptions, utcnow
from .errors import AdapterError
from .models import Channel, Message, Outcome, SendResult, StockKey, StockUpdate, Subscription

if TYPE_CHECKING:
    from .app import App
    from .plugins import PluginInstance

log = logging.getLogger("restock.worker")

ACTIVE = ("queued", "sending")


@attrs.frozen
class ReconcileResult:
    keys: int
    changed: int
    restocks_opened: int
    errors: tuple[str, ...] = ()


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _now_param(value: datetime) -> Any:
    return sa.literal(value, UTCDateTime)


class Worker:
    def __init__(self, app: App, *, worker_id: str | None = None):
        self.app = app
        self.settings = app.settings
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self._listener: threading.Thread | None = None
        self._last_reconcile: dict[str, float] = {}

    # ------------------------------------------------------------------ restocks

    def process_restocks(self, limit: int = 10) -> int:
        """Release every restock whose (next) wave is due. Returns how many were handled."""
        now = utcnow()
        due = (
            sa.select(restocks.c.id)
            .where(
                restocks.c.status == "open",
                restocks.c.next_wave_at <= now,
                sa.or_(restocks.c.lease_until.is_(None), restocks.c.lease_until < now),
            )
            .order_by(restocks.c.next_wave_at)
            .limit(limit)
        )
        if self.app.is_postgres:
            due = due.with_for_update(skip_locked=True)
        claim = (
            sa.update(restocks)
            .where(restocks.c.id.in_(due.scalar_subquery()))
            .values(lease_until=now + timedelta(seconds=self.settings.lease))
            .returning(*restocks.c)
        )
        with self.app.engine.begin() as conn:
            claimed = conn.execute(claim).all()
        for row in claimed:
            try:
                self.run_wave(row)
            except Exception:
                log.exception("restock %s: wave failed; it will be retried", row.id)
                self._postpone(row.id, 5.0, "wave failed")
        return len(claimed)

    def _postpone(self, restock_id: int, seconds: float, note: str) -> None:
        with self.app.engine.begin() as conn:
            conn.execute(
                sa.update(restocks)
                .where(restocks.c.id == restock_id)
                .values(
                    next_wave_at=utcnow() + timedelta(seconds=seconds), lease_until=None, note=note
                )
            )

    def _finish(self, restock_id: int, status: str, note: str) -> None:
        with self.app.engine.begin() as conn:
            conn.execute(
                sa.update(restocks)
                .where(restocks.c.id == restock_id)
                .values(status=status, finished_at=utcnow(), lease_until=None, note=note)
            )
        log.info("restock %s %s: %s", restock_id, status, note)

    def run_wave(self, row: Any) -> None:
        """Re-read stock, then release the oldest pending subscribers, at most
        `per_unit × available` of them; schedule the next wave or close the restock."""
        app = self.app
        key = StockKey(row.variant_id, row.scope)
        if row.source not in app.adapters:
            self._finish(row.id, "ended", f"source {row.source!r} is no longer configured")
            return
        try:
            quantity = app.read_availability(row.source, [key]).get(key)
        except AdapterError as exc:
            log.warning("restock %s: stock re-read failed (%s); retrying in 30 s", row.id, exc)
            self._postpone(row.id, 30.0, f"stock re-read failed: {exc}")
            return
        app.record_stock(row.source, [StockUpdate(key, quantity, utcnow())])
        required = self.settings.inventory_required
        if quantity is None or quantity < required:
            self._finish(row.id, "ended", f"stock gone before release (available: {quantity})")
            return
        policy = app.release_policy(row.source)
        limit = policy.per_unit * quantity if policy.per_unit else None
        released = 0
        total = row.released
        cursor: tuple[datetime, int] | None = None
        while limit is None or released < limit:
            want = self.settings.release_batch_size
            if limit is not None:
                want = min(want, limit - released)
            ids, cursor = self._release_chunk(row, want, cursor)
            released += len(ids)
            total += len(ids)
            if ids:
                app.metrics.released.inc(len(ids))
                app.wake()
                if app.is_postgres and (total - len(ids)) // 50_000 != total // 50_000:
                    self._refresh_statistics()
                if app.has_observers("restocked"):
                    self._fire_restocked(row, quantity, total, ids)
            if len(ids) < want:
                break
        more = self._has_unreleased(row)
        with app.engine.begin() as conn:
            values: dict[str, Any] = {
                "waves": row.waves + 1,
                "lease_until": None,
                "quantity": quantity,
            }
            if more and limit is not None:
                values["next_wave_at"] = utcnow() + timedelta(seconds=policy.wave_interval)
                values["note"] = f"wave {row.waves + 1}: released {released}"
            else:
                values.update(status="done", finished_at=utcnow(), note=f"released {total}")
            conn.execute(sa.update(restocks).where(restocks.c.id == row.id).values(**values))
        log.info(
            "restock %s (%s from %s): wave %s released %s subscribers (available %s)",
            row.id,
            key,
            row.source,
            row.waves + 1,
            released,
            quantity,
        )

    def _refresh_statistics(self) -> None:
        """A big release turns over most rows of the hot tables faster than autovacuum
        analyzes them; with stale statistics PostgreSQL walks the dead entries of the
        pending-only index instead of the primary key (measured: 3x slower result updates)."""
        try:
            with self.app.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE subscriptions"))
                conn.execute(sa.text("ANALYZE deliveries"))
        except Exception as exc:  # statistics are an optimisation, never a reason to stop
            log.warning("ANALYZE after a large release failed: %s", exc)

    def _unreleased(self, row: Any) -> Any:
        s = subscriptions
        return sa.and_(
            s.c.source == row.source,
            s.c.variant_id == row.variant_id,
            s.c.scope == row.scope,
            s.c.status == "pending",
            s.c.channel.in_([str(c) for c in self.app.routing]),
            ~sa.exists().where(
                deliveries.c.subscription_id == s.c.id, deliveries.c.status.in_(ACTIVE)
            ),
        )

    def _has_unreleased(self, row: Any) -> bool:
        with self.app.read_engine.connect() as conn:
            found = conn.execute(
                sa.select(sa.literal(1)).where(self._unreleased(row)).limit(1)
            ).first()
        return found is not None

    def _release_chunk(
        self, row: Any, want: int, cursor: tuple[datetime, int] | None
    ) -> tuple[list[int], tuple[datetime, int] | None]:
        """Queue one delivery per released subscriber, oldest sign-up first, in one
        INSERT ... SELECT: the subscribers stream through the database, not through memory.
        `cursor` is the (created_at, id) of the last subscriber this wave released, so each
        chunk starts where the previous one ended instead of re-scanning released rows."""
        s = subscriptions
        now = utcnow()
        where = self._unreleased(row)
        if cursor is not None:
            where = sa.and_(
                where,
                sa.tuple_(s.c.created_at, s.c.id)
                > sa.tuple_(sa.literal(cursor[0], UTCDateTime), sa.literal(cursor[1])),
            )
        provider = sa.case(
            {str(ch): inst.id for ch, inst in self.app.routing.items()}, value=s.c.channel
        )
        chosen = (
            sa.select(
                s.c.id,
                sa.literal(row.id),
                s.c.channel,
                provider,
                sa.literal("queued"),
                sa.literal(0),
                _now_param(now),
                _now_param(now),
            )
            .where(where)
            .order_by(s.c.created_at, s.c.id)
            .limit(want)
        )
        insert = (
            sa.insert(deliveries)
            .from_select(
                [
                    "subscription_id",
                    "restock_id",
                    "channel",
                    "provider",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                ],
                chosen,
            )
            .returning(deliveries.c.subscription_id)
        )
        with self.app.engine.begin() as conn:
            ids = list(conn.execute(insert).scalars())
            if ids:
                last = conn.execute(
                    sa.select(s.c.created_at, s.c.id)
                    .where(s.c.id.in_(ids))
                    .order_by(s.c.created_at.desc(), s.c.id.desc())
                    .limit(1)
                ).one()
                cursor = (last.created_at, last.id)
                conn.execute(
                    sa.update(restocks)
                    .where(restocks.c.id == row.id)
                    .values(
                        released=restocks.c.released + len(ids),
                        lease_until=utcnow() + timedelta(seconds=self.settings.lease),
                    )
                )
                self.app.wake(conn)
        return ids, cursor

    def _fire_restocked(self, row: Any, quantity: int, total: int, ids: Sequence[int]) -> None:
        from .app import row_to_restock, row_to_subscription

        with self.app.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(subscriptions)
                .where(subscriptions.c.id.in_(ids))
                .order_by(subscriptions.c.created_at, subscriptions.c.id)
            ).all()
            restock_row = conn.execute(sa.select(restocks).where(restocks.c.id == row.id)).one()
        restock = attrs.evolve(row_to_restock(restock_row), quantity=quantity, released=total)
        self.app.notify_observers(
            "restocked", restock=restock, subscriptions=[row_to_subscription(r) for r in rows]
        )

    # ------------------------------------------------------------------ dispatch

    def _claim(self) -> str | None:
        """Claim due deliveries (and ones whose worker's lease ran out) for this worker."""
        now = utcnow()
        token = uuid.uuid4().hex
        d = deliveries
        lease_until = now + timedelta(seconds=self.settings.lease)
        batch = self.settings.batch_size
        claimed = 0
        with self.app.engine.begin() as conn:
            for condition in (
                sa.and_(d.c.status == "sending", d.c.lease_until < now),
                sa.and_(d.c.status == "queued", d.c.next_attempt_at <= now),
            ):
                due = sa.select(d.c.id).where(condition).order_by(d.c.id).limit(batch - claimed)
                if self.app.is_postgres:
                    due = due.with_for_update(skip_locked=True)
                result = conn.execute(
                    sa.update(d)
                    .where(d.c.id.in_(due.scalar_subquery()))
                    .values(
                        status="sending",
                        claim_token=token,
                        lease_until=lease_until,
                        attempts=d.c.attempts + 1,
                    )
                )
                claimed += result.rowcount or 0
                if claimed >= batch:
                    break
        return token if claimed else None

    def dispatch_once(self) -> int:
        """Claim one batch, send it through the providers and record every result."""
        from .app import row_to_subscription

        token = self._claim()
        if token is None:
            return 0
        d = deliveries
        s = subscriptions
        query = (
            sa.select(
                s,
                d.c.id.label("delivery_id"),
                d.c.attempts.label("delivery_attempts"),
                d.c.provider.label("delivery_provider"),
            )
            .join(d, d.c.subscription_id == s.c.id)
            .where(d.c.claim_token == token, d.c.status == "sending")
            .order_by(d.c.id)
        )
        with self.app.read_engine.connect() as conn:
            rows = conn.execute(query).all()
        live: list[tuple[int, int, Subscription, str | None]] = []
        cancelled: list[int] = []
        for r in rows:
            if r.status != "pending":
                cancelled.append(r.delivery_id)
            else:
                live.append(
                    (
                        r.delivery_id,
                        r.delivery_attempts,
                        row_to_subscription(r),
                        r.delivery_provider,
                    )
                )
        if cancelled:
            with self.app.engine.begin() as conn:
                conn.execute(
                    sa.update(d)
                    .where(d.c.id.in_(cancelled), d.c.claim_token == token)
                    .values(
                        status="cancelled",
                        lease_until=None,
                        last_error="subscription no longer pending",
                    )
                )
        by_provider: dict[str, list[tuple[int, int, Subscription]]] = defaultdict(list)
        unroutable: list[tuple[int, int, Subscription]] = []
        for delivery_id, attempts, sub, provider_id in live:
            instance = self._provider_for(provider_id, sub.channel)
            if instance is None:
                unroutable.append((delivery_id, attempts, sub))
            else:
                by_provider[instance.id].append((delivery_id, attempts, sub))
        for delivery_id, attempts, sub in unroutable:
            self._record(
                token,
                "-",
                [
                    (
                        sub,
                        attempts,
                        SendResult.retry(delivery_id, f"no provider serves {sub.channel}"),
                    )
                ],
            )
        for provider_id, items in by_provider.items():
            instance = self.app.providers[provider_id]
            size = max(1, int(instance.obj.max_batch_size))
            for start in range(0, len(items), size):
                self._send_chunk(token, instance, items[start : start + size])
        return len(rows)

    def _provider_for(self, provider_id: str | None, channel: Channel) -> PluginInstance | None:
        instance = self.app.providers.get(provider_id or "")
        if instance is not None and channel in instance.obj.channels:
            return instance
        return self.app.routing.get(channel)

    def _messages(self, items: Sequence[tuple[int, int, Subscription]]) -> list[Message]:
        app = self.app
        wanted: dict[str, set[str]] = defaultdict(set)
        for _, _, sub in items:
            wanted[sub.source].add(sub.variant_id)
        infos = {
            (source, vid): info
            for source, ids in wanted.items()
            for vid, info in app.describe(source, sorted(ids)).items()
        }
        messages = []
        for delivery_id, attempts, sub in items:
            token = app.signer.sign(sub.id)
            base = app.settings.public_url.rstrip("/")
            messages.append(
                app.renderer.render(
                    delivery_id=delivery_id,
                    attempt=attempts,
                    subscription=sub,
                    info=infos.get((sub.source, sub.variant_id)),
                    unsubscribe_url=f"{base}/unsubscribe/{token}",
                    unsubscribe_post_url=f"{base}/unsubscribe/{token}",
                )
            )
        return messages

    def _send_chunk(
        self, token: str, instance: PluginInstance, items: Sequence[tuple[int, int, Subscription]]
    ) -> None:
        messages = self._messages(items)
        started = time.perf_counter()
        try:
            results = list(instance.obj.send(messages))
        except Exception as exc:  # the contract: anything raised is transient for the batch
            log.warning(
                "provider %s raised %s; %s messages will be retried",
                instance.id,
                exc,
                len(messages),
            )
            reason = f"{type(exc).__name__}: {exc}"
            results = [SendResult.retry(m.delivery_id, reason) for m in messages]
        self.app.metrics.send_seconds.labels(provider=instance.id).observe(
            time.perf_counter() - started
        )
        by_id: dict[int, SendResult] = {}
        for result in results:
            if isinstance(result, SendResult):
                by_id.setdefault(result.delivery_id, result)
        outcomes = []
        for delivery_id, attempts, sub in items:
            result = by_id.get(delivery_id)
            if result is None:
                result = SendResult.retry(delivery_id, f"provider {instance.id} returned no result")
            outcomes.append((sub, attempts, result))
        self._record(token, instance.id, outcomes)

    def _backoff(self, attempts: int, retry_after: float | None, jitter: float) -> float:
        """Exponential backoff with "equal jitter", or the server's Retry-After plus a little.
        `jitter` (0..1) is drawn once per provider call, so a batch retried as a whole stays
        together and is sent again as the same batch (same idempotency key)."""
        if retry_after is not None and retry_after >= 0:
            delay = retry_after + jitter * min(1.0, retry_after * 0.1)
        else:
            base = self.settings.retry_base * (2 ** max(0, attempts - 1))
            delay = base / 2 + jitter * base / 2
        return min(delay, self.settings.retry_max)

    def _record(
        self, token: str, provider_id: str, outcomes: Sequence[tuple[Subscription, int, SendResult]]
    ) -> None:
        now = utcnow()
        jitter = random.random()
        d = deliveries
        s = subscriptions
        sent: list[dict[str, Any]] = []
        retry: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        suppress: list[tuple[Channel, str, str]] = []
        for sub, attempts, result in outcomes:
            if result.outcome == Outcome.SENT:
                sent.append(
                    {"did": result.delivery_id, "pmid": result.provider_message_id, "sid": sub.id}
                )
            elif result.outcome == Outcome.RETRY and attempts < self.settings.max_attempts:
                delay = self._backoff(attempts, result.retry_after, jitter)
                retry.append(
                    {
                        "did": result.delivery_id,
                        "err": (result.reason or "transient failure")[:1000],
                        "at": now + timedelta(seconds=delay),
                    }
                )
            else:
                reason = result.reason or "failed"
                if result.outcome == Outcome.RETRY:
                    reason = f"gave up after {attempts} attempts: {reason}"
                failed.append({"did": result.delivery_id, "err": reason[:1000], "sid": sub.id})
                if result.suppress:
                    suppress.append((sub.channel, sub.contact, reason))
        with self.app.engine.begin() as conn:
            mine = sa.and_(d.c.id == sa.bindparam("did"), d.c.claim_token == token)
            if sent:
                # set-based: one UPDATE per provider message id (SendGrid gives one per
                # request), instead of one statement per message
                by_pmid: dict[str | None, list[int]] = defaultdict(list)
                for row in sent:
                    by_pmid[row["pmid"]].append(row["did"])
                for pmid, ids in by_pmid.items():
                    for chunk in _chunks(ids, 900):
                        conn.execute(
                            sa.update(d)
                            .where(d.c.id.in_(chunk), d.c.claim_token == token)
                            .values(
                                status="sent",
                                provider=provider_id,
                                provider_message_id=pmid,
                                sent_at=now,
                                lease_until=None,
                            )
                        )
                for chunk in _chunks([row["sid"] for row in sent], 900):
                    conn.execute(
                        sa.update(s)
                        .where(s.c.id.in_(chunk), s.c.status == "pending")
                        .values(status="notified", notified_at=now, updated_at=now)
                    )
            if retry:
                conn.execute(
                    sa.update(d)
                    .where(mine)
                    .values(
                        status="queued",
                        next_attempt_at=sa.bindparam("at", type_=UTCDateTime),
                        last_error=sa.bindparam("err"),
                        lease_until=None,
                    ),
                    retry,
                )
            if failed:
                conn.execute(
                    sa.update(d)
                    .where(mine)
                    .values(status="failed", last_error=sa.bindparam("err"), lease_until=None),
                    failed,
                )
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == sa.bindparam("sid"), s.c.status == "pending")
                    .values(status="failed", failed_reason=sa.bindparam("err"), updated_at=now),
                    [{"sid": row["sid"], "err": row["err"]} for row in failed],
                )
        for channel, contact, reason in suppress:
            self.app.suppress(channel, contact, reason)
        metrics = self.app.metrics
        if sent:
            metrics.deliveries.labels(provider=provider_id, outcome="sent").inc(len(sent))
        if retry:
            metrics.retries.labels(provider=provider_id).inc(len(retry))
            metrics.deliveries.labels(provider=provider_id, outcome="retry").inc(len(retry))
        if failed:
            metrics.deliveries.labels(provider=provider_id, outcome="failed").inc(len(failed))
        for _sub, _, result in outcomes:
            if result.outcome == Outcome.SENT:
                log.debug(
                    "delivery %s sent via %s (%s)",
                    result.delivery_id,
                    provider_id,
                    result.provider_message_id,
                )
            else:
                log.info(
                    "delivery %s %s via %s: %s",
                    result.delivery_id,
                    result.outcome,
                    provider_id,
                    result.reason,
                    extra={"delivery_id": result.delivery_id},
                )
        self._notify_outcomes(outcomes, {row["did"] for row in failed})

    def _notify_outcomes(
        self, outcomes: Sequence[tuple[Subscription, int, SendResult]], failed_ids: set[int]
    ) -> None:
        app = self.app
        want_sent = app.has_observers("notification_sent")
        want_failed = app.has_observers("notification_failed")
        if not (want_sent or want_failed):
            return
        for sub, _, result in outcomes:
            if want_sent and result.outcome == Outcome.SENT:
                app.notify_observers("notification_sent", subscription=sub, result=result)
            elif want_failed and result.delivery_id in failed_ids:
                app.notify_observers("notification_failed", subscription=sub, result=result)

    # ------------------------------------------------------------------ reconciliation

    def reconcile(
        self, source: str | None = None, *, progress: Callable[[int], None] | None = None
    ) -> ReconcileResult:
        """One reconciliation pass: re-read stock for every (variant, scope) with pending
        subscribers, in the adapter's batch size, and record it as fresh observations."""
        app = self.app
        sources = [source] if source else list(app.adapters)
        keys_seen = changed = opened = 0
        errors: list[str] = []
        for src in sources:
            adapter = app.adapters[src].obj
            size = int(getattr(adapter, "max_batch_size", 250) or 250)
            after: tuple[str, str] | None = None
            while True:
                s = subscriptions
                query = (
                    sa.select(s.c.variant_id, s.c.scope)
                    .where(s.c.source == src, s.c.status == "pending")
                    .group_by(s.c.variant_id, s.c.scope)
                    .order_by(s.c.variant_id, s.c.scope)
                    .limit(size)
                )
                if after is not None:
                    query = query.where(sa.tuple_(s.c.variant_id, s.c.scope) > sa.tuple_(*after))
                with app.read_engine.connect() as conn:
                    batch = [StockKey(v, sc) for v, sc in conn.execute(query)]
                if not batch:
                    break
                after = (batch[-1].variant_id, batch[-1].scope)
                keys_seen += len(batch)
                try:
                    found = app.read_availability(src, batch)
                except AdapterError as exc:
                    errors.append(str(exc))
                    log.warning("reconciliation of %s stopped: %s", src, exc)
                    break
                observed = utcnow()
                updates = [StockUpdate(k, found.get(k), observed) for k in batch if k in found]
                result = app.record_stock(src, updates)
                changed += result.applied
                opened += len(result.restocks_opened)
                if progress:
                    progress(len(batch))
                if len(batch) < size:
                    break
        return ReconcileResult(keys_seen, changed, opened, tuple(errors))

    def reconcile_due(self) -> None:
        now = time.monotonic()
        for instance in self.app.adapters.values():
            interval = self.settings.reconcile_interval or getattr(
                instance.obj, "poll_interval", None
            )
            if not interval:
                continue
            last = self._last_reconcile.get(instance.id)
            if last is not None and now - last < interval:
                continue
            self._last_reconcile[instance.id] = now
            try:
                self.reconcile(instance.id)
            except Exception:
                log.exception("reconciliation of %s failed", instance.id)

    # ------------------------------------------------------------------ loops

    def next_due_in(self) -> float:
        """Seconds until the next queued delivery or restock wave is due (capped)."""
        cap = self.settings.poll_interval
        with self.app.read_engine.connect() as conn:
            times = [
                conn.execute(
                    sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                        deliveries.c.status == "queued"
                    )
                ).scalar(),
                conn.execute(
                    sa.select(sa.func.min(restocks.c.next_wave_at)).where(
                        restocks.c.status == "open"
                    )
                ).scalar(),
            ]
        now = utcnow()
        waits = [(t - now).total_seconds() for t in times if t is not None]
        if not waits:
            return cap
        return max(0.0, min(cap, min(waits)))

    def run_once(self) -> int:
        """Do whatever is due now: restock waves, then one dispatch batch."""
        return self.process_restocks() + self.dispatch_once()

    def drain(self, max_seconds: float = 30.0) -> int:
        """Work until nothing is due right now (future retries are not waited for)."""
        deadline = time.monotonic() + max_seconds
        total = 0
        while time.monotonic() < deadline:
            done = self.run_once()
            total += done
            if done == 0:
                return total
        return total

    def run(self, stop: threading.Event, *, reconcile: bool = True) -> None:
        """The worker loop: never dies of an error, sleeps until woken or work is due."""
        app = self.app
        if app.is_postgres:
            self._start_listener(stop)
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            app.wake_event.clear()
            try:
                worked = self.run_once()
                if reconcile:
                    self.reconcile_due()
                if worked:
                    continue
                timeout = self.next_due_in()
            except Exception:
                log.exception("worker round failed; retrying shortly")
                timeout = self.settings.poll_interval
            app.wake_event.wait(timeout)
        log.info("worker %s stopped", self.worker_id)

    def _start_listener(self, stop: threading.Event) -> None:
        """LISTEN for wake-ups from other processes (API processes, other workers)."""
        import psycopg

        from .app import WAKE_CHANNEL

        url = self.app.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def listen() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {WAKE_CHANNEL}")
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                self.app.wake_event.set()
                except Exception as exc:
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
                    stop.wait(1.0)

        self._listener = threading.Thread(target=listen, name="restock-listen", daemon=True)
        self._listener.start()
