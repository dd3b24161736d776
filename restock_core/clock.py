"""The one clock: timezone-aware UTC now (the database refuses naive datetimes), and the one
reader of the ISO 8601 timestamps platforms send."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_iso_utc(value: object) -> dt.datetime | None:
    """A platform's ISO 8601 timestamp ("2023-02-02T10:00:50-05:00", "…Z", or naive, read as
    UTC) as an aware UTC datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
