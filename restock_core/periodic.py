"""Plugins' periodic tasks (:class:`~restock_core.base.PeriodicTask`), run by the worker in a
thread of their own so a slow platform read never holds up notifications.

The schedule lives in ``restock_meta`` (``periodic:<instance id>:<task name>`` = when the
task is next due), and a pass is claimed with a conditional update
(:meth:`MetaStore.claim_due`): with several workers on one PostgreSQL one of them runs each
pass, and a restart neither runs every task at once nor forgets a pass that was due. A task
that raises is logged and runs again at its next interval; nothing it does stops the worker.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from .base import PeriodicTask
from .clock import utcnow
from .store import Store

log = logging.getLogger("restock.periodic")

#: `restock_meta.key` is at most 100 characters
_MAX_KEY = 100
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def meta_key(prefix: str, source: str, name: str) -> str:
    """`<prefix>:<source>:<name>`, with a long `source` replaced by a digest so the key fits."""
    key = f"{prefix}:{source}:{name}"
    if len(key) <= _MAX_KEY:
        return key
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    return f"{prefix}:#{digest}:{name}"


def _stamp(when: datetime) -> str:
    """A UTC time as a fixed-width string, so string order is time order."""
    return when.strftime(_TIME)


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, _TIME).replace(tzinfo=utcnow().tzinfo)
    except ValueError:
        return None


@attrs.define
class ScheduledTask:
    source: str
    task: PeriodicTask
    #: when this process next asks the shared schedule (a monotonic hint; the database decides)
    check_at: datetime | None = None
    runs: int = 0
    failures: int = 0

    @property
    def key(self) -> str:
        return meta_key("periodic", self.source, self.task.name)


class PeriodicRunner:
    """Runs the periodic tasks of a worker. :meth:`run_due` does one round (tests call it);
    :meth:`start` runs rounds in a daemon thread until the stop event is set."""

    def __init__(self, store: Store, tasks: Sequence[tuple[str, PeriodicTask]]) -> None:
        self.store = store
        self.tasks = [ScheduledTask(source, task) for source, task in tasks]
        self.thread: threading.Thread | None = None

    def run_due(self) -> int:
        """Run every task whose pass is due and that this process claimed; returns how many
        ran (successfully or not)."""
        ran = 0
        for item in self.tasks:
            now = utcnow()
            if item.check_at is not None and now < item.check_at:
                continue
            interval = timedelta(seconds=item.task.interval)
            try:
                claimed, due = self.store.meta.claim_due(
                    item.key, _stamp(now), _stamp(now + interval), _stamp(now + interval)
                )
            except Exception:
                log.exception("periodic task %s: the schedule could not be read", item.key)
                item.check_at = now + min(interval, timedelta(seconds=30))
                continue
            item.check_at = _parse(due) or now + interval
            if not claimed:
                continue
            ran += 1
            self._run(item)
        return ran

    def _run(self, item: ScheduledTask) -> None:
        try:
            result = item.task.run()
        except Exception:
            item.failures += 1
            log.exception(
                "periodic task %s of %s failed; it runs again in %.0f s",
                item.task.name,
                item.source,
                item.task.interval,
            )
        else:
            if result:
                log.info("periodic task %s of %s: %s", item.task.name, item.source, result)
        finally:
            item.runs += 1

    def next_check_in(self, cap: float) -> float:
        """Seconds until a task should be looked at again (at most `cap`)."""
        now = utcnow()
        waits = [(t.check_at - now).total_seconds() for t in self.tasks if t.check_at]
        if len(waits) < len(self.tasks):
            return 0.0
        return max(0.0, min([cap, *waits]))

    def start(self, stop: threading.Event, *, cap: float = 60.0) -> threading.Thread | None:
        """Run rounds in a daemon thread until `stop` is set; None when there are no tasks."""
        if not self.tasks:
            return None

        def loop() -> None:
            while not stop.is_set():
                try:
                    self.run_due()
                except Exception:  # run_due isolates tasks; this is a last resort
                    log.exception("periodic tasks round failed")
                stop.wait(max(0.05, self.next_check_in(cap)))

        names = ", ".join(item.key for item in self.tasks)
        log.info("periodic tasks: %s", names)
        self.thread = threading.Thread(target=loop, name="restock-periodic", daemon=True)
        self.thread.start()
        return self.thread

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout)
