"""The Sequenzy-shaped commerce API: a client sending exactly the seed's requests signs a
customer up, a product upsert restocks the variant, the logger provider sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.app import App

SECRET = "sk-test-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}


def commerce_app(make_app: Any, tmp_path: Path, **settings: Any) -> tuple[App, TestClient, Path]:
    sent = tmp_path / "sent.jsonl"
    app = make_app(
        {
            "restock": {"secret_api_key": SECRET, **settings},
            "plugins": [
                {"resolve": "logger", "options": {"file": str(sent)}},
                {"resolve": "catalog"},
            ],
        }
    )
    return app, TestClient(create_api(app)), sent


def test_a_sequenzy_client_signs_up_and_a_product_upsert_restocks(
    make_app: Any, tmp_path: Path
) -> None:
    app, client, sent = commerce_app(make_app, tmp_path)
    # the product is synced, sold out (docs.sequenzy.com/api-reference/products/upsert)
    upsert = {
        "products": [
            {
                "productId": "SKU-PROTEIN-1KG",
                "title": "Protein Powder",
                "url": "https://shop.example/protein",
                "imageUrl": "https://shop.example/protein.jpg",
                "priceCents": 8850,
                "currency": "USD",
                "variants": [
                    {
                        "variantId": "SKU-PROTEIN-1KG-VANILLA",
                        "title": "Vanilla",
                        "inventoryQuantity": 0,
                    },
                    {
                        "variantId": "SKU-PROTEIN-1KG-CHOC",
                        "title": "Chocolate",
                        "inventoryQuantity": 3,
                    },
                ],
            }
        ]
    }
    first = client.post("/api/v1/products", content=json.dumps(upsert), headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json()["success"] is True and first.json()["backInStockEventsTriggered"] == 0

    # exactly the seed's request (docs.sequenzy.com/api-reference back-in-stock)
    response = client.post(
        "/api/v1/back-in-stock",
        content=json.dumps(
            {
                "productId": "SKU-PROTEIN-1KG",
                "variantId": "SKU-PROTEIN-1KG-VANILLA",
                "customer": {"email": "buyer@example.com"},
            }
        ),
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"success", "subscriberId"} and answer["success"] is True
    sub = app.get_subscription(int(answer["subscriberId"]))
    assert (sub.product_title, sub.variant_title, sub.url) == (
        "Protein Powder",
        "Vanilla",
        "https://shop.example/protein",
    )
    # a repeat request answers with the same subscriber
    again = client.post(
        "/api/v1/back-in-stock",
        json={
            "productId": "SKU-PROTEIN-1KG",
            "variantId": "SKU-PROTEIN-1KG-VANILLA",
            "customer": {"email": "BUYER@example.com"},
        },
        headers=AUTH,
    )
    assert again.json()["subscriberId"] == answer["subscriberId"]

    # a stock-only update (partial: titles stay) brings the variant back
    restock = {
        "products": [
            {
                "productId": "SKU-PROTEIN-1KG",
                "variants": [{"variantId": "SKU-PROTEIN-1KG-VANILLA", "inventoryQuantity": 12}],
            }
        ]
    }
    second = client.post("/api/v1/products", json=restock, headers=AUTH).json()
    assert second["backInStockEventsTriggered"] == 1
    [product] = second["products"]
    assert product["title"] == "Protein Powder" and product["variants"][0]["title"] == "Vanilla"
    assert product["variants"][0]["inventoryQuantity"] == 12 and product["inStock"] is True

    app.worker().drain()
    [line] = [json.loads(x) for x in sent.read_text().splitlines()]
    assert line["to"] == "buyer@example.com" and line["variant_id"] == "SKU-PROTEIN-1KG-VANILLA"
    assert "Protein Powder" in (line["subject"] or "") + line["text"]
    assert app.get_subscription(sub.id).status == "notified"


def test_a_product_without_variants_and_in_stock_flags(make_app: Any, tmp_path: Path) -> None:
    app, client, sent = commerce_app(make_app, tmp_path)
    out = {"products": [{"productId": "MUG", "title": "Mug", "inStock": False}]}
    assert client.post("/api/v1/products", json=out, headers=AUTH).status_code == 200
    signed = client.post(
        "/api/v1/back-in-stock",
        json={"productId": "MUG", "customer": {"email": "a@example.com", "firstName": "Ada"}},
        headers=AUTH,
    )
    sub = app.get_subscription(int(signed.json()["subscriberId"]))
    assert sub.variant_id == "MUG" and sub.attributes["first_name"] == "Ada"
    back = client.post(
        "/api/v1/products", json={"products": [{"productId": "MUG", "inStock": True}]}, headers=AUTH
    )
    assert back.json()["backInStockEventsTriggered"] == 1
    app.worker().drain()
    assert "a@example.com" in sent.read_text()
    # in stock now: a sign-up is refused in the same envelope
    refused = client.post(
        "/api/v1/back-in-stock",
        json={"productId": "MUG", "customer": {"email": "b@example.com"}},
        headers=AUTH,
    )
    assert refused.status_code == 409
    assert refused.json()["success"] is False and refused.json()["error"]["code"] == "in_stock"


def test_errors_keep_the_envelope_and_say_success_false(make_app: Any, tmp_path: Path) -> None:
    app, client, _ = commerce_app(make_app, tmp_path)
    body = {"productId": "p", "customer": {"email": "a@example.com"}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
        refused = client.post("/api/v1/back-in-stock", json=body, headers=headers)
        assert refused.status_code == 401
        assert (
            refused.json()["success"] is False and refused.json()["error"]["code"] == "unauthorized"
        )
    missing = client.post(
        "/api/v1/back-in-stock", json={"productId": "p", "customer": {}}, headers=AUTH
    )
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "customer.email"
    bad_email = client.post(
        "/api/v1/back-in-stock",
        json={"productId": "p", "customer": {"email": "nope"}},
        headers=AUTH,
    )
    assert bad_email.status_code == 422 and bad_email.json()["error"]["field"] == "email"
    assert client.post("/api/v1/back-in-stock", content=b"{", headers=AUTH).status_code == 400
    too_many = {"products": [{"productId": f"p{i}"} for i in range(101)]}
    assert (
        client.post("/api/v1/products", json=too_many, headers=AUTH).json()["error"]["field"]
        == "products"
    )
    twice = {
        "products": [
            {"productId": "a", "variants": [{"variantId": "x"}]},
            {"productId": "b", "variants": [{"variantId": "x"}]},
        ]
    }
    assert client.post("/api/v1/products", json=twice, headers=AUTH).status_code == 422
    assert app.store.products.get("catalog", ["x"]) == {}  # nothing of a refused request stored


def test_without_a_secret_key_the_commerce_api_is_off(make_app: Any, tmp_path: Path) -> None:
    app = make_app({"plugins": [{"resolve": "logger"}, {"resolve": "catalog"}]})
    client = TestClient(create_api(app))
    refused = client.post("/api/v1/products", json={"products": [{"productId": "p"}]}, headers=AUTH)
    assert refused.status_code == 403 and refused.json()["success"] is False


def test_the_upsert_needs_a_catalog_source(make_app: Any) -> None:
    app = make_app({"restock": {"secret_api_key": SECRET}})  # logger + manual
    client = TestClient(create_api(app))
    refused = client.post("/api/v1/products", json={"products": [{"productId": "p"}]}, headers=AUTH)
    assert refused.status_code == 422 and "catalog" in refused.json()["error"]["message"]
    # sign-ups still work against the only source
    signed = client.post(
        "/api/v1/back-in-stock",
        json={"productId": "p", "customer": {"email": "a@example.com"}},
        headers=AUTH,
    )
    assert (
        signed.status_code == 200
        and app.get_subscription(int(signed.json()["subscriberId"])).source == "manual"
    )
