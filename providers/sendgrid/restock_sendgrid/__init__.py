"""restock-sendgrid: the SendGrid email provider for restock (entry point `sendgrid`)."""

from __future__ import annotations

from typing import Any

from restock_core import hookimpl

from .options import SendGridOptions
from .provider import SendGridProvider

__all__ = ["SendGridOptions", "SendGridProvider", "register_providers"]


@hookimpl
def register_providers(register: Any) -> None:
    register(
        "sendgrid",
        SendGridProvider,
        options=SendGridOptions,
        description="Email through SendGrid Mail Send (1000 recipients per request), "
        "signed Event Webhook",
    )
