"""End to end with make_app (SQLite and PostgreSQL): sign-up through the app proxy or the
library while the fake shop says 0, stock comes back (signed webhook, or a reconciliation pass
with no webhook at all), the worker drains, and the logger provider writes one message per
subscriber."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from restock_shopify.fake import TOKEN, FakeShopify, proxy_query, webhook_headers

from restock_core.api import create_api

SECRET = "shpss_fake_client_secret_5678"
VARIANT = "gid://shopify/ProductVariant/101"


def messages(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "messages.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_proxy_sign_up_then_webhook_notifies_everyone(
    make_app: Any, shopify_config: Any, fake: FakeShopify, tmp_path: Path
) -> None:
    app = make_app(shopify_config(storefront_url="https://shop.example"))
    with TestClient(create_api(app)) as client:
        contacts = [{"email": "ada@example.com"}, {"email": "bob@example.com"}]
        contacts.append({"phone": "+14155550123"})
        for contact in contacts:
            response = client.get(
                "/shopify/proxy/subscribe",
                params=proxy_query(SECRET, variant_id="101", **contact),
            )
            assert response.status_code == 202, response.text
        assert app.worker().drain() == 0 and messages(tmp_path) == []

        fake.set_available(101, 5)
        body = {
            "inventory_item_id": 1000101,
            "location_id": 1,
            "available": 5,
            "updated_at": datetime.now(UTC).isoformat(),
            "admin_graphql_api_id": "gid://shopify/InventoryLevel/1?inventory_item_id=1000101",
        }
        raw = json.dumps(body).encode()
        response = client.post(
            "/shopify/webhooks/inventory_levels/update",
            content=raw,
            headers=webhook_headers(raw, SECRET, webhook_id="wh-e2e", event_id="ev-e2e"),
        )
        assert response.status_code == 200, response.text

    app.worker().drain()
    sent = messages(tmp_path)
    assert sorted(m["to"] for m in sent) == ["+14155550123", "ada@example.com", "bob@example.com"]
    assert {m["variant_id"] for m in sent} == {VARIANT}
    email = next(m for m in sent if m["channel"] == "email")
    assert "Blue Shirt" in (email["subject"] or "")  # described through GraphQL
    assert "https://shop.example/products/shirt-101?variant=101" in email["text"]
    statuses = {s.status for s in app.list_subscriptions().items}
    assert statuses == {"notified"}
    assert all(r.headers["x-shopify-access-token"] == TOKEN for r in fake.graphql_requests())


def test_reconciliation_without_webhook_notifies_everyone(
    make_app: Any, shopify_config: Any, fake: FakeShopify, tmp_path: Path
) -> None:
    app = make_app(shopify_config(scopes={"eu": ["2"]}))
    fake.add_variant(110, levels={1: 0, 2: 0})
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    app.subscribe(VARIANT, phone="+14155550123", source="shopify")
    app.subscribe("gid://shopify/ProductVariant/110", email="eve@example.com", scope="eu")
    app.subscribe("gid://shopify/ProductVariant/102", email="zed@example.com", source="shopify")

    fake.set_available(101, 5)
    fake.set_available(110, 2, location=2)
    before = fake.requests_made()
    result = app.worker().reconcile("shopify")
    assert result.errors == ()
    assert result.restocks_opened == 2  # 101 in "default", 110 in "eu"
    assert fake.requests_made() - before == 1  # one nodes query for every key and scope
    app.worker().drain()
    sent = sorted(m["to"] for m in messages(tmp_path))
    assert sent == ["+14155550123", "ada@example.com", "eve@example.com"]
    pending = app.list_subscriptions(status="pending").items
    assert [s.contact for s in pending] == ["zed@example.com"]  # 102 is still sold out


def test_numeric_variant_ids_are_stored_as_gids(make_app: Any, shopify_config: Any) -> None:
    """POST /subscriptions or the library may say "101"; webhooks and polls report gids."""
    import pytest

    from restock_core.errors import ValidationError

    app = make_app(shopify_config())
    signup = app.subscribe("101", email="ann@example.com")
    assert signup.subscription.variant_id == VARIANT
    assert app.subscribe(VARIANT, email="ann@example.com").created is False
    with pytest.raises(ValidationError) as caught:
        app.subscribe("blue-shirt", email="ann@example.com")
    assert caught.value.field == "variant_id"
