"""restock-twilio against the provider contract suite from restock_core.testing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from restock_twilio import TwilioProvider
from restock_twilio.testing import FakeTwilio

from restock_core.models import Channel
from restock_core.testing import ProviderContract


class TestTwilioContract(ProviderContract):
    @pytest.fixture
    def provider(self, make_provider: Callable[..., TwilioProvider]) -> TwilioProvider:
        return make_provider()

    @pytest.fixture
    def provider_fake(self, fake_twilio: FakeTwilio) -> FakeTwilio:
        return fake_twilio

    @pytest.fixture
    def provider_secrets(self, creds: Any) -> list[str]:
        return [creds.auth_token]

    @pytest.fixture
    def contract_channel(self) -> Channel:
        return Channel.SMS


class TestTwilioContractWithMessagingService(TestTwilioContract):
    @pytest.fixture
    def provider(self, make_provider: Callable[..., TwilioProvider], creds: Any) -> TwilioProvider:
        return make_provider(messaging_service_sid=creds.service_sid, concurrency=3)
