"""restock: back-in-stock notifications.

The library API is :class:`App`; plugins subclass :class:`Provider` or
:class:`InventoryAdapter`, talk to the core through :class:`PluginHost` and implement the
hooks in :mod:`restock_core.hookspecs` (``@hookimpl``). Everything a plugin needs is
importable from here.

Names are loaded on first use (PEP 562), so ``import restock_core`` stays cheap: SQLAlchemy,
Alembic and FastAPI are imported only when ``App`` (or another name that needs them) is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    # the application (imports SQLAlchemy when touched)
    "App": "app",
    "Page": "app",
    "SignUp": "app",
    "PublicSignUp": "app",
    "StockResult": "app",
    # plugin base classes and the host they are bound to
    "PluginHost": "base",
    "Provider": "base",
    "InventoryAdapter": "base",
    "ObserverPlugin": "base",
    "PeriodicTask": "base",
    # hooks
    "hookimpl": "hookspecs",
    # options
    "Secret": "config",
    "positive": "validators",
    "not_negative": "validators",
    "http_url": "validators",
    # errors
    "AdapterError": "errors",
    "ConfigError": "errors",
    "InStockError": "errors",
    "RateLimitedError": "errors",
    "NotFoundError": "errors",
    "RestockError": "errors",
    "SuppressedError": "errors",
    "ValidationError": "errors",
    # values
    "Channel": "models",
    "Conversion": "models",
    "Order": "models",
    "OrderLine": "models",
    "DeliveryEvent": "models",
    "DeliveryOutcome": "models",
    "DeliveryStatus": "models",
    "Hold": "models",
    "Message": "models",
    "Outcome": "models",
    "Restock": "models",
    "RestockStatus": "models",
    "SendResult": "models",
    "SharedContent": "models",
    "StockKey": "models",
    "StockUpdate": "models",
    "Subscription": "models",
    "SubscriptionStatus": "models",
    "VariantInfo": "models",
    "SignUpRequest": "signup",
    "SignUpContext": "signup",
    # contacts: one spelling per person, as the core stores them
    "normalize_email": "contacts",
    "normalize_phone": "contacts",
    # helpers for HTTP-facing plugins
    "error_body": "web",
    "error_response": "web",
    "parse_retry_after": "web",
    "retry_after": "web",
    "retry_after_header": "web",
    "chunks": "web",
    "utcnow": "clock",
    "parse_iso_utc": "clock",
    # time cursors kept as plugin state
    "stored_time": "cursors",
    "store_time": "cursors",
}

__all__ = [
    "AdapterError",
    "App",
    "Channel",
    "ConfigError",
    "Conversion",
    "DeliveryEvent",
    "DeliveryOutcome",
    "DeliveryStatus",
    "Hold",
    "InStockError",
    "RateLimitedError",
    "InventoryAdapter",
    "Message",
    "NotFoundError",
    "ObserverPlugin",
    "Order",
    "OrderLine",
    "Outcome",
    "Page",
    "PeriodicTask",
    "PluginHost",
    "Provider",
    "Restock",
    "RestockError",
    "RestockStatus",
    "Secret",
    "SendResult",
    "SharedContent",
    "SignUp",
    "PublicSignUp",
    "SignUpRequest",
    "SignUpContext",
    "StockKey",
    "StockResult",
    "StockUpdate",
    "Subscription",
    "SubscriptionStatus",
    "SuppressedError",
    "ValidationError",
    "VariantInfo",
    "chunks",
    "error_body",
    "error_response",
    "retry_after_header",
    "hookimpl",
    "http_url",
    "normalize_email",
    "normalize_phone",
    "not_negative",
    "parse_retry_after",
    "positive",
    "retry_after",
    "utcnow",
    "parse_iso_utc",
    "stored_time",
    "store_time",
]


if not TYPE_CHECKING:  # type checkers see the explicit imports below instead

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'restock_core' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .app import App, Page, PublicSignUp, SignUp, StockResult
    from .base import InventoryAdapter, ObserverPlugin, PeriodicTask, PluginHost, Provider
    from .clock import parse_iso_utc, utcnow
    from .config import Secret
    from .contacts import normalize_email, normalize_phone
    from .cursors import store_time, stored_time
    from .errors import (
        AdapterError,
        ConfigError,
        InStockError,
        NotFoundError,
        RateLimitedError,
        RestockError,
        SuppressedError,
        ValidationError,
    )
    from .hookspecs import hookimpl
    from .models import (
        Channel,
        Conversion,
        DeliveryEvent,
        DeliveryOutcome,
        DeliveryStatus,
        Hold,
        Message,
        Order,
        OrderLine,
        Outcome,
        Restock,
        RestockStatus,
        SendResult,
        SharedContent,
        StockKey,
        StockUpdate,
        Subscription,
        SubscriptionStatus,
        VariantInfo,
    )
    from .signup import SignUpContext, SignUpRequest
    from .validators import http_url, not_negative, positive
    from .web import (
        chunks,
        error_body,
        error_response,
        parse_retry_after,
        retry_after,
        retry_after_header,
    )
