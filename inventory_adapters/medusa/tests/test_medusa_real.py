"""Against a REAL Medusa v2 backend, installed from the npm registry and started by
scripts/medusa-server.sh (reference/medusa.md §6). Marked `medusa`.

The install and migrations happen before the first test (conftest.py, or `.ci/run`), outside
the per-test timeout; the session fixture here only starts a server (seconds) on a free port
with its own state file, so two sessions can run at once. Outside CI (CI != "true") the tests
are skipped when the server cannot be set up; in CI that is a failure. The server is stopped
at the end of the session.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.app import App
from restock_core.models import StockKey, SubscriptionStatus
from restock_core.testing import FakeHTTPServer, Reply, wait_for

pytestmark = pytest.mark.medusa

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "medusa-server.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EVENT_SECRET = "real-medusa-event-secret"


class Medusa:
    """The running backend plus an Admin API client (secret API key, Basic auth)."""

    def __init__(self, state: dict[str, Any], sink: FakeHTTPServer):
        self.state = state
        self.url: str = state["url"]
        self.sink = sink
        auth = base64.b64encode(f"{state['secret_key']}:".encode()).decode()
        self.admin = httpx.Client(
            base_url=self.url, timeout=60, headers={"authorization": f"Basic {auth}"}
        )
        self.location_id: str | None = None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.admin.request(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def ensure_location(self) -> str:
        if self.location_id is None:
            loc = self.call("POST", "/admin/stock-locations", json={"name": "restock tests"})
            self.location_id = loc["stock_location"]["id"]
            self.call(
                "POST",
                f"/admin/stock-locations/{self.location_id}/sales-channels",
                json={"add": [self.state["sales_channel_id"]]},
            )
        return self.location_id

    def create_sold_out_variant(self) -> tuple[str, str, str]:
        """A published product with one managed variant at 0 stock: (variant, item, handle)."""
        location = self.ensure_location()
        profile = self.call("GET", "/admin/shipping-profiles")["shipping_profiles"][0]["id"]
        tag = uuid.uuid4().hex[:8]
        product = self.call(
            "POST",
            "/admin/products",
            json={
                "title": f"Restock Tee {tag}",
                "handle": f"restock-tee-{tag}",
                "status": "published",
                "shipping_profile_id": profile,
                "options": [{"title": "Size", "values": ["M"]}],
                "variants": [
                    {
                        "title": "M",
                        "sku": f"TEE-M-{tag}",
                        "options": {"Size": "M"},
                        "manage_inventory": True,
                        "prices": [{"currency_code": "eur", "amount": 20}],
                    }
                ],
                "sales_channels": [{"id": self.state["sales_channel_id"]}],
            },
        )["product"]
        variant_id = product["variants"][0]["id"]
        variants = self.call(
            "GET",
            f"/admin/products/{product['id']}/variants",
            params={"fields": "id,*inventory_items"},
        )["variants"]
        item = variants[0]["inventory_items"][0]["inventory_item_id"]
        self.call(
            "POST",
            f"/admin/inventory-items/{item}/location-levels",
            json={"location_id": location, "stocked_quantity": 0},
        )
        return variant_id, item, product["handle"]

    def set_stocked(self, item: str, quantity: int) -> None:
        self.call(
            "POST",
            f"/admin/inventory-items/{item}/location-levels/{self.ensure_location()}",
            json={"stocked_quantity": quantity},
        )


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"could not set up a real Medusa server: {reason}")
    pytest.skip(f"could not set up a real Medusa server: {reason}")


@pytest.fixture(scope="session")
def medusa(
    tmp_path_factory: pytest.TempPathFactory, medusa_prepared: str | None
) -> Iterator[Medusa]:
    if medusa_prepared is not None:
        _unavailable(medusa_prepared)
    sink = FakeHTTPServer(lambda request: Reply(200, {"ok": True})).start()
    state_file = tmp_path_factory.mktemp("medusa") / "state.json"
    env = {
        **os.environ,
        "RESTOCK_MEDUSA_STATE": str(state_file),
        "RESTOCK_EVENTS_URL": sink.url + "/shop/events",
        "RESTOCK_EVENT_SECRET": EVENT_SECRET,
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,  # install and migrations are done: this only starts a server
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        done = None
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = f"exit {done.returncode}: {done.stderr[-2000:]}"
    if done is None or done.returncode != 0:
        sink.stop()
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        _unavailable(error)
    print(f"\nMedusa ready in {time.monotonic() - started:.1f} s")
    server = Medusa(json.loads(state_file.read_text()), sink)
    try:
        yield server
    finally:
        server.admin.close()
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)
        sink.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"


@pytest.fixture
def real_app(make_app: Callable[..., App], medusa: Medusa, outbox: Path) -> App:
    return make_app(
        {
            "restock": {"secret_key": "real-medusa-signing"},
            "plugins": [
                {"resolve": "logger", "options": {"file": str(outbox)}},
                {
                    "resolve": "medusa",
                    "id": "shop",
                    "options": {
                        "base_url": medusa.url,
                        "publishable_key": medusa.state["publishable_key"],
                        "admin_token": medusa.state["secret_key"],
                        "event_secret": EVENT_SECRET,
                        "storefront_url": "https://shop.example",
                        "sales_channels": {"default": medusa.state["sales_channel_id"]},
                        "timeout": 30.0,
                    },
                },
            ],
        }
    )


def sent_to(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    return sorted(json.loads(line)["to"] for line in outbox.read_text().splitlines() if line)


FORWARDED_HEADERS = (
    "content-type",
    "x-restock-signature",
    "x-restock-timestamp",
    "x-restock-event-id",
)


def forwarded(
    medusa: Medusa, matches: Callable[[dict[str, Any]], bool]
) -> tuple[bytes, dict[str, str]]:
    """Waits for the event that restock-forwarder.ts, running inside Medusa, signed and posted
    to the sink and whose JSON body `matches`: its exact bytes and the headers to hand to the
    adapter's route."""

    def find() -> Any:
        return next((r for r in medusa.sink.requests if matches(r.json)), None)

    request = wait_for(find, timeout=30)
    return request.body, {name: request.headers[name] for name in FORWARDED_HEADERS}


def test_signup_restock_through_reconciliation(real_app: App, medusa: Medusa, outbox: Path) -> None:
    variant_id, item, handle = medusa.create_sold_out_variant()
    adapter = real_app.adapters["shop"].obj
    key = StockKey(variant_id, "default")
    assert adapter.availability([key]) == {key: 0}
    info = adapter.describe([variant_id])[variant_id]
    assert info.title == "M"
    assert info.url == f"https://shop.example/products/{handle}"

    with TestClient(create_api(real_app), raise_server_exceptions=False) as client:
        v2 = client.post(
            "/shop/store/restock-subscriptions",
            json={"variant_id": variant_id, "email": "ada@example.com"},
            headers={"x-publishable-api-key": medusa.state["publishable_key"]},
        )
        assert v2.status_code == 201, v2.text
        v1 = client.post(
            f"/shop/restock-notifications/variants/{variant_id}", json={"email": "bob@example.com"}
        )
        assert v1.status_code == 201, v1.text

        medusa.set_stocked(item, 3)
        assert adapter.availability([key]) == {key: 3}
        worker = real_app.worker()
        result = worker.reconcile("shop")
        assert result.restocks_opened == 1, result
        worker.drain()
        assert sent_to(outbox) == ["ada@example.com", "bob@example.com"]
        statuses = {s.status for s in real_app.list_subscriptions().items}
        assert statuses == {SubscriptionStatus.NOTIFIED}

        # in stock now: both Medusa-shaped routes refuse, as Medusa does
        late = client.post(
            f"/shop/restock-notifications/variants/{variant_id}", json={"email": "cy@example.com"}
        )
        assert late.status_code == 400
        assert "not sold out" in late.json()["message"]
        late_v2 = client.post(
            "/shop/store/restock-subscriptions",
            json={"variant_id": variant_id, "email": "cy@example.com"},
            headers={"x-publishable-api-key": medusa.state["publishable_key"]},
        )
        assert late_v2.status_code == 400
        assert late_v2.json()["message"] == "Variant isn't out of stock."


def test_signup_restock_through_the_medusa_subscriber_event(
    real_app: App, medusa: Medusa, outbox: Path
) -> None:
    variant_id, item, _ = medusa.create_sold_out_variant()
    with TestClient(create_api(real_app), raise_server_exceptions=False) as client:
        response = client.post(
            "/shop/store/restock-subscriptions",
            json={"variant_id": variant_id, "email": "dee@example.com"},
            headers={"x-publishable-api-key": medusa.state["publishable_key"]},
        )
        assert response.status_code == 201, response.text

        medusa.set_stocked(item, 2)

        body, headers = forwarded(
            medusa,
            lambda event: (
                event.get("name") == "inventory.inventory-level.updated"
                and variant_id in event.get("variant_ids", [])
            ),
        )
        received = client.post("/shop/events", content=body, headers=headers)
        assert received.status_code == 200, received.text
        assert received.json()["status"] == "processed"
        assert len(received.json()["restocks_opened"]) == 1
        replay = client.post("/shop/events", content=body, headers=headers)
        assert replay.json()["status"] == "duplicate"
        real_app.worker().drain()
    assert sent_to(outbox) == ["dee@example.com"]
    (sub,) = real_app.list_subscriptions(variant_id=variant_id).items
    assert sub.status == SubscriptionStatus.NOTIFIED


REGION = "restock tests EUR"
ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address_1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country_code": "de",
}


def ensure_checkout(medusa: Medusa) -> str:
    """What a store needs before a Store API checkout (reference/orders.md §2; the starter's
    seed does the same): a region (EUR, Germany) with Medusa's system payment provider
    `pp_system_default`, and a free shipping option of the manual fulfillment provider in a
    service zone of this session's stock location. The region id."""
    cached = getattr(medusa, "region_id", None)
    if cached:
        return str(cached)
    regions = medusa.call(
        "GET", "/admin/regions", params={"q": REGION, "fields": "id,name", "limit": 10}
    )["regions"]
    region_id = next((r["id"] for r in regions if r["name"] == REGION), None)
    body = {"currency_code": "eur", "countries": ["de"], "payment_providers": ["pp_system_default"]}
    if region_id is None:  # the database outlives the server: one region for every run
        region_id = medusa.call("POST", "/admin/regions", json={"name": REGION, **body})["region"][
            "id"
        ]
    else:
        medusa.call("POST", f"/admin/regions/{region_id}", json=body)
    location = medusa.ensure_location()
    medusa.call(
        "POST",
        f"/admin/stock-locations/{location}/fulfillment-providers",
        json={"add": ["manual_manual"]},
    )
    medusa.call(
        "POST",
        f"/admin/stock-locations/{location}/fulfillment-sets",
        json={"name": f"restock shipping {location}", "type": "shipping"},
    )
    sets = medusa.call(
        "GET", f"/admin/stock-locations/{location}", params={"fields": "id,*fulfillment_sets"}
    )["stock_location"]["fulfillment_sets"]
    zone_set = medusa.call(
        "POST",
        f"/admin/fulfillment-sets/{sets[0]['id']}/service-zones",
        json={
            "name": f"Germany {location}",
            "geo_zones": [{"type": "country", "country_code": "de"}],
        },
    )["fulfillment_set"]
    profile = medusa.call("GET", "/admin/shipping-profiles")["shipping_profiles"][0]["id"]
    medusa.call(
        "POST",
        "/admin/shipping-options",
        json={
            "name": "Free shipping",
            "service_zone_id": zone_set["service_zones"][0]["id"],
            "shipping_profile_id": profile,
            "provider_id": "manual_manual",
            "price_type": "flat",
            "type": {"label": "Free", "description": "Free shipping", "code": "free"},
            "prices": [{"currency_code": "eur", "amount": 0}],
            "rules": [
                {"attribute": "enabled_in_store", "value": "true", "operator": "eq"},
                {"attribute": "is_return", "value": "false", "operator": "eq"},
            ],
        },
    )
    medusa.region_id = region_id  # type: ignore[attr-defined]
    return str(region_id)


def checkout(medusa: Medusa, region_id: str, variant_id: str, email: str, quantity: int) -> str:
    """The Store API checkout a storefront runs (reference/orders.md §2 and
    samples/orders-medusa-store-checkout-flow.json): cart → line item → address → shipping
    method → payment collection → session with the system provider → complete. The order id."""
    store = httpx.Client(
        base_url=medusa.url,
        timeout=60,
        headers={"x-publishable-api-key": medusa.state["publishable_key"]},
    )

    def call(path: str, body: dict[str, Any] | None = None) -> Any:
        response = store.post(path, json=body or {})
        assert response.status_code < 300, f"POST {path}: {response.status_code} {response.text}"
        return response.json()

    with store:
        cart = call(
            "/store/carts",
            {
                "region_id": region_id,
                "sales_channel_id": medusa.state["sales_channel_id"],
                "email": email,
            },
        )["cart"]
        path = f"/store/carts/{cart['id']}"
        call(f"{path}/line-items", {"variant_id": variant_id, "quantity": quantity})
        call(path, {"email": email, "shipping_address": ADDRESS})
        options = store.get("/store/shipping-options", params={"cart_id": cart["id"]})
        assert options.status_code == 200, options.text
        call(f"{path}/shipping-methods", {"option_id": options.json()["shipping_options"][0]["id"]})
        collection = call("/store/payment-collections", {"cart_id": cart["id"]})
        call(
            f"/store/payment-collections/{collection['payment_collection']['id']}/payment-sessions",
            {"provider_id": "pp_system_default"},
        )
        done = call(f"{path}/complete")
    assert done.get("type") == "order", done
    return str(done["order"]["id"])


def test_orders_placed_through_the_store_checkout_convert(
    real_app: App, medusa: Medusa, outbox: Path
) -> None:
    variant_id, item, _ = medusa.create_sold_out_variant()
    region_id = ensure_checkout(medusa)

    with TestClient(create_api(real_app), raise_server_exceptions=False) as client:
        for email in ("ada@example.com", "bob@example.com"):
            signed_up = client.post(
                "/shop/store/restock-subscriptions",
                json={"variant_id": variant_id, "email": email},
                headers={"x-publishable-api-key": medusa.state["publishable_key"]},
            )
            assert signed_up.status_code == 201, signed_up.text
        medusa.set_stocked(item, 3)
        assert real_app.worker().reconcile("shop").restocks_opened == 1
        real_app.worker().drain()
        assert sent_to(outbox) == ["ada@example.com", "bob@example.com"]
        subs = {s.email: s for s in real_app.list_subscriptions(variant_id=variant_id).items}

        # Ada buys two: Medusa emits order.placed, the forwarder inside Medusa signs and posts
        # it; the adapter reads the order through the Admin API and records the conversion
        ada_order = checkout(medusa, region_id, variant_id, "ada@example.com", 2)

        def placed(order_id: str) -> Callable[[dict[str, Any]], bool]:
            return lambda event: (
                event.get("name") == "order.placed" and event["data"].get("id") == order_id
            )

        body, headers = forwarded(medusa, placed(ada_order))
        received = client.post("/shop/events", content=body, headers=headers)
        assert received.status_code == 200, received.text
        answer = received.json()
        assert (answer["status"], answer["order_id"], answer["conversions"]) == (
            "recorded",
            ada_order,
            1,
        )
        again = client.post("/shop/events", content=body, headers=headers)
        assert again.json()["status"] == "duplicate"

        # Bob's event is lost on the way: the catch-up read of the Admin API finds his order
        bob_order = checkout(medusa, region_id, variant_id, "bob@example.com", 1)
        forwarded(medusa, placed(bob_order))  # emitted, never handed over
        adapter = real_app.adapters["shop"].obj
        assert adapter.poll_orders() == 1
        assert adapter.poll_orders() == 0  # read again: counted once

    ada = real_app.conversion_of(subs["ada@example.com"].id)
    bob = real_app.conversion_of(subs["bob@example.com"].id)
    assert (ada.order_id, ada.variant_id, ada.quantity, ada.revenue, ada.currency) == (
        ada_order,
        variant_id,
        2,
        Decimal("40"),
        "EUR",
    )
    assert (bob.order_id, bob.quantity, bob.revenue) == (bob_order, 1, Decimal("20"))
    assert ada.notified_at <= ada.ordered_at
