"""Small helpers every HTTP-facing plugin needs, so none keeps its own copy:

- :func:`error_response`: the JSON error envelope ``{"error": {"code", "message", "field"?}}``;
- :func:`retry_after`: one ``Retry-After`` parser (delta-seconds or HTTP date, RFC 9110
  §10.2.3) with the rate-limit reset headers some vendors send instead;
- :func:`chunks`: split a sequence into batches of at most ``size``.

Importing this module does not import FastAPI until :func:`error_response` is called.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse

T = TypeVar("T")


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error envelope as a plain dict."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """A JSON error response in restock's envelope."""
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(code, message, field), status_code=status)


def retry_after_header(seconds: float) -> dict[str, str]:
    """The ``Retry-After`` header of a 429 we answer: whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _header(headers: Any, name: str) -> str | None:
    """A header from httpx/requests/starlette headers or a plain (case-sensitive) dict."""
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    found = getter(name) if getter is not None else None
    if found is None and hasattr(headers, "items"):
        lowered = name.lower()
        found = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if found is None else str(found)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` value as seconds to wait: delta-seconds or an HTTP date; None when
    absent or unreadable. Never negative."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def retry_after(
    headers: Mapping[str, str] | Any,
    *,
    reset_headers: Sequence[str] = (),
    now: float | None = None,
) -> float | None:
    """Seconds to wait according to a response's headers: ``Retry-After`` first, then each of
    `reset_headers` in turn (``X-RateLimit-Reset``, ``ratelimit-reset`` ...), read as
    seconds, or as an epoch timestamp when the number is that large. None when none helps."""
    found = parse_retry_after(_header(headers, "Retry-After"), now=now)
    if found is not None:
        return found
    now = time.time() if now is None else now
    for name in reset_headers:
        value = _header(headers, name)
        if value is None:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        # an epoch timestamp; a small number can only be a delay in seconds
        return max(0.0, number - now) if number > 1e9 else max(0.0, number)
    return None


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items`, each at most `size` long."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
