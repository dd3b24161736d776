"""Abuse limits for public sign-ups: in-memory token buckets (per client IP, per variant) and
the client address behind trusted proxies. The per-contact limit is one indexed count in the
database (see `SubscriptionStore.insert_or_get`)."""

from __future__ import annotations

import ipaddress
import itertools
import math
import socket
import threading
import time
from collections.abc import Iterable, Sequence


class Buckets:
    """Token buckets by key: each key may spend `capacity` tokens, refilled evenly over
    `window` seconds. Bounded memory: the least recently used keys are forgotten past
    `max_keys` (a forgotten key starts again with a full bucket)."""

    def __init__(self, capacity: int, window: float, *, max_keys: int = 100_000):
        self.capacity = capacity
        self.rate = capacity / window if window > 0 else math.inf
        self.max_keys = max_keys
        #: least recently used first (a plain dict keeps insertion order; a key taken is
        #: popped and put back at the end): cheaper than an OrderedDict per sign-up
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of `key`: 0.0 when allowed, else the seconds until one is back
        (nothing is spent then)."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.capacity), now))
            tokens = min(float(self.capacity), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_keys:
                for oldest in list(
                    itertools.islice(self._buckets, len(self._buckets) - self.max_keys)
                ):
                    del self._buckets[oldest]
        return wait


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`trusted_proxies` entries (addresses or CIDR blocks) as networks; ValueError names
    the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted_proxies: expected IP addresses or CIDR blocks, got {value!r}"
            ) from None
    return tuple(out)


def _in(address: str, networks: Sequence[Network]) -> bool:
    # the common case, a dotted IPv4 address, parsed by the C library (`inet_pton` accepts
    # exactly what `ipaddress` does for IPv4: four decimal octets, no leading zeros) and
    # compared as integers: `ipaddress.ip_address` cost more than the rest of a sign-up's
    # limit checks (issue 13)
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        pass
    else:
        number = int.from_bytes(packed, "big")
        return any(
            net.version == 4 and number & int(net.netmask) == int(net.network_address)
            for net in networks
        )
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy, then the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
    left were written by the client and prove nothing)."""
    address = peer or "unknown"
    if not forwarded_for or not trusted or not _in(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not hop:
            continue
        address = hop[:64]
        if not _in(hop, trusted):
            break
    return address


__all__ = ["Buckets", "client_ip", "parse_networks"]
