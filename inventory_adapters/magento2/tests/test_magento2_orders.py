"""Magento 2 orders for revenue attribution: `GET /V1/orders` polled with searchCriteria on
`created_at` against the fake (documented order shape: configurable parent + simple child);
a notified subscriber's order converts once, re-polls count nothing, other SKUs, cancelled
orders and orders outside the window count nothing. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from restock_magento2.fake import FakeMagento
from restock_magento2.orders import CANCELLED_CURSOR, fully_refunded, parse_order

from restock_core import StockKey, StockUpdate
from restock_core.testing import running_worker, wait_for


def magento_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def created_searches(fake: FakeMagento) -> list[Any]:
    field = "searchCriteria[filter_groups][0][filters][0][field]"
    return [r for r in fake.received("/V1/orders") if r.query[field] == ["created_at"]]


def cancellation_searches(fake: FakeMagento) -> list[Any]:
    field = "searchCriteria[filter_groups][0][filters][0][field]"
    return [r for r in fake.received("/V1/orders") if r.query[field] == ["updated_at"]]


def notified(app: Any, fake: FakeMagento, sku: str = "WS12-M-Orange") -> Any:
    fake.add_product(sku, name="Radiant Tee")
    fake.set_stock(StockKey(sku), 0)
    sub = app.subscribe(sku, email="jdoe@example.com", source="m2").subscription
    fake.set_stock(StockKey(sku), 4)
    app.record_stock("m2", [StockUpdate(StockKey(sku), 4, datetime.now(UTC))])
    app.worker().drain()
    sub = app.get_subscription(sub.id)
    assert sub.status == "notified"
    return sub


def test_polled_orders_convert_once(make_app: Any, m2_config: Any, fake: FakeMagento) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    adapter = app.adapters["m2"].obj
    soon = magento_time(sub.notified_at + timedelta(hours=2))
    fake.add_order(
        3,
        sku="WS12-M-Orange",
        email="JDoe@example.com",
        created_at=soon,
        qty=2,
        price=22.0,
        customer_id=3,
    )
    fake.add_order(4, sku="WS12-L-Blue", email="jdoe@example.com", created_at=soon)  # other SKU
    fake.add_order(5, sku="WS12-M-Orange", email="eve@example.com", created_at=soon)  # other person
    assert adapter.poll_orders() == 1
    conversion = app.conversion_of(sub.id)
    # the parent row's price and quantity; the child's 0 row is not counted again
    assert (conversion.order_id, conversion.quantity, conversion.revenue) == ("3", 2, Decimal("44"))
    assert adapter.poll_orders() == 0  # the same orders again: nothing twice
    [request, *_] = created_searches(fake)
    assert request.query["searchCriteria[filter_groups][0][filters][0][field]"] == ["created_at"]
    assert request.query["searchCriteria[filter_groups][0][filters][0][condition_type]"] == ["gteq"]
    assert request.query["searchCriteria[sortOrders][0][field]"] == ["created_at"]


def test_cancelled_and_late_orders_count_nothing(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    adapter = app.adapters["m2"].obj
    soon = magento_time(sub.notified_at + timedelta(hours=1))
    late = magento_time(sub.notified_at + timedelta(days=8))
    fake.add_order(
        7, sku="WS12-M-Orange", email="jdoe@example.com", created_at=soon, state="canceled"
    )
    fake.add_order(8, sku="WS12-M-Orange", email="jdoe@example.com", created_at=late)
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is None
    assert app.store.orders.is_stored("m2", "7") and app.store.orders.is_stored("m2", "8")


def test_the_poll_resumes_after_the_newest_recorded_order(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    adapter = app.adapters["m2"].obj
    fake.add_order(1, sku="A", email="a@example.com", created_at="2026-01-05 10:00:00")
    adapter.poll_orders()  # lookback: a day; the January order is too old
    assert not app.store.orders.is_stored("m2", "1")
    now = datetime.now(UTC)
    fake.add_order(
        2, sku="A", email="a@example.com", created_at=magento_time(now - timedelta(hours=1))
    )
    adapter.poll_orders()
    assert app.latest_order_at("m2") == (now - timedelta(hours=1)).replace(microsecond=0)
    adapter.poll_orders()
    last = created_searches(fake)[-1]
    since = last.query["searchCriteria[filter_groups][0][filters][0][value]"][0]
    assert since == magento_time(now - timedelta(hours=1, minutes=10))


def test_a_restart_resumes_the_cancellation_search_from_the_stored_cursor(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    placed = magento_time(sub.notified_at + timedelta(minutes=1))
    fake.add_order(6, sku="WS12-M-Orange", email="jdoe@example.com", created_at=placed)
    assert app.adapters["m2"].obj.poll_orders() == 1
    # the worker was down for three days since its last poll, and the order was cancelled
    # meanwhile (the fake does not check that a cancellation follows the order's creation)
    last_poll = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    app.set_plugin_state("m2", CANCELLED_CURSOR, last_poll.isoformat())
    fake.cancel_order(6, magento_time(datetime.now(UTC) - timedelta(days=2)))
    app.close()

    # a new process on the same database, lookback one day: the cancellation search starts
    # at the stored cursor, so the cancellation two days ago is found
    restarted = make_app(m2_config(orders_poll_interval=3600, orders_lookback=86400))
    fake.server.requests.clear()
    with running_worker(restarted):
        wait_for(lambda: restarted.conversion_of(sub.id) is None)
    field = "searchCriteria[filter_groups][0][filters][0][value]"
    newest = restarted.latest_order_at("m2") - timedelta(minutes=10)
    assert created_searches(fake)[0].query[field] == [magento_time(newest)]
    assert cancellation_searches(fake)[0].query[field] == [magento_time(last_poll)]


def test_parse_order_counts_top_level_rows_only() -> None:
    fake = FakeMagento()
    order = fake.add_order(
        9,
        sku="WS12-M-Orange",
        email="jdoe@example.com",
        created_at="2017-08-21 22:22:19",
        qty=1,
        price=22.0,
        customer_id=3,
    )
    parsed = parse_order(order, "m2")
    assert parsed is not None
    assert [(line.variant_id, line.quantity, line.revenue) for line in parsed.lines] == [
        ("WS12-M-Orange", 1, Decimal("22.0"))
    ]
    assert parsed.placed_at == datetime(2017, 8, 21, 22, 22, 19, tzinfo=UTC)
    assert parsed.customer_id == "3" and parsed.currency == "USD"


def test_a_late_cancellation_takes_the_conversion_back(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    adapter = app.adapters["m2"].obj
    placed = sub.notified_at + timedelta(minutes=30)
    fake.add_order(
        3, sku="WS12-M-Orange", email="jdoe@example.com", created_at=magento_time(placed)
    )
    fake.add_order(4, sku="WS12-M-Orange", email="eve@example.com", created_at=magento_time(placed))
    assert adapter.poll_orders() == 1
    assert app.conversion_of(sub.id) is not None

    # cancelled after the first read: created_at does not move, updated_at does
    fake.cancel_order(3, magento_time(datetime.now(UTC)))
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is None
    assert app.store.orders.is_stored("m2", "4")  # the other order is untouched

    # the search: updated_at gteq <where the previous poll started − 10 min> AND state eq
    # canceled (two filter groups), sorted by updated_at
    first, second = cancellation_searches(fake)[-2:]
    query = second.query
    assert query["searchCriteria[filter_groups][0][filters][0][condition_type]"] == ["gteq"]
    assert query["searchCriteria[filter_groups][1][filters][0][field]"] == ["state"]
    assert query["searchCriteria[filter_groups][1][filters][0][value]"] == ["canceled"]
    assert query["searchCriteria[sortOrders][0][field]"] == ["updated_at"]
    cursor = query["searchCriteria[filter_groups][0][filters][0][value]"][0]
    previous = first.query["searchCriteria[filter_groups][0][filters][0][value]"][0]
    assert previous < cursor <= magento_time(datetime.now(UTC) - timedelta(minutes=10))


def test_cancellations_are_searched_on_the_worker_schedule(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config(orders_poll_interval=0.05))
    sub = notified(app, fake)
    placed = magento_time(sub.notified_at + timedelta(minutes=1))
    fake.add_order(5, sku="WS12-M-Orange", email="jdoe@example.com", created_at=placed)
    assert fake.received("/V1/orders") == []  # nothing polls outside the worker
    with running_worker(app):
        wait_for(lambda: app.conversion_of(sub.id))
        fake.cancel_order(5, magento_time(datetime.now(UTC)))
        wait_for(lambda: app.conversion_of(sub.id) is None)


def test_a_full_refund_takes_the_conversion_back_and_a_partial_one_does_not(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    adapter = app.adapters["m2"].obj
    placed = magento_time(sub.notified_at + timedelta(minutes=30))
    fake.add_order(3, sku="WS12-M-Orange", email="jdoe@example.com", created_at=placed, qty=2)
    assert adapter.poll_orders() == 1
    assert app.conversion_of(sub.id).revenue == Decimal("44")

    # one of the two units comes back: the core takes back whole orders only
    fake.refund_order(3, 1, magento_time(datetime.now(UTC)))
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is not None
    memos = fake.received("/V1/creditmemos")[-1]  # one search a poll
    assert memos.query["searchCriteria[filter_groups][0][filters][0][field]"] == ["created_at"]
    assert memos.query["searchCriteria[filter_groups][0][filters][0][condition_type]"] == ["gteq"]
    reads = [r for r in fake.received("/V1/orders") if "entity_id" in str(r.query)]
    assert reads[-1].query["searchCriteria[filter_groups][0][filters][0][value]"] == ["3"]
    assert reads[-1].query["searchCriteria[filter_groups][0][filters][0][condition_type]"] == ["in"]

    # the second unit too: every line is refunded, the conversion is taken back
    fake.refund_order(3, 1, magento_time(datetime.now(UTC)))
    assert adapter.poll_orders() == 0
    assert app.conversion_of(sub.id) is None
    assert fake.orders[0]["state"] == "closed"
    # read again within the overlap: nothing more happens
    assert adapter.poll_orders() == 0


def test_an_order_refunded_before_it_was_first_read_counts_nothing(
    make_app: Any, m2_config: Any, fake: FakeMagento
) -> None:
    app = make_app(m2_config())
    sub = notified(app, fake)
    placed = magento_time(sub.notified_at + timedelta(minutes=30))
    fake.add_order(8, sku="WS12-M-Orange", email="jdoe@example.com", created_at=placed)
    fake.refund_order(8, 1, magento_time(datetime.now(UTC)))
    assert app.adapters["m2"].obj.poll_orders() == 0
    assert app.conversion_of(sub.id) is None
    assert app.store.orders.is_stored("m2", "8")


def test_fully_refunded_reads_the_counted_rows_only() -> None:
    fake = FakeMagento()
    order = fake.add_order(9, sku="WS12-M-Orange", email="a@example.com", created_at="", qty=2)
    assert fully_refunded(order) is False
    fake.refund_order(9, 2, "2026-01-01 00:00:00")
    assert fully_refunded(order) is True
    # the simple child row alone refunded (it never carries the price) is not a refund
    order["items"][0]["qty_refunded"] = 0
    assert fully_refunded(order) is False
    order["items"][0]["qty_canceled"] = 2  # cancelled units count as given back
    assert fully_refunded(order) is True
    assert fully_refunded({"items": []}) is None
    memo = fake.creditmemos[0]
    assert (memo["order_id"], memo["grand_total"]) == (9, 44.0)
    assert [(i["order_item_id"], i["qty"], i["row_total"]) for i in memo["items"]] == [
        (90, 2, 44.0),
        (91, 2, 0),
    ]
