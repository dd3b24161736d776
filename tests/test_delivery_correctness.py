"""Delivery correctness (issue 10): template errors, provider outages and pacing, stable
provider requests, requeueing failed deliveries, unsubscribe wording."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.cli import main
from restock_core.db import deliveries
from tests.support import ScriptedPlugin, scripted_config

ADMIN = {"Authorization": "Bearer test-admin"}


def statuses(app) -> dict[str, str]:
    return {s.contact: str(s.status) for s in app.list_subscriptions(limit=1000).items}


# ---------------------------------------------------------------- 1. template errors


def test_a_render_error_fails_that_message_and_sends_the_rest(
    make_app, tmp_path, monkeypatch
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "restock_email_subject.txt").write_text("{{ product_title.upper() }} is back")
    monkeypatch.setenv("RESTOCK_TEMPLATES", str(templates))
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(max_attempts=2), plugins=[plugin])
    app.subscribe("v1", email="titled@example.com", product_title="Boots")
    app.subscribe("v1", email="untitled@example.com")
    app.subscribe("v1", email="also@example.com", product_title="Boots")
    app.set_stock("v1", 3)
    app.worker().drain()
    assert statuses(app) == {
        "titled@example.com": "notified",
        "untitled@example.com": "failed",
        "also@example.com": "notified",
    }
    assert [m.subject for call in plugin.provider.calls for m in call] == [
        "BOOTS is back",
        "BOOTS is back",
    ]
    with app.engine.connect() as conn:
        rows = {r.status: r for r in conn.execute(sa.select(deliveries))}
    assert rows["failed"].attempts == 1
    assert "template error" in rows["failed"].last_error
    assert "UndefinedError" in rows["failed"].last_error


def _cli_config(tmp_path: Path, database_url: str) -> Path:
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\n\n'
        f'[[plugins]]\nresolve = "logger"\noptions = {{ file = "{tmp_path / "out.jsonl"}" }}\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    return config


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_template_that_does_not_compile_stops_start_with_one_line(
    tmp_path, database_url, monkeypatch, command
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "restock_email.txt").write_text("Hello\n\n{% if name %}\n{{ name }\n")
    monkeypatch.setenv("RESTOCK_TEMPLATES", str(templates))
    config = _cli_config(tmp_path, database_url)
    result = CliRunner().invoke(main, ["--config", str(config), command])
    assert result.exit_code == 2
    # serve and worker first say which config they loaded (issue 8), then one error line
    announced, *lines = result.output.strip().splitlines()
    assert announced.startswith(f"restock: config {config}")
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "restock_email.txt line 4" in lines[0]
    assert "Traceback" not in result.output


def test_a_missing_templates_directory_is_an_error(tmp_path, database_url, monkeypatch) -> None:
    monkeypatch.setenv("RESTOCK_TEMPLATES", str(tmp_path / "nowhere"))
    config = _cli_config(tmp_path, database_url)
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "--once"])
    assert result.exit_code == 2
    announced, error = result.output.strip().splitlines()
    assert announced.startswith(f"restock: config {config}")
    assert error.startswith("error: configuration: ")
    assert "templates directory" in result.output and "does not exist" in result.output
    assert "nowhere" in result.output


# ---------------------------------------------------------------- 8. requeue failed deliveries


def _failed_by_bad_key(make_app):
    """Three deliveries failed for good by a provider (as before outages were recognised),
    one of them to an address suppressed since."""
    from restock_core.models import SendResult

    plugin = ScriptedPlugin()
    app = make_app(scripted_config(admin_api_key="test-admin", max_attempts=1), plugins=[plugin])
    plugin.provider.script = [lambda m: SendResult.failed(m.delivery_id, "401 bad key")]
    for name in ("ann", "bob", "cy"):
        app.subscribe("v1", email=f"{name}@example.com")
    app.subscribe("v2", email="dee@example.com")
    app.set_stock("v1", 3)
    app.worker().drain()
    plugin.provider.script = [lambda m: SendResult.failed(m.delivery_id, "invalid address")]
    app.set_stock("v2", 1)
    app.worker().drain()
    from restock_core.models import Channel

    app.suppress(Channel.EMAIL, "cy@example.com", "hard bounce")
    return app, plugin


def test_deliveries_retry_requeues_failed_deliveries_by_reason(make_app) -> None:
    app, plugin = _failed_by_bad_key(make_app)
    assert statuses(app) == {
        "ann@example.com": "failed",
        "bob@example.com": "failed",
        "cy@example.com": "failed",
        "dee@example.com": "failed",
    }
    with TestClient(create_api(app), raise_server_exceptions=False) as client:
        refused = client.post("/deliveries/retry", json={"reason": "bad key"})
        assert refused.status_code == 401
        bad = client.post("/deliveries/retry", json={"provider": "nope"}, headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "provider"
        answer = client.post("/deliveries/retry", json={"reason": "bad key"}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["requeued"] == 2  # cy is suppressed
    with app.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(deliveries))}
    assert sorted(r.status for r in rows.values()) == ["failed", "failed", "queued", "queued"]
    assert all(r.attempts == 0 for r in rows.values() if r.status == "queued")
    app.worker().drain()
    assert statuses(app) == {
        "ann@example.com": "notified",
        "bob@example.com": "notified",
        "cy@example.com": "failed",
        "dee@example.com": "failed",
    }


def test_deliveries_retry_cli_filters_by_restock_and_time(make_app, tmp_path) -> None:
    app, plugin = _failed_by_bad_key(make_app)
    runner = CliRunner()
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{app.settings.database}"\n\n'
        '[[plugins]]\nresolve = "logger"\n\n[[plugins]]\nresolve = "manual"\n'
    )
    base = ["--config", str(config), "deliveries", "retry"]
    bad = runner.invoke(main, [*base, "--since", "yesterday"])
    assert bad.exit_code != 0 and "not an ISO 8601 time" in bad.output
    assert "Traceback" not in bad.output
    none = runner.invoke(main, [*base, "--since", "2999-01-01T00:00:00Z"])
    assert none.exit_code == 0 and "0 failed deliveries queued again" in none.output
    with app.engine.connect() as conn:
        v2_restock = conn.execute(
            sa.select(deliveries.c.restock_id).where(deliveries.c.last_error == "invalid address")
        ).scalar_one()
    done = runner.invoke(main, [*base, "--restock", str(v2_restock)])
    assert done.exit_code == 0 and "1 failed deliveries queued again" in done.output
    assert statuses(app)["dee@example.com"] == "pending"


# ---------------------------------------------------------------- 12. unsubscribe page


def test_unsubscribe_form_posts_under_public_url_and_offers_stop_all(make_app) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(public_url="https://shop.example/restock"), plugins=[plugin])
    ann = app.subscribe("v1", email="ann@example.com", product_title="Boots").subscription
    token = app.unsubscribe_url(ann.id).rsplit("/", 1)[1]
    with TestClient(create_api(app)) as client:
        page = client.get(f"/unsubscribe/{token}").text
        assert f"action='https://shop.example/restock/unsubscribe/{token}'" in page
        assert f"action='https://shop.example/restock/unsubscribe/{token}?all=1'" in page
        assert "Boots" in page
        single = client.post(f"/unsubscribe/{token}")
        assert "you will not get the message about Boots" in single.text
        assert str(app.get_subscription(ann.id).status) == "unsubscribed"
        assert not app.is_suppressed(ann.channel, "ann@example.com")


def test_after_the_message_was_sent_the_page_is_truthful_and_stop_all_suppresses(
    make_app,
) -> None:
    plugin = ScriptedPlugin()
    app = make_app(scripted_config(), plugins=[plugin])
    ann = app.subscribe("v1", email="ann@example.com", product_title="Boots").subscription
    app.subscribe("v2", email="ann@example.com")
    sms = app.subscribe("v1", phone="+14155550100").subscription
    app.set_stock("v1", 5)
    app.worker().drain()
    assert len(plugin.provider.calls[0]) == 2
    token = app.unsubscribe_url(ann.id).rsplit("/", 1)[1]
    with TestClient(create_api(app)) as client:
        page = client.get(f"/unsubscribe/{token}").text
        assert "We already told you that Boots is back in stock" in page
        assert "You will not receive more messages" not in page
        assert "Stop all back-in-stock messages to this address" in page
        done = client.post(f"/unsubscribe/{token}?all=1", headers={"accept": "application/json"})
        assert done.json()["all_messages_stopped"] is True
        assert app.is_suppressed(ann.channel, "ann@example.com")
        # the other pending sign-up of that address ended with it
        assert {
            str(s.status)
            for s in app.list_subscriptions(limit=10).items
            if s.contact == "ann@example.com"
        } == {"notified", "unsubscribed"}
        assert "no back-in-stock messages from us" in client.get(f"/unsubscribe/{token}").text
        # the SMS "Stop" link opens the same page and does the same
        sms_text = plugin.provider.calls[0][1].text
        stop_path = sms_text.split("Stop: ", 1)[1].split("://", 1)[1].split("/", 1)[1]
        assert "Stop all back-in-stock messages" in client.get(f"/{stop_path}").text
        client.post(f"/{stop_path}?all=1")
        assert app.is_suppressed(sms.channel, "+14155550100")
        # RFC 8058 one-click from the mail client after the message: stops everything too
        bob = app.subscribe("v3", email="bob@example.com").subscription
        app.set_stock("v3", 1)
        app.worker().drain()
        bob_token = app.unsubscribe_url(bob.id).rsplit("/", 1)[1]
        client.post(
            f"/unsubscribe/{bob_token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert app.is_suppressed(bob.channel, "bob@example.com")


def test_a_claim_reads_each_subscription_as_stored(make_app) -> None:
    """The claim reads datetimes and attributes without SQLAlchemy's result processors and
    binds its ids as one value (JSON on SQLite, an array on PostgreSQL): what it hands the
    worker must equal the subscription as the store reads it elsewhere."""
    app = make_app()
    made = [
        app.subscribe(
            "mug",
            email=f"p{n}@example.com",
            customer_id=f"c{n}" if n % 2 else None,
            locale="de-AT" if n == 1 else None,
            product_title="Mug",
            attributes={"size": "M", "tags": ["a", n]} if n % 2 else None,
        ).subscription
        for n in range(1, 6)
    ]
    app.set_stock("mug", 0)
    app.set_stock("mug", 9)
    app.worker().process_restocks()
    claim = app.store.outbox.claim(100, 60.0)
    assert claim is not None
    assert [c.subscription.id for c in claim.deliveries] == [s.id for s in made]
    for claimed in claim.deliveries:
        stored = app.get_subscription(claimed.subscription.id)
        assert claimed.subscription == stored
        assert claimed.subscription.created_at.utcoffset() is not None
        assert claimed.subscription.created_at == stored.created_at
    assert claim.deliveries[0].subscription.attributes == {"size": "M", "tags": ["a", 1]}
    assert claim.deliveries[1].subscription.attributes == {}
