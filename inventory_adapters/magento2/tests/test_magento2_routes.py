"""The Klaviyo-compatible back-in-stock form route, mounted by the core's create_api under
/<instance id>, answering in Klaviyo's shapes (seed 004: the Magento 2 guide)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from restock_magento2.fake import FakeMagento

from restock_core.api import create_api
from restock_core.models import StockKey

FORM = "/m2/onsite/components/back-in-stock/subscribe"
LEGACY = "/m2/api/v1/catalog/subscribe"
SKU = "MH01-M-Blue"


@pytest.fixture
def client_for(make_app: Any, m2_config: Any) -> Any:
    def build(**options: Any) -> tuple[Any, TestClient]:
        app = make_app(m2_config(**options))
        return app, TestClient(create_api(app))

    return build


def form(**fields: Any) -> dict[str, Any]:
    return {
        "a": "abc123",
        "email": "ada@example.com",
        "variant": SKU,
        "platform": "magento_two",
        "store": "1",
        **fields,
    }


def test_valid_sign_up_answers_like_klaviyo(client_for: Any, fake: FakeMagento):
    app, client = client_for(store_scopes={"1": "default"})
    response = client.post(FORM, data=form(subscribe_for_newsletter="true", product="1"))
    assert response.status_code == 200
    assert response.json() == {"email": "ada@example.com", "success": True}
    assert response.headers["content-type"] == "application/json"
    [sub] = app.list_subscriptions().items
    assert (sub.variant_id, sub.scope, sub.source, sub.contact) == (
        SKU,
        "default",
        "m2",
        "ada@example.com",
    )
    assert sub.product_id == "1"
    assert sub.attributes == {
        "form": "klaviyo-back-in-stock",
        "platform": "magento_two",
        "store": "1",
        "subscribe_for_newsletter": True,
    }
    # the stock check went to Magento with the integration token
    [check] = fake.received("/V1/inventory/source-items")
    assert check.query["searchCriteria[filter_groups][0][filters][0][value]"] == [SKU]
    # a repeat sign-up is accepted the same way (Klaviyo keeps only the first)
    again = client.post(FORM, data=form(email="ADA@example.com"))
    assert again.status_code == 200 and again.json()["success"] is True
    assert len(app.list_subscriptions().items) == 1


def test_multipart_and_the_server_side_path(client_for: Any):
    """The guide's curl example posts multipart (-F) to /api/v1/catalog/subscribe."""
    app, client = client_for()
    response = client.post(
        LEGACY, files={k: (None, v) for k, v in form(email="bo@example.com").items()}
    )
    assert response.status_code == 200
    assert response.json() == {"email": "bo@example.com", "success": True}
    assert app.list_subscriptions().items[0].contact == "bo@example.com"


def test_invalid_email_is_klaviyos_error_shape(client_for: Any):
    app, client = client_for()
    response = client.post(FORM, data=form(email="not-an-email"))
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["data"] == {}
    assert body["errors"][0].startswith("There was something wrong with your request.")
    assert body["error"]["code"] == "invalid" and body["error"]["field"] == "email"
    assert app.list_subscriptions().items == ()


def test_in_stock_is_refused_with_409(client_for: Any, fake: FakeMagento):
    fake.set_stock(StockKey(SKU), 3)
    app, client = client_for()
    response = client.post(FORM, data=form())
    assert response.status_code == 409
    body = response.json()
    assert body["success"] is False and body["data"] == {}
    assert "in stock" in body["errors"][0]
    assert body["error"] == {"code": "in_stock", "message": body["errors"][0], "field": "variant"}
    assert app.list_subscriptions().items == ()


def test_last_unit_in_an_unshipped_order_takes_sign_ups(client_for: Any, fake: FakeMagento):
    """Issue 10 item 10: source quantity 1 and one order placed, not shipped (reservation -1):
    the shop shows "Out of stock" (salable quantity 0), so the form must take the sign-up,
    and the stock recorded for the SKU is the salable 0, not the physical 1."""
    fake.set_stock(StockKey(SKU), 1)
    fake.place_order(SKU, 1)
    app, client = client_for()
    response = client.post(FORM, data=form())
    assert response.status_code == 200, response.text
    assert response.json() == {"email": "ada@example.com", "success": True}
    assert fake.received(f"/V1/inventory/get-product-salable-quantity/{SKU}/1")
    assert app.worker().reconcile("m2").restocks_opened == 0
    # the order ships: the unit is gone for good; a delivery brings 2 back -> restock of 2
    fake.ship_order(SKU, 1)
    fake.set_stock(StockKey(SKU), 2)
    assert app.worker().reconcile("m2").restocks_opened == 1


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (["variant"], "* variant * This field is required."),
        (["email"], "* email * This field is required."),
        (
            ["email", "variant"],
            "* email * This field is required. * variant * This field is required.",
        ),
    ],
)
def test_missing_fields_answer_status_400(client_for: Any, drop: list[str], message: str):
    app, client = client_for()
    data = {k: v for k, v in form().items() if k not in drop}
    response = client.post(FORM, data=data)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert body["message"] == f"There was something wrong with your request: {message}"
    assert body["success"] is False and body["error"]["field"] == drop[0]


def test_company_id_is_checked_when_configured(client_for: Any):
    app, client = client_for(klaviyo_company_id="abc123")
    assert client.post(FORM, data=form()).status_code == 200
    wrong = client.post(FORM, data=form(a="other", email="cy@example.com"))
    assert wrong.status_code == 400
    assert wrong.json()["error"]["field"] == "a"
    assert wrong.json()["errors"][0].startswith("There was something wrong")


def test_store_picks_the_scope(client_for: Any, fake: FakeMagento):
    fake.set_source_item(SKU, "central", 0)
    app, client = client_for(
        store_scopes={"2": "na"}, stocks={"na": {"stock_id": 2, "sources": ["central"]}}
    )
    assert client.post(FORM, data=form(store="2")).status_code == 200
    assert app.list_subscriptions().items[0].scope == "na"


def test_product_id_variant_is_looked_up(client_for: Any, fake: FakeMagento):
    product = fake.products[SKU.lower()]
    app, client = client_for(form_variant="product_id")
    assert client.post(FORM, data=form(variant=str(product.id))).status_code == 200
    assert app.list_subscriptions().items[0].variant_id == SKU
    unknown = client.post(FORM, data=form(variant="424242", email="dd@example.com"))
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "variant"


def test_cors_for_configured_origins(client_for: Any):
    app, client = client_for(cors_origins=["https://shop.example"])
    ok = client.post(FORM, data=form(), headers={"Origin": "https://shop.example"})
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    other = client.post(
        FORM, data=form(email="x@example.com"), headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options(FORM, headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_magento_down_still_accepts_the_sign_up(client_for: Any, fake: FakeMagento):
    """The core accepts a sign-up when the stock check fails; reconciliation catches up."""
    fake.status = 503
    app, client = client_for(max_retries=0)
    assert client.post(FORM, data=form()).status_code == 200
