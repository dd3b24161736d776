"""The built-in outgoing-webhook observer against a real HTTP receiver on 127.0.0.1: events
arrive signed, a 500 is retried with backoff, the signature verifies with the recipe in
docs/plugins/webhook.md (re-implemented here from the doc, not imported)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from restock_core.errors import ConfigError

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """Records every POST; answers the scripted statuses first, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/restock"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def verify(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """docs/plugins/webhook.md, "Verifying a delivery", step by step."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields["v1"])


def webhook_app(make_app: Any, url: str, **options: Any) -> Any:
    return make_app(
        {
            "plugins": [
                {"resolve": "logger"},
                {"resolve": "manual"},
                {
                    "resolve": "webhook",
                    "id": "hooks",
                    "options": {
                        "url": url,
                        "secret": SECRET,
                        "retry_base": 0.05,
                        "poll_interval": 0.05,
                        **options,
                    },
                },
            ]
        }
    )


def test_events_arrive_signed_and_a_500_is_retried(make_app: Any, receiver: Receiver) -> None:
    receiver.script = [500]
    app = webhook_app(make_app, receiver.url)
    signup = app.subscribe("v1", email="ada@example.com", product_id="p1")

    first, second = receiver.wait_for(2)
    assert first[1] == second[1]  # the same body again after the 500
    headers, body = second
    assert headers["Restock-Event"] == "ecommerce.back_in_stock_requested"
    assert verify(SECRET, headers["Restock-Signature"], body)
    assert not verify("another-secret-0000", headers["Restock-Signature"], body)
    assert not verify(SECRET, headers["Restock-Signature"], body.replace(b"ada", b"eve"))
    event = json.loads(body)
    assert event["type"] == "ecommerce.back_in_stock_requested"
    assert event["data"]["subscriberId"] == str(signup.subscription.id)
    assert event["data"]["email"] == "ada@example.com" and event["data"]["productId"] == "p1"

    app.set_stock("v1", 4)
    app.worker().drain()
    received = receiver.wait_for(4)
    by_event = {json.loads(b)["type"]: json.loads(b) for _, b in received}
    restocked = by_event["ecommerce.back_in_stock"]["data"]
    assert restocked["variantId"] == "v1" and restocked["quantity"] == 4
    assert [s["email"] for s in restocked["subscribers"]] == ["ada@example.com"]
    assert by_event["ecommerce.back_in_stock_notification_sent"]["data"]["subscriberId"] == str(
        signup.subscription.id
    )

    # the delivery log: the sign-up took two attempts, the first answered 500
    log = {d.event: d for d in app.webhook_log.recent("hooks")}
    sign_up = log["ecommerce.back_in_stock_requested"]
    assert (sign_up.status, sign_up.attempts, sign_up.last_status) == ("delivered", 2, 200)


def test_medusa_v1_shape_and_giving_up(make_app: Any, receiver: Receiver) -> None:
    receiver.script = [503, 503]
    app = webhook_app(make_app, receiver.url, format="medusa-v1", max_attempts=2)
    app.subscribe("variant_1234567890", email="seb@test.com")
    app.subscribe("variant_1234567890", email="oli@test.com")
    app.set_stock("variant_1234567890", 2)
    app.worker().drain()
    first, second = receiver.wait_for(2)
    assert first[0]["Restock-Event"] == "restock-notification.restocked"
    assert json.loads(first[1]) == {
        "variant_id": "variant_1234567890",
        "emails": ["seb@test.com", "oli@test.com"],
    }
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        [delivery] = app.webhook_log.recent("hooks")
        if delivery.status == "failed":
            break
        time.sleep(0.02)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 2, 503)


def test_options_are_checked(make_app: Any) -> None:
    with pytest.raises(ConfigError) as err:
        webhook_app(make_app, "http://127.0.0.1:9/x", events=["order.created"])
    assert err.value.plugin == "hooks" and err.value.option == "events"
    with pytest.raises(ConfigError) as err:
        make_app(
            {
                "plugins": [
                    {"resolve": "logger"},
                    {"resolve": "manual"},
                    {
                        "resolve": "webhook",
                        "options": {"url": "http://127.0.0.1:9", "secret": "short"},
                    },
                ]
            }
        )
    assert err.value.option == "secret" and "short" not in str(err.value)
