"""Per provider instance, shared by every worker thread of the process: the request pace,
rate-limit pauses and auth outages.

- :meth:`ProviderGate.acquire` is called before each HTTP request to the provider (a
  provider calls ``self.pace()``); requests are spaced ``1 / requests_per_second`` apart and
  none goes out while the provider is paused after a 429.
- :meth:`ProviderGate.hold` pauses the provider until its ``Retry-After`` (a 429).
- :meth:`ProviderGate.auth_failed` marks an outage: the provider refused our credentials
  (401/403). Its deliveries stay queued; one batch probes the key again after
  ``probe_delay`` (doubling up to ``max_probe_delay``); :meth:`ProviderGate.working` ends it.

The pace keeps 10% headroom (:data:`HEADROOM`): at 2 requests/s they go 0.55 s apart. And
since a request can reach the provider later than it left the gate (GIL, a busy machine, the
network), requests made through :meth:`ProviderGate.request` also keep a sliding window on
completion times: request *k + N* starts at least one window after request *k* finished
(N = ceil(rate), window = N / rate, one second for 2/s), so no window of the provider's ever
sees more than N of them.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import attrs

from .clock import utcnow

#: requests are spaced this much wider than `requests_per_second`: a request that reaches
#: the provider late (GIL, a busy machine, the network) must not squeeze the next ones into
#: one of the provider's one-second windows
HEADROOM = 0.1


@attrs.frozen
class Outage:
    reason: str
    since: datetime
    failures: int
    next_probe_in: float


class ProviderGate:
    def __init__(
        self,
        provider_id: str,
        requests_per_second: float | None,
        *,
        probe_delay: float = 15.0,
        max_probe_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.provider_id = provider_id
        self.requests_per_second = requests_per_second
        self._interval = (1.0 + HEADROOM) / requests_per_second if requests_per_second else 0.0
        self._probe_delay = probe_delay
        self._max_probe_delay = max_probe_delay
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time the next request may start
        self._burst = max(1, math.ceil(requests_per_second)) if requests_per_second else 0
        self._window = self._burst / requests_per_second if requests_per_second else 0.0
        self._ends: collections.deque[float] = collections.deque(maxlen=self._burst or 1)
        self._paused_until = 0.0
        self._outage: tuple[str, datetime, int] | None = None
        self._probe_at = 0.0

    # ------------------------------------------------------------------ pacing

    @contextmanager
    def request(self) -> Iterator[None]:
        """Around one HTTP request: waits for its turn, then records when it finished."""
        self.acquire()
        try:
            yield
        finally:
            self.finished()

    def finished(self) -> None:
        if self._burst:
            with self._lock:
                self._ends.append(self._clock())

    def acquire(self) -> float:
        """Wait for this request's turn; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next, self._paused_until)
            if self._burst and len(self._ends) == self._burst:
                start = max(start, self._ends[0] + self._window)
            self._next = start + self._interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)

    def hold(self, seconds: float) -> None:
        """Send nothing to this provider for `seconds` (its Retry-After after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds until a request may go (pause or outage probe), 0 when it may now."""
        with self._lock:
            now = self._clock()
            until = self._paused_until
            if self._outage is not None:
                until = max(until, self._probe_at)
            return max(0.0, until - now)

    # ------------------------------------------------------------------ outages

    def auth_failed(self, reason: str) -> bool:
        """The provider refused our credentials. True when this starts an outage."""
        with self._lock:
            started = self._outage is None
            failures = 1 if self._outage is None else self._outage[2] + 1
            since = utcnow() if self._outage is None else self._outage[1]
            self._outage = (reason, since, failures)
            delay = min(self._max_probe_delay, self._probe_delay * 2 ** (failures - 1))
            self._probe_at = self._clock() + delay
            return started

    def working(self) -> bool:
        """The provider accepted a request. True when this ends an outage."""
        if self._outage is None:  # the common case, without the lock
            return False
        with self._lock:
            ended = self._outage is not None
            self._outage = None
            return ended

    @property
    def outage(self) -> Outage | None:
        with self._lock:
            if self._outage is None:
                return None
            reason, since, failures = self._outage
            return Outage(reason, since, failures, max(0.0, self._probe_at - self._clock()))

    def held_back(self) -> bool:
        """True while an outage waits for its next probe: do not claim this provider's
        deliveries."""
        with self._lock:
            return self._outage is not None and self._clock() < self._probe_at
