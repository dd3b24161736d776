"""The HTTP API through FastAPI's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from restock_core.api import create_api

ADMIN = {"Authorization": "Bearer test-admin"}


@pytest.fixture
def client(make_app):
    app = make_app({"restock": {"admin_api_key": "test-admin", "max_body_bytes": 2048}})
    with TestClient(create_api(app), raise_server_exceptions=False) as test_client:
        test_client.restock = app
        yield test_client


def test_sign_up_created_then_existing(client) -> None:
    # with a key (a shop's backend): 201 new, 200 existing, the full record
    first = client.post(
        "/subscriptions", json={"variant_id": "v1", "email": "Ada@example.com"}, headers=ADMIN
    )
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "pending" and body["email"] == "ada@example.com" and body["id"]
    again = client.post(
        "/subscriptions", json={"variant_id": "v1", "email": "ada@example.com"}, headers=ADMIN
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]


def test_public_sign_up_answers_accepted(client) -> None:
    # without a key: the same answer for a new and a repeat sign-up (tests/test_edge.py)
    for _ in range(2):
        answer = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
        assert answer.status_code == 202 and answer.json() == {"status": "accepted"}
    assert len(client.restock.list_subscriptions().items) == 1


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"variant_id": "v1", "email": "nope"}, 422, "email"),
        ({"variant_id": "v1", "phone": "555"}, 422, "phone"),
        ({"email": "a@example.com"}, 422, "variant_id"),
        ({"variant_id": "", "email": "a@example.com"}, 422, "variant_id"),
        ({"variant_id": "v1", "email": "a@example.com", "channel": "fax"}, 422, "channel"),
        ({"variant_id": "v1", "email": "a@example.com", "colour": "red"}, 422, "colour"),
        ({"variant_id": 5, "email": "a@example.com"}, 422, "variant_id"),
    ],
)
def test_bad_sign_up_gets_4xx_json_naming_the_field(client, payload, status, field) -> None:
    response = client.post("/subscriptions", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["field"] == field and error["message"] and error["code"]


def test_malformed_and_oversized_bodies(client) -> None:
    bad = client.post(
        "/subscriptions", content=b'{"variant_id": ', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed"
    big = client.post(
        "/subscriptions",
        json={"variant_id": "v1", "email": "a@example.com", "attributes": {"x": "y" * 5000}},
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
    assert client.restock.list_subscriptions().items == ()


def test_json_nested_past_the_parsers_limit_is_a_400(make_app) -> None:
    """Nesting past the JSON parser's recursion limit, within the default body limit: a
    clear 400 like any malformed body, never a 500, and nothing stored."""
    app = make_app({"restock": {"admin_api_key": "test-admin"}})
    with TestClient(create_api(app), raise_server_exceptions=False) as client:
        deep = client.post(
            "/subscriptions",
            content=b'{"variant_id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert deep.status_code == 400
        assert deep.json()["error"]["code"] == "malformed"
    assert app.list_subscriptions().items == ()


def test_in_stock_is_409(client) -> None:
    assert client.put("/stock/v1", json={"quantity": 3}, headers=ADMIN).status_code == 200
    response = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "in_stock"


def test_admin_routes_need_the_key(client) -> None:
    assert client.put("/stock/v1", json={"quantity": 1}).status_code == 401
    assert (
        client.put(
            "/stock/v1", json={"quantity": 1}, headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )
    assert client.get("/subscriptions").status_code == 401
    assert client.get("/subscriptions/1").json()["error"]["code"] == "unauthorized"


def test_stock_put_validation(client) -> None:
    assert (
        client.put("/stock/v1", json={"quantity": -1}, headers=ADMIN).json()["error"]["field"]
        == "quantity"
    )
    assert client.put("/stock/v1", json={"quantity": "many"}, headers=ADMIN).status_code == 422
    assert (
        client.put("/stock/v1", json={"quantity": 1, "source": "shopify"}, headers=ADMIN).json()[
            "error"
        ]["field"]
        == "source"
    )


def test_restock_through_http_notifies(client) -> None:
    client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    response = client.put("/stock/v1", json={"quantity": 2}, headers=ADMIN)
    assert response.json()["restocks_opened"]
    client.restock.worker().drain()
    listing = client.get(
        "/subscriptions", params={"variant_id": "v1", "status": "notified"}, headers=ADMIN
    ).json()
    assert [item["email"] for item in listing["items"]] == ["a@example.com"]
    assert listing["items"][0]["notified_at"]


def test_admin_reads_paginate_and_404(client) -> None:
    for i in range(3):
        client.post("/subscriptions", json={"variant_id": "v1", "email": f"p{i}@example.com"})
    page = client.get("/subscriptions", params={"limit": 2}, headers=ADMIN).json()
    assert len(page["items"]) == 2 and page["next_after"]
    rest = client.get("/subscriptions", params={"after": page["next_after"]}, headers=ADMIN).json()
    assert len(rest["items"]) == 1 and rest["next_after"] is None
    assert (
        client.get("/subscriptions", params={"status": "bogus"}, headers=ADMIN).status_code == 422
    )
    assert client.get("/subscriptions", params={"limit": 0}, headers=ADMIN).status_code == 422
    missing = client.get("/subscriptions/999999", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/subscriptions/abc", headers=ADMIN).status_code == 422
    assert client.get(f"/subscriptions/{2**70}", headers=ADMIN).status_code == 404
    assert client.get("/subscriptions", params={"after": 2**70}, headers=ADMIN).status_code == 422


def test_unsubscribe_page_and_one_click(client) -> None:
    sub = client.post(
        "/subscriptions", json={"variant_id": "v1", "email": "a@example.com"}, headers=ADMIN
    ).json()
    token = client.restock.unsubscribe_url(sub["id"]).rsplit("/", 1)[1]
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200 and "<form" in page.text
    assert client.restock.get_subscription(sub["id"]).status == "pending"  # GET changes nothing
    one_click = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
    )
    assert one_click.status_code == 200 and one_click.json()["status"] == "unsubscribed"
    body, mac = token.split(".")
    forged_mac = ("B" if mac[0] == "A" else "A") + mac[1:]  # a full base64 digit: always a new MAC
    tampered = client.post(f"/unsubscribe/{body}.{forged_mac}")
    assert tampered.status_code == 404 and tampered.json()["error"]["code"] == "not_found"
    assert client.get("/unsubscribe/garbage").status_code == 404


def test_health_metrics_docs(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    metrics = client.get("/metrics").text
    assert 'restock_signups_total{channel="email"} 1.0' in metrics
    assert 'restock_subscriptions{status="pending"} 1.0' in metrics
    assert "restock_oldest_queued_age_seconds" in metrics
    assert client.get("/openapi.json").json()["paths"]["/subscriptions"]
    assert client.get("/docs").status_code == 200
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"
    assert client.delete("/health").status_code == 405


class StatsPlugin:
    """A plugin that mounts its own routes through the register_routes hook."""

    from restock_core.hookspecs import hookimpl

    @hookimpl
    def register_routes(self, register, app):  # type: ignore[no-untyped-def]
        from fastapi import APIRouter

        router = APIRouter()

        @router.get("/stats")
        def stats() -> dict:
            return app.counts()

        register("/stats-plugin", router)


def test_plugins_mount_routes_through_the_hook(make_app) -> None:
    app = make_app(plugins=[StatsPlugin()])
    app.subscribe("v1", email="a@example.com")
    with TestClient(create_api(app)) as test_client:
        assert test_client.get("/stats-plugin/stats").json()["subscriptions"] == {"pending": 1}
