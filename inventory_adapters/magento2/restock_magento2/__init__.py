"""restock-magento2: the `magento2` inventory adapter (docs/plugins/magento2.md)."""

from __future__ import annotations

from restock_core import hookimpl

from .adapter import Magento2Adapter
from .client import MagentoClient, search_criteria
from .options import Magento2Options, ScopeStock

__all__ = ["Magento2Adapter", "Magento2Options", "MagentoClient", "ScopeStock", "search_criteria"]


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "magento2",
        Magento2Adapter,
        options=Magento2Options,
        description="Magento 2 (MSI): batched source-item stock polling, Klaviyo-style sign-up form",
    )
