"""The adapter's routes (event receiver, v2 and v1 sign-up) and the whole flow, end to end,
through the core API on SQLite and PostgreSQL, against a fake Medusa backend."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from restock_medusa import sign, v1_event
from restock_medusa.testing import EVENT_SECRET, PK, PK_B, SC_A, SC_B, FakeMedusa, medusa_options

from restock_core.api import create_api
from restock_core.app import App
from restock_core.models import Channel, Restock, StockKey, Subscription, SubscriptionStatus
from restock_core.testing import FakeHTTPServer, RecordedRequest, Reply


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"


def sent_to(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    return [json.loads(line)["to"] for line in outbox.read_text().splitlines() if line]


@pytest.fixture
def build_app(
    make_app: Callable[..., App], fake_medusa: FakeMedusa, outbox: Path
) -> Callable[..., App]:
    def build(**options: Any) -> App:
        return make_app(
            {
                "restock": {"secret_key": "test-signing-key"},
                "plugins": [
                    {"resolve": "logger", "options": {"file": str(outbox)}},
                    {
                        "resolve": "medusa",
                        "id": "shop",
                        "options": medusa_options(fake_medusa.url, **options),
                    },
                ],
            }
        )

    return build


@pytest.fixture
def app(build_app: Callable[..., App]) -> App:
    return build_app()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_api(app), raise_server_exceptions=False) as test_client:
        yield test_client


def post_event(client: TestClient, payload: Any, *, event_id: str | None = "evt-1", **kw: Any):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"content-type": "application/json", **sign(EVENT_SECRET, body, kw.get("ts"))}
    if event_id:
        headers["x-restock-event-id"] = event_id
    headers.update(kw.get("headers", {}))
    return client.post("/shop/events", content=body, headers=headers)


def level_event(*variant_ids: str, items: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "name": "inventory.inventory-level.updated",
        "data": {"id": "ilev_1"},
        "metadata": {"source": "inventory", "action": "updated"},
        "variant_ids": list(variant_ids),
        "inventory_item_ids": list(items),
    }


def v2_signup(client: TestClient, variant_id: str = "variant_1", **body: Any) -> Any:
    headers = {"x-publishable-api-key": body.pop("key", PK)}
    return client.post(
        "/shop/store/restock-subscriptions",
        json={"variant_id": variant_id, "email": "ada@example.com", **body},
        headers=headers,
    )


# ---------------------------------------------------------------------- sign-up, v2 guide


def test_v2_signup_answers_201_in_the_guides_shape(client: TestClient, app: App) -> None:
    response = v2_signup(client, sales_channel_id=SC_A)
    assert response.status_code == 201, response.text
    body = response.json()["restock_subscription"]
    assert body["variant_id"] == "variant_1"
    assert body["sales_channel_id"] == SC_A
    assert body["email"] == "ada@example.com"
    (sub,) = app.list_subscriptions().items
    assert (sub.scope, sub.source, sub.status) == (SC_A, "shop", SubscriptionStatus.PENDING)
    again = v2_signup(client, sales_channel_id=SC_A)
    assert again.status_code == 201
    assert again.json()["restock_subscription"].keys() == body.keys()
    assert len(app.list_subscriptions().items) == 1


def test_v2_repeat_signup_by_a_stranger_leaks_nothing_stored(client: TestClient, app: App) -> None:
    """The storefront route is public: a repeat sign-up answers like a new one, echoes only
    what was sent, and cannot attach a customer id to somebody else's sign-up."""
    first = v2_signup(client, sales_channel_id=SC_A, customer_id="cus_real")
    assert first.status_code == 201
    stranger = v2_signup(client, sales_channel_id=SC_A)
    assert stranger.status_code == 201
    answer = stranger.json()["restock_subscription"]
    assert answer["customer_id"] is None and "id" not in answer
    other = v2_signup(client, "variant_1", sales_channel_id=SC_A, email="bob@example.com")
    (sub_b, sub_a) = sorted(app.list_subscriptions().items, key=lambda s: s.contact, reverse=True)
    assert other.status_code == 201 and sub_b.contact == "bob@example.com"
    hijack = v2_signup(
        client,
        "variant_1",
        sales_channel_id=SC_A,
        email="bob@example.com",
        customer_id="cus_attacker",
    )
    assert hijack.status_code == 201
    assert app.get_subscription(sub_b.id).customer_id is None
    assert sub_a.customer_id == "cus_real"


def test_storefront_signups_pass_the_public_ip_limit(
    make_app: Callable[..., App], fake_medusa: FakeMedusa, outbox: Path
) -> None:
    """Public plugin routes spend the same per-IP budget as POST /subscriptions: over it,
    429 in Medusa's error shape with Retry-After, and nothing is stored."""
    app = make_app(
        {
            "restock": {"secret_key": "test-signing-key", "limit_signups_per_ip": 2},
            "plugins": [
                {"resolve": "logger", "options": {"file": str(outbox)}},
                {"resolve": "medusa", "id": "shop", "options": medusa_options(fake_medusa.url)},
            ],
        }
    )
    with TestClient(create_api(app), raise_server_exceptions=False) as client:
        for n in range(2):
            ok = v2_signup(client, f"variant_{n}", sales_channel_id=SC_A)
            assert ok.status_code == 201, ok.text
        refused = v2_signup(client, "variant_9", sales_channel_id=SC_A)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"] == "not_allowed"
        assert refused.json()["error"]["code"] == "rate_limited"
        v1 = client.post(
            "/shop/restock-notifications/variants/variant_8",
            json={"email": "eve@example.com"},
            headers={"x-publishable-api-key": PK},
        )
        assert v1.status_code == 429
        assert int(v1.headers["retry-after"]) >= 1
    assert {s.variant_id for s in app.list_subscriptions().items} == {"variant_0", "variant_1"}


def test_v2_signup_takes_the_channel_from_the_publishable_key(
    client: TestClient, app: App, fake_medusa: FakeMedusa
) -> None:
    assert v2_signup(client, key=PK_B).status_code == 201
    (sub,) = app.list_subscriptions().items
    assert sub.scope == SC_B
    # the stock check went to Medusa with that channel's key
    assert fake_medusa.store_requests()[-1].headers["x-publishable-api-key"] == PK_B
    # the body's sales_channel_id wins over the key (as in the guide)
    assert v2_signup(client, key=PK_B, sales_channel_id=SC_A).status_code == 201
    assert {s.scope for s in app.list_subscriptions().items} == {SC_A, SC_B}


def test_v2_signup_in_stock_is_refused_like_the_guide(
    client: TestClient, fake_medusa: FakeMedusa
) -> None:
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 3)
    response = v2_signup(client, sales_channel_id=SC_A)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "invalid_data"
    assert body["message"] == "Variant isn't out of stock."
    assert body["error"]["code"] == "in_stock"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ada@example.com"}, "variant_id"),
        ({"variant_id": "variant_1"}, "email"),
        ({"variant_id": "variant_1", "email": "not-an-email"}, "email"),
        ({"variant_id": 5, "email": "ada@example.com"}, "variant_id"),
    ],
)
def test_v2_signup_bad_input_is_a_400_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post(
        "/shop/store/restock-subscriptions",
        json={**body, "sales_channel_id": SC_A},
        headers={"x-publishable-api-key": PK},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_data"
    assert response.json()["error"]["field"] == field


def test_v2_signup_malformed_json_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/shop/store/restock-subscriptions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_data"


# ---------------------------------------------------------------------- sign-up, v1 plugin


def test_v1_signup_answers_201_created(client: TestClient, app: App) -> None:
    response = client.post(
        "/shop/restock-notifications/variants/variant_2",
        json={"email": "bob@example.com", "sales_channel_id": SC_A},
    )
    assert response.status_code == 201
    assert response.text == "Created"
    (sub,) = app.list_subscriptions().items
    assert (sub.variant_id, sub.scope, sub.contact) == ("variant_2", SC_A, "bob@example.com")


def test_v1_signup_key_with_one_channel_wins_over_the_body(client: TestClient, app: App) -> None:
    response = client.post(
        "/shop/restock-notifications/variants/variant_2",
        json={"email": "bob@example.com", "sales_channel_id": SC_A},
        headers={"x-publishable-api-key": PK_B},
    )
    assert response.status_code == 201
    assert app.list_subscriptions().items[0].scope == SC_B


def test_v1_signup_not_sold_out_is_a_400_with_the_plugins_message(
    client: TestClient, fake_medusa: FakeMedusa
) -> None:
    fake_medusa.set_stock(StockKey("variant_2", SC_A), 1)
    response = client.post(
        "/shop/restock-notifications/variants/variant_2",
        json={"email": "bob@example.com", "sales_channel_id": SC_A},
    )
    assert response.status_code == 400
    assert response.json()["message"] == (
        "You cannot sign up for restock notifications on a product that is not sold out"
    )


def test_v1_signup_without_email_is_a_400(client: TestClient) -> None:
    response = client.post("/shop/restock-notifications/variants/variant_2", json={})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "email"


# ---------------------------------------------------------------------- event receiver


def test_valid_event_rereads_stock_and_notifies(
    client: TestClient, app: App, fake_medusa: FakeMedusa, outbox: Path
) -> None:
    assert v2_signup(client, sales_channel_id=SC_A).status_code == 201
    assert v2_signup(client, "variant_2", sales_channel_id=SC_A).status_code == 201
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 5)
    before = len(fake_medusa.store_requests())
    response = post_event(client, level_event("variant_1", "variant_unrelated"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processed"
    assert len(response.json()["restocks_opened"]) == 1
    reads = fake_medusa.store_requests()[before:]
    assert [r.query["id[]"] for r in reads] == [["variant_1"]]  # only pending keys are read
    app.worker().drain()
    assert sent_to(outbox) == ["ada@example.com"]
    statuses = {s.variant_id: s.status for s in app.list_subscriptions().items}
    assert statuses == {
        "variant_1": SubscriptionStatus.NOTIFIED,
        "variant_2": SubscriptionStatus.PENDING,
    }


def test_event_with_inventory_items_only_is_mapped_through_the_admin_api(
    client: TestClient, app: App, fake_medusa: FakeMedusa
) -> None:
    assert v2_signup(client, sales_channel_id=SC_A).status_code == 201
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 2)
    response = post_event(client, level_event(items=("iitem_variant_1",)))
    assert response.json()["status"] == "processed"
    (admin,) = [r for r in fake_medusa.server.requests if r.path == "/admin/inventory-items"]
    assert admin.query["id[]"] == ["iitem_variant_1"]


def test_duplicate_event_changes_nothing(
    client: TestClient, app: App, fake_medusa: FakeMedusa
) -> None:
    assert v2_signup(client, sales_channel_id=SC_A).status_code == 201
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 5)
    assert post_event(client, level_event("variant_1")).json()["status"] == "processed"
    requests = len(fake_medusa.server.requests)
    again = post_event(client, level_event("variant_1"))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert len(fake_medusa.server.requests) == requests


def test_event_id_may_come_from_the_body(client: TestClient, app: App) -> None:
    payload = {**level_event("variant_1"), "id": "body-id-1"}
    assert post_event(client, payload, event_id=None).json()["status"] == "ignored"
    assert post_event(client, payload, event_id=None).json()["status"] == "duplicate"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-restock-signature": "sha256=" + "0" * 64}, "bad_signature"),
        ({"x-restock-signature": "md5=abc"}, "bad_signature"),
        ({"x-restock-signature": ""}, "missing_signature"),
        ({"x-restock-timestamp": "yesterday"}, "bad_signature"),
    ],
)
def test_bad_signature_is_401_json(
    client: TestClient, fake_medusa: FakeMedusa, headers: dict[str, str], code: str
) -> None:
    response = post_event(client, level_event("variant_1"), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert not fake_medusa.server.requests


def test_signature_over_another_body_is_rejected(client: TestClient) -> None:
    body = json.dumps(level_event("variant_1")).encode()
    headers = sign(EVENT_SECRET, body)
    tampered = body.replace(b"variant_1", b"variant_2")
    response = client.post("/shop/events", content=tampered, headers=headers)
    assert response.status_code == 401


def test_stale_event_is_rejected(client: TestClient) -> None:
    old = int(time.time()) - 3600
    response = post_event(client, level_event("variant_1"), ts=old)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "stale"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"variant_ids": "variant_1"}).encode(), 422),
        (json.dumps({"variant_ids": [1, 2]}).encode(), 422),
    ],
)
def test_malformed_event_is_a_4xx_json(client: TestClient, payload: bytes, status: int) -> None:
    response = post_event(client, payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] in ("malformed", "invalid")


def test_event_without_an_id_is_422(client: TestClient) -> None:
    response = post_event(client, level_event("variant_1"), event_id=None)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "id"


def test_event_while_medusa_is_down_is_deferred(
    client: TestClient, fake_medusa: FakeMedusa
) -> None:
    assert v2_signup(client, sales_channel_id=SC_A).status_code == 201
    fake_medusa.server.queue(Reply(503, {"message": "down"}), times=20)
    response = post_event(client, level_event("variant_1"))
    assert response.status_code == 202
    assert response.json()["status"] == "deferred"


def test_events_need_a_secret(build_app: Callable[..., App]) -> None:
    app = build_app(event_secret=None)
    with TestClient(create_api(app), raise_server_exceptions=False) as client:
        response = post_event(client, level_event("variant_1"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_configured"


# ---------------------------------------------------------------------- end to end


def test_end_to_end_reconciliation_notifies_once(
    client: TestClient, app: App, fake_medusa: FakeMedusa, outbox: Path
) -> None:
    response = client.post(
        "/shop/restock-notifications/variants/variant_3",
        json={"email": "cy@example.com", "sales_channel_id": SC_B},
    )
    assert response.status_code == 201
    worker = app.worker()
    assert worker.reconcile().restocks_opened == 0
    fake_medusa.set_stock(StockKey("variant_3", SC_B), 2)
    assert worker.reconcile().restocks_opened == 1
    worker.drain()
    assert sent_to(outbox) == ["cy@example.com"]
    (sub,) = app.list_subscriptions().items
    assert sub.status == SubscriptionStatus.NOTIFIED
    # the message names the variant through describe()
    line = json.loads(outbox.read_text().splitlines()[0])
    assert "Blue Shirt" in (line["subject"] or line["text"])
    assert worker.reconcile().keys == 0  # nobody pending any more


# ---------------------------------------------------------------------- v1 event shape


def _restock(variant_id: str = "variant_1") -> Restock:
    return Restock(1, "shop", variant_id, SC_A, 5, datetime.now(UTC))


def _sub(index: int, channel: Channel = Channel.EMAIL, contact: str | None = None) -> Subscription:
    return Subscription(
        id=index,
        variant_id="variant_1",
        scope=SC_A,
        source="shop",
        channel=channel,
        contact=contact or f"s{index}@example.com",
        status=SubscriptionStatus.PENDING,
        created_at=datetime.now(UTC),
    )


def test_v1_event_shape() -> None:
    subs = [_sub(1), _sub(2, Channel.SMS, "+14155550100"), _sub(3)]
    assert v1_event(_restock(), subs) == {
        "variant_id": "variant_1",
        "emails": ["s1@example.com", "s3@example.com"],
    }


def test_restocked_is_forwarded_in_the_v1_shape(
    build_app: Callable[..., App], fake_medusa: FakeMedusa, outbox: Path
) -> None:
    with FakeHTTPServer(lambda request: Reply(200, {"ok": True})) as receiver:
        app = build_app(forward_restocked_url=receiver.url + "/hooks/restocked")
        app.subscribe("variant_1", email="ada@example.com", scope=SC_A, source="shop")
        fake_medusa.set_stock(StockKey("variant_1", SC_A), 4)
        app.worker().reconcile()
        app.worker().drain()
        (request,) = receiver.requests
    assert request.path == "/hooks/restocked"
    assert request.json["variant_id"] == "variant_1"
    assert request.json["emails"] == ["ada@example.com"]
    assert request.json["sales_channel_id"] == SC_A
    ts = request.headers["x-restock-timestamp"]
    expected = hmac.new(EVENT_SECRET.encode(), ts.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["x-restock-signature"] == "sha256=" + expected.hexdigest()
    assert sent_to(outbox) == ["ada@example.com"]


def test_a_failing_forward_url_never_breaks_delivery(
    build_app: Callable[..., App], fake_medusa: FakeMedusa, outbox: Path
) -> None:
    def broken(request: RecordedRequest) -> Reply:
        return Reply(reset=True)

    with FakeHTTPServer(broken) as receiver:
        app = build_app(forward_restocked_url=receiver.url + "/hooks/restocked")
        app.subscribe("variant_1", email="ada@example.com", scope=SC_A, source="shop")
        fake_medusa.set_stock(StockKey("variant_1", SC_A), 4)
        app.worker().reconcile()
        app.worker().drain()
    assert sent_to(outbox) == ["ada@example.com"]
    assert app.list_subscriptions().items[0].status == SubscriptionStatus.NOTIFIED
