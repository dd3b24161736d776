"""The worker: releases restocks in waves, dispatches the delivery outbox, runs
reconciliation polls and plugins' periodic tasks (restock_core/periodic.py). Several workers may run against one PostgreSQL; claims use
`FOR UPDATE SKIP LOCKED` and leases, so a dead worker's claims are taken over."""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from .clock import utcnow
from .errors import AdapterError
from .models import (
    Channel,
    DeliveryKind,
    Hold,
    Message,
    Outcome,
    Restock,
    RestockStatus,
    SendResult,
    StockKey,
    StockUpdate,
    Subscription,
    SubscriptionStatus,
    VariantInfo,
)
from .periodic import PeriodicRunner
from .rendering import RenderError
from .store import Claim, Failed, Results, Retry, Sent
from .store.outbox import StoredRequest

if TYPE_CHECKING:
    from .app import App
    from .plugins import PluginInstance

log = logging.getLogger("restock.worker")


_heap_frozen = False
#: allocations between two young collections while a worker runs (CPython's default: 700)
GC_YOUNG_THRESHOLD = 20_000


def freeze_heap() -> None:
    """Once per process, when a worker starts: collect, then move every object alive now
    (modules, the App, plugins, compiled statements: ~130,000 objects) out of the cyclic
    garbage collector's view (`gc.freeze`), and collect the young generation every 20,000
    allocations instead of 700. A fan-out makes and drops millions of short-lived objects:
    each full collection walked the whole start-up heap again, and each young one the
    batch in hand (0.9 s of collections per 30,000 messages, 0.1 s after; issue 13).
    Frozen objects are still freed by reference counting; only cycles among them are never
    collected, and what is alive when a worker starts lives as long as the process. It
    changes the whole process, so the commands that own their process call it (`restock
    worker`, `restock serve` with its worker); a library calling `Worker.run` or `drain`
    inside its own application is left alone."""
    global _heap_frozen
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < GC_YOUNG_THRESHOLD:  # 0: collection is off; leave it so
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@attrs.frozen
class ReconcileResult:
    keys: int
    changed: int
    restocks_opened: int
    errors: tuple[str, ...] = ()


def backoff(
    attempts: int, retry_after: float | None, jitter: float, *, base: float, cap: float
) -> float:
    """Exponential backoff with "equal jitter", or the server's Retry-After plus a little.
    `jitter` (0..1) is drawn once per provider call, so a batch retried as a whole stays
    together and is sent again as the same batch (same idempotency key)."""
    if retry_after is not None and retry_after >= 0:
        delay = retry_after + jitter * min(1.0, retry_after * 0.1)
    else:
        step = base * (2 ** max(0, attempts - 1))
        delay = step / 2 + jitter * step / 2
    return min(delay, cap)


def plan_results(
    outcomes: Sequence[tuple[Subscription, int, SendResult]],
    *,
    max_attempts: int,
    delay: Callable[[int, float | None], float],
    now: datetime,
    hold_delay: Callable[[SendResult], float] | None = None,
) -> Results:
    """Decide, without touching the database, what each provider result does to its delivery:
    sent, queued again `delay(attempts, retry_after)` seconds from `now`, or failed for good
    (with the contact suppressed when the provider says so). A result with a `hold` (429,
    auth outage) is queued again `hold_delay(result)` seconds from now whatever its attempts,
    and gives its attempt back."""
    sent: list[Sent] = []
    retry: list[Retry] = []
    failed: list[Failed] = []
    for sub, attempts, result in outcomes:
        if result.outcome == Outcome.RETRY and result.hold is not None:
            wait = hold_delay(result) if hold_delay else (result.retry_after or 1.0)
            at = now + timedelta(seconds=wait)
            reason = (result.reason or str(result.hold))[:1000]
            retry.append(Retry(result.delivery_id, reason, at, counts=False))
        elif result.outcome == Outcome.SENT:
            sent.append(Sent(result.delivery_id, sub.id, result.provider_message_id))
        elif result.outcome == Outcome.RETRY and attempts < max_attempts:
            at = now + timedelta(seconds=delay(attempts, result.retry_after))
            retry.append(
                Retry(result.delivery_id, (result.reason or "transient failure")[:1000], at)
            )
        else:
            reason = result.reason or "failed"
            if result.outcome == Outcome.RETRY:
                reason = f"gave up after {attempts} attempts: {reason}"
            suppress = (sub.channel, sub.contact) if result.suppress else None
            failed.append(Failed(result.delivery_id, sub.id, reason[:1000], suppress))
    return Results(tuple(sent), tuple(retry), tuple(failed))


class Worker:
    def __init__(self, app: App, *, worker_id: str | None = None):
        self.app = app
        self.store = app.store
        self.settings = app.settings
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self._listener: threading.Thread | None = None
        self._last_reconcile: dict[str, float] = {}
        self._last_maintenance: float | None = None

    # ------------------------------------------------------------------ restocks

    def process_restocks(self, limit: int = 10) -> int:
        """Release every restock whose (next) wave is due. Returns how many were handled."""
        claimed = self.store.restocks.claim_due(limit, self.settings.lease)
        for restock in claimed:
            try:
                self.run_wave(restock)
            except Exception:
                log.exception("restock %s: wave failed; it will be retried", restock.id)
                self.store.restocks.postpone(restock.id, 5.0, "wave failed")
        return len(claimed)

    def _finish(self, restock_id: int, status: RestockStatus, note: str) -> None:
        self.store.restocks.finish(restock_id, status, note)
        log.info("restock %s %s: %s", restock_id, status, note)

    def run_wave(self, restock: Restock) -> None:
        """Re-read stock, then release the oldest pending subscribers, at most
        `per_unit × available` of them; schedule the next wave or close the restock."""
        app = self.app
        quantity = self._reread(restock)
        if quantity is None:
            return
        policy = app.release_policy(restock.source)
        limit = policy.per_unit * quantity if policy.per_unit else None
        released = self._release(restock, quantity, limit)
        # without a limit the wave released everyone it found: no next wave to look for
        more = limit is not None and self.store.restocks.has_unreleased(restock, app.routing)
        self.store.restocks.end_wave(
            restock,
            quantity=quantity,
            next_wave_in=policy.wave_interval if more else None,
            released=released,
            total=restock.released + released,
        )
        log.info(
            "restock %s (%s@%s from %s): wave %s released %s subscribers (available %s)",
            restock.id,
            restock.variant_id,
            restock.scope,
            restock.source,
            restock.waves + 1,
            released,
            quantity,
        )

    def _reread(self, restock: Restock) -> int | None:
        """The quantity to release against, recorded as a fresh observation; None (and the
        restock postponed or ended) when there is nothing to release now."""
        app = self.app
        key = StockKey(restock.variant_id, restock.scope)
        if restock.source not in app.adapters:
            self._finish(
                restock.id,
                RestockStatus.ENDED,
                f"source {restock.source!r} is no longer configured",
            )
            return None
        try:
            quantity = app.read_availability(restock.source, [key]).get(key)
        except AdapterError as exc:
            log.warning("restock %s: stock re-read failed (%s); retrying in 30 s", restock.id, exc)
            self.store.restocks.postpone(restock.id, 30.0, f"stock re-read failed: {exc}")
            return None
        app.record_stock(restock.source, [StockUpdate(key, quantity, utcnow())])
        if quantity is None or quantity < self.settings.inventory_required:
            self._finish(
                restock.id,
                RestockStatus.ENDED,
                f"stock gone before release (available: {quantity})",
            )
            return None
        return quantity

    def _release(self, restock: Restock, quantity: int, limit: int | None) -> int:
        """Release subscribers in chunks of `release_batch_size`, up to `limit`."""
        app = self.app
        routing = {channel: inst.id for channel, inst in app.routing.items()}
        released = 0
        total = restock.released
        cursor = None
        while limit is None or released < limit:
            want = self.settings.release_batch_size
            if limit is not None:
                want = min(want, limit - released)
            ids, cursor = self.store.restocks.release(
                restock, want, cursor, routing, self.settings.lease
            )
            released += len(ids)
            total += len(ids)
            if ids:
                app.metrics.released.inc(len(ids))
                app.wake()
                if (total - len(ids)) // 50_000 != total // 50_000:
                    self.store.restocks.refresh_statistics()
                if app.has_observers("restocked"):
                    self._fire_restocked(restock, quantity, total, ids)
            if len(ids) < want:
                break
        return released

    def _fire_restocked(
        self, restock: Restock, quantity: int, total: int, ids: Sequence[int]
    ) -> None:
        subs = self.store.subscriptions.by_ids(ids)
        current = attrs.evolve(
            self.store.restocks.get(restock.id), quantity=quantity, released=total
        )
        self.app.notify_observers("restocked", restock=current, subscriptions=subs)

    # ------------------------------------------------------------------ dispatch

    def _claim(self) -> Claim | None:
        """Claim due deliveries (and ones whose worker's lease ran out) for this worker,
        except those of providers in an outage waiting for their next probe."""
        held = [pid for pid, gate in self.app.gates.items() if gate.held_back()]
        return self.store.outbox.claim(self.settings.batch_size, self.settings.lease, held)

    def _claim_token(self) -> str | None:
        claim = self._claim()
        return None if claim is None else claim.token

    def dispatch_once(self) -> int:
        """Claim one batch, send it through the providers and record every result.
        Restock messages go out for pending sign-ups, confirmation requests (double opt-in)
        for unconfirmed ones; any other is cancelled."""
        claim = self._claim()
        if claim is None:
            return 0
        wanted = {
            DeliveryKind.RESTOCK: SubscriptionStatus.PENDING,
            DeliveryKind.CONFIRM: SubscriptionStatus.UNCONFIRMED,
        }
        live = [c for c in claim.deliveries if c.subscription.status == wanted[c.kind]]
        going = {c.delivery_id for c in live}
        cancelled = [c.delivery_id for c in claim.deliveries if c.delivery_id not in going]
        self.store.outbox.cancel(claim.token, cancelled, "subscription no longer pending")
        by_provider: dict[tuple[str, DeliveryKind], list[tuple[int, int, Subscription]]] = (
            defaultdict(list)
        )
        routes: dict[tuple[str | None, Channel], PluginInstance | None] = {}
        for item in live:
            sub = item.subscription
            route = (item.provider, sub.channel)
            if route in routes:
                instance = routes[route]
            else:
                instance = routes[route] = self._provider_for(item.provider, sub.channel)
            if instance is None:
                retry = SendResult.retry(item.delivery_id, f"no provider serves {sub.channel}")
                self._record(claim.token, "-", [(sub, item.attempts, retry)])
            else:
                by_provider[(instance.id, item.kind)].append((item.delivery_id, item.attempts, sub))
        for (provider_id, kind), items in by_provider.items():
            instance = self.app.providers[provider_id]
            if kind == DeliveryKind.CONFIRM:
                # one confirmation per request with providers that fix request membership:
                # each keeps its own idempotency key (the delivery id) on every retry
                size = 1 if instance.obj.stable_requests else int(instance.obj.max_batch_size)
                for start in range(0, len(items), max(1, size)):
                    self._send_chunk(
                        claim.token, instance, items[start : start + max(1, size)], confirm=True
                    )
                continue
            if instance.obj.stable_requests:
                self._send_stable(claim.token, instance, items)
                continue
            size = max(1, int(instance.obj.max_batch_size))
            for start in range(0, len(items), size):
                self._send_chunk(claim.token, instance, items[start : start + size])
        return len(claim.deliveries)

    def _send_stable(
        self, token: str, instance: PluginInstance, items: Sequence[tuple[int, int, Subscription]]
    ) -> None:
        """Providers with `stable_requests`: a delivery already in a stored request is sent
        again in exactly that request (same members, key and variant details, even members
        this claim does not hold, whose results are left alone); the rest go into new
        requests, stored before their first attempt."""
        outbox = self.store.outbox
        stored = outbox.stored_requests([i[0] for i in items])
        fresh = [i for i in items if i[0] not in stored]
        size = max(1, int(instance.obj.max_batch_size))
        requests: list[tuple[StoredRequest, list[tuple[int, int, Subscription]]]] = []
        for start in range(0, len(fresh), size):
            chunk = list(fresh[start : start + size])
            info = self._variant_info([sub for _, _, sub in chunk])
            request = outbox.store_request(instance.id, [i[0] for i in chunk], info)
            requests.append((request, chunk))
        by_key: dict[str, tuple[StoredRequest, list[tuple[int, int, Subscription]]]] = {}
        for item in items:
            known = stored.get(item[0])
            if known is not None:
                by_key.setdefault(known.key, (known, []))[1].append(item)
        requests.extend(by_key.values())
        for request, claimed in requests:
            have = {i[0] for i in claimed}
            others = [i for i in request.delivery_ids if i not in have]
            extra = outbox.delivery_members(others) if others else []
            self._send_chunk(token, instance, claimed, request=request, extra=extra)

    def _variant_info(self, subs: Sequence[Subscription]) -> dict[str, dict[str, str | None]]:
        """What the adapters say about these subscriptions' variants, as stored with a
        request so every attempt renders the same text."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for sub in subs:
            wanted[sub.source].add(sub.variant_id)
        found: dict[str, dict[str, str | None]] = {}
        for source, ids in wanted.items():
            for vid, info in self.app.describe(source, sorted(ids)).items():
                if info is not None:
                    found[f"{source}\t{vid}"] = {
                        "title": info.title,
                        "product_title": info.product_title,
                        "url": info.url,
                        "image_url": info.image_url,
                    }
        return found

    def _provider_for(self, provider_id: str | None, channel: Channel) -> PluginInstance | None:
        instance = self.app.providers.get(provider_id or "")
        if instance is not None and channel in instance.obj.channels:
            return instance
        return self.app.routing.get(channel)

    def _messages(
        self,
        items: Sequence[tuple[int, int, Subscription]],
        request: StoredRequest | None = None,
        *,
        confirm: bool = False,
    ) -> tuple[list[Message], dict[int, str]]:
        """The rendered messages, and the reason for each delivery whose message failed to
        render (that delivery fails; the others go out). With a stored `request`, variant
        details come from it and each message carries its key."""
        app = self.app
        infos: dict[tuple[str, str], VariantInfo | None]
        if request is not None:
            infos = {}
            for joined, values in request.variant_info.items():
                source, _, vid = joined.partition("\t")
                infos[(source, vid)] = VariantInfo(**values)
        else:
            wanted: dict[str, set[str]] = defaultdict(set)
            for _, _, sub in items:
                wanted[sub.source].add(sub.variant_id)
            infos = {
                (source, vid): info
                for source, ids in wanted.items()
                for vid, info in app.describe(source, sorted(ids)).items()
            }
        messages = []
        broken: dict[int, str] = {}
        sign = app.signer.sign
        render = app.renderer.render
        links = app.settings.public_url.rstrip("/") + "/unsubscribe/"
        for delivery_id, attempts, sub in items:
            link = links + sign(sub.id)
            try:
                if confirm:
                    messages.append(
                        app.renderer.render_confirmation(
                            delivery_id=delivery_id,
                            attempt=attempts,
                            subscription=sub,
                            info=infos.get((sub.source, sub.variant_id)),
                            confirm_url=app.confirm_url(sub.id),
                            unsubscribe_url=link,
                        )
                    )
                    continue
                messages.append(
                    render(
                        delivery_id=delivery_id,
                        attempt=attempts,
                        subscription=sub,
                        info=infos.get((sub.source, sub.variant_id)),
                        unsubscribe_url=link,
                        unsubscribe_post_url=link,
                    )
                )
            except RenderError as exc:
                log.error("delivery %s: %s", delivery_id, exc)
                broken[delivery_id] = str(exc)
        if request is not None:
            messages = [attrs.evolve(m, request_key=request.key) for m in messages]
        return messages, broken

    def _send_chunk(
        self,
        token: str,
        instance: PluginInstance,
        items: Sequence[tuple[int, int, Subscription]],
        *,
        request: StoredRequest | None = None,
        extra: Sequence[tuple[int, int, Subscription]] = (),
        confirm: bool = False,
    ) -> None:
        """Send `items` (plus `extra`, members of a stored request this claim does not hold;
        only `items`' results are recorded) in one provider call and record the results."""
        gate = self.app.gates[instance.id]
        if gate.held_back():
            # the provider refused our key and waits for its next probe: keep these queued
            outage = gate.outage
            why = outage.reason if outage else "provider paused"
            self._record(
                token,
                instance.id,
                [(sub, n, SendResult.unauthorized(d, why)) for d, n, sub in items],
            )
            return
        everything = sorted([*items, *extra], key=lambda i: i[0])
        messages, broken = self._messages(everything, request, confirm=confirm)
        if request is not None and broken:
            # a stored request must go out as it was first sent: a render failure now (the
            # template changed since) fails the request's claimed members instead
            reason = next(iter(broken.values()))
            self._record(
                token, instance.id, [(sub, n, SendResult.failed(d, reason)) for d, n, sub in items]
            )
            return
        started = time.perf_counter()
        results = [SendResult.failed(d, reason) for d, reason in broken.items()]
        try:
            if messages:
                if instance.obj.paces_requests:
                    results += list(instance.obj.send(messages))
                else:
                    with gate.request():
                        results += list(instance.obj.send(messages))
        except Exception as exc:  # the contract: anything raised is transient for the batch
            log.warning(
                "provider %s raised %s; %s messages will be retried",
                instance.id,
                exc,
                len(messages),
            )
            reason = f"{type(exc).__name__}: {exc}"
            results += [SendResult.retry(m.delivery_id, reason) for m in messages]
        self.app.metrics.send_seconds.labels(provider=instance.id).observe(
            time.perf_counter() - started
        )
        by_id: dict[int, SendResult] = {}
        for result in results:
            if isinstance(result, SendResult):
                by_id.setdefault(result.delivery_id, result)
        self._observe_gate(instance.id, by_id.values())
        outcomes = []
        for delivery_id, attempts, sub in items:
            found = by_id.get(delivery_id)
            if found is None:
                found = SendResult.retry(delivery_id, f"provider {instance.id} returned no result")
            outcomes.append((sub, attempts, found))
        self._record(token, instance.id, outcomes)

    def _observe_gate(self, provider_id: str, results: Iterable[SendResult]) -> None:
        """Pause the provider after a 429; start or end an auth outage."""
        app = self.app
        gate = app.gates[provider_id]
        unauthorized: SendResult | None = None
        working = limited = False
        for result in results:
            if result.hold == Hold.RATE_LIMITED:
                wait = result.retry_after if result.retry_after is not None else 1.0
                gate.hold(wait)
                limited = True
            elif result.hold == Hold.UNAUTHORIZED:
                unauthorized = result
            else:
                working = True
        if limited:
            app.metrics.rate_limited.labels(provider=provider_id).inc()
        if unauthorized is not None and not working:
            reason = unauthorized.reason or "the provider refused the credentials"
            app.metrics.auth_failures.labels(provider=provider_id).inc()
            if gate.auth_failed(reason):
                app.provider_outage_started(provider_id, reason)
            else:
                outage = gate.outage
                log.error(
                    "provider %s still refuses the credentials (%s); next try in %.0f s",
                    provider_id,
                    reason,
                    outage.next_probe_in if outage else 0.0,
                )
        elif working and gate.working():
            app.provider_outage_ended(provider_id)

    def _hold_delay(self, provider_id: str, result: SendResult, jitter: float) -> float:
        gate = self.app.gates.get(provider_id)
        wait = gate.paused_for() if gate is not None else 0.0
        if result.hold == Hold.RATE_LIMITED and result.retry_after is not None:
            wait = max(wait, result.retry_after)
        # spread a big paused backlog a little so it does not all come due at one instant
        return wait + jitter * 0.5

    def _record(
        self, token: str, provider_id: str, outcomes: Sequence[tuple[Subscription, int, SendResult]]
    ) -> None:
        settings = self.settings
        jitter = random.random()
        results = plan_results(
            outcomes,
            max_attempts=settings.max_attempts,
            delay=lambda attempts, retry_after: backoff(
                attempts, retry_after, jitter, base=settings.retry_base, cap=settings.retry_max
            ),
            now=utcnow(),
            hold_delay=lambda result: self._hold_delay(provider_id, result, jitter),
        )
        self.store.outbox.record(token, provider_id, results)
        self._count(provider_id, results)
        debug = log.isEnabledFor(logging.DEBUG)
        for _sub, _, result in outcomes:
            if result.outcome == Outcome.SENT:
                if not debug:
                    continue
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
        self._notify_outcomes(outcomes, {f.delivery_id for f in results.failed})

    def _count(self, provider_id: str, results: Results) -> None:
        metrics = self.app.metrics
        if results.sent:
            metrics.deliveries.labels(provider=provider_id, outcome="sent").inc(len(results.sent))
        if results.retry:
            metrics.retries.labels(provider=provider_id).inc(len(results.retry))
            metrics.deliveries.labels(provider=provider_id, outcome="retry").inc(len(results.retry))
        if results.failed:
            metrics.deliveries.labels(provider=provider_id, outcome="failed").inc(
                len(results.failed)
            )

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
            size = max(1, int(adapter.max_batch_size or 250))
            after: StockKey | None = None
            while True:
                batch = self.store.subscriptions.pending_key_page(src, after, size)
                if not batch:
                    break
                after = batch[-1]
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
            interval = self.settings.reconcile_interval or instance.obj.poll_interval
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

    # ------------------------------------------------------------------ maintenance

    #: seconds between two maintenance rounds (expiry of unconfirmed sign-ups, retention)
    maintenance_interval = 300.0

    def maintain(self) -> None:
        """Expire unconfirmed sign-ups past `confirm_ttl` and run retention. Each step is a
        few indexed reads when there is nothing to do, and deletes in small transactions."""
        self.app.expire_unconfirmed()
        self.app.purge()

    def maintain_due(self) -> None:
        now = time.monotonic()
        last = self._last_maintenance
        if last is not None and now - last < self.maintenance_interval:
            return
        self._last_maintenance = now
        try:
            self.maintain()
        except Exception:
            log.exception("maintenance (expiry, retention) failed; retried next round")

    # ------------------------------------------------------------------ loops

    def next_due_in(self) -> float:
        """Seconds until the next queued delivery or restock wave is due (capped)."""
        cap = self.settings.poll_interval
        times = self.store.next_due_at()
        now = utcnow()
        waits = [(t - now).total_seconds() for t in times]
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
        # plugins' periodic tasks (order catch-up reads ...) in a thread of their own
        periodic = PeriodicRunner(self.store, app.periodic_tasks())
        periodic.start(stop)
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            app.wake_event.clear()
            try:
                worked = self.run_once()
                if reconcile:
                    self.reconcile_due()
                self.maintain_due()
                if worked:
                    continue
                timeout = self.next_due_in()
            except Exception:
                log.exception("worker round failed; retrying shortly")
                timeout = self.settings.poll_interval
            app.wake_event.wait(timeout)
        periodic.join(timeout=10.0)
        log.info("worker %s stopped", self.worker_id)

    def _start_listener(self, stop: threading.Event) -> None:
        """LISTEN for wake-ups from other processes (API processes, other workers)."""
        self._listener = self.store.listen(stop)
