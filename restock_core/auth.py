"""Who is calling: the three kinds of HTTP caller and the FastAPI dependencies that check them.

Like Medusa's publishable and secret keys:

- **public** (no key): a shopper's browser. Sign-up, unsubscribe, confirm. Abuse-limited,
  answers that leak nothing, never content that ends up in a message.
- **secret** (``[restock] secret_api_key``): a shop's backend, server to server. May set
  message content (titles, product URL) and reads full records of what it creates.
- **admin** (``[restock] admin_api_key``): the admin API. May do everything a secret key may.

Keys travel as ``Authorization: Bearer <key>`` and are compared in constant time
(:func:`hmac.compare_digest`). A request that presents a key that matches neither is refused
with 401, never silently treated as public. See docs/security.md.
"""

from __future__ import annotations

import enum
import hmac
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from .config import Secret


class Caller(enum.StrEnum):
    PUBLIC = "public"
    SECRET = "secret"
    ADMIN = "admin"

    @property
    def trusted(self) -> bool:
        """May set content that ends up in a message (titles, URLs) and read full records."""
        return self is not Caller.PUBLIC


def bearer_token(request: Request) -> str | None:
    """The bearer token of `request`, or None when it carries no Authorization header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "malformed Authorization header; use 'Bearer <key>'")
    return token


def _matches(token: str, key: Secret | None) -> bool:
    # compare_digest on bytes of possibly different lengths still takes time independent
    # of where they differ; an unset key never matches
    return key is not None and hmac.compare_digest(token.encode(), key.value.encode())


def caller(request: Request) -> Caller:
    """Which kind of caller sent `request`: public without a key, secret or admin with the
    matching key; 401 for a key that matches neither."""
    token = bearer_token(request)
    if token is None:
        return Caller.PUBLIC
    settings = request.app.state.restock.settings
    # check both keys every time, so timing does not tell which one was close
    is_admin = _matches(token, settings.admin_api_key)
    is_secret = _matches(token, settings.secret_api_key)
    if is_admin:
        return Caller.ADMIN
    if is_secret:
        return Caller.SECRET
    raise HTTPException(401, "wrong API key (Authorization: Bearer <key>)")


CallerDep = Annotated[Caller, Depends(caller)]


def require_admin(request: Request) -> Caller:
    """Dependency of the admin routes: the admin API key, nothing else."""
    if request.app.state.restock.settings.admin_api_key is None:
        raise HTTPException(403, "admin routes are disabled: set admin_api_key in [restock]")
    if request.headers.get("authorization") is None:
        raise HTTPException(401, "missing admin API key (Authorization: Bearer <key>)")
    found = caller(request)
    if found is not Caller.ADMIN:
        raise HTTPException(403, "this route needs the admin API key")
    return found


def require_secret_key(request: Request) -> Caller:
    """Dependency of server-to-server routes (a shop's backend): the secret API key, or the
    admin key, which may do everything the secret key may."""
    settings = request.app.state.restock.settings
    if settings.secret_api_key is None and settings.admin_api_key is None:
        raise HTTPException(
            403, "server-to-server routes are disabled: set secret_api_key in [restock]"
        )
    if request.headers.get("authorization") is None:
        raise HTTPException(401, "missing secret API key (Authorization: Bearer <key>)")
    return caller(request)


__all__ = ["Caller", "CallerDep", "bearer_token", "caller", "require_admin", "require_secret_key"]
