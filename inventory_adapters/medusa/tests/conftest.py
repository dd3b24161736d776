"""Fixtures for the Medusa adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from restock_medusa.testing import FakeMedusa


@pytest.fixture
def fake_medusa() -> Iterator[FakeMedusa]:
    fake = FakeMedusa()
    fake.server.start()
    yield fake
    fake.server.stop()
