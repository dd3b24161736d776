"""The /admin dashboard's sessions, CSRF and queries, on SQLite and PostgreSQL (the pages
in a real browser: tests/browser/test_dashboard_browser.py)."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.dashboard.auth import SESSION_COOKIE, Sessions, _mac
from restock_core.db import deliveries, restocks, utcnow
from restock_core.models import Channel, SendResult
from restock_core.store.dashboard import SORTS
from tests.support import ScriptedPlugin, scripted_config

KEY = "dashboard-key"


def login(client: TestClient, key: str = KEY) -> str:
    """Sign in; returns the CSRF token of the next page."""
    form = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = client.post(
        "/admin/login",
        data={"csrf": token, "key": key, "next": "/admin/demand"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/admin/demand")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def app(make_app):
    return make_app({"restock": {"admin_api_key": KEY}})


@pytest.fixture
def client(app):
    with TestClient(create_api(app), raise_server_exceptions=False) as test_client:
        yield test_client


def seed_demand(app) -> dict[str, int]:
    """Variants with 1..7 pending sign-ups (and one notified that must not count)."""
    wanted = {}
    for n in range(1, 8):
        variant = f"v{n}"
        app.set_stock(variant, 0)
        for i in range(n):
            app.subscribe(variant, email=f"p{i}@example.com", product_title=f"Product {n}")
        wanted[variant] = n
    return wanted


def test_pages_need_a_session(client) -> None:
    for path in (
        "/admin",
        "/admin/demand",
        "/admin/demand.csv",
        "/admin/subscribers",
        "/admin/restocks",
        "/admin/deliverability",
        "/admin/charts",
        "/admin/messages",
    ):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/admin/login?next="), path
    posted = client.post(
        "/admin/suppressions/lift",
        data={"channel": "email", "contact": "a@b.c"},
        follow_redirects=False,
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith("/admin/login")


def test_login_wrong_key_and_login_csrf(client) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    wrong = client.post("/admin/login", data={"csrf": token, "key": "nope"})
    assert wrong.status_code == 401 and "not the admin key" in wrong.text
    client.cookies.clear()  # no login cookie: the form cannot be replayed from elsewhere
    forged = client.post("/admin/login", data={"csrf": token, "key": KEY}, follow_redirects=False)
    assert forged.status_code == 403
    assert SESSION_COOKIE not in forged.cookies


def test_session_cookie_attributes_and_tampering(client, app) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = client.post("/admin/login", data={"csrf": token, "key": KEY}, follow_redirects=False)
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/admin" in header
    cookie = answer.cookies[SESSION_COOKIE]
    assert client.get("/admin/demand", follow_redirects=False).status_code == 200
    client.cookies.set(
        SESSION_COOKIE, cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"), path="/admin"
    )
    assert client.get("/admin/demand", follow_redirects=False).status_code == 303
    # an expired one, properly signed
    sessions = Sessions(app)
    old = f"{int(time.time()) - 13 * 3600}.abc"
    client.cookies.set(
        SESSION_COOKIE, f"{old}.{_mac(sessions._key(), 'session:' + old)}", path="/admin"
    )
    assert client.get("/admin/demand", follow_redirects=False).status_code == 303


def test_changing_the_admin_key_ends_sessions(make_app, app) -> None:
    cookie = Sessions(app).issue()
    assert Sessions(app).verify(cookie)
    other = make_app({"restock": {"admin_api_key": "rotated", "secret_key": "s"}})
    same_secret = make_app({"restock": {"admin_api_key": KEY, "secret_key": "s"}})
    assert Sessions(other).verify(Sessions(same_secret).issue()) is None


def test_forms_need_the_csrf_token(client, app) -> None:
    app.suppress(Channel.EMAIL, "gone@example.com", "bounce")
    csrf = login(client)
    for token in (None, "", "forged"):
        data = {"channel": "email", "contact": "gone@example.com"}
        if token is not None:
            data["csrf"] = token
        answer = client.post("/admin/suppressions/lift", data=data, follow_redirects=False)
        assert answer.status_code == 403
    assert app.is_suppressed(Channel.EMAIL, "gone@example.com")
    answer = client.post(
        "/admin/suppressions/lift",
        data={"csrf": csrf, "channel": "email", "contact": "gone@example.com"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert not app.is_suppressed(Channel.EMAIL, "gone@example.com")
    out = client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/admin/demand", follow_redirects=False).status_code == 303


def test_disabled_without_admin_key(make_app) -> None:
    app = make_app()
    with TestClient(create_api(app)) as client:
        assert "dashboard is disabled" in client.get("/admin/login").text
        answer = client.post("/admin/login", data={"key": ""}, follow_redirects=False)
        assert answer.status_code == 403
        assert client.get("/admin/demand", follow_redirects=False).status_code == 303


def test_login_next_stays_on_the_dashboard(client) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    answer = client.post(
        "/admin/login",
        data={"csrf": token, "key": KEY, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/admin/demand"


@pytest.mark.parametrize("sort", SORTS)
def test_demand_keyset_pages_cover_everything_once(app, sort) -> None:
    wanted = seed_demand(app)
    app.subscribe("v7", email="late@example.com")
    wanted["v7"] += 1
    seen, cursor = [], None
    while True:
        page = app.store.dashboard.demand(sort=sort, cursor=cursor, limit=3)
        seen.extend(page.rows)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert {r.variant_id: r.pending for r in seen} == wanted
    assert len(seen) == len(wanted)
    if sort == "pending":
        assert [r.variant_id for r in seen] == ["v7", "v6", "v5", "v4", "v3", "v2", "v1"]
    else:
        assert [r.variant_id for r in seen] == sorted(wanted)
    assert all(r.product_title == f"Product {r.variant_id[1:]}" for r in seen)
    assert all(r.last_week == r.pending for r in seen)
    assert all(r.oldest is not None for r in seen)


def test_demand_counts_only_pending(app) -> None:
    seed_demand(app)
    app.set_stock("v3", 5)
    app.worker().drain()
    rows = app.store.dashboard.demand().rows
    assert "v3" not in {r.variant_id for r in rows}


def test_demand_search_and_bad_cursors(client, app) -> None:
    seed_demand(app)
    app.subscribe("odd_100%", email="a@example.com")
    assert [r.variant_id for r in app.store.dashboard.demand(q="100%").rows] == ["odd_100%"]
    assert [r.variant_id for r in app.store.dashboard.demand(q="product 3").rows] == ["v3"]
    assert app.store.dashboard.demand(q="%").rows[0].variant_id == "odd_100%"
    login(client)
    for after in ("garbage", "W10", "WyJhIiwxLDIsM10"):
        answer = client.get("/admin/demand", params={"after": after, "sort": "oldest"})
        assert answer.status_code == 200
    assert client.get("/admin/demand", params={"sort": "nonsense"}).status_code == 200


def test_demand_csv_is_spreadsheet_safe(client, app) -> None:
    app.subscribe("v1", email="a@example.com", product_title='=HYPERLINK("http://evil")')
    login(client)
    answer = client.get("/admin/demand.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["source", "variant_id", "scope"]
    assert rows[1][3] == '\'=HYPERLINK("http://evil")'
    assert rows[1][5] == "1"


def test_subscribers_of_a_variant_and_by_contact(client, app) -> None:
    app.subscribe("v1", email="ada@example.com")
    app.subscribe("v2", email="ada@example.com")
    app.subscribe("v1", phone="+14155550100")
    login(client)
    page = client.get("/admin/subscribers", params={"variant": "v1", "source": "manual"})
    assert page.text.count('class="contact"') == 2
    found = client.get("/admin/subscribers", params={"contact": "+1 415 555 0100"})
    assert found.text.count('class="contact"') == 1 and "+14155550100" in found.text
    found = client.get("/admin/subscribers", params={"contact": "ADA@example.com"})
    assert found.text.count('class="contact"') == 2
    bad = client.get("/admin/subscribers", params={"contact": "not a contact"})
    assert "neither an email address nor a phone number" in bad.text
    exported = client.get("/admin/subscribers.csv", params={"variant": "v1"})
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert [r[5] for r in rows[1:]] == ["ada@example.com", "+14155550100"]


def test_subscribers_keyset(app) -> None:
    for i in range(5):
        app.subscribe("v1", email=f"s{i}@example.com")
    first, after = app.store.dashboard.subscribers(variant_id="v1", limit=3)
    second, end = app.store.dashboard.subscribers(variant_id="v1", limit=3, after=after)
    assert [r.contact for r in first + second] == [f"s{i}@example.com" for i in range(5)]
    assert end is None


def test_requeue_failed_deliveries(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(
        {**scripted_config(), "restock": {"admin_api_key": KEY, "retry_base": 0.0}},
        plugins=[plugin],
    )
    for name in ("ann", "bob", "cy"):
        app.subscribe("v1", email=f"{name}@example.com")
    plugin.provider.script.append(
        lambda m: (
            SendResult.failed(m.delivery_id, "invalid from address")
            if m.to != "cy@example.com"
            else SendResult.failed(m.delivery_id, "hard bounce", suppress=True)
        )
    )
    app.set_stock("v1", 3)
    app.worker().drain()
    statuses = {s.contact: str(s.status) for s in app.list_subscriptions().items}
    assert set(statuses.values()) == {"failed"}
    failures = app.store.dashboard.failures()
    assert sum(f.count for f in failures) == 3
    # bob signed up again in between: his new pending one stays the only pending one
    app.set_stock("v1", 0)
    app.subscribe("v1", email="bob@example.com")
    requeued = app.store.dashboard.requeue_failed()
    assert len(requeued) == 1  # ann; cy is suppressed, bob has a new sign-up
    app.worker().drain()
    statuses = {s.id: (s.contact, str(s.status)) for s in app.list_subscriptions().items}
    assert sorted(statuses.values()) == [
        ("ann@example.com", "notified"),
        ("bob@example.com", "failed"),
        ("bob@example.com", "pending"),
        ("cy@example.com", "failed"),
    ]
    health = app.store.dashboard.provider_health()
    assert health["scripted"].sent == 1 and health["scripted"].failed == 2


def test_restocks_and_per_day(app) -> None:
    for i in range(3):
        app.subscribe("v1", email=f"s{i}@example.com")
    app.set_stock("v1", 0)
    app.set_stock("v1", 2)
    app.worker().drain()
    rows, _ = app.store.dashboard.restocks()
    (restock,) = rows
    assert restock.variant_id == "v1" and restock.deliveries == {"sent": 3}
    assert restock.released == 3 and restock.still_pending == 0
    signups = app.store.dashboard.per_day("signups")
    sent = app.store.dashboard.per_day("sent")
    assert len(signups) == 30 and signups[-1][1] == 3 and sum(n for _, n in signups) == 3
    assert sent[-1][1] == 3


def test_message_preview_and_test_send(client, app, tmp_path) -> None:
    app.subscribe("v1", email="a@example.com", product_title="Mug", url="https://shop.example/mug")
    csrf = login(client)
    page = client.get("/admin/messages", params={"variant": "v1", "locale": "de-AT"})
    assert "Wieder verfügbar: Mug" in page.text
    assert 'sandbox srcdoc="' in page.text and "&lt;h1" in page.text
    sms = client.get("/admin/messages", params={"variant": "v1", "channel": "sms"})
    assert 'id="sms-encoding">GSM-7' in sms.text
    bad = client.get("/admin/messages", params={"variant": "v1", "source": "nope"})
    assert "unknown source" in bad.text
    sent = client.post(
        "/admin/messages/test",
        data={"csrf": csrf, "variant": "v1", "channel": "email", "to": "me@example.com"},
        follow_redirects=True,
    )
    assert "Test message sent to me@example.com through logger." in sent.text
    wrong = client.post(
        "/admin/messages/test",
        data={"csrf": csrf, "variant": "v1", "channel": "sms", "to": "me@example.com"},
        follow_redirects=True,
    )
    assert "Give your own email address" in wrong.text


def demand_counts(app) -> dict[str, int]:
    rows = app.store.dashboard.demand(limit=1000).rows
    return {r.variant_id: r.pending for r in rows}


def test_demand_counts_follow_every_change(make_app) -> None:
    """The trigger-kept counts equal a COUNT(*) through sign-ups, repeats, releases, failures,
    unsubscribes, requeues and deletes."""
    import sqlalchemy as sa

    from restock_core.db import subscriptions

    plugin = ScriptedPlugin()
    app = make_app(
        {**scripted_config(), "restock": {"admin_api_key": KEY, "retry_base": 0.0}},
        plugins=[plugin],
    )

    def truth() -> dict[str, int]:
        with app.read_engine.connect() as conn:
            rows = conn.execute(
                sa.select(subscriptions.c.variant_id, sa.func.count())
                .where(subscriptions.c.status == "pending")
                .group_by(subscriptions.c.variant_id)
            )
            return dict(rows.all())

    for i in range(6):
        app.subscribe("a", email=f"s{i}@example.com", product_title="Shirt")
    for i in range(3):
        app.subscribe("b", email=f"s{i}@example.com")
    app.subscribe("a", email="s0@example.com")  # a repeat changes nothing
    assert demand_counts(app) == truth() == {"a": 6, "b": 3}
    assert app.store.dashboard.demand().rows[0].product_title == "Shirt"
    token = app.signer.sign(app.list_subscriptions(variant_id="b").items[0].id)
    app.unsubscribe(token)
    assert demand_counts(app) == truth() == {"a": 6, "b": 2}
    plugin.provider.script.append(
        lambda m: (
            SendResult.failed(m.delivery_id, "rejected")
            if m.to == "s5@example.com"
            else SendResult.sent(m.delivery_id, "x")
        )
    )
    app.set_stock("a", 10)
    app.worker().drain()
    assert demand_counts(app) == truth() == {"b": 2}
    app.store.dashboard.requeue_failed()  # s5's failed one is pending again
    assert demand_counts(app) == truth() == {"a": 1, "b": 2}
    app.worker().drain()
    assert demand_counts(app) == truth() == {"b": 2}
    with app.engine.begin() as conn:  # a data-rights erasure
        conn.execute(sa.delete(subscriptions).where(subscriptions.c.variant_id == "b"))
    assert demand_counts(app) == truth() == {}


def test_failed_sign_ins_are_throttled(client) -> None:
    def attempt(key: str) -> int:
        page = client.get("/admin/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        return client.post(
            "/admin/login", data={"csrf": token, "key": key}, follow_redirects=False
        ).status_code

    assert [attempt("guess") for _ in range(5)] == [401] * 5
    assert attempt("guess") == 429
    assert attempt(KEY) == 429  # even the right key waits out the window


def test_out_of_range_cursors_are_refused_not_crashed(client) -> None:
    login(client)
    for path, param in (("/admin/subscribers", "after"), ("/admin/restocks", "before")):
        answer = client.get(path, params={param: str(2**70), "variant": "v"})
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == param


def wave_numbers(app, restock_id: int) -> dict[object, tuple[int, int, int, int]]:
    rows, _ = app.store.dashboard.restocks()
    (restock,) = [r for r in rows if r.id == restock_id]
    return {w.wave: (w.released, w.sent, w.failed, w.pending) for w in restock.wave_rows}


def page_waves(client: TestClient, restock_id: int) -> dict[str, list[str]]:
    """The wave rows of one restock on the Restocks page: wave -> its four numbers."""
    html = client.get("/admin/restocks").text
    table = re.search(
        rf'<table class="waves" aria-label="Waves of restock {restock_id}">(.*?)</table>',
        html,
        re.S,
    )
    assert table, html
    return {
        wave: re.findall(r'<td class="num">(\d+)</td>', cells)
        for wave, cells in re.findall(r'<tr data-wave="([^"]+)">(.*?)</tr>', table.group(1), re.S)
    }


def test_restock_page_shows_each_wave(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(
        {
            **scripted_config(),
            "restock": {
                "admin_api_key": KEY,
                "retry_base": 0.0,
                "per_unit": 2,
                "wave_interval": 3600,
            },
        },
        plugins=[plugin],
    )
    app.set_stock("v1", 0)
    for i in range(5):
        app.subscribe("v1", email=f"w{i}@example.com")
    app.set_stock("v1", 1)  # 1 unit x per_unit 2: two subscribers per wave
    worker = app.worker()
    assert worker.process_restocks() == 1
    rows, _ = app.store.dashboard.restocks()
    (restock,) = rows
    assert wave_numbers(app, restock.id) == {1: (2, 0, 0, 2)}  # released, not sent yet
    plugin.provider.script.append(
        lambda m: (
            SendResult.failed(m.delivery_id, "mailbox full")
            if m.to == "w1@example.com"
            else SendResult.sent(m.delivery_id, f"msg-{m.delivery_id}")
        )
    )
    worker.drain()
    assert wave_numbers(app, restock.id) == {1: (2, 1, 1, 0)}
    with app.engine.begin() as conn:  # the next wave is due now instead of in an hour
        conn.execute(sa.update(restocks).values(next_wave_at=utcnow()))
    assert worker.process_restocks() == 1
    assert wave_numbers(app, restock.id) == {1: (2, 1, 1, 0), 2: (2, 0, 0, 2)}
    with TestClient(create_api(app), raise_server_exceptions=False) as client:
        login(client)
        page = client.get("/admin/restocks")
        assert 'http-equiv="refresh"' in page.text  # live while the wave is being sent
        assert page_waves(client, restock.id) == {
            "1": ["2", "1", "1", "0"],
            "2": ["2", "0", "0", "2"],
        }
        worker.drain()
        assert page_waves(client, restock.id) == {
            "1": ["2", "1", "1", "0"],
            "2": ["2", "2", "0", "0"],
        }
        rows, _ = app.store.dashboard.restocks()
        assert rows[0].deliveries == {"sent": 3, "failed": 1} and rows[0].waves == 2
        # deliveries queued before migration 0007 carry no wave: one "earlier" group
        with app.engine.begin() as conn:
            conn.execute(sa.update(deliveries).where(deliveries.c.wave == 1).values(wave=None))
        assert page_waves(client, restock.id) == {
            "earlier": ["2", "1", "1", "0"],
            "2": ["2", "2", "0", "0"],
        }
        assert list(page_waves(client, restock.id)) == ["earlier", "2"]
