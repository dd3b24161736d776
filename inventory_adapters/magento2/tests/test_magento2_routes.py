"""The Klaviyo-compatible back-in-stock form route, mounted by the core's create_api under
/<instance id>, answering in Klaviyo's shapes (seed 004: the Magento 2 guide)."""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- Klaviyo client API
# Klaviyo retired the v1/v2 form API in June 2024; storefront code written today calls
# POST https://a.klaviyo.com/client/back-in-stock-subscriptions?company_id=<public key> with a
# `revision` header and a JSON:API body, and expects 202 with no body (klaviyo/openapi,
# openapi/stable/apis/create_client_back_in_stock_subscription.json;
# https://developers.klaviyo.com/en/reference/create_client_back_in_stock_subscription).
# Errors are Klaviyo's ClientError: {"errors": [{"id", "code", "title", "detail", "source"}]}.

CLIENT = "/m2/client/back-in-stock-subscriptions"
REVISION = "2024-10-15"


def bis_body(
    *,
    channels: Any = ("EMAIL",),
    email: str | None = "ada@example.com",
    phone: str | None = None,
    variant: str = f"$custom:::$default:::{SKU}",
) -> dict[str, Any]:
    """The body of Klaviyo's example request (samples/klaviyo-back-in-stock-subscription-
    request.json), with our values."""
    attributes: dict[str, Any] = {}
    if email is not None:
        attributes["email"] = email
    if phone is not None:
        attributes["phone_number"] = phone
    return {
        "data": {
            "type": "back-in-stock-subscription",
            "attributes": {
                "channels": list(channels),
                "profile": {"data": {"type": "profile", "attributes": attributes}},
            },
            "relationships": {"variant": {"data": {"type": "catalog-variant", "id": variant}}},
        }
    }


def post_client(
    client: TestClient,
    body: Any,
    *,
    company_id: str | None = "abc123",
    revision: str | None = REVISION,
    content_type: str = "application/vnd.api+json",
    headers: dict[str, str] | None = None,
) -> Any:
    sent = {"content-type": content_type, **(headers or {})}
    if revision is not None:
        sent["revision"] = revision
    params = {"company_id": company_id} if company_id is not None else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(CLIENT, params=params, content=raw, headers=sent)


def klaviyo_error(response: Any) -> dict[str, Any]:
    """Checks the ClientError shape (plus restock's `error`) and returns its one entry."""
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    body = response.json()
    [entry] = body["errors"]
    assert set(entry) >= {"id", "code", "title", "detail", "source"}
    assert entry["status"] == response.status_code
    assert body["error"]["code"] == entry["code"]
    assert body["error"]["message"] == entry["detail"]
    return entry


def test_client_api_sign_up_answers_202(client_for: Any, fake: FakeMagento):
    """Issue 10 item 11: the current Klaviyo request is accepted with 202 and no body."""
    app, client = client_for(klaviyo_company_id="abc123")
    response = post_client(client, bis_body())
    assert response.status_code == 202, response.text
    assert response.content == b""
    [sub] = app.list_subscriptions().items
    assert (sub.variant_id, sub.scope, sub.source, sub.contact, str(sub.channel)) == (
        SKU,
        "default",
        "m2",
        "ada@example.com",
        "email",
    )
    assert sub.attributes == {
        "form": "klaviyo-client-api",
        "revision": REVISION,
        "variant": f"$custom:::$default:::{SKU}",
    }
    # the stock check went to Magento
    assert fake.received("/V1/inventory/source-items")
    # a repeat is accepted the same way and changes nothing
    assert post_client(client, bis_body(email="ADA@example.com")).status_code == 202
    assert len(app.list_subscriptions().items) == 1


def test_client_api_email_and_sms_make_two_subscriptions(client_for: Any):
    app, client = client_for()
    body = bis_body(channels=["EMAIL", "SMS"], phone="+14155550123")
    response = post_client(client, body, content_type="application/json")
    assert response.status_code == 202, response.text
    subs = {(str(s.channel), s.contact) for s in app.list_subscriptions().items}
    assert subs == {("email", "ada@example.com"), ("sms", "+14155550123")}


def test_client_api_unsupported_channels_are_ignored_beside_supported_ones(client_for: Any):
    app, client = client_for()
    assert post_client(client, bis_body(channels=["PUSH", "EMAIL"])).status_code == 202
    assert [str(s.channel) for s in app.list_subscriptions().items] == ["email"]
    only_push = post_client(client, bis_body(channels=["PUSH"], email="bo@example.com"))
    assert only_push.status_code == 400
    assert klaviyo_error(only_push)["source"] == {"pointer": "/data/attributes/channels"}


def test_client_api_in_stock_is_409_in_klaviyos_shape(client_for: Any, fake: FakeMagento):
    fake.set_stock(StockKey(SKU), 3)
    app, client = client_for()
    response = post_client(client, bis_body())
    assert response.status_code == 409
    entry = klaviyo_error(response)
    assert entry["code"] == "in_stock"
    assert entry["source"] == {"pointer": "/data/relationships/variant/data/id"}
    assert response.json()["error"]["field"] == "variant"
    assert app.list_subscriptions().items == ()


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda b: b.__setitem__("data", []), {"pointer": "/data"}),
        (lambda b: b["data"].__setitem__("type", "profile"), {"pointer": "/data/type"}),
        (
            lambda b: b["data"]["attributes"].pop("channels"),
            {"pointer": "/data/attributes/channels"},
        ),
        (
            lambda b: b["data"]["attributes"].__setitem__("channels", ["FAX"]),
            {"pointer": "/data/attributes/channels"},
        ),
        (
            lambda b: b["data"]["attributes"].pop("profile"),
            {"pointer": "/data/attributes/profile"},
        ),
        (
            lambda b: b["data"]["attributes"]["profile"]["data"]["attributes"].pop("email"),
            {"pointer": "/data/attributes/profile/data/attributes/email"},
        ),
        (
            lambda b: b["data"]["attributes"]["profile"]["data"]["attributes"].__setitem__(
                "email", "not-an-address"
            ),
            {"pointer": "/data/attributes/profile/data/attributes/email"},
        ),
        (
            lambda b: b["data"]["attributes"]["profile"]["data"]["attributes"].__setitem__(
                "email", ["a@example.com"]
            ),
            {"pointer": "/data/attributes/profile/data/attributes/email"},
        ),
        (lambda b: b["data"].pop("relationships"), {"pointer": "/data/relationships"}),
        (
            lambda b: b["data"]["relationships"]["variant"]["data"].__setitem__("id", SKU),
            {"pointer": "/data/relationships/variant/data/id"},
        ),
        (
            lambda b: b["data"]["relationships"]["variant"]["data"].__setitem__(
                "type", "catalog-item"
            ),
            {"pointer": "/data/relationships/variant/data/type"},
        ),
    ],
)
def test_client_api_bad_input_is_400_with_a_pointer(
    client_for: Any, mutate: Any, where: dict[str, str]
):
    app, client = client_for()
    body = bis_body()
    mutate(body)
    response = post_client(client, body)
    assert response.status_code == 400, response.text
    entry = klaviyo_error(response)
    assert (entry["code"], entry["title"], entry["source"]) == ("invalid", "Invalid input.", where)
    assert app.list_subscriptions().items == ()


def test_client_api_sms_without_a_phone_is_400(client_for: Any):
    app, client = client_for()
    response = post_client(client, bis_body(channels=["SMS"]))
    assert response.status_code == 400
    assert klaviyo_error(response)["source"] == {
        "pointer": "/data/attributes/profile/data/attributes/phone_number"
    }


def test_client_api_needs_company_id_revision_and_json(client_for: Any):
    app, client = client_for(klaviyo_company_id="abc123")
    missing = post_client(client, bis_body(), company_id=None)
    assert missing.status_code == 400
    assert klaviyo_error(missing)["source"] == {"parameter": "company_id"}
    wrong = post_client(client, bis_body(), company_id="other")
    assert wrong.status_code == 400
    assert klaviyo_error(wrong)["source"] == {"parameter": "company_id"}
    no_revision = post_client(client, bis_body(), revision=None)
    assert no_revision.status_code == 400
    assert klaviyo_error(no_revision)["source"] == {"parameter": "revision"}
    bad_revision = post_client(client, bis_body(), revision="yesterday")
    assert bad_revision.status_code == 400
    assert post_client(client, bis_body(), revision="2023-07-15.pre").status_code == 202
    form_body = post_client(client, b"email=a@example.com", content_type="text/plain")
    assert form_body.status_code == 415
    assert klaviyo_error(form_body)["code"] == "unsupported_media_type"
    not_json = post_client(client, b"{not json")
    assert not_json.status_code == 400
    deep = post_client(client, b"[" * 5000 + b"]" * 5000)
    assert deep.status_code in (400, 413)
    assert len(app.list_subscriptions().items) == 1


def test_client_api_catalog_id_picks_the_scope_and_product_ids(client_for: Any, fake: FakeMagento):
    fake.set_source_item(SKU, "central", 0)
    product = fake.products[SKU.lower()]
    app, client = client_for(
        form_variant="product_id",
        store_scopes={"2": "na"},
        stocks={"na": {"stock_id": 2, "sources": ["central"]}},
    )
    body = bis_body(variant=f"$magento_two:::2:::{product.id}")
    assert post_client(client, body).status_code == 202
    [sub] = app.list_subscriptions().items
    assert (sub.variant_id, sub.scope) == (SKU, "na")
    unknown = post_client(client, bis_body(variant="$custom:::$default:::424242"))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "variant"


def test_client_api_cors_preflight_allows_the_revision_header(client_for: Any):
    """A browser sends the `revision` header and a JSON:API content type, so it asks first."""
    app, client = client_for(cors_origins=["https://shop.example"])
    preflight = client.options(
        CLIENT,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,revision",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {"revision", "content-type"} <= allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    ok = post_client(client, bis_body(), headers={"Origin": "https://shop.example"})
    assert ok.status_code == 202
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    bad = post_client(client, bis_body(), revision=None, headers={"Origin": "https://shop.example"})
    assert bad.headers["access-control-allow-origin"] == "https://shop.example"
    # the legacy form's preflight allows it too
    legacy = client.options(FORM, headers={"Origin": "https://shop.example"})
    assert "revision" in legacy.headers["access-control-allow-headers"].lower()


def test_client_api_suppressed_contact(client_for: Any):
    """A suppressed address answers like any other (a stranger learns nothing about it)
    and stays without a sign-up; its other channel is signed up."""
    app, client = client_for()
    app.suppress("email", "ada@example.com", "bounced")
    response = post_client(client, bis_body())
    assert response.status_code == 202
    assert app.list_subscriptions().items == ()
    both = bis_body(channels=["EMAIL", "SMS"], phone="+14155550123")
    assert post_client(client, both).status_code == 202
    assert [str(s.channel) for s in app.list_subscriptions().items] == ["sms"]


def test_klaviyo_routes_spend_the_public_ip_budget(make_app: Any, m2_config: Any) -> None:
    """The storefront form and the client API are public: over `limit_signups_per_ip` they
    answer 429 with Retry-After in Klaviyo's shapes, and nothing is stored."""
    app = make_app({**m2_config(), "restock": {"limit_signups_per_ip": 2}})
    client = TestClient(create_api(app))
    assert post_client(client, bis_body()).status_code == 202
    assert post_client(client, bis_body(email="bob@example.com")).status_code == 202
    throttled = post_client(client, bis_body(email="eve@example.com"))
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert klaviyo_error(throttled)["code"] == "throttled"
    form_answer = client.post(FORM, data=form(email="eve@example.com"))
    assert form_answer.status_code == 429
    assert int(form_answer.headers["retry-after"]) >= 1
    assert form_answer.json()["success"] is False
    assert {s.contact for s in app.list_subscriptions().items} == {
        "ada@example.com",
        "bob@example.com",
    }


def test_client_api_channel_no_provider_sends(make_app: Any, m2_config: Any, tmp_path: Any):
    """Only an email provider configured: SMS beside EMAIL is skipped, SMS alone is refused."""
    config = m2_config()
    config["plugins"][1]["options"]["channels"] = ["email"]
    app = make_app(config)
    client = TestClient(create_api(app))
    both = bis_body(channels=["EMAIL", "SMS"], phone="+14155550123")
    assert post_client(client, both).status_code == 202
    assert [str(s.channel) for s in app.list_subscriptions().items] == ["email"]
    sms = post_client(client, bis_body(channels=["SMS"], email=None, phone="+14155550124"))
    assert sms.status_code == 400
    assert klaviyo_error(sms)["source"] == {"pointer": "/data/attributes/channels"}
    assert len(app.list_subscriptions().items) == 1
