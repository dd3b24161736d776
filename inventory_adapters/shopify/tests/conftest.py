"""Fixtures for the Shopify adapter tests: a fake Shopify on 127.0.0.1 and adapters pointed at it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from restock_shopify import ShopifyAdapter, ShopifyOptions
from restock_shopify.fake import TOKEN, FakeShopify, webhook_headers

from restock_core import StockKey, StockUpdate
from restock_core.api import create_api
from restock_core.config import structure_options

CLIENT_SECRET = "shpss_fake_client_secret_5678"
SHOP = "example.myshopify.com"
VARIANT = "gid://shopify/ProductVariant/101"


@pytest.fixture
def fake() -> Iterator[FakeShopify]:
    with FakeShopify() as server:
        for number in (101, 102, 103):
            server.add_variant(
                number, available=0, title=f"Size {number}", handle=f"shirt-{number}"
            )
        yield server


@pytest.fixture
def shopify_options(fake: FakeShopify) -> dict[str, Any]:
    return {
        "shop": SHOP,
        "access_token": TOKEN,
        "client_secret": CLIENT_SECRET,
        "base_url": fake.url,
        "timeout": 5.0,
        "storefront_url": "https://shop.example",
    }


@pytest.fixture
def make_adapter(shopify_options: dict[str, Any]) -> Iterator[Callable[..., ShopifyAdapter]]:
    made: list[ShopifyAdapter] = []

    def factory(**options: Any) -> ShopifyAdapter:
        raw = {**shopify_options, **options}
        adapter = ShopifyAdapter(structure_options(ShopifyOptions, raw, plugin="shopify"))
        made.append(adapter)
        return adapter

    yield factory
    for adapter in made:
        adapter.close()


@pytest.fixture
def shopify_config(shopify_options: dict[str, Any], tmp_path: Any) -> Callable[..., dict[str, Any]]:
    """A plugins.toml-shaped dict: the shopify adapter on the fake plus the logger provider
    writing JSON lines to tmp_path/messages.jsonl."""

    def build(**overrides: Any) -> dict[str, Any]:
        return {
            "plugins": [
                {
                    "resolve": "shopify",
                    "id": "shopify",
                    "options": {**shopify_options, **overrides},
                },
                {"resolve": "logger", "options": {"file": str(tmp_path / "messages.jsonl")}},
            ]
        }

    return build


@pytest.fixture
def app(make_app: Callable[..., Any], shopify_config: Callable[..., dict[str, Any]]) -> Any:
    """A migrated App (SQLite and PostgreSQL) with the shopify adapter on the fake."""
    return make_app(shopify_config())


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    """The core API (with the adapter's routes) of `app`."""
    with TestClient(create_api(app)) as test_client:
        yield test_client


@pytest.fixture
def notified(fake: FakeShopify) -> Callable[..., Any]:
    """notified(app, email, **subscribe keywords): subscribes to variant 101, restocks it on the
    fake and in the core and drains the worker; the subscription, now notified."""

    def notify(app: Any, email: str = "jon@example.com", **subscribe: Any) -> Any:
        sub = app.subscribe(VARIANT, email=email, source="shopify", **subscribe).subscription
        fake.set_available(101, 5)
        app.record_stock("shopify", [StockUpdate(StockKey(VARIANT), 5, datetime.now(UTC))])
        app.worker().drain()
        sub = app.get_subscription(sub.id)
        assert sub.status == "notified"
        return sub

    return notify


@pytest.fixture
def post_order(client: TestClient) -> Callable[..., Any]:
    """post_order(body, topic="orders/create", secret=..., webhook_id=None): the order webhook
    Shopify would send, signed with `secret` (None: unsigned), posted to the adapter's route."""

    def post(
        body: dict[str, Any],
        topic: str = "orders/create",
        secret: str | None = CLIENT_SECRET,
        webhook_id: str | None = None,
    ) -> Any:
        raw = json.dumps(body).encode()
        headers = webhook_headers(raw, secret, webhook_id=webhook_id, topic=topic)
        return client.post(f"/shopify/webhooks/{topic}", content=raw, headers=headers)

    return post
