"""restock: back-in-stock notifications.

The library API is :class:`App`; plugins implement the hooks in :mod:`restock_core.hookspecs`.
"""

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
