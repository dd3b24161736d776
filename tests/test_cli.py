"""The CLI: clear one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from restock_core.cli import main


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESTOCK_CONFIG", raising=False)
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\n\n'
        f'[[plugins]]\nresolve = "logger"\noptions = {{ file = "{tmp_path / "out.jsonl"}" }}\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)

    assert invoke("db", "upgrade").exit_code == 0
    return invoke


def test_subscribe_stock_and_list(run, tmp_path: Path) -> None:
    result = run("subscribe", "v1", "--email", "ada@example.com")
    assert result.exit_code == 0 and "subscribed: #" in result.output
    assert "already subscribed" in run("subscribe", "v1", "--email", "ADA@example.com").output
    assert run("subscribe", "v1", "--phone", "+14155550101").exit_code == 0
    out = run("stock", "set", "v1", "3").output
    assert "restock #" in out
    assert run("worker", "--once").exit_code == 0
    table = run("subscriptions", "--status", "notified").output
    assert "ada@example.com" in table and "+14155550101" in table and "notified" in table.lower()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_bad_input_exits_non_zero_with_a_message(run) -> None:
    result = run("subscribe", "v1", "--email", "nope")
    assert result.exit_code == 1 and result.output.startswith("error: invalid email address")
    result = run("subscribe", "v1")
    assert result.exit_code == 1 and "give an email or a phone number" in result.output
    result = run("stock", "set", "v1", "-3")
    assert result.exit_code == 2 and "-3" in result.output
    run("stock", "set", "v2", "5")
    result = run("subscribe", "v2", "--email", "a@example.com")
    assert result.exit_code == 1 and "in stock" in result.output


def test_plugins_lists_built_ins(run) -> None:
    out = run("plugins").output
    assert "logger" in out and "manual" in out and "restock-core" in out
    assert "provider" in out and "inventory_adapter" in out


def test_plugins_rows_come_from_pluggy(run, tmp_path: Path) -> None:
    rows = json.loads(run("plugins", "--json").output)
    logger = next(r for r in rows if r["name"] == "logger")
    assert logger["kind"] == "provider" and logger["plugin"] == "logger"
    assert logger["distribution"] == "restock-core" and logger["version"]
    assert logger["hooks"] == ["register_providers"] and logger["configured"] == ["logger"]
    typo = tmp_path / "typo.toml"
    typo.write_text('[[plugins]]\nresolve = "loger"\n[[plugins]]\nresolve = "manual"\n')
    result = CliRunner().invoke(main, ["--config", str(typo), "plugins"])
    assert result.exit_code == 1
    assert "unknown plugin 'loger'" in result.output and "logger" in result.output
    assert "Traceback" not in result.output


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[plugins]]\nresolve = "logger"\noptions = { colour = "red" }\n[[plugins]]\nresolve = "manual"\n'
    )
    result = CliRunner().invoke(main, ["--config", str(config), "subscriptions"])
    assert result.exit_code == 2
    assert "error: configuration: plugin 'logger', option 'colour'" in result.output
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.toml"), "plugins"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_check_runs_a_reconciliation_pass(run) -> None:
    run("subscribe", "v1", "--email", "ada@example.com")
    result = run("check")
    assert result.exit_code == 0 and "checked 1 variant/scope pairs" in result.output
    assert run("check", "--source", "nowhere").exit_code == 1


def test_stock_set_sets_message_content(run, tmp_path: Path) -> None:
    assert run("subscribe", "v1", "--email", "ada@example.com").exit_code == 0
    bad = run("stock", "set", "v1", "0", "--url", "javascript:alert(1)")
    assert bad.exit_code == 1 and bad.output.startswith("error: url must be an http(s) URL")
    out = run(
        "stock",
        "set",
        "v1",
        "2",
        "--product-title",
        "Linen Shirt",
        "--url",
        "https://shop.example/p/linen",
    )
    assert out.exit_code == 0, out.output
    assert run("worker", "--once").exit_code == 0
    (line,) = (tmp_path / "out.jsonl").read_text().splitlines()
    message = json.loads(line)
    assert "Linen Shirt" in message["subject"] and "https://shop.example/p/linen" in message["text"]


def test_data_rights_commands(run) -> None:
    assert run("subscribe", "v1", "--email", "ada@example.com").exit_code == 0
    exported = json.loads(run("contacts", "export", "--email", "ada@example.com").output)
    assert len(exported["subscriptions"]) == 1
    erased = run("contacts", "erase", "--email", "ada@example.com", "--yes")
    assert erased.exit_code == 0 and '"subscriptions": 1' in erased.output
    assert (
        json.loads(run("contacts", "export", "--email", "ada@example.com").output)["subscriptions"]
        == []
    )
    bad = run("contacts", "export")
    assert bad.exit_code == 1 and "exactly one of email or phone" in bad.output
    assert run("suppressions", "list").exit_code == 0
    missing = run("suppressions", "lift", "email", "nobody@example.com")
    assert missing.exit_code == 1 and "not suppressed" in missing.output
