"""restock-shopify: the `shopify` inventory adapter (docs/plugins/shopify.md)."""

from __future__ import annotations

from restock_core import hookimpl

from .adapter import ShopifyAdapter
from .options import ShopifyOptions
from .signatures import proxy_signature, webhook_signature

__all__ = ["ShopifyAdapter", "ShopifyOptions", "proxy_signature", "webhook_signature"]


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "shopify",
        ShopifyAdapter,
        options=ShopifyOptions,
        description="Shopify: GraphQL Admin stock reads, inventory webhooks, app proxy sign-up",
    )
