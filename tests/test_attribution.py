"""Attribution rules on plain values (restock_core.attribution), then end to end through the
generic `POST /orders`, the conversion report, /metrics and the `conversion_recorded` hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from restock_core import Conversion, Order, OrderLine, hookimpl
from restock_core.api import create_api
from restock_core.app import App
from restock_core.attribution import Candidate, match, merge_lines

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def order(**overrides: Any) -> Order:
    values: dict[str, Any] = {
        "source": "catalog",
        "order_id": "o1",
        "placed_at": T0 + timedelta(days=1),
        "currency": "EUR",
        "lines": (OrderLine("v1", 2, Decimal("30.00")),),
        "email": "ada@example.com",
    }
    values.update(overrides)
    return Order(**values)


def candidate(sid: int = 1, **overrides: Any) -> Candidate:
    values: dict[str, Any] = {
        "subscription_id": sid,
        "source": "catalog",
        "variant_id": "v1",
        "contact": "ada@example.com",
        "customer_id": None,
        "notified_at": T0,
    }
    values.update(overrides)
    return Candidate(**values)


def test_a_line_within_the_window_converts() -> None:
    [conversion] = match(order(), [candidate()], WEEK)
    assert (conversion.subscription_id, conversion.quantity, conversion.revenue) == (
        1,
        2,
        Decimal("30.00"),
    )
    assert conversion.currency == "EUR" and conversion.notified_at == T0


@pytest.mark.parametrize(
    ("order_changes", "candidate_changes"),
    [
        ({"placed_at": T0 + WEEK + timedelta(seconds=1)}, {}),  # after the window
        ({"placed_at": T0 - timedelta(seconds=1)}, {}),  # before the notification
        ({"lines": (OrderLine("v2", 1, Decimal(5)),)}, {}),  # another variant
        ({"email": "bob@example.com"}, {}),  # another person
        ({}, {"source": "shopify"}),  # the same id on another platform
        ({"cancelled": True}, {}),
        ({"test": True}, {}),
    ],
)
def test_nothing_converts(order_changes: dict[str, Any], candidate_changes: dict[str, Any]) -> None:
    assert match(order(**order_changes), [candidate(**candidate_changes)], WEEK) == []


def test_phone_and_customer_id_match_too() -> None:
    by_phone = candidate(contact="+14155550100")
    assert match(order(email=None, phone="+14155550100"), [by_phone], WEEK)
    by_customer = candidate(contact="other@example.com", customer_id="cus_1")
    assert match(order(customer_id="cus_1"), [by_customer], WEEK)
    assert not match(order(customer_id="cus_2"), [by_customer], WEEK)


def test_the_latest_notification_gets_the_line_and_converted_ones_are_skipped() -> None:
    older = candidate(1, notified_at=T0 - timedelta(days=2))
    newer = candidate(2, contact="+14155550100", notified_at=T0)
    both = order(phone="+14155550100")
    assert [c.subscription_id for c in match(both, [older, newer], WEEK)] == [2]
    assert [c.subscription_id for c in match(both, [older, newer], WEEK, {2})] == [1]


def test_lines_of_one_variant_are_merged() -> None:
    merged = merge_lines(
        [
            OrderLine("v1", 1, Decimal("10")),
            OrderLine("v1", 2, Decimal("18")),
            OrderLine("v2", 0, Decimal(0)),
        ]
    )
    assert merged == {"v1": OrderLine("v1", 3, Decimal("28"))}


# ---------------------------------------------------------------------- end to end

SECRET = "sk-test-0123456789abcdef"
ADMIN = "admin-test-key"


class Conversions:
    def __init__(self) -> None:
        self.seen: list[Conversion] = []

    @hookimpl
    def conversion_recorded(self, conversion: Conversion) -> None:
        self.seen.append(conversion)


def notified_app(make_app: Any, recorder: Conversions, **settings: Any) -> tuple[App, TestClient]:
    app = make_app(
        {
            "restock": {"secret_api_key": SECRET, "admin_api_key": ADMIN, **settings},
            "plugins": [{"resolve": "logger"}, {"resolve": "catalog"}],
        },
        plugins=[recorder],
    )
    client = TestClient(create_api(app))
    return app, client


def secret() -> dict[str, str]:
    return {"authorization": f"Bearer {SECRET}"}


def sign_up_and_notify(client: TestClient, app: App, email: str, variant: str) -> int:
    products = {
        "products": [
            {
                "productId": "p1",
                "title": "Tee",
                "variants": [{"variantId": variant, "inventoryQuantity": 0}],
            }
        ]
    }
    assert client.post("/api/v1/products", json=products, headers=secret()).status_code == 200
    answer = client.post(
        "/api/v1/back-in-stock",
        json={"productId": "p1", "variantId": variant, "customer": {"email": email}},
        headers=secret(),
    ).json()
    products["products"][0]["variants"][0]["inventoryQuantity"] = 5
    assert client.post("/api/v1/products", json=products, headers=secret()).status_code == 200
    app.worker().drain()
    sid = int(answer["subscriberId"])
    assert app.get_subscription(sid).status == "notified"
    return sid


def post_order(client: TestClient, order_id: str, variant: str, email: str, **extra: Any) -> Any:
    body = {
        "orderId": order_id,
        "totalCents": 5998,
        "currency": "usd",
        "customer": {"email": email},
        "items": [
            {
                "productId": "p1",
                "variantId": variant,
                "title": "Tee",
                "quantity": 2,
                "priceCents": 2999,
            }
        ],
        **extra,
    }
    response = client.post("/orders", json=body, headers=secret())
    assert response.status_code == 200, response.text
    return response.json()


def test_an_order_after_a_notification_converts_once(make_app: Any) -> None:
    recorder = Conversions()
    app, client = notified_app(make_app, recorder)
    sid = sign_up_and_notify(client, app, "Ada@Example.com", "v1")

    first = post_order(client, "1001", "v1", "ada@example.COM")
    assert [c["subscription_id"] for c in first["conversions"]] == [sid]
    assert first["conversions"][0]["revenue"] == "59.98"
    again = post_order(client, "1001", "v1", "ada@example.com")  # a re-delivered order
    assert again["duplicate"] is True and again["conversions"] == []
    other = post_order(client, "1002", "v1", "ada@example.com")  # converted already
    assert other["conversions"] == []
    assert len(recorder.seen) == 1

    shown = client.get(f"/subscriptions/{sid}", headers={"authorization": f"Bearer {ADMIN}"})
    assert shown.json()["conversion"]["order_id"] == "1001"
    assert shown.json()["conversion"]["currency"] == "USD"

    report = client.get("/reports/conversions", headers=secret()).json()
    assert (report["notified"], report["converted"], report["conversion_rate"]) == (1, 1, 1.0)
    assert report["totals"] == [
        {"currency": "USD", "conversions": 1, "quantity": 2, "revenue": "59.98"}
    ]
    assert report["variants"][0]["revenue"] == {"USD": "59.98"}
    later = client.get(
        "/reports/conversions", params={"from": "2999-01-01"}, headers=secret()
    ).json()
    assert later["notified"] == 0 and later["conversion_rate"] == 0.0

    metrics = client.get("/metrics").text
    assert "restock_conversions_total 1.0" in metrics
    assert 'restock_revenue_total{currency="USD"} 59.98' in metrics


def test_another_variant_or_outside_the_window_counts_nothing(make_app: Any) -> None:
    recorder = Conversions()
    app, client = notified_app(make_app, recorder)
    sign_up_and_notify(client, app, "ada@example.com", "v1")
    assert post_order(client, "2001", "v2", "ada@example.com")["conversions"] == []
    late = (datetime.now(UTC) + timedelta(days=8)).isoformat()
    assert post_order(client, "2002", "v1", "ada@example.com", orderedAt=late)["conversions"] == []
    early = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert post_order(client, "2003", "v1", "ada@example.com", orderedAt=early)["conversions"] == []
    assert post_order(client, "2004", "v1", "bob@example.com")["conversions"] == []
    assert recorder.seen == []
    report = client.get("/reports/conversions", headers={"authorization": f"Bearer {ADMIN}"})
    assert report.json()["converted"] == 0 and report.json()["notified"] == 1


def test_a_cancelled_order_takes_its_conversion_back(make_app: Any) -> None:
    app, client = notified_app(make_app, Conversions())
    sid = sign_up_and_notify(client, app, "ada@example.com", "v1")
    assert post_order(client, "3001", "v1", "ada@example.com")["conversions"]
    cancelled = post_order(client, "3001", "v1", "ada@example.com", status="cancelled")
    assert cancelled["conversionsRemoved"] == 1
    assert app.conversion_of(sid) is None


def test_orders_need_the_secret_key_and_valid_bodies(make_app: Any) -> None:
    app, client = notified_app(make_app, Conversions())
    body = {
        "orderId": "x",
        "totalCents": 1,
        "currency": "EUR",
        "customer": {},
        "items": [{"productId": "p", "quantity": 1}],
    }
    assert client.post("/orders", json=body).status_code == 401
    assert (
        client.post("/orders", json=body, headers={"authorization": "Bearer nope"}).status_code
        == 401
    )
    refused = client.post("/orders", json=body, headers=secret())
    assert refused.status_code == 422
    assert (
        refused.json()["success"] is False and refused.json()["error"]["field"] == "customer.email"
    )
    body["items"] = []
    assert client.post("/orders", json=body, headers=secret()).json()["error"]["field"] == "items"
    assert (
        client.get(
            "/reports/conversions", params={"from": "yesterday"}, headers=secret()
        ).status_code
        == 422
    )
    assert client.get("/reports/conversions").status_code == 401


def test_the_dashboard_shows_revenue(make_app: Any) -> None:
    import re

    app, client = notified_app(make_app, Conversions())
    sign_up_and_notify(client, app, "ada@example.com", "v1")
    post_order(client, "5001", "v1", "ada@example.com")
    form = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    client.post(
        "/admin/login",
        data={"csrf": token, "key": ADMIN, "next": "/admin/revenue"},
        follow_redirects=False,
    )
    page = client.get("/admin/revenue")
    assert page.status_code == 200
    assert "Revenue USD" in page.text and "59.98" in page.text and "100.0 %" in page.text
