"""restock-twilio: SMS through Twilio's Messages API (official SDK) with status callbacks.

Registered under the entry point name ``twilio``::

    [[plugins]]
    resolve = "twilio"
    options = { account_sid = "AC...", auth_token = { env = "TWILIO_AUTH_TOKEN" },
                from_number = "+14155550100" }
"""

from __future__ import annotations

from restock_core import hookimpl

from .provider import RestockTwilioHttpClient, TwilioOptions, TwilioProvider

__all__ = ["RestockTwilioHttpClient", "TwilioOptions", "TwilioProvider", "register_providers"]


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register(
        "twilio",
        TwilioProvider,
        options=TwilioOptions,
        description="Sends SMS through Twilio's Messages API (official twilio SDK)",
    )
