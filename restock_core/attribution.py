"""Revenue attribution, the pure part: which notified subscriptions an order converts.

An order line for variant V by the same person (email, phone or platform customer id)
placed within the attribution window after that person was notified for V counts as a
conversion of that subscription, once per subscription. When the person was notified for V
more than once (email and SMS, or two restocks), the most recent notification gets the line
(last touch), so one line never counts twice. Cancelled and test orders convert nothing.

The store calls :func:`match` inside the transaction that stores the order; nothing here
touches the database, so the rules are unit-tested on plain values (docs/attribution.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from .models import Conversion, Order, OrderLine


@attrs.frozen
class Candidate:
    """A notified subscription that an order might convert."""

    subscription_id: int
    source: str
    variant_id: str
    contact: str
    customer_id: str | None
    notified_at: datetime


def merge_lines(lines: Iterable[OrderLine]) -> dict[str, OrderLine]:
    """One line per variant (platforms split a variant over several lines: discounts,
    bundles, Magento's configurable parent/child pair once valued)."""
    merged: dict[str, OrderLine] = {}
    for line in lines:
        if line.quantity <= 0:
            continue
        seen = merged.get(line.variant_id)
        merged[line.variant_id] = (
            line
            if seen is None
            else OrderLine(
                line.variant_id, seen.quantity + line.quantity, seen.revenue + line.revenue
            )
        )
    return merged


def contacts_of(order: Order) -> set[str]:
    return {c for c in (order.email, order.phone) if c}


def is_attributable(order: Order) -> bool:
    return not (order.cancelled or order.test)


def match(
    order: Order,
    candidates: Iterable[Candidate],
    window: timedelta,
    converted: Set[int] = frozenset(),
) -> list[Conversion]:
    """The conversions `order` makes among `candidates` (subscriptions in `converted` have
    converted before and are skipped)."""
    if not is_attributable(order):
        return []
    lines = merge_lines(order.lines)
    contacts = contacts_of(order)
    best: dict[str, Candidate] = {}
    for c in candidates:
        if c.subscription_id in converted or c.source != order.source:
            continue
        if c.variant_id not in lines:
            continue
        same_person = c.contact in contacts or (
            order.customer_id is not None and c.customer_id == order.customer_id
        )
        if not same_person:
            continue
        if not c.notified_at <= order.placed_at <= c.notified_at + window:
            continue
        current = best.get(c.variant_id)
        if current is None or (c.notified_at, c.subscription_id) > (
            current.notified_at,
            current.subscription_id,
        ):
            best[c.variant_id] = c
    out = []
    for variant_id in sorted(best):
        c = best[variant_id]
        line = lines[variant_id]
        out.append(
            Conversion(
                subscription_id=c.subscription_id,
                source=order.source,
                order_id=order.order_id,
                variant_id=variant_id,
                quantity=line.quantity,
                revenue=line.revenue,
                currency=order.currency,
                ordered_at=order.placed_at,
                notified_at=c.notified_at,
            )
        )
    return out


def cents(value: int) -> Decimal:
    """Minor units (Sequenzy's `*Cents`) to a Decimal amount."""
    return (Decimal(value) / 100).quantize(Decimal("0.01"))


__all__ = ["Candidate", "cents", "contacts_of", "is_attributable", "match", "merge_lines"]
