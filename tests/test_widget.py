"""The widget's HTTP side (script, availability, sign-up, CORS) on SQLite and PostgreSQL.
The widget itself runs in a real browser in tests/browser/."""

from __future__ import annotations

import gzip
import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.config import parse_config
from restock_core.db import consents
from restock_core.errors import ConfigError
from restock_core.widget import STATIC

SHOP = "https://shop.example"


@pytest.fixture
def client(make_app):
    app = make_app({"restock": {"cors_origins": [SHOP, "http://127.0.0.1:8080"]}})
    app.set_stock("sold", 0)
    app.set_stock("plenty", 12)
    with TestClient(create_api(app), raise_server_exceptions=False) as test_client:
        test_client.restock = app
        yield test_client


def test_widget_script_is_small_and_cacheable(client) -> None:
    raw = (STATIC / "widget.js").read_bytes()
    size = len(gzip.compress(raw, 9))
    print(f"widget.js: {len(raw)} bytes, {size} bytes gzipped")
    assert size < 10 * 1024
    answer = client.get("/widget.js")
    assert answer.status_code == 200 and answer.content == raw
    assert answer.headers["content-type"].startswith("text/javascript")
    assert "public" in answer.headers["cache-control"]
    again = client.get("/widget.js", headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304


def test_availability_says_sold_out_or_not_and_nothing_more(client) -> None:
    sold = client.get("/widget/availability", params={"variant": "sold"})
    assert sold.status_code == 200
    assert sold.json() == {"sold_out": True, "channels": ["email", "sms"]}
    assert sold.headers["cache-control"] == "public, max-age=30"
    plenty = client.get("/widget/availability", params={"variant": "plenty"})
    assert plenty.json() == {"sold_out": False, "channels": []}
    assert "12" not in plenty.text  # no stock count leaks
    # unknown stock: a sign-up would be accepted, so the form shows
    unknown = client.get("/widget/availability", params={"variant": "never-seen"})
    assert unknown.json()["sold_out"] is True


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "variant"),
        ({"variant": "x" * 256}, "variant"),
        ({"variant": "a\nb"}, "variant"),
        ({"variant": "v", "source": "nope"}, "source"),
    ],
)
def test_availability_refuses_bad_input(client, params, field) -> None:
    answer = client.get("/widget/availability", params=params)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field


def test_availability_is_cached_briefly(client) -> None:
    assert client.get("/widget/availability", params={"variant": "sold"}).json()["sold_out"]
    client.restock.set_stock("sold", 5)
    # within the 30 s the browser may cache it too, the answer stands
    assert client.get("/widget/availability", params={"variant": "sold"}).json()["sold_out"]


def test_sign_up_needs_consent_and_drops_honeypot(client) -> None:
    app = client.restock
    no_consent = client.post(
        "/widget/subscriptions", json={"variant_id": "sold", "email": "ada@example.com"}
    )
    assert no_consent.status_code == 422
    assert no_consent.json()["error"]["field"] == "consent"
    bot = client.post(
        "/widget/subscriptions",
        json={"variant_id": "sold", "email": "bot@example.com", "consent": True, "hp": "x"},
    )
    assert bot.status_code == 201 and bot.json()["status"] == "subscribed"
    assert app.list_subscriptions().items == ()
    ok = client.post(
        "/widget/subscriptions",
        json={"variant_id": "sold", "email": "Ada@Example.com", "consent": True, "locale": "de"},
    )
    assert ok.status_code == 201 and ok.json() == {
        "status": "subscribed",
        "channel": "email",
        "confirm": False,
    }
    again = client.post(
        "/widget/subscriptions",
        json={"variant_id": "sold", "email": "ada@example.com", "consent": True},
    )
    # a repeat sign-up is answered exactly like a new one (docs/security.md)
    assert again.status_code == 201 and again.json() == ok.json()
    (sub,) = app.list_subscriptions().items
    assert sub.contact == "ada@example.com" and sub.locale == "de"


def test_sign_up_takes_no_message_content_from_the_browser(client) -> None:
    answer = client.post(
        "/widget/subscriptions",
        json={
            "variant_id": "sold",
            "email": "a@example.com",
            "consent": True,
            "product_title": "<a>",
        },
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "product_title"


#: what widget.js sends across origins: its JSON as text/plain (no CORS preflight)
SIMPLE = {"content-type": "text/plain;charset=UTF-8", "origin": SHOP}


@pytest.mark.parametrize("headers", [{}, SIMPLE], ids=["json", "text/plain"])
@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"variant_id": "plenty", "email": "a@example.com"}, 409, "variant_id"),
        ({"variant_id": "sold", "email": "nope"}, 422, "email"),
        ({"variant_id": "sold", "phone": "12"}, 422, "phone"),
        ({"variant_id": "sold"}, 422, "email"),
        ({"variant_id": "sold", "email": "a@example.com", "url": "x"}, 422, "url"),
    ],
)
def test_sign_up_errors(client, headers, body, status, field) -> None:
    raw = json.dumps({**body, "consent": True})
    answer = client.post(
        "/widget/subscriptions",
        content=raw,
        headers={"content-type": "application/json", **headers},
    )
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == field


def test_the_widgets_text_plain_sign_up_is_its_json(client) -> None:
    body = {"variant_id": "sold", "scope": "default", "consent": True, "locale": "en"}
    answer = client.post(
        "/widget/subscriptions",
        content=json.dumps({**body, "email": "a@example.com"}),
        headers=SIMPLE,
    )
    assert answer.status_code == 201
    assert answer.json() == {"status": "subscribed", "channel": "email", "confirm": False}
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert [s.contact for s in client.restock.list_subscriptions().items] == ["a@example.com"]
    malformed = client.post("/widget/subscriptions", content=b'{"variant_id": ', headers=SIMPLE)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed"
    big = json.dumps({**body, "email": "b@example.com", "hp": "x" * 1_100_000})
    assert client.post("/widget/subscriptions", content=big, headers=SIMPLE).status_code == 413
    # the public API stays JSON-only: a text/plain body is not an object there
    core = client.post(
        "/subscriptions",
        content=json.dumps({"variant_id": "sold", "email": "c@x.io"}),
        headers=SIMPLE,
    )
    assert core.status_code == 422
    assert len(client.restock.list_subscriptions().items) == 1
    documented = client.get("/openapi.json").json()["paths"]["/widget/subscriptions"]["post"]
    assert set(documented["requestBody"]["content"]) == {"application/json", "text/plain"}
    assert "403" in documented["responses"]


#: a plain `<form enctype="text/plain">` with one field named `{"variant_id": ..., "x": "`
#: and valued `"}` posts this: JSON (the form's `=` lands inside a string)
FORM_BODY = b'{"variant_id":"sold","consent":true,"email":"victim@example.com","locale":"=en"}'


@pytest.mark.parametrize(
    "origins",
    [[], ["https://evil.example"], ["null"], [SHOP, SHOP], [SHOP, "https://evil.example"]],
    ids=["none", "foreign", "null", "twice", "two"],
)
def test_a_text_plain_sign_up_needs_one_configured_origin(client, origins) -> None:
    # a CORS simple request: any page's fetch() or plain form makes a browser send it,
    # so restock refuses it unless the Origin is one of cors_origins (no preflight did)
    headers = [("content-type", "text/plain"), *(("origin", o) for o in origins)]
    answer = client.post("/widget/subscriptions", content=FORM_BODY, headers=headers)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "origin_not_allowed"
    assert "cors_origins" in answer.json()["error"]["message"]
    assert client.restock.list_subscriptions().items == ()
    assert count_consents(client.restock) == 0
    # the same bytes from the storefront's own page do sign up: the Origin is the difference
    ok = client.post("/widget/subscriptions", content=FORM_BODY, headers=SIMPLE)
    assert ok.status_code == 201
    assert [s.contact for s in client.restock.list_subscriptions().items] == ["victim@example.com"]


def count_consents(app) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(consents)).scalar_one())


def test_cors_only_for_configured_origins_and_public_paths(client) -> None:
    preflight = client.options(
        "/widget/subscriptions",
        headers={
            "origin": SHOP,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-credentials" not in preflight.headers
    got = client.get("/widget/availability", params={"variant": "sold"}, headers={"origin": SHOP})
    assert got.headers["access-control-allow-origin"] == SHOP
    other = client.get(
        "/widget/availability",
        params={"variant": "sold"},
        headers={"origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in other.headers
    refused = client.options(
        "/widget/subscriptions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert refused.status_code == 400
    # the core's public sign-up answers cross-origin too, its admin list on the same path not
    core = client.options(
        "/subscriptions",
        headers={"origin": SHOP, "access-control-request-method": "POST"},
    )
    assert core.status_code == 200 and core.headers["access-control-allow-origin"] == SHOP
    admin_preflight = client.options(
        "/subscriptions",
        headers={"origin": SHOP, "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in admin_preflight.headers
    # admin and dashboard routes never answer cross-origin
    admin = client.get("/subscriptions", headers={"origin": SHOP})
    assert "access-control-allow-origin" not in admin.headers
    login = client.get("/admin/login", headers={"origin": SHOP})
    assert "access-control-allow-origin" not in login.headers


def test_no_cors_by_default(make_app) -> None:
    app = make_app()
    with TestClient(create_api(app)) as client:
        answer = client.get(
            "/widget/availability", params={"variant": "v"}, headers={"origin": SHOP}
        )
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    "origin", ["*", "https://shop.example/", "shop.example", "https://shop.example/path", "ftp://x"]
)
def test_cors_origins_must_be_exact_origins(origin) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"restock": {"cors_origins": [origin]}})
    assert error.value.option == "cors_origins"


def test_cors_origins_accepts_origins_with_ports() -> None:
    config = parse_config({"restock": {"cors_origins": ["http://127.0.0.1:8080", SHOP]}})
    assert config.settings.cors_origins == ["http://127.0.0.1:8080", SHOP]


def test_cors_applies_behind_a_proxy_prefix(make_app) -> None:
    # `restock serve` behind a proxy at /restock: uvicorn puts the root path in front of
    # the request's path, and the public paths must still answer the storefront
    app = make_app({"restock": {"cors_origins": [SHOP]}})
    app.set_stock("sold", 0)
    api = create_api(app)
    with TestClient(api, raise_server_exceptions=False, root_path="/restock") as client:
        preflight = client.options(
            "/restock/widget/subscriptions",
            headers={"origin": SHOP, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == SHOP
        signed = client.post(
            "/restock/widget/subscriptions",
            json={"variant_id": "sold", "email": "a@example.com", "consent": True},
            headers={"origin": SHOP},
        )
        assert signed.status_code == 201
        assert signed.headers["access-control-allow-origin"] == SHOP
        got = client.get(
            "/restock/widget/availability", params={"variant": "sold"}, headers={"origin": SHOP}
        )
        assert got.headers["access-control-allow-origin"] == SHOP
        admin = client.get("/restock/subscriptions", headers={"origin": SHOP})
        assert "access-control-allow-origin" not in admin.headers
