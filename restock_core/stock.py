"""The pure core of stock recording: which updates apply, which are stale, which keys rose
to a quantity worth announcing. No database here; the store executes the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from .models import StockKey, StockUpdate

MAX_QUANTITY = 2**31 - 1  # the stock column is a 32-bit integer

#: what is stored for a key: (quantity, observed_at)
Known = tuple[int | None, datetime]


@attrs.frozen
class StockDiff:
    """What to write for a batch of updates.

    ``inserts`` are keys with no stored row (first observation, in update order); ``changes``
    the new (quantity, observed_at) of keys whose row exists (or was inserted earlier in the
    same batch); ``rising`` the keys whose newest applied quantity is at or above the
    required quantity, with that quantity.
    """

    inserts: tuple[tuple[StockKey, int | None, datetime], ...]
    changes: Mapping[StockKey, Known]
    rising: Mapping[StockKey, int]
    applied: int
    stale: int


def clamp(available: int | None) -> int | None:
    """A platform may report negative (oversold) stock: nothing to sell; and the column is
    32 bits wide."""
    if available is None:
        return None
    return min(max(available, 0), MAX_QUANTITY)


def diff_stock(
    current: Mapping[StockKey, Known], updates: Sequence[StockUpdate], required: int
) -> StockDiff:
    """Compare updates with what is stored: an observation not newer than the stored one is
    stale; later updates of one key in a batch win over earlier ones."""
    known: dict[StockKey, Known] = dict(current)
    inserts: list[tuple[StockKey, int | None, datetime]] = []
    changes: dict[StockKey, Known] = {}
    rising: dict[StockKey, int] = {}
    applied = stale = 0
    for update in updates:
        key, available = update.key, clamp(update.available)
        stored = known.get(key)
        if stored is not None and stored[1] >= update.observed_at:
            stale += 1
            continue
        applied += 1
        if stored is None:
            inserts.append((key, available, update.observed_at))
        else:
            changes[key] = (available, update.observed_at)
        known[key] = (available, update.observed_at)
        if available is not None and available >= required:
            rising[key] = available
        else:
            rising.pop(key, None)
    return StockDiff(tuple(inserts), changes, rising, applied, stale)
