"""Shopify order reconciliation: the GraphQL `orders` read by `updated_at` (cursor paging,
cost throttling) against the fake, which speaks the documented shape. It catches an order
whose webhook never arrived, a cancellation whose webhook was lost, counts an order seen
through both paths once, runs on its schedule in the worker only (not in an API process), and
resumes from its stored cursor after a restart. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from restock_shopify.fake import FakeShopify, order_payload
from restock_shopify.order_sync import (
    CURSOR,
    order_cost,
    page_size,
    parse_graphql_order,
    search_time,
)

from restock_core.api import create_api
from restock_core.testing import running_worker, wait_for


def order_requests(fake: FakeShopify) -> list[dict[str, Any]]:
    return [r.json for r in fake.graphql_requests() if "orders(" in r.json["query"]]


def test_a_missed_webhook_is_caught_once(
    app: Any, fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    sub = notified(app)
    fake.add_order(
        order_payload(
            820982911946154508,
            variant=101,
            email="Jon@Example.com",
            quantity=2,
            created_at=sub.notified_at + timedelta(minutes=3),
        )
    )
    fake.add_order(order_payload(2, variant=102, email="jon@example.com"))  # another variant
    adapter = app.adapters["shopify"].obj
    assert adapter.poll_orders() == 1
    conversion = app.conversion_of(sub.id)
    assert (conversion.order_id, conversion.quantity, conversion.revenue, conversion.currency) == (
        "820982911946154508",
        2,
        Decimal("99.98"),
        "USD",
    )
    assert adapter.poll_orders() == 0  # read again (overlap): nothing twice
    [first, *_] = order_requests(fake)
    assert first["variables"]["query"].startswith("updated_at:>='")
    assert "sortKey: UPDATED_AT" in first["query"] and first["variables"]["after"] is None
    assert app.store.orders.is_stored("shopify", "2")


def test_the_webhook_and_the_read_count_one_order_once(
    app: Any, post_order: Callable[..., Any], fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    sub = notified(app)
    body = fake.add_order(order_payload(7001, variant=101, email="jon@example.com"))
    response = post_order(body)
    assert response.json() == {"status": "recorded", "conversions": 1}
    # the GraphQL read names the same order by its gid; legacyResourceId is the webhook id
    assert app.adapters["shopify"].obj.poll_orders() == 0
    assert app.conversion_of(sub.id).order_id == "7001"


def test_a_lost_cancellation_takes_the_conversion_back(
    app: Any, fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    sub = notified(app)
    adapter = app.adapters["shopify"].obj
    fake.add_order(order_payload(7002, variant=101, email="jon@example.com"))
    assert adapter.poll_orders() == 1
    fake.cancel_order(7002)  # no orders/cancelled webhook arrives
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is None
    # a test order and an order cancelled before restock first saw it convert nothing
    fake.add_order(order_payload(7003, variant=101, email="jon@example.com", test=True))
    fake.add_order(
        order_payload(7004, variant=101, email="jon@example.com", cancelled_at=datetime.now(UTC))
    )
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is None


def test_pages_follow_the_cursor_and_costly_pages_are_halved(
    app: Any, make_adapter: Any, fake: FakeShopify
) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    for n in range(5):
        fake.add_order(
            order_payload(
                8000 + n,
                variant=101,
                email=f"p{n}@example.com",
                created_at=base + timedelta(minutes=n),
            )
        )
    # max_query_cost 5000 asks for pages the fake (as Shopify) refuses above 1000: halved
    adapter = make_adapter(max_query_cost=5000, orders_max_lines=20)
    adapter.bind(app, "shopify")
    try:
        adapter.poll_orders()
    finally:
        adapter.close()
    requests = order_requests(fake)
    sizes = [r["variables"]["first"] for r in requests]
    assert sizes[0] == page_size(5000, 20) and sizes[1] == sizes[0] // 2
    assert all(app.store.orders.is_stored("shopify", str(8000 + n)) for n in range(5))

    # small pages: the cursor of each page is the `after` of the next
    fake.server.requests.clear()
    small = make_adapter(max_query_cost=2 + 2 * order_cost(20))
    small.bind(app, "shopify")
    try:
        small.poll_orders(since=base - timedelta(minutes=1))
    finally:
        small.close()
    pages = order_requests(fake)
    assert [r["variables"]["first"] for r in pages] == [2, 2, 2]
    assert pages[0]["variables"]["after"] is None
    assert pages[1]["variables"]["after"] and pages[2]["variables"]["after"]
    assert pages[1]["variables"]["after"] != pages[2]["variables"]["after"]


def test_a_throttled_read_waits_and_goes_on(
    app: Any, fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    sub = notified(app)
    fake.add_order(order_payload(7005, variant=101, email="jon@example.com"))
    before = len(order_requests(fake))
    fake.throttle(1)  # the documented THROTTLED answer with extensions.cost
    assert app.adapters["shopify"].obj.poll_orders() == 1
    assert len(fake.graphql_requests()) >= before + 2
    assert app.conversion_of(sub.id) is not None


def test_the_read_runs_on_its_schedule_in_the_worker_only(
    make_app: Any, shopify_config: Any, fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    app = make_app(shopify_config(orders_poll_interval=0.05))
    sub = notified(app)
    fake.add_order(order_payload(7006, variant=101, email="jon@example.com"))
    # an API process (`restock serve --no-worker`) reads no orders
    with TestClient(create_api(app)) as client:
        assert client.get("/health").status_code == 200
    assert order_requests(fake) == []
    # the worker does, on the adapter's schedule
    with running_worker(app) as worker:
        conversion = wait_for(lambda: app.conversion_of(sub.id))
    assert not worker.is_alive()
    assert conversion.order_id == "7006"


def test_the_first_pass_ever_reaches_back_to_the_newest_recorded_order(
    app: Any, fake: FakeShopify
) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    fake.add_order(order_payload(7007, variant=101, email="jon@example.com", created_at=old))
    adapter = app.adapters["shopify"].obj
    adapter.poll_orders(since=old - timedelta(minutes=1))
    # no stored cursor (a first pass ever): the newest recorded order − 10 min, since that
    # is earlier than `orders_lookback` (a day)
    app.set_plugin_state("shopify", CURSOR, None)
    fake.server.requests.clear()
    adapter.poll_orders()
    search = order_requests(fake)[0]["variables"]["query"]
    expected = (app.latest_order_at("shopify") - timedelta(minutes=10)).replace(microsecond=0)
    assert search == f"updated_at:>='{search_time(expected)}'"


def test_a_restart_resumes_from_the_stored_cursor(
    make_app: Any, shopify_config: Any, fake: FakeShopify, notified: Callable[..., Any]
) -> None:
    app = make_app(shopify_config())
    sub = notified(app)
    fake.add_order(order_payload(7008, variant=101, email="jon@example.com"))
    started = datetime.now(UTC)
    assert app.adapters["shopify"].obj.poll_orders() == 1
    stored = datetime.fromisoformat(app.plugin_state("shopify", CURSOR))
    # where the pass started, minus the 10-minute overlap
    assert started - timedelta(minutes=10) <= stored <= datetime.now(UTC) - timedelta(minutes=10)

    # the worker was down for three days: its last pass started then. During the downtime
    # the order was cancelled and the orders/cancelled webhook got lost. (The fake does not
    # check that a cancellation follows the order's creation.)
    last_pass = datetime.now(UTC) - timedelta(days=3)
    app.set_plugin_state("shopify", CURSOR, last_pass.isoformat())
    fake.cancel_order(7008, datetime.now(UTC) - timedelta(days=2))
    app.close()

    # a restarted app (new process, same database) with a one-day lookback: the first pass
    # starts at the stored cursor, so the cancellation two days ago is found
    fake.server.requests.clear()
    restarted = make_app(shopify_config(orders_poll_interval=3600, orders_lookback=86400))
    with running_worker(restarted):
        wait_for(lambda: restarted.conversion_of(sub.id) is None)
    search = order_requests(fake)[0]["variables"]["query"]
    assert search == f"updated_at:>='{search_time(last_pass)}'"
    newer = datetime.fromisoformat(restarted.plugin_state("shopify", CURSOR))
    assert newer > last_pass + timedelta(days=2)


def test_parse_graphql_order_reads_the_documented_fields() -> None:
    node = {
        "id": "gid://shopify/Order/148977776",
        "legacyResourceId": "148977776",
        "createdAt": "2024-05-01T10:00:00-04:00",
        "updatedAt": "2024-05-02T10:00:00Z",
        "cancelledAt": None,
        "test": False,
        "email": "bob@example.com",
        "phone": "+16135551111",
        "currencyCode": "CAD",
        "customer": {"id": "gid://shopify/Customer/544365967"},
        "totalPriceSet": {"shopMoney": {"amount": "11.94", "currencyCode": "CAD"}},
        "lineItems": {
            "nodes": [
                {
                    "quantity": 3,
                    "currentQuantity": 2,  # one unit removed
                    "variant": {"id": "gid://shopify/ProductVariant/49148385"},
                    "originalUnitPriceSet": {
                        "shopMoney": {"amount": "3.98", "currencyCode": "CAD"}
                    },
                },
                {"quantity": 1, "currentQuantity": 1, "variant": None},  # custom item
            ],
            "pageInfo": {"hasNextPage": False},
        },
    }
    order = parse_graphql_order(node, "shopify")
    assert order is not None
    assert (order.order_id, order.currency, order.total) == ("148977776", "CAD", Decimal("11.94"))
    assert order.placed_at == datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    assert order.customer_id == "gid://shopify/Customer/544365967" and order.phone == "+16135551111"
    assert [(x.variant_id, x.quantity, x.revenue) for x in order.lines] == [
        ("gid://shopify/ProductVariant/49148385", 2, Decimal("7.96"))
    ]
    assert parse_graphql_order({**node, "cancelledAt": "2024-05-03T00:00:00Z"}, "s").cancelled
    assert parse_graphql_order({"id": "gid://shopify/Order/x"}, "s") is None
