"""The exception tree. Every error the core raises on bad input is a `RestockError`
carrying a stable `code` and, where it applies, the `field` that was wrong."""

from __future__ import annotations


class RestockError(Exception):
    code = "error"
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class ValidationError(RestockError):
    code = "invalid"
    status_code = 422


class InStockError(RestockError):
    """Sign-up refused: the variant can be bought right now (as Medusa's plugin does)."""

    code = "in_stock"
    status_code = 409


class SuppressedError(RestockError):
    """Sign-up refused: this address bounced or opted out of this channel before."""

    code = "suppressed"
    status_code = 422


class RateLimitedError(RestockError):
    """Refused by an abuse limit; `retry_after` seconds until it may be tried again."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, field: str | None = None, retry_after: float = 60.0):
        super().__init__(message, field=field)
        self.retry_after = retry_after


class ContactLimitError(RateLimitedError):
    """Refused: this email/phone already has the most active sign-ups allowed."""


class RefusedError(RestockError):
    """Sign-up refused by a `before_subscribe` plugin (CAPTCHA, honeypot ...). A `silent`
    refusal is answered like an accepted sign-up (nothing is stored)."""

    code = "refused"
    status_code = 422

    def __init__(self, message: str, *, field: str | None = None, silent: bool = False):
        super().__init__(message, field=field)
        self.silent = silent


class NotFoundError(RestockError):
    code = "not_found"
    status_code = 404


class ConfigError(RestockError):
    """plugins.toml or a plugin's options are wrong; the message names plugin and option."""

    code = "config"
    status_code = 500

    def __init__(self, message: str, *, plugin: str | None = None, option: str | None = None):
        prefix = ""
        if plugin and option:
            prefix = f"plugin {plugin!r}, option {option!r}: "
        elif plugin:
            prefix = f"plugin {plugin!r}: "
        elif option:
            prefix = f"option {option!r}: "
        super().__init__(prefix + message, field=option)
        self.plugin = plugin
        self.option = option


class AdapterError(RestockError):
    """An inventory platform said no (401, 404, throttled beyond patience) or was unreachable."""

    code = "adapter"
    status_code = 502
