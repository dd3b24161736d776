"""Double opt-in and retention (issue 9, items 4 and 8), on SQLite and PostgreSQL. See
docs/security.md."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

import restock_core.app as app_module
from restock_core.api import create_api
from restock_core.cli import main
from restock_core.clock import utcnow
from restock_core.db import demand
from restock_core.errors import ConfigError
from restock_core.models import Channel, Order, OrderLine

ADMIN = {"Authorization": "Bearer admin-key"}
SIGN_UP = {"variant_id": "v1", "email": "ada@example.com"}


@pytest.fixture
def optin(make_app, tmp_path: Path) -> Iterator[Any]:
    """An app with double opt-in, the logger provider writing each message to a file."""

    def build(**settings: Any) -> TestClient:
        sent = tmp_path / "sent.jsonl"
        app = make_app(
            {
                "restock": {
                    "admin_api_key": "admin-key",
                    "retry_base": 0.0,
                    "double_opt_in": True,
                    "public_url": "https://shop.example/restock",
                    **settings,
                },
                "plugins": [
                    {"resolve": "logger", "options": {"file": str(sent)}},
                    {"resolve": "manual"},
                ],
            }
        )
        client = TestClient(create_api(app), raise_server_exceptions=False)
        client.restock = app  # type: ignore[attr-defined]
        client.sent = sent  # type: ignore[attr-defined]
        return client

    yield build


def _sent(client: Any) -> list[dict[str, Any]]:
    path: Path = client.sent
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _status(client: Any) -> list[str]:
    return [str(s.status) for s in client.restock.list_subscriptions().items]


def _confirm_path(message: dict[str, Any]) -> str:
    found = re.search(r"https://shop\.example/restock(/confirm/\S+)", message["text"])
    assert found, message["text"]
    return found.group(1)


def test_double_opt_in_end_to_end(optin) -> None:
    client = optin()
    app = client.restock
    answer = client.post("/subscriptions", json=SIGN_UP)
    assert answer.status_code == 202
    assert answer.json() == {"status": "accepted", "confirm": True}
    assert _status(client) == ["unconfirmed"]
    # the confirmation goes out through the outbox, not from the request
    assert _sent(client) == []
    app.worker().drain()
    (request,) = _sent(client)
    assert request["template"] == "confirm" and request["to"] == "ada@example.com"
    assert "back in stock" in request["text"]
    path = _confirm_path(request)

    # a restock before the confirmation notifies nobody
    client.put("/stock/v1", json={"quantity": 3}, headers=ADMIN)
    app.worker().drain()
    assert len(_sent(client)) == 1
    assert _status(client) == ["unconfirmed"]
    client.put("/stock/v1", json={"quantity": 0}, headers=ADMIN)

    # GET (a link scanner) changes nothing; the page's button posts
    page = client.get(path)
    assert page.status_code == 200 and "<form method='post'" in page.text
    assert _status(client) == ["unconfirmed"]
    done = client.post(path)
    assert done.status_code == 200 and "Confirmed" in done.text
    assert _status(client) == ["pending"]
    assert client.post(path, headers={"Accept": "application/json"}).json() == {
        "status": "pending"
    }  # idempotent

    client.put("/stock/v1", json={"quantity": 2}, headers=ADMIN)
    app.worker().drain()
    messages = _sent(client)
    assert [m["template"] for m in messages] == ["confirm", "restock"]
    assert _status(client) == ["notified"]


def test_forged_and_cross_purpose_tokens_change_nothing(optin) -> None:
    client = optin()
    client.post("/subscriptions", json=SIGN_UP)
    (sub,) = client.restock.list_subscriptions().items
    unsubscribe_token = client.restock.signer.sign(sub.id)
    for token in ("bogus", "MQ.AAAAAAAAAAAAAAAAAAAAAA", unsubscribe_token):
        for method in (client.get, client.post):
            answer = method(f"/confirm/{token}")
            assert answer.status_code == 404, (token, method)
            assert "not valid" in answer.text
    assert (
        client.post("/confirm/bogus", headers={"Accept": "application/json"}).json()["error"][
            "field"
        ]
        == "token"
    )
    assert _status(client) == ["unconfirmed"]


def test_repeat_sign_ups_answer_alike_and_do_not_mail_without_end(optin) -> None:
    client = optin()
    answers = [client.post("/subscriptions", json=SIGN_UP) for _ in range(5)]
    assert {(a.status_code, json.dumps(a.json())) for a in answers} == {
        (202, json.dumps({"status": "accepted", "confirm": True}))
    }
    client.restock.worker().drain()
    assert len(_sent(client)) == 1  # one confirmation per resend interval
    assert _status(client) == ["unconfirmed"]


def test_resend_after_the_interval_is_capped(optin, monkeypatch) -> None:
    client = optin()
    app = client.restock
    start = utcnow() - timedelta(hours=3)  # every request due by now
    import restock_core.store.subscriptions as subs_module

    for step in range(6):  # a repeat sign-up every 20 minutes
        moment = start + timedelta(minutes=20 * step)
        monkeypatch.setattr(subs_module, "utcnow", lambda moment=moment: moment)
        client.post("/subscriptions", json=SIGN_UP)
    monkeypatch.undo()
    app.worker().drain()
    assert len(_sent(client)) == app_module.CONFIRM_MAX_SENDS


def test_unconfirmed_sign_ups_expire(optin, monkeypatch) -> None:
    client = optin(confirm_ttl=1)
    app = client.restock
    client.post("/subscriptions", json=SIGN_UP)
    app.worker().drain()
    path = _confirm_path(_sent(client)[0])
    assert app.expire_unconfirmed() == 0  # not yet
    later = utcnow() + timedelta(hours=1, minutes=1)
    monkeypatch.setattr(app_module, "utcnow", lambda: later)
    app.worker().maintain()
    assert _status(client) == []
    assert client.post(path).status_code == 404  # the link of an expired sign-up
    monkeypatch.undo()
    # the person may sign up again (the slot is free) and gets a fresh confirmation
    assert client.post("/subscriptions", json=SIGN_UP).status_code == 202
    assert _status(client) == ["unconfirmed"]


def _pending_demand(app: Any) -> int:
    with app.read_engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.coalesce(sa.func.sum(demand.c.pending), 0))).scalar()
        )


def test_demand_counts_only_confirmed_sign_ups(optin) -> None:
    client = optin()
    app = client.restock
    client.post("/subscriptions", json=SIGN_UP)
    client.post("/subscriptions", json={**SIGN_UP, "email": "bob@example.com"})
    assert _pending_demand(app) == 0
    app.worker().drain()
    client.post(_confirm_path(_sent(client)[0]))
    assert _pending_demand(app) == 1
    # unsubscribing the unconfirmed one leaves the count alone
    (unconfirmed,) = [s for s in app.list_subscriptions().items if str(s.status) == "unconfirmed"]
    app.unsubscribe(app.signer.sign(unconfirmed.id))
    assert _pending_demand(app) == 1
    # expiring unconfirmed rows never touches it either
    assert _pending_demand(app) == 1


def test_trusted_callers_and_other_channels_skip_the_confirmation(optin) -> None:
    client = optin(double_opt_in=["sms"])
    answer = client.post("/subscriptions", json=SIGN_UP)
    assert answer.json() == {"status": "accepted"}
    assert _status(client) == ["pending"]
    client2 = optin(double_opt_in=True)
    client2.restock.subscribe("v2", email="eve@example.com")  # the library: trusted
    assert "pending" in _status(client2)


@pytest.mark.parametrize(
    ("settings", "option"),
    [
        ({"double_opt_in": ["fax"]}, "double_opt_in"),
        ({"double_opt_in": "yes"}, "double_opt_in"),
        ({"confirm_ttl": 0}, "confirm_ttl"),
        ({"retention": {"forever": 3}}, "retention"),
        ({"retention": -1}, "retention"),
    ],
)
def test_bad_settings_are_config_errors(optin, settings: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        optin(**settings)
    assert option in str(caught.value)


# ---------------------------------------------------------------- retention


def _finished_rows(client: Any) -> dict[str, int]:
    """A notified sign-up that converted, one unsubscribed, one failed, one pending, and a
    suppression; returns their ids."""
    app = client.restock
    notified = app.subscribe("v1", email="ada@example.com")
    gone = app.subscribe("v1", email="bob@example.com")
    failing = app.subscribe("v1", email="cyd@example.com")
    app.set_stock("v1", 5)
    app.worker().drain()
    app.unsubscribe(app.signer.sign(gone.subscription.id))  # notified already: no change
    app.suppress(Channel.EMAIL, "cyd@example.com", "bounced")
    pending = app.subscribe("v9", email="dan@example.com")
    stopped = app.subscribe("v9", email="eve@example.com")
    app.unsubscribe(app.signer.sign(stopped.subscription.id))
    conversions = app.record_orders(
        [
            Order(
                source="manual",
                order_id="o1",
                placed_at=utcnow(),
                currency="EUR",
                lines=(OrderLine("v1", 1, Decimal("30.00")),),
                email="ada@example.com",
            )
        ]
    )
    assert len(conversions) == 1
    return {
        "notified": notified.subscription.id,
        "pending": pending.subscription.id,
        "unsubscribed": stopped.subscription.id,
        "failing": failing.subscription.id,
    }


def test_retention_purges_finished_rows_and_keeps_suppressions_and_revenue(
    optin, monkeypatch
) -> None:
    client = optin(retention=30, double_opt_in=False)
    app = client.restock
    ids = _finished_rows(client)
    report_before = app.store.orders.report(start=None, end=None, variant_id=None)
    assert report_before["converted"] == 1
    assert app.purge().as_dict() == {
        "notified": 0,
        "unsubscribed": 0,
        "failed": 0,
        "consents": 0,
        "requests": 0,
    }  # nothing is old yet
    later = utcnow() + timedelta(days=31)
    monkeypatch.setattr(app_module, "utcnow", lambda: later)
    dry = app.purge(dry_run=True)
    assert dry.notified == 3 and dry.unsubscribed == 1
    assert len(app.list_subscriptions().items) == 5  # a dry run deletes nothing
    done = app.purge()
    assert done.notified == 3 and done.unsubscribed == 1
    left = app.list_subscriptions().items
    assert [s.id for s in left] == [ids["pending"]]  # the pending sign-up stays
    # the suppression stays: erasure by retention never re-enables mail
    assert app.is_suppressed(Channel.EMAIL, "cyd@example.com")
    # the conversion stays without its subscription, and the Revenue figures with it
    report = app.store.orders.report(start=None, end=None, variant_id=None)
    assert report["converted"] == 1
    assert report["totals"] == report_before["totals"]
    assert report["variants"][0]["revenue"] == {"EUR": Decimal("30.0000")}
    assert app.purge().total == 0  # cheap and idempotent
    dashboard = TestClient(create_api(app), raise_server_exceptions=False)
    assert dashboard.get("/health").status_code == 200


def test_retention_per_category_and_off_by_default(optin, monkeypatch) -> None:
    client = optin(double_opt_in=False)
    app = client.restock
    _finished_rows(client)
    later = utcnow() + timedelta(days=400)
    monkeypatch.setattr(app_module, "utcnow", lambda: later)
    assert app.purge().total == 0  # no retention configured: sign-ups are kept
    client2 = optin(double_opt_in=False, retention={"unsubscribed": 10})
    app2 = client2.restock
    app2.subscribe("v5", email="fay@example.com")
    stopped = app2.subscribe("v6", email="gus@example.com")
    app2.unsubscribe(app2.signer.sign(stopped.subscription.id))
    counts = app2.purge()
    assert counts.unsubscribed >= 1 and counts.notified == 0


def test_purge_command(optin, tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\nretention = 30\n\n'
        '[[plugins]]\nresolve = "logger"\n\n[[plugins]]\nresolve = "manual"\n'
    )
    client = optin(double_opt_in=False)
    client.restock.subscribe("v1", email="ada@example.com")
    result = CliRunner().invoke(main, ["--config", str(config), "purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["dry_run"] is True and body["notified"] == 0
    assert body["retention"]["notified"] == 30.0
    bad = tmp_path / "bad.toml"
    bad.write_text('[restock]\nretention = "forever"\n')
    failed = CliRunner().invoke(main, ["--config", str(bad), "purge"])
    assert failed.exit_code != 0 and "retention" in failed.output
