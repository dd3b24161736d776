"""The asynchronous sign-up path (issue 13): `POST /subscriptions` on the event loop, its
fast path, the checks made in the sign-up writer's transaction, and what must not run on
the event loop. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import email_validator
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from restock_core import InventoryAdapter, StockKey, hookimpl
from restock_core.api import PublicSignUpFastPath, create_api
from restock_core.contacts import _SIMPLE_EMAIL, normalize_email
from restock_core.db import consents, subscriptions
from restock_core.errors import InStockError, SuppressedError
from restock_core.limits import Buckets, _in, parse_networks
from restock_core.models import Channel
from restock_core.signup import SignUpContext, Veto
from restock_core.store.subscriptions import SignUpWrite
from tests.support import Recorder, sign_up_write

T = TypeVar("T")


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: the session's browser tests (Playwright's sync
    API) leave an event loop running in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Remote(InventoryAdapter):
    """An adapter whose stock lives on a platform (a stand-in for one): it records whether
    it was asked on an event loop."""

    name = "remote"

    def __init__(self) -> None:
        self.id = "remote"
        self.stock: dict[str, int] = {}
        self.asked_on_loop: list[bool] = []

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]:
        self.asked_on_loop.append(on_event_loop())
        return {k: self.stock.get(k.variant_id) for k in keys}


class RemotePlugin:
    def __init__(self) -> None:
        self.adapter = Remote()

    @hookimpl
    def register_inventory_adapters(self, register: Any) -> None:
        register("remote", lambda: self.adapter)


class SlowCaptcha:
    """A `before_subscribe` hook not marked nonblocking (it could call a CAPTCHA API)."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    @hookimpl
    def before_subscribe(self, request: Any, context: Any) -> Veto | None:
        self.on_loop.append(on_event_loop())
        return Veto("no robots") if request.variant_id == "robots" else None


PUBLIC = {"content-type": "application/json"}


def api_client(app: Any) -> TestClient:
    return TestClient(create_api(app), raise_server_exceptions=False)


def count(app: Any, table: sa.Table = subscriptions) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# ---------------------------------------------------------------- the fast path


SHOP = "https://shop.example"

#: the same kinds of sign-up on either path: new, repeat, honeypot, suppressed, in stock,
#: invalid for the sign-up, refused by the model (three ways), not an object, a phone
#: number, and one over the per-IP limit
CORE_BODIES: list[Any] = [
    {"variant_id": "v1", "email": "Ada@Example.com"},
    {"variant_id": "v1", "email": "ada@example.com"},  # a repeat
    {"variant_id": "v1", "email": "bot@example.com", "hp": "filled"},  # honeypot
    {"variant_id": "v1", "email": "gone@example.com"},  # suppressed
    {"variant_id": "in-stock", "email": "bob@example.com"},  # 409
    {"variant_id": "v1", "email": "not-an-address"},  # 422 from the sign-up
    {"variant_id": "v1", "email": "c@example.com", "product_title": "x"},  # public: 422
    {"variant_id": "v1", "email": "c@example.com", "nope": 1},  # 422 from pydantic
    {"variant_id": "", "email": "c@example.com"},  # 422 from pydantic
    [1, 2],  # not an object
    {"variant_id": "v2", "phone": "+14155550101"},
    {"variant_id": "v3", "email": "d@example.com"},  # over the per-IP limit: 429
]
WIDGET_BODIES: list[Any] = [
    {"variant_id": "v1", "scope": "default", "consent": True, "locale": "en", "email": "A@x.io"},
    {"variant_id": "v1", "consent": True, "email": "a@x.io"},  # a repeat
    {"variant_id": "v1", "consent": True, "email": "bot@x.io", "hp": "filled"},  # honeypot
    {"variant_id": "v1", "consent": True, "email": "gone@example.com"},  # suppressed
    {"variant_id": "v1", "email": "e@x.io"},  # no consent: 422 from the widget's handler
    {"variant_id": "in-stock", "consent": True, "email": "bob@x.io"},  # 409
    {"variant_id": "v1", "consent": True, "email": "not-an-address"},  # 422 from the sign-up
    {"variant_id": "v1", "consent": True, "email": "c@x.io", "url": "x"},  # 422 from pydantic
    {"variant_id": "v1", "consent": "maybe", "email": "c@x.io"},  # 422 from pydantic
    [1, 2],  # not an object
    {"variant_id": "v2", "consent": 1, "phone": "+14155550101"},
    {"variant_id": "v4", "consent": True, "email": "f@x.io"},  # the 8th to take a token
    {"variant_id": "v3", "consent": True, "email": "d@x.io"},  # over the per-IP limit: 429
]


def without_fast_path(api: Any) -> Any:
    """`api` with :class:`PublicSignUpFastPath` left out of its middleware stack (built at
    the first request), so every request takes the FastAPI route."""
    api.user_middleware = [m for m in api.user_middleware if m.cls is not PublicSignUpFastPath]
    return api


def answers(
    make_app: Any, headers: list[tuple[str, str]], path: str, root: str = "", *, fast: bool
) -> list[tuple[int, Any, Any]]:
    """The same sequence of public sign-ups on `path` against a fresh app, with the fast
    path or without it (the route alone): status, body, headers of each answer, then the
    rows and consent records stored. Every request sends `headers` (its content type and
    Origin headers) and the body's JSON bytes."""
    app = make_app(
        {
            "restock": {
                "limit_signups_per_ip": 8,
                "secret_api_key": "s3cret",
                "cors_origins": [SHOP, "http://127.0.0.1:8080"],
                "max_body_bytes": 4096,
            }
        }
    )
    app.set_stock("in-stock", 5)
    app.suppress(Channel.EMAIL, "gone@example.com", "hard bounce")
    api = create_api(app) if fast else without_fast_path(create_api(app))
    big = {"variant_id": "v1", "email": "e@example.com", "hp": "y" * 5000}
    bodies = CORE_BODIES if path == "/subscriptions" else WIDGET_BODIES
    raws = [json.dumps(body).encode() for body in bodies] + [b"{not json", json.dumps(big).encode()]
    out = []
    with TestClient(api, raise_server_exceptions=False, root_path=root) as client:
        for raw in raws:
            r = client.post(root + path, content=raw, headers=headers)
            out.append((r.status_code, r.json(), sorted(r.headers.items())))
    out.append((count(app), count(app, consents), None))
    return out


JSON = "application/json"
#: what widget.js sends across origins (a CORS "simple" request)
TEXT = "text/plain;charset=UTF-8"
EVIL = "https://evil.example"


@pytest.mark.parametrize(
    "path, origins, root, kind",
    [
        ("/subscriptions", (), "", JSON),  # a server
        ("/subscriptions", (SHOP,), "", JSON),  # a storefront page's script
        ("/subscriptions", (EVIL,), "", JSON),  # an origin not configured
        ("/subscriptions", ("null",), "", JSON),  # a sandboxed page
        ("/subscriptions", (), "/restock", JSON),  # behind a proxy prefix
        ("/subscriptions", (SHOP,), "/restock", JSON),
        ("/subscriptions", (SHOP,), "", TEXT),  # the public API takes JSON only
        ("/widget/subscriptions", (), "", JSON),
        ("/widget/subscriptions", (SHOP,), "", JSON),  # an older widget.js (preflighted)
        ("/widget/subscriptions", (EVIL,), "", JSON),
        ("/widget/subscriptions", (SHOP,), "/restock", JSON),
        ("/widget/subscriptions", (SHOP,), "", TEXT),  # the widget
        ("/widget/subscriptions", (SHOP,), "/restock", TEXT),
        ("/widget/subscriptions", (SHOP,), "", "text/plain"),
        # text/plain from anything but one configured origin: refused
        ("/widget/subscriptions", (), "", TEXT),  # no Origin: not a browser
        ("/widget/subscriptions", (EVIL,), "", TEXT),  # a foreign page's fetch() or form
        ("/widget/subscriptions", ("null",), "", TEXT),  # sandboxed, or no-referrer
        ("/widget/subscriptions", (SHOP, SHOP), "", TEXT),  # two Origin headers
        ("/widget/subscriptions", (SHOP, EVIL), "/restock", TEXT),
    ],
)
def test_the_fast_path_answers_exactly_as_the_route(
    make_app: Any, path: str, origins: tuple[str, ...], root: str, kind: str
) -> None:
    headers = [("content-type", kind), *(("origin", origin) for origin in origins)]
    fast = answers(make_app, headers, path, root, fast=True)
    route = answers(make_app, headers, path, root, fast=False)
    assert fast == route
    statuses = [status for status, _, _ in fast[:-1]]
    allowed = origins == (SHOP,)
    refused = kind != JSON and not (allowed and path == "/widget/subscriptions")
    if refused and path == "/subscriptions":  # a text/plain body is no JSON object there
        assert statuses == [422] * 13 + [413]
        assert fast[0][1]["error"]["code"] == "invalid"
        assert fast[-1][:2] == (0, 0)
    elif refused:  # 403 for every body within the limit, whatever it holds
        assert statuses == [403] * 14 + [413]
        assert fast[0][1] == {
            "error": {
                "code": "origin_not_allowed",
                "message": "a text/plain sign-up must come from a storefront page listed in "
                "cors_origins; servers send Content-Type: application/json",
            }
        }
        assert fast[-1][:2] == (0, 0)
    elif path == "/subscriptions":
        assert statuses == [202, 202, 202, 202, 409, 422, 422, 422, 422, 422, 202, 429, 400, 413]
        assert fast[-1][:2] == (2, 2)  # ada and the phone number, with their consents
    else:
        assert statuses == [
            *(201, 201, 201, 201, 422, 409, 422, 422, 422, 422, 201, 201, 429, 400, 413)
        ]
        assert fast[1][1] == {"status": "subscribed", "channel": "email", "confirm": False}
        assert fast[-1][:2] == (3, 3)
        assert any(name == "retry-after" for name, _ in fast[statuses.index(429)][2])
    if kind != JSON and not refused:  # the widget's text/plain: the answers JSON gets
        as_json = [("content-type", JSON), *headers[1:]]
        assert fast == answers(make_app, as_json, path, root, fast=True)
    # the CORS middleware reads the first Origin header (a browser never sends two)
    cors = SHOP if origins[:1] == (SHOP,) else None
    for status, _, answer_headers in fast[:-1]:
        names = dict(answer_headers)
        if status not in (400, 413):  # the route's answers (400/413 come from outside)
            assert names["vary"] == "Origin"
            assert names.get("access-control-allow-origin") == cors


def test_the_fast_path_answers_public_json_and_passes_everything_else_on(make_app) -> None:
    app = make_app({"restock": {"cors_origins": [SHOP]}})
    reached: list[str] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:  # what lies behind it
        message = await receive()
        reached.append(f"{scope['method']} {scope['path']} {message.get('body', b'')!r}")
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = PublicSignUpFastPath(route, restock=app, limit=200)

    async def call(
        method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], root: str = ""
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": root + path,
            "root_path": root,
            "headers": headers,
            "client": ("10.0.0.1", 1),
            "app": None,
        }
        await fast(scope, receive, send)
        return int(sent[0]["status"]), list(sent[0]["headers"])

    good = b'{"variant_id": "v1", "email": "ada@example.com"}'
    widget = b'{"variant_id": "v1", "email": "bob@example.com", "consent": true}'
    carol = b'{"variant_id": "v1", "email": "carol@example.com", "consent": true}'
    json_type = [(b"content-type", b"application/json; charset=utf-8")]
    text = (b"content-type", b"text/plain;charset=UTF-8")
    shop = (b"origin", SHOP.encode())

    async def run() -> list[tuple[int, list[tuple[bytes, bytes]]]]:
        return [
            await call("POST", "/subscriptions", good, json_type),
            await call("POST", "/subscriptions", good, json_type, root="/restock"),
            await call("POST", "/subscriptions", good, [*json_type, shop]),
            await call("POST", "/widget/subscriptions", widget, [shop, *json_type]),
            await call("POST", "/widget/subscriptions", widget, json_type, root="/restock"),
            await call("POST", "/widget/subscriptions", good, [*json_type, shop]),  # no consent
            await call("POST", "/widget/subscriptions", carol, [shop, text]),  # widget.js
            # the rest goes on
            await call("POST", "/subscriptions", good, [*json_type, (b"authorization", b"x")]),
            await call("POST", "/subscriptions", good, [*json_type, (b"origin", b"https://a.b")]),
            await call("POST", "/subscriptions", good, [*json_type, (b"origin", b"null")]),
            await call("POST", "/subscriptions", good, [*json_type, shop, shop]),  # two
            await call("POST", "/widget/subscriptions", widget, [shop, (b"origin", b"https://a")]),
            await call("POST", "/subscriptions", good, [*json_type, (b"content-length", b"201")]),
            await call("POST", "/subscriptions", b" " * 201 + good, json_type),
            await call("POST", "/subscriptions", good, [(b"content-type", b"text/plain")]),
            await call("POST", "/subscriptions", good, []),
            await call("POST", "/subscriptions", b'{"variant_id": 1}', json_type),
            await call("POST", "/widget/subscriptions", widget, [shop]),  # no JSON type
            await call("GET", "/subscriptions", b"", json_type),
            await call("OPTIONS", "/widget/subscriptions", b"", [shop]),  # a preflight
            await call("POST", "/widget/availability", widget, json_type),
            await call("POST", "/subscriptions/", good, json_type),
            # text/plain without one configured Origin, to the core's route, or with two types
            await call("POST", "/widget/subscriptions", carol, [text]),
            await call("POST", "/widget/subscriptions", carol, [text, (b"origin", b"null")]),
            await call("POST", "/subscriptions", good, [text, shop]),
            await call("POST", "/widget/subscriptions", carol, [shop, text, *json_type]),
        ]

    answered = run_in_own_loop(run())
    assert [status for status, _ in answered] == [202, 202, 202, 201, 201, 422, 201] + [299] * 19
    cors = (b"access-control-allow-origin", SHOP.encode())
    allowed = [cors in headers for _, headers in answered[:7]]
    assert allowed == [False, False, True, True, False, True, True]
    assert all((b"vary", b"Origin") in headers for _, headers in answered[:7])
    assert len(reached) == 19
    assert reached[6].endswith(repr(b" " * 201 + good))  # a body over the limit, replayed
    assert reached[9] == "POST /subscriptions b'{\"variant_id\": 1}'"  # the body, replayed
    assert reached[15] == f"POST /widget/subscriptions {carol!r}"
    assert count(app) == 3  # ada (the second and third are repeats), bob and carol


# ---------------------------------------------------------------- what runs where


def test_a_hook_not_marked_nonblocking_runs_off_the_event_loop(make_app) -> None:
    captcha = SlowCaptcha()
    app = make_app(plugins=[captcha])
    with api_client(app) as client:
        ok = client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
        assert ok.status_code == 202
        widget = client.post(
            "/widget/subscriptions",
            json={"variant_id": "v1", "email": "b@example.com", "consent": True},
        )
        assert widget.status_code == 201
    assert captcha.on_loop == [False, False]
    assert count(app) == 2


def test_the_built_in_honeypot_alone_runs_on_the_loop_and_stores_nothing(make_app) -> None:
    app = make_app()
    assert not app._hook_may_block()  # the honeypot is marked nonblocking
    with api_client(app) as client:
        caught = client.post(
            "/subscriptions", json={"variant_id": "v1", "email": "a@example.com", "hp": "x"}
        )
    assert caught.status_code == 202 and caught.json() == {"status": "accepted"}
    assert count(app) == 0


def test_a_remote_adapters_stock_is_read_off_the_loop_and_its_answer_kept(make_app) -> None:
    remote = RemotePlugin()
    app = make_app({"plugins": [{"resolve": "logger"}, {"resolve": "remote"}]}, plugins=[remote])
    remote.adapter.stock["in"] = 3
    with api_client(app) as client:
        sold_out = client.post("/subscriptions", json={"variant_id": "out", "email": "a@x.io"})
        in_stock = client.post("/subscriptions", json={"variant_id": "in", "email": "a@x.io"})
    assert (sold_out.status_code, in_stock.status_code) == (202, 409)
    assert remote.adapter.asked_on_loop == [False, False]
    # a suppressed contact still gets the public answer for an item in stock: the
    # suppression check comes first, as before
    app.suppress(Channel.EMAIL, "gone@x.io", "hard bounce")
    with api_client(app) as client:
        r = client.post("/subscriptions", json={"variant_id": "in", "email": "gone@x.io"})
    assert r.status_code == 202
    assert count(app) == 1


def test_observers_of_new_sign_ups_run_off_the_loop(make_app) -> None:
    seen: list[bool] = []

    class Observer:
        @hookimpl
        def subscription_created(self, subscription: Any) -> None:
            seen.append(on_event_loop())

    app = make_app(plugins=[Observer()])
    with api_client(app) as client:
        client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
        client.post("/subscriptions", json={"variant_id": "v1", "email": "a@example.com"})
    assert seen == [False]  # once: the repeat is not a new sign-up


# ---------------------------------------------------------------- the writer's checks


def test_many_concurrent_async_sign_ups_each_get_their_own_answer(make_app) -> None:
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    app.set_stock("in-stock", 2)
    app.suppress(Channel.EMAIL, "gone@example.com", "opted out")

    async def one(i: int) -> Any:
        variant = "in-stock" if i % 10 == 3 else f"v{i % 4}"
        email = "gone@example.com" if i % 10 == 7 else f"p{i % 40}@example.com"
        context = SignUpContext(trusted=False, ip=f"10.9.{i // 250}.{i % 250}")
        try:
            return await app.subscribe_public_async(variant, email=email, context=context)
        except InStockError:
            return "in stock"

    async def run() -> list[Any]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    results = run_in_own_loop(run())
    assert results.count("in stock") == 20
    assert all(r == "in stock" or r.channel == "email" for r in results)
    stored = count(app)
    # every (variant, contact) stored once; in-stock and suppressed ones not at all
    expected = {(f"v{i % 4}", f"p{i % 40}@example.com") for i in range(200) if i % 10 not in (3, 7)}
    assert stored == len(expected) == len(recorder.created)
    assert count(app, consents) == stored


def test_a_group_applies_suppression_then_stock_then_stores_the_rest(make_app) -> None:
    app = make_app()
    app.set_stock("in", 5)
    app.suppress(Channel.EMAIL, "gone@example.com", "hard bounce")
    erased = app.contact_hash("erased@example.com")
    app.suppress(Channel.EMAIL, erased, "erased")  # an erased contact: kept as its hash
    app.suppress(Channel.SMS, "sms-only@example.com", "odd but possible")
    writer = app.store.subscriptions.writer

    def write(contact: str, variant: str, **checks: Any) -> SignUpWrite:
        return sign_up_write(
            contact,
            variant,
            values={"attributes": {"k": "v"}},
            consent={"ip": "10.0.0.1"},
            suppression_hash=app.contact_hash(contact),
            **checks,
        )

    writes = [
        write("ok@example.com", "in"),  # in stock, but no stock check asked for
        write("gone@example.com", "in", stock_required=1),  # suppressed wins over in stock
        write("erased@example.com", "out"),
        write("sms-only@example.com", "out"),  # suppressed on another channel only
        write("late@example.com", "in", stock_required=1),
        write("enough@example.com", "in", stock_required=6),  # 5 is not enough: sold out
        write("said@example.com", "out", in_stock=True),  # the adapter said so
    ]
    writer.store_group(writes)
    outcomes = []
    for w in writes:
        try:
            sub, created = w.result()  # type: ignore[misc]
            outcomes.append(("stored", created, dict(sub.attributes)))
        except (SuppressedError, InStockError) as exc:
            outcomes.append((type(exc).__name__, exc.field, None))
    assert outcomes == [
        ("stored", True, {"k": "v"}),
        ("SuppressedError", "email", None),
        ("SuppressedError", "email", None),
        ("stored", True, {"k": "v"}),
        ("InStockError", "variant_id", None),
        ("stored", True, {"k": "v"}),
        ("InStockError", "variant_id", None),
    ]
    # what the group stored reads back as what it answered
    for w in (writes[0], writes[3]):
        sub, _ = w.result()  # type: ignore[misc]
        assert app.get_subscription(sub.id) == sub
    assert count(app) == count(app, consents) == 3


def test_a_repeat_in_the_one_by_one_path_is_checked_too(make_app) -> None:
    app = make_app()
    first = app.subscribe("v1", email="ada@example.com")
    app.suppress(Channel.EMAIL, "ada@example.com", "opted out since")
    with pytest.raises(SuppressedError):
        app.subscribe("v1", email="ada@example.com")
    app.set_stock("v2", 3)
    with pytest.raises(InStockError):
        app.subscribe("v2", email="bob@example.com")
    assert app.subscribe("v2", email="bob@example.com", check_stock=False).created
    assert app.get_subscription(first.subscription.id).contact == "ada@example.com"


def test_a_closed_writer_still_answers_an_async_sign_up(make_app) -> None:
    app = make_app()
    app.store.subscriptions.close()
    context = SignUpContext(trusted=False, ip="10.0.0.1")
    answer = run_in_own_loop(
        app.subscribe_public_async("v1", email="a@example.com", context=context)
    )
    assert answer.channel == "email" and count(app) == 1


# ---------------------------------------------------------------- cheaper checks, same answers


def assert_normalised_as_email_validator_does(address: str) -> None:
    """The fast check gives email_validator's answer: the same address, or a refusal."""
    try:
        expected = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        with pytest.raises(Exception, match="invalid email"):
            normalize_email(address)
        return
    assert normalize_email(address) == expected.normalized.lower()


@settings(max_examples=300, deadline=None)
@given(st.from_regex(_SIMPLE_EMAIL, fullmatch=True))
def test_common_addresses_normalise_as_email_validator_does(address: str) -> None:
    assert_normalised_as_email_validator_does(address)


@pytest.mark.parametrize(
    "address",
    [
        "a@b.local",
        "x@printer.localhost",
        "a@b.test",
        "a@onion.onion",
        "a..b@x.io",
        "a@ab--cd.com",
        "a@x--y.io",
        "a@xn--e1afmkfd.xn--p1ai",
        "a@x.y1",
        "a@1.com",
        "A_B+c-d@Sub.Example.COM",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "a@" + "d" * 63 + ".com",
        "a@" + "d" * 64 + ".com",
        "a@" + ".".join(["d" * 60] * 4) + ".com",
    ],
)
def test_addresses_at_the_edges_of_the_common_form_answer_as_before(address: str) -> None:
    assert_normalised_as_email_validator_does(address)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4).map(str), st.text(alphabet="0123456789.x ", max_size=16)))
def test_the_ipv4_trusted_proxy_check_matches_ipaddress(address: str) -> None:
    networks = parse_networks(["127.0.0.1", "10.0.0.0/8", "192.168.4.0/22", "::1"])
    try:
        expected = any(ipaddress.ip_address(address) in n for n in networks)
    except ValueError:
        expected = False
    assert _in(address, networks) == expected


def test_buckets_forget_the_least_recently_used_key_first() -> None:
    buckets = Buckets(1, 100.0, max_keys=2)
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("b", now=0.0) == 0.0
    assert buckets.take("a", now=1.0) > 0  # a is spent, and now the most recently used
    assert buckets.take("c", now=1.0) == 0.0  # three keys: b, the least recent, is forgotten
    assert buckets.take("b", now=1.0) == 0.0  # a full bucket again; a is forgotten now
    assert buckets.take("c", now=1.0) > 0  # c was kept (spent)
