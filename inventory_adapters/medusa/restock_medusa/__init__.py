"""restock-medusa: the Medusa v2 inventory adapter for restock.

Registered as the inventory adapter ``medusa`` (entry point ``medusa`` in the ``restock``
group). See docs/plugins/medusa.md.
"""

from __future__ import annotations

from restock_core import hookimpl

from .adapter import MedusaAdapter, MedusaClient, MedusaOptions
from .events import RestockedForwarder, sign, v1_event, verify

__all__ = [
    "MedusaAdapter",
    "MedusaClient",
    "MedusaOptions",
    "RestockedForwarder",
    "sign",
    "v1_event",
    "verify",
]


@hookimpl
def register_inventory_adapters(register):  # type: ignore[no-untyped-def]
    register(
        "medusa",
        MedusaAdapter,
        options=MedusaOptions,
        description="Medusa v2: stock per sales channel (Store/Admin API), events, sign-up routes",
    )
