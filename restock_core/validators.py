"""attrs validators for plugin options, with messages that name the option (the core
attributes a validator's error to the option its message names)."""

from __future__ import annotations

import re
from typing import Any

import attrs


def positive(instance: Any, attribute: attrs.Attribute, value: float | int | None) -> None:
    """None or a number above 0 (timeouts, intervals, batch sizes)."""
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


def not_negative(instance: Any, attribute: attrs.Attribute, value: float | int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


def http_url(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    """None or an http(s) URL (base_url options, storefront URLs)."""
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"{attribute.name} must start with http:// or https://, got {value!r}")


def at_most(limit: float) -> Any:
    """A validator: None or a number not above `limit` (ports, 32-bit counters)."""

    def check(instance: Any, attribute: attrs.Attribute, value: float | int | None) -> None:
        if value is not None and value > limit:
            raise ValueError(f"{attribute.name} must be at most {limit}, got {value!r}")

    return check


_ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def exact_origins(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    """A list of exact web origins: scheme://host[:port], no path, no wildcard (CORS)."""
    for origin in value:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"{attribute.name} takes exact origins like 'https://shop.example' (scheme, "
                f"host, optional port; no path, no wildcard), got {origin!r}"
            )
