"""The secret API key: a shop's backend calling restock (Medusa's secret key, Sequenzy's
API key). Compared in constant time; routes answer 403 while `[restock] secret_api_key` is
unset, so a fresh install exposes nothing that can set message content."""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..app import App


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def require_secret_key(request: Request) -> None:
    """FastAPI dependency: `Authorization: Bearer <secret_api_key>`."""
    app: App = request.app.state.restock
    key = app.settings.secret_api_key
    if key is None:
        raise StarletteHTTPException(
            403, "the commerce API is disabled: set secret_api_key in [restock]"
        )
    if not key_matches(bearer(request), key.value):
        raise StarletteHTTPException(
            401, "missing or wrong secret API key (Authorization: Bearer <key>)"
        )


def require_secret_or_admin_key(request: Request) -> None:
    """Reports: the secret API key or the admin API key."""
    app: App = request.app.state.restock
    given = bearer(request)
    keys = [k.value for k in (app.settings.secret_api_key, app.settings.admin_api_key) if k]
    if not keys:
        raise StarletteHTTPException(
            403, "reports are disabled: set secret_api_key or admin_api_key in [restock]"
        )
    # compare against every key so timing does not tell which one exists
    if not any([key_matches(given, k) for k in keys]):  # noqa: C419
        raise StarletteHTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")
