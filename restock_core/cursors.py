"""Time cursors plugins keep as plugin state (:meth:`PluginHost.set_plugin_state`), such as
where an order catch-up read starts its next pass: one way to write them and one to read
them back, so a stored value that cannot be read is logged and ignored alike everywhere."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from .clock import parse_iso_utc

if TYPE_CHECKING:
    from .base import PluginHost

log = logging.getLogger("restock.cursors")


def stored_time(host: PluginHost, source: str, key: str) -> datetime | None:
    """The time plugin instance `source` stored under `key` with :func:`store_time`, as an
    aware UTC datetime; None when nothing is stored or the value cannot be read (logged)."""
    stored = host.plugin_state(source, key)
    if not stored:
        return None
    when = parse_iso_utc(stored)
    if when is None:
        log.warning("%s: ignoring unreadable stored cursor %s=%r", source, key, stored)
    return when


def store_time(host: PluginHost, source: str, key: str, when: datetime) -> None:
    """Keep `when` (aware) under `key` for plugin instance `source` (ISO 8601)."""
    host.set_plugin_state(source, key, when.isoformat())
