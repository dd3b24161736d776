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

        # restock-forwarder.ts, running inside Medusa, signs and posts the event; the sink
        # caught it, and we hand the exact bytes and headers to the adapter's route
        def forwarded() -> Any:
            for request in medusa.sink.requests:
                body = request.json
                if body.get(
                    "name"
                ) == "inventory.inventory-level.updated" and variant_id in body.get(
                    "variant_ids", []
                ):
                    return request
            return None

        request = wait_for(forwarded, timeout=30)
        headers = {
            name: request.headers[name]
            for name in (
                "content-type",
                "x-restock-signature",
                "x-restock-timestamp",
                "x-restock-event-id",
            )
        }
        received = client.post("/shop/events", content=request.body, headers=headers)
        assert received.status_code == 200, received.text
        assert received.json()["status"] == "processed"
        assert len(received.json()["restocks_opened"]) == 1
        replay = client.post("/shop/events", content=request.body, headers=headers)
        assert replay.json()["status"] == "duplicate"
        real_app.worker().drain()
    assert sent_to(outbox) == ["dee@example.com"]
    (sub,) = real_app.list_subscriptions(variant_id=variant_id).items
    assert sub.status == SubscriptionStatus.NOTIFIED
