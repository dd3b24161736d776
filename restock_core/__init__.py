"""restock: back-in-stock notifications.

The library API is :class:`App`; plugins implement the hooks in :mod:`restock_core.hookspecs`.

Names are imported on first use (PEP 562), so ``import restock_core`` (and the CLI's
``restock --help``) does not pay for SQLAlchemy, Alembic and FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App, Page, SignUp, StockResult
    from .errors import (
        AdapterError,
        ConfigError,
        InStockError,
        NotFoundError,
        RestockError,
        SuppressedError,
        ValidationError,
    )
    from .hookspecs import hookimpl
    from .models import (
        Channel,
        DeliveryEvent,
        Message,
        Restock,
        SendResult,
        StockKey,
        StockUpdate,
        Subscription,
        VariantInfo,
    )

__version__ = "0.1.0"

_LAZY = {
    "App": ".app",
    "Page": ".app",
    "SignUp": ".app",
    "StockResult": ".app",
    "AdapterError": ".errors",
    "ConfigError": ".errors",
    "InStockError": ".errors",
    "NotFoundError": ".errors",
    "RestockError": ".errors",
    "SuppressedError": ".errors",
    "ValidationError": ".errors",
    "hookimpl": ".hookspecs",
    "Channel": ".models",
    "DeliveryEvent": ".models",
    "Message": ".models",
    "Restock": ".models",
    "SendResult": ".models",
    "StockKey": ".models",
    "StockUpdate": ".models",
    "Subscription": ".models",
    "VariantInfo": ".models",
}

__all__ = [
    "AdapterError",
    "App",
    "Channel",
    "ConfigError",
    "DeliveryEvent",
    "InStockError",
    "Message",
    "NotFoundError",
    "Page",
    "Restock",
    "RestockError",
    "SendResult",
    "SignUp",
    "StockKey",
    "StockResult",
    "StockUpdate",
    "Subscription",
    "SuppressedError",
    "ValidationError",
    "VariantInfo",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
