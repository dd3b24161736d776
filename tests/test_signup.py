"""Sign-up rules, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from restock_core.db import subscriptions
from restock_core.errors import InStockError, SuppressedError, ValidationError
from restock_core.models import Channel
from tests.support import Recorder


def test_sign_up_normalises_and_returns_existing(make_app) -> None:
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    first = app.subscribe("v1", email="  Ada@Example.COM ")
    assert first.created and first.subscription.contact == "ada@example.com"
    again = app.subscribe("v1", email="ada@example.com", customer_id="cus_1")
    assert not again.created and again.subscription.id == first.subscription.id
    assert again.subscription.customer_id == "cus_1"  # a missing customer_id is filled
    kept = app.subscribe("v1", email="ada@example.com", customer_id="cus_2")
    assert kept.subscription.customer_id == "cus_1"  # but never overwritten
    assert recorder.created == [first.subscription.id]  # only new ones are announced


def test_same_person_other_scope_or_channel_is_another_subscription(make_app) -> None:
    app = make_app()
    a = app.subscribe("v1", email="ada@example.com")
    b = app.subscribe("v1", email="ada@example.com", scope="eu")
    c = app.subscribe("v1", phone="+14155550101")
    assert len({a.subscription.id, b.subscription.id, c.subscription.id}) == 3
    assert c.subscription.channel == Channel.SMS and c.subscription.contact == "+14155550101"


def test_fifty_concurrent_identical_sign_ups_leave_one_pending_row(make_app) -> None:
    app = make_app()
    barrier = threading.Barrier(50)
    results, errors = [], []

    def sign_up() -> None:
        barrier.wait()
        try:
            results.append(app.subscribe("v-hot", email="ada@example.com"))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=sign_up) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.created for r in results) == 1
    assert len({r.subscription.id for r in results}) == 1
    with app.engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(subscriptions)
            .where(subscriptions.c.variant_id == "v-hot")
        ).scalar()
    assert count == 1


def test_database_enforces_one_pending_per_contact(make_app) -> None:
    app = make_app()
    app.subscribe("v1", email="ada@example.com")
    row = app.list_subscriptions().items[0]
    with pytest.raises(sa.exc.IntegrityError), app.engine.begin() as conn:
        conn.execute(
            sa.insert(subscriptions).values(
                variant_id="v1",
                scope="default",
                source="manual",
                channel="email",
                contact="ada@example.com",
                status="pending",
                attributes={},
                created_at=row.created_at,
                updated_at=row.created_at,
            )
        )


def test_in_stock_variant_is_refused(make_app) -> None:
    app = make_app()
    app.set_stock("v1", 4)
    with pytest.raises(InStockError) as caught:
        app.subscribe("v1", email="ada@example.com")
    assert caught.value.status_code == 409 and "in stock" in caught.value.message
    app.set_stock("v1", 0)
    assert app.subscribe("v1", email="ada@example.com").created


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"phone": "12"}, "phone"),
        ({}, "email"),
        ({"email": "a@example.com", "channel": "fax"}, "channel"),
        ({"email": "a@example.com", "channel": "sms"}, "phone"),
        ({"email": "a@example.com", "source": "nowhere"}, "source"),
        ({"email": "a@example.com", "attributes": ["x"]}, "attributes"),
    ],
)
def test_bad_input_names_the_field(make_app, kwargs, field) -> None:
    app = make_app()
    with pytest.raises(ValidationError) as caught:
        app.subscribe("v1", **kwargs)
    assert caught.value.field == field
    with pytest.raises(ValidationError) as caught:
        app.subscribe("", email="a@example.com")
    assert caught.value.field == "variant_id"
    assert app.list_subscriptions().items == ()  # nothing stored


def test_suppressed_contact_is_refused(make_app) -> None:
    app = make_app()
    app.suppress(Channel.EMAIL, "bounced@example.com", "hard bounce")
    with pytest.raises(SuppressedError):
        app.subscribe("v1", email="Bounced@example.com")
    assert app.subscribe("v1", phone="+14155550101").created  # other channel unaffected


def test_listing_paginates(make_app) -> None:
    app = make_app()
    for i in range(5):
        app.subscribe(f"v{i % 2}", email=f"p{i}@example.com")
    page = app.list_subscriptions(limit=2)
    assert len(page.items) == 2 and page.next_after == page.items[-1].id
    rest = app.list_subscriptions(limit=10, after=page.next_after)
    assert len(rest.items) == 3 and rest.next_after is None
    assert {s.variant_id for s in app.list_subscriptions(variant_id="v1").items} == {"v1"}
    with pytest.raises(ValidationError):
        app.list_subscriptions(status="bogus")
