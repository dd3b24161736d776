"""Shopify orders for revenue attribution: the signed `orders/create` webhook (documented
payload, from restock_shopify.fake.order_payload) converts a notified subscriber once;
re-deliveries, other variants, test orders and orders outside the window count nothing;
`orders/cancelled` takes the conversion back. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from restock_shopify.fake import order_payload
from restock_shopify.orders import parse_order


def test_orders_create_converts_once(
    app: Any, notified: Callable[..., Any], post_order: Callable[..., Any]
) -> None:
    sid = notified(app).id
    body = order_payload(
        820982911946154508,
        variant=101,
        email="Jon@Example.com",
        quantity=2,
        customer_id=115310627314723954,
    )
    first = post_order(body, webhook_id="w1")
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "recorded", "conversions": 1}
    conversion = app.conversion_of(sid)
    assert (
        conversion.order_id,
        conversion.quantity,
        str(conversion.revenue),
        conversion.currency,
    ) == (
        "820982911946154508",
        2,
        "99.9800",
        "USD",
    )
    # Shopify re-delivers (same and new webhook id): nothing more
    assert post_order(body, webhook_id="w1").json()["conversions"] == 0
    assert post_order(body, webhook_id="w2").json()["conversions"] == 0

    cancelled = post_order(
        {**body, "cancelled_at": datetime.now(UTC).isoformat()}, "orders/cancelled"
    )
    assert cancelled.json() == {"status": "cancelled", "conversions_removed": 1}
    assert app.conversion_of(sid) is None


def test_what_does_not_convert(
    app: Any, notified: Callable[..., Any], post_order: Callable[..., Any]
) -> None:
    sid = notified(app).id
    assert (
        post_order(order_payload(1, variant=102, email="jon@example.com")).json()["conversions"]
        == 0
    )
    assert (
        post_order(order_payload(2, variant=101, email="eve@example.com")).json()["conversions"]
        == 0
    )
    assert (
        post_order(order_payload(3, variant=101, email="jon@example.com", test=True)).json()[
            "conversions"
        ]
        == 0
    )
    late = datetime.now(UTC) + timedelta(days=8)
    assert (
        post_order(order_payload(4, variant=101, email="jon@example.com", created_at=late)).json()[
            "conversions"
        ]
        == 0
    )
    assert app.conversion_of(sid) is None
    # without an email (POS, redacted data) only a customer id could match: this one has none
    assert (
        post_order(order_payload(5, variant=101, email=None, customer_id=77)).json()["conversions"]
        == 0
    )


def test_the_customer_id_matches_without_an_email(
    app: Any, notified: Callable[..., Any], post_order: Callable[..., Any]
) -> None:
    sub = notified(app, customer_id="gid://shopify/Customer/77")
    body = order_payload(6, variant=101, email=None, customer_id=77)
    assert post_order(body).json()["conversions"] == 1
    assert app.conversion_of(sub.id).order_id == "6"


def test_unsigned_or_malformed_orders_are_refused(app: Any, post_order: Callable[..., Any]) -> None:
    body = order_payload(9, variant=101, email="jon@example.com")
    assert post_order(body, secret="wrong-secret").status_code == 401
    assert post_order(body, secret=None).status_code == 401
    bad = post_order({**body, "id": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed"
    assert not app.store.orders.is_stored("shopify", "9")


def test_parse_order_reads_the_documented_sample() -> None:
    # the ids and amounts of Shopify's documented sample (reference/samples/
    # orders-shopify-orders-create-webhook.json)
    sample = order_payload(
        820982911946154508,
        variant=642667041472713922,
        email="jon@example.com",
        quantity=2,
        customer_id=115310627314723954,
    )
    sample["created_at"] = "2021-12-31T19:00:00-05:00"
    order = parse_order(sample, "shopify")
    assert order.order_id == "820982911946154508" and order.email == "jon@example.com"
    assert order.customer_id == "gid://shopify/Customer/115310627314723954"
    assert order.lines[0].variant_id == "gid://shopify/ProductVariant/642667041472713922"
    assert order.lines[0].quantity == 2 and str(order.lines[0].revenue) == "99.98"
    assert order.placed_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC) and order.currency == "USD"
