"""Dashboard sessions: a signed, HttpOnly, SameSite=Strict cookie issued for the admin key,
and CSRF tokens bound to the session (and, before login, to a login cookie).

The signing key is derived from the app's secret (`secret_key`, or the generated one kept in
the database) and the admin key, so changing the admin key ends every session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import App

SESSION_COOKIE = "restock_admin"
LOGIN_COOKIE = "restock_login"
MAX_AGE = 12 * 3600  # seconds a login lasts


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Sessions:
    def __init__(self, app: App):
        self.app = app

    @property
    def enabled(self) -> bool:
        return self.app.settings.admin_api_key is not None

    def _key(self) -> bytes:
        admin = self.app.settings.admin_api_key
        fingerprint = hashlib.sha256(admin.value.encode() if admin else b"").hexdigest()
        return self.app.signer.derive("dashboard-session:" + fingerprint)

    def check_key(self, given: str) -> bool:
        admin = self.app.settings.admin_api_key
        return admin is not None and hmac.compare_digest(given.encode(), admin.value.encode())

    def issue(self) -> str:
        body = f"{int(time.time())}.{secrets.token_urlsafe(18)}"
        return f"{body}.{_mac(self._key(), 'session:' + body)}"

    def verify(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie, else None."""
        if not cookie or not self.enabled or len(cookie) > 200:
            return None
        issued, _, rest = cookie.partition(".")
        session_id, _, mac = rest.partition(".")
        if not (issued.isdigit() and session_id and mac):
            return None
        expected = _mac(self._key(), f"session:{issued}.{session_id}")
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        if not 0 <= time.time() - int(issued) <= MAX_AGE:
            return None
        return session_id

    def csrf(self, session_id: str) -> str:
        return _mac(self._key(), "csrf:" + session_id)

    def check_csrf(self, session_id: str | None, token: str | None) -> bool:
        if not session_id or not token:
            return False
        return hmac.compare_digest(token.encode(), self.csrf(session_id).encode())

    @staticmethod
    def new_login_nonce() -> str:
        return secrets.token_urlsafe(18)

    def login_csrf(self, nonce: str) -> str:
        return _mac(self._key(), "login:" + nonce)
