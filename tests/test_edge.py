"""The public edge (issue 9): each attack on the public sign-up, shown to fail now, on SQLite
and PostgreSQL. See docs/security.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.app import App
from restock_core.hookspecs import hookimpl
from restock_core.limits import Buckets, client_ip, parse_networks
from restock_core.signup import Veto

ADMIN = {"Authorization": "Bearer admin-key"}
SECRET = {"Authorization": "Bearer secret-key"}


@pytest.fixture
def edge(make_app, tmp_path: Path) -> Iterator[Any]:
    """An app with the logger provider writing each message to a file, and a client factory."""

    def build(plugins: Any = (), **settings: Any) -> TestClient:
        sent = tmp_path / "sent.jsonl"
        app = make_app(
            {
                "restock": {
                    "admin_api_key": "admin-key",
                    "secret_api_key": "secret-key",
                    "retry_base": 0.0,
                    **settings,
                },
                "plugins": [
                    {"resolve": "logger", "options": {"file": str(sent)}},
                    {"resolve": "manual"},
                ],
            },
            plugins=plugins,
        )
        client = TestClient(create_api(app), raise_server_exceptions=False)
        client.restock = app  # type: ignore[attr-defined]
        client.sent = sent  # type: ignore[attr-defined]
        return client

    yield build


def _rows(app: App) -> int:
    return len(app.list_subscriptions(limit=1000).items)


def _sent(client: Any) -> list[dict[str, Any]]:
    path: Path = client.sent
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# ---------------------------------------------------------------- 1. trusted content only


def test_phishing_sign_up_is_refused_and_messages_use_the_shops_content(edge) -> None:
    client = edge()
    app = client.restock
    phishing = {
        "variant_id": "v1",
        "email": "victim@example.net",
        "product_title": "Your order #4471 payment failed - update card within 24h",
        "url": "https://examp1e-shop.co/login",
    }
    answer = client.post("/subscriptions", json=phishing)
    assert answer.status_code == 422 and _error(answer)["field"] == "product_title"
    for field, value in (("variant_title", "x"), ("url", "https://examp1e-shop.co/login")):
        refused = client.post(
            "/subscriptions", json={"variant_id": "v1", "email": "v@example.net", field: value}
        )
        assert refused.status_code == 422 and _error(refused)["field"] == field
    assert _rows(app) == 0
    # the same person signs up without content; the shop's data is what the message shows
    ok = client.post("/subscriptions", json={"variant_id": "v1", "email": "victim@example.net"})
    assert ok.status_code == 202
    stock = client.put(
        "/stock/v1",
        json={
            "quantity": 2,
            "product_title": "Linen Shirt",
            "variant_title": "Blue / M",
            "url": "https://shop.example/products/linen-shirt",
        },
        headers=ADMIN,
    )
    assert stock.status_code == 200, stock.text
    app.worker().drain()
    (message,) = _sent(client)
    assert message["to"] == "victim@example.net"
    assert "Linen Shirt" in message["subject"] and "4471" not in message["subject"]
    assert "https://shop.example/products/linen-shirt" in message["text"]
    assert "examp1e" not in message["text"]


def test_urls_in_messages_are_http_on_allowed_hosts(edge) -> None:
    client = edge(allowed_url_hosts=["shop.example"])
    for url in ("javascript:alert(1)", "https://examp1e-shop.co/x", "//shop.example/x"):
        stock = client.put("/stock/v1", json={"quantity": 0, "url": url}, headers=ADMIN)
        assert stock.status_code == 422 and _error(stock)["field"] == "url", url
        signup = client.post(
            "/subscriptions",
            json={"variant_id": "v1", "email": "a@example.com", "url": url},
            headers=SECRET,
        )
        assert signup.status_code == 422 and _error(signup)["field"] == "url", url
    image = client.put(
        "/stock/v1", json={"quantity": 0, "image_url": "data:image/png;base64,AA"}, headers=ADMIN
    )
    assert image.status_code == 422 and _error(image)["field"] == "image_url"
    trusted = client.post(
        "/subscriptions",
        json={"variant_id": "v1", "email": "a@example.com", "url": "https://shop.example/p"},
        headers=SECRET,
    )
    assert trusted.status_code == 201 and trusted.json()["url"] == "https://shop.example/p"


# ---------------------------------------------------------------- 3. abuse limits


def test_burst_from_one_client_gets_429_and_stores_nothing(edge) -> None:
    client = edge(limit_signups_per_ip=5)
    app = client.restock
    codes = [
        client.post(
            "/subscriptions", json={"variant_id": "v1", "email": f"s{i}@example.com"}
        ).status_code
        for i in range(5)
    ]
    assert codes == [202] * 5
    refused = client.post("/subscriptions", json={"variant_id": "v1", "email": "x@example.com"})
    assert refused.status_code == 429 and _error(refused)["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # a forged X-Forwarded-For does not buy a new budget (no trusted proxies configured)
    forged = client.post(
        "/subscriptions",
        json={"variant_id": "v1", "email": "y@example.com"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert forged.status_code == 429
    assert _rows(app) == 5
    # trusted callers are not limited
    assert (
        client.post(
            "/subscriptions", json={"variant_id": "v1", "email": "z@example.com"}, headers=SECRET
        ).status_code
        == 201
    )


def test_variant_burst_and_contact_limits(edge) -> None:
    client = edge(limit_signups_per_ip=0, limit_signups_per_variant=3, limit_active_per_contact=4)
    app = client.restock
    for i in range(3):
        assert (
            client.post(
                "/subscriptions", json={"variant_id": "hot", "email": f"s{i}@example.com"}
            ).status_code
            == 202
        )
    hot = client.post("/subscriptions", json={"variant_id": "hot", "email": "late@example.com"})
    assert hot.status_code == 429 and _error(hot)["field"] == "variant_id"
    # one address for many variants: the fifth active sign-up is refused
    for i in range(3):
        client.post("/subscriptions", json={"variant_id": f"v{i}", "email": "s0@example.com"})
    many = client.post("/subscriptions", json={"variant_id": "v9", "email": "s0@example.com"})
    assert many.status_code == 429 and _error(many)["field"] == "email"
    assert "retry-after" in many.headers
    assert len(app.list_subscriptions(contact="s0@example.com").items) == 4
    assert _rows(app) == 6


def test_honeypot_and_before_subscribe_veto(edge) -> None:
    class NoExampleOrg:
        @hookimpl
        def before_subscribe(self, request, context):  # type: ignore[no-untyped-def]
            if (request.email or "").endswith("@example.org"):
                return "sign-ups from example.org are closed"
            return None

    client = edge(plugins=[NoExampleOrg()])
    app = client.restock
    bot = client.post(
        "/subscriptions", json={"variant_id": "v1", "email": "bot@example.com", "hp": "http://x"}
    )
    assert bot.status_code == 202 and bot.json() == {"status": "accepted"}
    vetoed = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.org"})
    assert vetoed.status_code == 422 and _error(vetoed) == {
        "code": "refused",
        "message": "sign-ups from example.org are closed",
    }
    assert _rows(app) == 0
    # a trusted caller is not judged by the hook
    assert app.subscribe("v1", email="a@example.org").created


def test_veto_objects_and_first_result_wins(edge) -> None:
    calls: list[str] = []

    class Silent:
        @hookimpl(tryfirst=True)
        def before_subscribe(self, request, context):  # type: ignore[no-untyped-def]
            calls.append("silent")
            return Veto("captcha token missing", silent=True) if not context.form else None

    class Later:
        @hookimpl
        def before_subscribe(self, request, context):  # type: ignore[no-untyped-def]
            calls.append("later")

    client = edge(plugins=[Silent(), Later()])
    answer = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    assert answer.status_code == 202 and _rows(client.restock) == 0
    assert calls == ["silent"]


@pytest.mark.parametrize(
    ("phone", "words"),
    [
        ("+449098790000", "premium-rate"),
        ("+19005550100", "premium-rate"),
        ("+18005550100", "toll-free"),
        ("+4930123456", "fixed-line"),
    ],
)
def test_sms_pumping_numbers_are_refused(edge, phone: str, words: str) -> None:
    client = edge()
    answer = client.post("/subscriptions", json={"variant_id": "v1", "phone": phone})
    assert answer.status_code == 422 and _error(answer)["field"] == "phone"
    assert words in _error(answer)["message"]
    assert _rows(client.restock) == 0


def test_sms_countries(edge) -> None:
    client = edge(sms_countries=["GB"])
    us = client.post("/subscriptions", json={"variant_id": "v1", "phone": "+14155550100"})
    assert us.status_code == 422 and _error(us)["field"] == "phone"
    gb = client.post("/subscriptions", json={"variant_id": "v1", "phone": "+447400123456"})
    assert gb.status_code == 202, gb.text
    assert _rows(client.restock) == 1


# ---------------------------------------------------------------- 5. answers that leak nothing


def test_repeat_sign_up_leaks_nothing(edge) -> None:
    client = edge()
    app = client.restock
    owner = {
        "variant_id": "v1",
        "email": "ada@example.com",
        "locale": "de",
        "attributes": {"first_name": "Ada", "phone": "+14155550100"},
    }
    first = client.post("/subscriptions", json=owner)
    stranger = client.post(
        "/subscriptions",
        json={"variant_id": "v1", "email": "ada@example.com", "customer_id": "attacker-1"},
    )
    assert first.status_code == stranger.status_code == 202
    assert first.json() == stranger.json() == {"status": "accepted"}
    assert "Ada" not in stranger.text and "de" not in stranger.text
    (stored,) = app.list_subscriptions().items
    assert stored.customer_id is None  # a stranger cannot attach a customer id
    # a consent record was kept for the stored sign-up only
    with app.engine.connect() as conn:
        from restock_core.db import consents

        (consent,) = conn.execute(consents.select()).all()
    assert consent.subscription_id == stored.id and consent.user_agent == "testclient"


def test_in_stock_answer_has_no_count(edge) -> None:
    client = edge()
    client.put("/stock/v1", json={"quantity": 4711}, headers=ADMIN)
    answer = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    assert answer.status_code == 409 and _error(answer)["code"] == "in_stock"
    assert "4711" not in answer.text


# ---------------------------------------------------------------- 6. input hardening


NUL_SIGNUPS = [
    ({"variant_id": "a\x00b"}, "variant_id"),
    ({"scope": "s\x00"}, "scope"),
    ({"customer_id": "c\x00"}, "customer_id"),
    ({"locale": "de\x00"}, "locale"),
    ({"product_id": "p\x01"}, "product_id"),
    ({"email": "a\x00@example.com"}, "email"),
    ({"source": "manual\x00"}, "source"),
    ({"attributes": {"k\x00": 1}}, "attributes"),
    ({"attributes": {"k": "v\x00"}}, "attributes.k"),
    ({"attributes": {"k": "\ud800"}}, "attributes.k"),
    ({"consent_text": "I agree\x00"}, "consent_text"),
]


@pytest.mark.parametrize(("change", "field"), NUL_SIGNUPS)
def test_control_characters_are_422_naming_the_field(edge, change, field) -> None:
    client = edge()
    # json.dumps escapes (\u0000, \ud800) as a hostile client would send them
    body = json.dumps({"variant_id": "v1", "email": "a@example.com", **change})
    plain = {"content-type": "application/json"}
    answer = client.post("/subscriptions", content=body, headers=plain)
    assert answer.status_code == 422, answer.text
    assert _error(answer)["field"] == field
    secret = client.post("/subscriptions", content=body, headers={**plain, **SECRET})
    assert secret.status_code == 422 and _error(secret)["field"] == field
    assert _rows(client.restock) == 0


def test_nul_in_trusted_routes_paths_and_filters(edge) -> None:
    client = edge()
    for field in ("product_title", "variant_title", "url"):
        answer = client.post(
            "/subscriptions",
            json={"variant_id": "v1", "email": "a@example.com", field: "https://x\x00"},
            headers=SECRET,
        )
        assert answer.status_code == 422 and _error(answer)["field"] == field
    path = client.put("/stock/a%00b", json={"quantity": 1}, headers=ADMIN)
    assert path.status_code == 422 and _error(path)["field"] == "variant_id"
    title = client.put("/stock/v1", json={"quantity": 1, "product_title": "x\x00"}, headers=ADMIN)
    assert title.status_code == 422 and _error(title)["field"] == "product_title"
    for name in ("variant_id", "scope"):
        listed = client.get("/subscriptions", params={name: "a\x00"}, headers=ADMIN)
        assert listed.status_code == 422 and _error(listed)["field"] == name


def test_attributes_depth_keys_and_size(edge) -> None:
    client = edge()
    deep: Any = "x"
    for _ in range(900):
        deep = {"a": deep}
    cases = [
        deep,
        {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
        {f"k{i}": i for i in range(101)},
        {"blob": "x" * 9000},
        {"k" * 101: 1},
    ]
    for attributes in cases:
        answer = client.post(
            "/subscriptions",
            json={"variant_id": "v1", "email": "a@example.com", "attributes": attributes},
        )
        assert answer.status_code == 422, answer.text[:200]
        assert _error(answer)["field"].startswith("attributes")
    huge = client.post(
        "/subscriptions",
        json={"variant_id": "v1", "email": "a@example.com", "attributes": {"b": "x" * 900_000}},
    )
    assert huge.status_code in (413, 422)
    ok = client.post(
        "/subscriptions",
        json={
            "variant_id": "v1",
            "email": "a@example.com",
            "attributes": {"a": {"b": {"c": {"d": "line\nbreak"}}}, "tags": [1, "x"]},
        },
    )
    assert ok.status_code == 202
    # every admin read still works
    (stored,) = client.get("/subscriptions", headers=ADMIN).json()["items"]
    assert client.get(f"/subscriptions/{stored['id']}", headers=ADMIN).status_code == 200


def test_chunked_body_over_the_limit_is_413(edge) -> None:
    client = edge(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"variant_id": "v1", "email": "a@example.com", "attributes": {"x": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}}'

    answer = client.post(
        "/subscriptions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413 and _error(answer)["code"] == "too_large"
    declared = client.post(
        "/subscriptions",
        content=b"{" + b" " * 4000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413
    assert _rows(client.restock) == 0


@pytest.mark.parametrize("quantity", ["3", True, 3.0, 3.5, None, 2**31])
def test_quantity_is_a_strict_integer(edge, quantity: Any) -> None:
    client = edge()
    answer = client.put("/stock/v1", json={"quantity": quantity}, headers=ADMIN)
    assert answer.status_code == 422 and _error(answer)["field"] == "quantity"


def test_variant_ids_with_a_slash_work_on_every_route(edge) -> None:
    client = edge()
    app = client.restock
    variant = "gid://shop/Variant/7"
    assert (
        client.post("/subscriptions", json={"variant_id": variant, "email": "a@example.com"})
    ).status_code == 202
    stock = client.put(f"/stock/{variant}", json={"quantity": 1}, headers=ADMIN)
    assert stock.status_code == 200 and stock.json()["variant_id"] == variant
    assert stock.json()["restocks_opened"]
    app.worker().drain()
    assert [m["to"] for m in _sent(client)] == ["a@example.com"]
    listed = client.get("/subscriptions", params={"variant_id": variant}, headers=ADMIN)
    assert listed.json()["items"][0]["status"] == "notified"


# ---------------------------------------------------------------- the pieces


def test_buckets_refill() -> None:
    buckets = Buckets(2, 10.0)
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) == pytest.approx(5.0)
    assert buckets.take("b", now=0.0) == 0.0
    assert buckets.take("a", now=5.0) == 0.0
    assert Buckets(0, 10.0).take("a") == 0.0  # 0 turns the limit off


def test_client_ip_believes_only_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_ip("198.51.100.7", "1.2.3.4", proxies) == "198.51.100.7"
    assert client_ip("10.1.2.3", "1.2.3.4", proxies) == "1.2.3.4"
    # the client prepends a forged hop; the proxy appends the real one
    assert client_ip("127.0.0.1", "6.6.6.6, 203.0.113.5, 10.0.0.2", proxies) == "203.0.113.5"
    assert client_ip("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"
    with pytest.raises(ValueError, match="trusted_proxies"):
        parse_networks(["not-an-ip"])


# ---------------------------------------------------------------- 8. data rights


def test_export_and_erase_a_contact_keeps_opt_outs(edge) -> None:
    client = edge()
    app = client.restock
    for variant in ("v1", "v2"):
        client.post(
            "/subscriptions",
            json={"variant_id": variant, "email": "ada@example.com", "consent_text": "I agree"},
        )
    client.post("/subscriptions", json={"variant_id": "v1", "email": "bob@example.com"})
    client.put("/stock/v1", json={"quantity": 5}, headers=ADMIN)
    app.worker().drain()
    from restock_core.models import Channel

    app.suppress(Channel.EMAIL, "ada@example.com", "sendgrid unsubscribe: ada@example.com")
    exported = client.get("/contacts/export", params={"email": "ADA@example.com"}, headers=ADMIN)
    assert exported.status_code == 200
    data = exported.json()
    assert data["contact"] == "ada@example.com"
    assert len(data["subscriptions"]) == 2 and len(data["deliveries"]) == 1
    assert [c["text"] for c in data["consents"]] == ["I agree", "I agree"]
    assert data["suppressions"][0]["channel"] == "email"
    assert client.get("/contacts/export", headers=ADMIN).status_code == 422
    assert client.get("/contacts/export", params={"email": "a@example.com"}).status_code == 401

    erased = client.post("/contacts/erase", json={"email": "ada@example.com"}, headers=ADMIN)
    assert erased.status_code == 200
    assert erased.json()["erased"] == {
        "subscriptions": 2,
        "deliveries": 1,
        "consents": 0,  # they went with the subscriptions
        "suppressions_kept_hashed": 1,
    }
    after = app.export_contact(email="ada@example.com")
    assert after["subscriptions"] == after["deliveries"] == after["consents"] == []
    (kept,) = after["suppressions"]
    assert kept["contact"].startswith("sha256:") and "ada@" not in kept["reason"]
    # erasure does not re-enable mail: she still cannot be signed up
    assert app.is_suppressed(Channel.EMAIL, "ada@example.com")
    assert client.post(
        "/subscriptions", json={"variant_id": "v3", "email": "ada@example.com"}
    ).json() == {"status": "accepted"}
    assert not app.list_subscriptions(contact="ada@example.com").items
    # nobody else was touched
    assert len(app.list_subscriptions(contact="bob@example.com").items) == 1


def test_list_and_lift_suppressions(edge) -> None:
    from restock_core.models import Channel

    client = edge()
    app = client.restock
    for i in range(3):
        app.suppress(Channel.EMAIL, f"s{i}@example.com", "bounce")
    app.suppress(Channel.SMS, "+14155550100", "STOP")
    page = client.get("/suppressions", params={"limit": 2}, headers=ADMIN).json()
    assert [r["contact"] for r in page["items"]] == ["s0@example.com", "s1@example.com"]
    rest = client.get(
        "/suppressions", params={"limit": 2, "after": page["next_after"]}, headers=ADMIN
    ).json()
    assert [r["contact"] for r in rest["items"]] == ["s2@example.com", "+14155550100"]
    sms = client.get("/suppressions", params={"channel": "sms"}, headers=ADMIN).json()
    assert [r["contact"] for r in sms["items"]] == ["+14155550100"]
    lifted = client.delete("/suppressions/email/s1@example.com", headers=ADMIN)
    assert lifted.status_code == 200 and not app.is_suppressed(Channel.EMAIL, "s1@example.com")
    assert client.delete("/suppressions/email/s1@example.com", headers=ADMIN).status_code == 404
    assert client.delete("/suppressions/fax/x", headers=ADMIN).status_code == 422
    assert client.get("/suppressions", params={"channel": "fax"}, headers=ADMIN).status_code == 422
