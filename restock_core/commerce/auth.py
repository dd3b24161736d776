"""Who may call the commerce routes: `restock_core.auth` (the secret API key scope from the
public-edge work) decides. The secret API key, or the admin key, which may do everything the
secret key may; compared in constant time; 403 while neither key is configured."""

from __future__ import annotations

from ..auth import require_secret_key

#: reports (`GET /reports/conversions`): a shop's backend or the admin
require_secret_or_admin_key = require_secret_key

__all__ = ["require_secret_key", "require_secret_or_admin_key"]
