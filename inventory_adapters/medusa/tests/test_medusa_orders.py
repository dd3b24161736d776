"""Medusa orders for revenue attribution against the fake backend: `order.placed` through the
signed forwarder route (the order is read with the Admin API), `order.canceled`, and the
Admin API reconciliation read; once per subscription, nothing for other variants, drafts or
orders outside the window. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from restock_medusa import sign
from restock_medusa.testing import EVENT_SECRET, SC_A, FakeMedusa, medusa_options

from restock_core import StockKey, StockUpdate
from restock_core.api import create_api
from restock_core.app import App
from restock_core.db import conversions
from restock_core.testing import wait_for


@pytest.fixture
def app(make_app: Callable[..., App], fake_medusa: FakeMedusa, tmp_path: Path) -> App:
    return make_app(
        {
            "plugins": [
                {"resolve": "logger", "options": {"file": str(tmp_path / "out.jsonl")}},
                {"resolve": "medusa", "id": "shop", "options": medusa_options(fake_medusa.url)},
            ]
        }
    )


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app)) as test_client:
        yield test_client


def post_event(client: TestClient, name: str, order_id: str, event_id: str) -> Any:
    body = json.dumps({"id": event_id, "name": name, "data": {"id": order_id}}).encode()
    headers = {"content-type": "application/json", "x-restock-event-id": event_id}
    headers.update(sign(EVENT_SECRET, body))
    return client.post("/shop/events", content=body, headers=headers)


def notified(app: App, fake: FakeMedusa) -> Any:
    fake.add_variant("variant_1", stock={SC_A: 0})
    sub = app.subscribe(
        "variant_1", email="jane@example.com", scope=SC_A, source="shop"
    ).subscription
    fake.set_stock(StockKey("variant_1", SC_A), 3)
    app.record_stock("shop", [StockUpdate(StockKey("variant_1", SC_A), 3, datetime.now(UTC))])
    app.worker().drain()
    sub = app.get_subscription(sub.id)
    assert sub.status == "notified"
    return sub


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_order_placed_converts_once(app: App, client: TestClient, fake_medusa: FakeMedusa) -> None:
    sub = notified(app, fake_medusa)
    fake_medusa.add_order(
        "order_1",
        variant_id="variant_1",
        email="Jane@Example.com",
        created_at=iso(sub.notified_at + timedelta(hours=1)),
        quantity=2,
        unit_price=20,
    )
    first = post_event(client, "order.placed", "order_1", "evt-1")
    assert first.status_code == 200, first.text
    assert first.json()["conversions"] == 1
    conversion = app.conversion_of(sub.id)
    assert (conversion.order_id, conversion.quantity, conversion.revenue, conversion.currency) == (
        "order_1",
        2,
        Decimal("40"),
        "EUR",
    )
    assert post_event(client, "order.placed", "order_1", "evt-1").json()["status"] == "duplicate"
    assert post_event(client, "order.placed", "order_1", "evt-2").json()["conversions"] == 0
    canceled = post_event(client, "order.canceled", "order_1", "evt-3").json()
    assert canceled["conversions_removed"] == 1 and app.conversion_of(sub.id) is None
    # the Admin API read uses the secret key and asks for the totals explicitly
    [read, *_] = [r for r in fake_medusa.server.requests if r.path == "/admin/orders/order_1"]
    assert "items.total" in read.query["fields"][0]


def test_what_does_not_convert(app: App, client: TestClient, fake_medusa: FakeMedusa) -> None:
    sub = notified(app, fake_medusa)
    soon = iso(sub.notified_at + timedelta(hours=1))
    fake_medusa.add_variant("variant_2", stock={SC_A: 5})
    fake_medusa.add_order(
        "order_2", variant_id="variant_2", email="jane@example.com", created_at=soon
    )
    fake_medusa.add_order(
        "order_3",
        variant_id="variant_1",
        email="jane@example.com",
        created_at=soon,
        is_draft_order=True,
    )
    fake_medusa.add_order(
        "order_4",
        variant_id="variant_1",
        email="jane@example.com",
        created_at=iso(sub.notified_at + timedelta(days=8)),
    )
    for n, order in enumerate(("order_2", "order_3", "order_4")):
        assert post_event(client, "order.placed", order, f"e{n}").json()["conversions"] == 0
    missing = post_event(client, "order.placed", "order_404", "e9")
    assert missing.status_code == 202 and missing.json()["status"] == "deferred"
    assert app.conversion_of(sub.id) is None


def test_the_reconciliation_read_catches_missed_events(app: App, fake_medusa: FakeMedusa) -> None:
    sub = notified(app, fake_medusa)
    fake_medusa.add_order(
        "order_5",
        variant_id="variant_1",
        email="jane@example.com",
        created_at=iso(sub.notified_at + timedelta(minutes=5)),
    )
    adapter = app.adapters["shop"].obj
    assert adapter.poll_orders() == 1
    assert adapter.poll_orders() == 0
    listed = [r for r in fake_medusa.server.requests if r.path == "/admin/orders"]
    assert listed[0].query["order"] == ["created_at"] and "created_at[$gte]" in listed[0].query


def test_the_catch_up_read_runs_on_its_schedule_and_resumes_after_a_restart(
    make_app: Callable[..., App], fake_medusa: FakeMedusa, tmp_path: Path
) -> None:
    def build(**options: Any) -> App:
        return make_app(
            {
                "plugins": [
                    {"resolve": "logger", "options": {"file": str(tmp_path / "out.jsonl")}},
                    {
                        "resolve": "medusa",
                        "id": "shop",
                        "options": medusa_options(fake_medusa.url, **options),
                    },
                ]
            }
        )

    app = build()  # no orders_poll_interval: no thread, no order reads
    sub = notified(app, fake_medusa)
    placed = sub.notified_at + timedelta(minutes=5)
    fake_medusa.add_order(
        "order_6", variant_id="variant_1", email="jane@example.com", created_at=iso(placed)
    )
    assert app.adapters["shop"].obj._order_poller is None
    app.close()

    # the thread reads the missed order without anyone calling poll_orders
    scheduled = build(orders_poll_interval=0.05)
    poller = scheduled.adapters["shop"].obj._order_poller
    conversion = wait_for(lambda: scheduled.conversion_of(sub.id))
    assert (conversion.order_id, conversion.revenue) == ("order_6", Decimal("20"))
    scheduled.close()
    assert not poller.thread.is_alive()

    # a restart resumes from the newest recorded order (persisted), not from the lookback,
    # and the order read again counts nothing new
    fake_medusa.server.requests.clear()
    restarted = build(orders_poll_interval=0.05, orders_lookback=30 * 86400)
    poller = restarted.adapters["shop"].obj._order_poller
    wait_for(lambda: poller.passes >= 2)
    restarted.close()
    listed = [r for r in fake_medusa.server.requests if r.path == "/admin/orders"]
    since = datetime.fromisoformat(listed[0].query["created_at[$gte]"][0].replace("Z", "+00:00"))
    assert since == placed - timedelta(minutes=10)
    assert restarted.conversion_of(sub.id) is not None
    with restarted.engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(conversions)
            .where(conversions.c.order_id == "order_6")
        ).scalar()
    assert count == 1


def test_orders_poll_interval_needs_the_admin_token(fake_medusa: FakeMedusa) -> None:
    from restock_medusa import MedusaOptions

    from restock_core.config import structure_options

    options = medusa_options(fake_medusa.url, orders_poll_interval=60)
    del options["admin_token"]
    with pytest.raises(Exception, match="orders_poll_interval needs admin_token"):
        structure_options(MedusaOptions, options, plugin="medusa")
