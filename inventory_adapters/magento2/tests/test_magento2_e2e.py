"""End to end on SQLite and PostgreSQL: sign up through the Klaviyo-style form while Magento
says 0, Magento goes to 3, one reconciliation pass + drain -> one message per subscriber;
a second pass sends nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from restock_magento2.fake import TOKEN, FakeMagento

from restock_core.api import create_api
from restock_core.models import StockKey

FORM = "/m2/onsite/components/back-in-stock/subscribe"


def messages(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "messages.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_form_sign_up_then_poll_notifies_each_subscriber_once(
    make_app: Any, m2_config: Any, fake: FakeMagento, tmp_path: Path
):
    fake.scope_aliases["na"] = 2
    for sku in ("MH01-M-Blue", "MH02-M-Blue"):
        fake.set_stock(StockKey(sku, "default"), 0)
        fake.set_stock(StockKey(sku, "na"), 0)
    app = make_app(
        m2_config(
            store_scopes={"2": "na"},
            stocks={"na": {"stock_id": 2, "sources": ["central", "east"]}},
        )
    )
    assert app.adapters["m2"].obj.poll_interval == 300.0
    client = TestClient(create_api(app))
    signups = [
        ("ada@example.com", "MH01-M-Blue", "1"),
        ("bo@example.com", "MH01-M-Blue", "1"),
        ("cy@example.com", "MH01-M-Blue", "2"),  # the same SKU in the other stock
        ("dd@example.com", "MH02-M-Blue", "1"),  # stays sold out
    ]
    for email, sku, store in signups:
        response = client.post(
            FORM,
            data={
                "a": "abc",
                "email": email,
                "variant": sku,
                "platform": "magento_two",
                "store": store,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"email": email, "success": True}

    fake.set_stock(StockKey("MH01-M-Blue", "default"), 3)
    fake.set_stock(StockKey("MH01-M-Blue", "na"), 3)
    before = fake.requests_made()
    result = app.worker().reconcile("m2")
    # (MH01, default), (MH01, na), (MH02, default): two restocks, no errors
    assert (result.keys, result.restocks_opened, result.errors) == (3, 2, ())
    # per scope: one source-items search, one are-products-salable for the SKUs in stock,
    # and the salable quantity of the one SKU in stock (no batch endpoint for that)
    polled = fake.server.requests[before:]
    assert sorted(r.path.rsplit("/V1", 1)[1] for r in polled) == [
        "/inventory/are-products-salable",
        "/inventory/are-products-salable",
        "/inventory/get-product-salable-quantity/MH01-M-Blue/1",
        "/inventory/get-product-salable-quantity/MH01-M-Blue/2",
        "/inventory/source-items",
        "/inventory/source-items",
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in polled)
    app.worker().drain()

    sent = messages(tmp_path)
    assert sorted(m["to"] for m in sent) == ["ada@example.com", "bo@example.com", "cy@example.com"]
    assert all(m["variant_id"] == "MH01-M-Blue" for m in sent)
    assert all("Hoodie 1" in (m["subject"] or "") + m["text"] for m in sent)
    statuses = {s.contact: s.status for s in app.list_subscriptions().items}
    assert statuses == {
        "ada@example.com": "notified",
        "bo@example.com": "notified",
        "cy@example.com": "notified",
        "dd@example.com": "pending",
    }

    second = app.worker().reconcile("m2")
    app.worker().drain()
    assert (second.keys, second.restocks_opened) == (1, 0)  # only dd's key is still pending
    assert len(messages(tmp_path)) == 3
