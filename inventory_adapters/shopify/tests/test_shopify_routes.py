"""The Shopify routes through the core API (restock_core.api.create_api): the signed
`inventory_levels/update` webhook and the app proxy sign-up, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from restock_shopify.fake import FakeShopify, proxy_query, webhook_headers

from restock_core.api import create_api
from restock_core.db import restocks, stock

SECRET = "shpss_fake_client_secret_5678"
WEBHOOK = "/shopify/webhooks/inventory_levels/update"
PROXY = "/shopify/proxy/subscribe"
VARIANT = "gid://shopify/ProductVariant/101"


def level(available: int, updated_at: datetime, item: int = 1000101, location: int = 1) -> dict:
    return {
        "inventory_item_id": item,
        "location_id": location,
        "available": available,
        "updated_at": updated_at.isoformat(),
        "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{location}?inventory_item_id={item}",
    }


def post_webhook(
    client: TestClient,
    body: Any,
    *,
    secret: str | None = SECRET,
    webhook_id: str | None = "wh-1",
    event_id: str | None = None,
    signature: str | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = webhook_headers(raw, secret, webhook_id=webhook_id, event_id=event_id)
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    return client.post(WEBHOOK, content=raw, headers=headers)


def stored(app: Any, variant: str = VARIANT, scope: str = "default") -> tuple[Any, Any] | None:
    with app.engine.connect() as conn:
        row = conn.execute(
            sa.select(stock.c.quantity, stock.c.observed_at).where(
                stock.c.source == "shopify", stock.c.variant_id == variant, stock.c.scope == scope
            )
        ).first()
    return (row.quantity, row.observed_at) if row else None


def test_valid_webhook_rereads_and_records(app: Any, client: TestClient, fake: FakeShopify) -> None:
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    fake.set_available(101, 6)
    before = fake.requests_made()
    when = datetime.now(UTC).replace(microsecond=0)
    # the body says 2 (one location, maybe stale); the adapter re-reads and records 6,
    # observed at the time of the read
    response = post_webhook(client, level(2, when))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted"}
    quantity, observed = stored(app)
    assert quantity == 6 and observed >= when
    requests = fake.graphql_requests()[before:]
    assert any("nodes(ids: $ids)" in r.json["query"] for r in requests)
    assert all(r.headers["x-shopify-access-token"] for r in requests)


def test_invalid_signature_is_401(app: Any, client: TestClient, fake: FakeShopify) -> None:
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    before = fake.requests_made()
    body = level(5, datetime.now(UTC))
    response = post_webhook(client, body, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    response = post_webhook(client, body, signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 401
    assert stored(app) is None
    assert fake.requests_made() == before


def test_missing_signature_is_401(app: Any, client: TestClient, fake: FakeShopify) -> None:
    response = post_webhook(client, level(5, datetime.now(UTC)), secret=None)
    assert response.status_code == 401
    assert "X-Shopify-Hmac-Sha256" in response.json()["error"]["message"]
    assert stored(app) is None


def test_signature_is_checked_before_parsing(client: TestClient) -> None:
    response = post_webhook(client, b"{not json", secret="not-the-secret")
    assert response.status_code == 401


def test_malformed_is_400(client: TestClient) -> None:
    response = post_webhook(client, b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed"
    response = post_webhook(client, {"inventory_item_id": "x"})
    assert response.status_code == 400


def test_duplicate_webhook_changes_nothing(app: Any, client: TestClient, fake: FakeShopify) -> None:
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    fake.set_available(101, 5)
    first = datetime.now(UTC).replace(microsecond=0)
    assert post_webhook(client, level(5, first), webhook_id="wh-42").json()["status"] == "accepted"
    recorded = stored(app)
    assert recorded is not None and recorded[0] == 5
    fake.set_available(101, 0)
    before = fake.requests_made()
    later = first + timedelta(seconds=30)
    replay = post_webhook(client, level(5, later), webhook_id="wh-42")
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    assert stored(app) == recorded
    assert fake.requests_made() == before


def test_same_event_for_the_same_level_is_a_duplicate(
    app: Any, client: TestClient, fake: FakeShopify
) -> None:
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    when = datetime.now(UTC)
    a = post_webhook(client, level(1, when), webhook_id="wh-a", event_id="ev-1")
    b = post_webhook(client, level(1, when), webhook_id="wh-b", event_id="ev-1")
    assert (a.json()["status"], b.json()["status"]) == ("accepted", "duplicate")
    # the same merchant action on another item is not a duplicate
    c = post_webhook(client, level(1, when, item=1000102), webhook_id="wh-c", event_id="ev-1")
    assert c.json()["status"] == "accepted"


def test_stale_delivery_is_dropped(app: Any, client: TestClient, fake: FakeShopify) -> None:
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    newer = datetime.now(UTC).replace(microsecond=0)
    older = newer - timedelta(minutes=5)
    fake.set_available(101, 5)
    assert post_webhook(client, level(5, newer), webhook_id="wh-new").status_code == 200
    recorded = stored(app)
    before = fake.requests_made()
    fake.set_available(101, 0)  # had the stale one been applied, 0 would be stored
    assert post_webhook(client, level(0, older), webhook_id="wh-old").status_code == 200
    assert stored(app) == recorded
    assert fake.requests_made() == before  # dropped before any re-read


def test_late_delivery_in_another_process_records_the_fresh_read(
    make_adapter: Any, app: Any, fake: FakeShopify
) -> None:
    """Past one process's memory, a late delivery is re-read, not trusted: a fresh adapter
    instance (another process) records what Shopify says now, stamped with the read's time,
    so a stale body cannot undo newer stock and a late one cannot hide it."""
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    newer = datetime.now(UTC).replace(microsecond=0)
    fake.set_available(101, 5)
    first = app.adapters["shopify"].obj
    assert first.apply_inventory_level(level(5, newer), newer).startswith("recorded 1")
    other = make_adapter()
    other.bind(app, "shopify")
    older = newer - timedelta(minutes=1)
    before = datetime.now(UTC)
    assert other.apply_inventory_level(level(0, older), older).startswith("recorded 1")
    quantity, observed = stored(app)
    assert quantity == 5  # the re-read, not the body's 0
    assert observed >= before


def test_same_second_change_after_a_reconciliation_read_is_recorded(
    app: Any, client: TestClient, fake: FakeShopify
) -> None:
    """Issue 10 item 9. `updated_at` has whole seconds (2023-02-02T10:00:50-05:00,
    https://shopify.dev/docs/api/admin-rest/latest/resources/inventorylevel). A reconciliation
    read at hh:mm:ss.4 sees 0; stock arrives at hh:mm:ss.7; the webhook says hh:mm:ss. The
    re-read (5) must be stamped with the time of the read, not dropped as older than the poll."""
    sub = app.subscribe(VARIANT, email="ada@example.com", source="shopify").subscription
    assert app.worker().reconcile("shopify").keys == 1
    polled = stored(app)
    assert polled is not None and polled[0] == 0
    fake.set_available(101, 5)
    same_second = polled[1].replace(microsecond=0)
    response = post_webhook(client, level(5, same_second), webhook_id="wh-same-second")
    assert response.json() == {"status": "accepted"}
    quantity, observed = stored(app)
    assert quantity == 5
    assert observed > polled[1]
    with app.engine.connect() as conn:
        opened = conn.execute(
            sa.select(restocks.c.quantity).where(restocks.c.variant_id == VARIANT)
        ).all()
    assert [row.quantity for row in opened] == [5]
    assert app.get_subscription(sub.id).status == "pending"  # released after trigger_delay


def test_two_deliveries_in_one_second_both_reread(
    app: Any, client: TestClient, fake: FakeShopify
) -> None:
    """Two changes of one level inside one second carry the same `updated_at`; the second
    (another X-Shopify-Webhook-Id) is not a replay and must not be dropped as stale."""
    app.subscribe(VARIANT, email="ada@example.com", source="shopify")
    second = datetime.now(UTC).replace(microsecond=0)
    fake.set_available(101, 0)
    assert post_webhook(client, level(0, second), webhook_id="wh-sold").status_code == 200
    assert stored(app)[0] == 0
    fake.set_available(101, 4)
    assert post_webhook(client, level(4, second), webhook_id="wh-back").status_code == 200
    assert stored(app)[0] == 4


def test_webhook_for_an_unsubscribed_variant_reads_no_stock(
    app: Any, client: TestClient, fake: FakeShopify
) -> None:
    response = post_webhook(client, level(5, datetime.now(UTC), item=1000103))
    assert response.status_code == 200
    queries = [r.json["query"] for r in fake.graphql_requests()]
    assert queries and all("nodes(ids: $ids)" not in q for q in queries)  # only the item lookup
    assert stored(app, "gid://shopify/ProductVariant/103") is None


# ---------------------------------------------------------------------------- app proxy


def only_subscription(app: Any) -> Any:
    (sub,) = app.list_subscriptions().items
    return sub


def test_proxy_sign_up(app: Any, client: TestClient) -> None:
    query = proxy_query(
        SECRET, variant_id="101", email="ada@example.com", logged_in_customer_id="7001"
    )
    response = client.get(PROXY, params=query)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "channel": "email"}
    sub = only_subscription(app)
    assert (sub.variant_id, sub.source, sub.email) == (VARIANT, "shopify", "ada@example.com")
    assert sub.customer_id == "gid://shopify/Customer/7001"
    # a repeat sign-up answers exactly like a new one: the storefront learns nothing
    again = client.get(PROXY, params=query)
    assert (again.status_code, again.json()) == (202, response.json())
    assert only_subscription(app).id == sub.id


def test_proxy_post_form_body(app: Any, client: TestClient) -> None:
    response = client.post(
        PROXY,
        params=proxy_query(SECRET),
        data={"variant_id": VARIANT, "phone": "+14155550123"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["channel"] == "sms"  # the widget words its answer by it
    sub = only_subscription(app)
    assert (sub.variant_id, sub.phone, sub.customer_id) == (VARIANT, "+14155550123", None)


def test_proxy_shop_content_never_reaches_the_message(app: Any, client: TestClient) -> None:
    """A storefront visitor cannot put their own title or link into the shop's message:
    the proxy route takes only the sign-up fields."""
    query = proxy_query(SECRET, variant_id="101", email="ada@example.com")
    response = client.post(
        PROXY, params=query, json={"product_title": "Your payment failed", "url": "https://x.co"}
    )
    assert response.status_code == 202
    sub = only_subscription(app)
    assert (sub.product_title, sub.url) == (None, None)


def test_proxy_sign_ups_spend_the_shoppers_ip_budget(make_app: Any, shopify_config: Any) -> None:
    """Behind Shopify's proxy the shopper is the right-most X-Forwarded-For entry: over
    `limit_signups_per_ip` that shopper gets 429 with Retry-After; another shopper does not."""
    app = make_app({**shopify_config(), "restock": {"limit_signups_per_ip": 2}})
    with TestClient(create_api(app), raise_server_exceptions=False) as client:

        def sign_up(variant: int, ip: str) -> Any:
            query = proxy_query(SECRET, variant_id=str(variant), email="ada@example.com")
            return client.get(PROXY, params=query, headers={"x-forwarded-for": f"1.1.1.1, {ip}"})

        assert [sign_up(v, "203.0.113.5").status_code for v in (101, 102)] == [202, 202]
        refused = sign_up(103, "203.0.113.5")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limited"
        assert sign_up(103, "198.51.100.7").status_code == 202
    assert len(app.list_subscriptions().items) == 3


def test_proxy_bad_signature_is_401(app: Any, client: TestClient) -> None:
    query = proxy_query("another-secret", variant_id="101", email="ada@example.com")
    response = client.get(PROXY, params=query)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    tampered = proxy_query(SECRET, variant_id="101", email="ada@example.com")
    tampered["logged_in_customer_id"] = "1"  # not what Shopify signed
    assert client.get(PROXY, params=tampered).status_code == 401
    unsigned = {k: v for k, v in tampered.items() if k != "signature"}
    assert client.get(PROXY, params=unsigned).status_code == 401
    assert app.list_subscriptions().items == ()


def test_proxy_old_timestamp_is_401(client: TestClient) -> None:
    query = proxy_query(SECRET, timestamp=1_000_000_000, variant_id="101", email="a@example.com")
    assert client.get(PROXY, params=query).status_code == 401


def test_proxy_in_stock_is_409(client: TestClient, fake: FakeShopify) -> None:
    fake.set_available(101, 3)
    response = client.get(PROXY, params=proxy_query(SECRET, variant_id="101", email="a@ex.com"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "in_stock"


def test_proxy_invalid_input_is_422(client: TestClient) -> None:
    response = client.get(PROXY, params=proxy_query(SECRET, variant_id="abc", email="a@ex.com"))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "variant_id"
    response = client.get(PROXY, params=proxy_query(SECRET, variant_id="101", email="nope"))
    assert response.status_code == 422
