"""Fixtures for the restock-twilio tests: a fake Twilio on 127.0.0.1 and providers that
talk to it through the real twilio SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from restock_twilio import TwilioOptions, TwilioProvider
from restock_twilio.testing import FakeTwilio

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token-7f3a9c"
FROM_NUMBER = "+14155550100"
SERVICE_SID = "MG" + "fedcba9876543210" * 2


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def make_provider(fake_twilio: FakeTwilio) -> Iterator[Callable[..., TwilioProvider]]:
    made: list[TwilioProvider] = []

    def factory(**overrides: Any) -> TwilioProvider:
        options: dict[str, Any] = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from_number": FROM_NUMBER,
            "base_url": fake_twilio.url,
            "timeout": 5.0,
        }
        options.update(overrides)
        if "messaging_service_sid" in overrides and "from_number" not in overrides:
            options.pop("from_number")
        provider = TwilioProvider(TwilioOptions(**options))
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


class Credentials:
    account_sid = ACCOUNT_SID
    auth_token = AUTH_TOKEN
    from_number = FROM_NUMBER
    service_sid = SERVICE_SID


@pytest.fixture
def creds() -> type[Credentials]:
    return Credentials
