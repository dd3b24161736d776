"""Fixtures for the Magento 2 adapter tests: a fake Magento on 127.0.0.1 and adapters on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from restock_magento2 import Magento2Adapter, Magento2Options
from restock_magento2.fake import TOKEN, FakeMagento

from restock_core.config import structure_options


@pytest.fixture
def fake() -> Iterator[FakeMagento]:
    with FakeMagento() as server:
        for n in (1, 2, 3):
            server.add_product(f"MH0{n}-M-Blue", name=f"Hoodie {n}", image=f"/m/h/mh0{n}.jpg")
            server.set_source_item(f"MH0{n}-M-Blue", "default", 0)
        yield server


@pytest.fixture
def m2_options(fake: FakeMagento) -> dict[str, Any]:
    return {
        "base_url": fake.url,
        "access_token": TOKEN,
        "timeout": 5.0,
        "retry_backoff": 0.01,
        "storefront_url": "https://shop.example",
    }


@pytest.fixture
def make_adapter(m2_options: dict[str, Any]) -> Iterator[Callable[..., Magento2Adapter]]:
    made: list[Magento2Adapter] = []

    def factory(**options: Any) -> Magento2Adapter:
        raw = {**m2_options, **options}
        adapter = Magento2Adapter(structure_options(Magento2Options, raw, plugin="magento2"))
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.close()


@pytest.fixture
def m2_config(m2_options: dict[str, Any], tmp_path: Any) -> Callable[..., dict[str, Any]]:
    """A plugins.toml-shaped dict: magento2 (id "m2") on the fake plus the logger provider
    writing JSON lines to tmp_path/messages.jsonl."""

    def build(**overrides: Any) -> dict[str, Any]:
        return {
            "plugins": [
                {"resolve": "magento2", "id": "m2", "options": {**m2_options, **overrides}},
                {"resolve": "logger", "options": {"file": str(tmp_path / "messages.jsonl")}},
            ]
        }

    return build
