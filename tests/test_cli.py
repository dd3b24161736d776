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
    assert result.exit_code == 2  # a configuration error, like everywhere else in the CLI
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


# ---------------------------------------------------------------------- global options


def test_global_options_work_after_the_subcommand(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text('[[plugins]]\nresolve = "logger"\n[[plugins]]\nresolve = "manual"\n')
    runner = CliRunner()
    before = runner.invoke(
        main, ["--config", str(config), "--database", database_url, "db", "upgrade"]
    )
    assert before.exit_code == 0, before.output
    after = runner.invoke(
        main,
        [
            "subscribe",
            "v1",
            "--email",
            "ada@example.com",
            "--config",
            str(config),
            "--database",
            database_url,
        ],
    )
    assert after.exit_code == 0 and "subscribed: #1" in after.output
    mixed = runner.invoke(
        main, ["--config", str(config), "subscriptions", "--database", database_url]
    )
    assert mixed.exit_code == 0 and "ada@example.com" in mixed.output
    nested = runner.invoke(main, ["db", "upgrade", "--config", str(tmp_path / "missing.toml")])
    assert nested.exit_code == 2 and "missing.toml' does not exist" in nested.output


# ---------------------------------------------------------------------- init


@pytest.fixture
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESTOCK_CONFIG", raising=False)
    return tmp_path


def test_init_writes_a_config_that_passes_check(in_empty_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0 and "wrote plugins.toml (logger, manual)" in result.output
    text = (in_empty_dir / "plugins.toml").read_text()
    import attrs

    from restock_core.config import Settings

    for field in attrs.fields(Settings):  # every setting is shown, commented or not
        assert f"{field.name} =" in text, field.name
    assert text.count("[[plugins]]") == 2
    checked = runner.invoke(main, ["config", "check"])
    assert checked.exit_code == 0, checked.output
    assert "ok: the configuration is valid" in checked.output
    assert f"restock: config {in_empty_dir / 'plugins.toml'}" in checked.stderr
    assert "channels: email -> logger, sms -> logger" in checked.output
    assert not (in_empty_dir / "restock.db").exists()  # checking touches no database


def test_init_refuses_to_overwrite_without_force(in_empty_dir: Path) -> None:
    target = in_empty_dir / "plugins.toml"
    target.write_text("# mine\n")
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 1
    assert result.output == "error: plugins.toml already exists; use --force to overwrite it\n"
    assert target.read_text() == "# mine\n"
    forced = CliRunner().invoke(main, ["init", "--force"])
    assert forced.exit_code == 0 and target.read_text().startswith("# restock configuration")


def test_init_for_chosen_plugins(in_empty_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    target = in_empty_dir / "shop" / "restock.toml"
    result = runner.invoke(
        main, ["init", "--plugins", "sendgrid, shopify", "--config", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "set these environment variables: SENDGRID_API_KEY, SHOPIFY_ACCESS_TOKEN" in result.output
    )
    assert f"then run: restock config check --config {target}" in result.output
    text = target.read_text()
    assert 'resolve = "sendgrid"' in text and 'resolve = "shopify"' in text
    assert 'api_key = { env = "SENDGRID_API_KEY" }' in text
    assert "logger" not in text and "manual" not in text  # a provider and a source were chosen
    # option docs come from the options classes' #: comments
    assert '# the shop\'s myshopify host name, e.g. "example.myshopify.com"' in text
    missing = runner.invoke(main, ["config", "check", "--config", str(target)])
    assert missing.exit_code == 2
    assert (
        "plugin 'sendgrid', option 'api_key': environment variable SENDGRID_API_KEY"
        in missing.output
    )
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.init-test")
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_init")
    checked = runner.invoke(main, ["config", "check", "--config", str(target)])
    assert checked.exit_code == 0, checked.output
    assert "provider 'sendgrid' (sendgrid): email" in checked.output
    assert "SG.init-test" not in checked.output and "shpat_init" not in checked.output


@pytest.mark.parametrize(
    "plugin", ["sendgrid", "resend", "twilio", "shopify", "magento2", "medusa"]
)
def test_init_output_passes_check_for_every_first_party_plugin(
    in_empty_dir: Path, monkeypatch: pytest.MonkeyPatch, plugin: str
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["init", "--plugins", plugin])
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        if line.startswith("set these environment variables: "):
            for name in line.split(": ", 1)[1].split(", "):
                monkeypatch.setenv(name, "re_init_test_value" if plugin == "resend" else "value")
    checked = runner.invoke(main, ["config", "check"])
    assert checked.exit_code == 0, checked.output


def test_init_unknown_plugin_names_the_installed_ones(in_empty_dir: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--plugins", "sendgird"])
    assert result.exit_code == 2
    assert result.output.startswith("error: configuration: unknown plugin 'sendgird'; installed")
    assert "sendgrid" in result.output and not (in_empty_dir / "plugins.toml").exists()


# ---------------------------------------------------------------------- config check and serve


def test_config_check_gives_the_messages_serve_gives(in_empty_dir: Path) -> None:
    (in_empty_dir / "plugins.toml").write_text(
        '[[plugins]]\nresolve = "logger"\noptions = { max_batch_size = "many" }\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    runner = CliRunner()
    checked = runner.invoke(main, ["config", "check"])
    served = runner.invoke(main, ["serve", "--port", "1"])
    assert checked.exit_code == served.exit_code == 2
    expected = "error: configuration: plugin 'logger', option 'max_batch_size': expected an integer, got 'many'\n"
    assert checked.stderr.endswith(expected) and served.stderr.endswith(expected)
    assert checked.stderr == served.stderr  # the announcement line and the error, both identical
    (in_empty_dir / "plugins.toml").write_text('[[plugins]]\nresolve = "logger"\n')
    checked = runner.invoke(main, ["config", "check"])
    assert checked.exit_code == 2 and "no inventory adapter is configured" in checked.output
    bad_db = runner.invoke(main, ["config", "check", "--database", "nosuchdb://x"])
    assert bad_db.exit_code == 2 and "error: configuration: option 'database'" in bad_db.output


def test_without_a_config_file_commands_say_so(in_empty_dir: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "restock: no config file found (no --config, no RESTOCK_CONFIG, no ./plugins.toml): "
        "using built-in defaults (SQLite restock.db, the logger provider, manual stock)"
    )
    checked = CliRunner().invoke(main, ["config", "check"])
    assert checked.exit_code == 0 and "no config file found" in checked.stderr


def test_worker_says_which_config_it_loaded(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("worker", "--once")
    assert result.exit_code == 0
    assert f"restock: config {tmp_path / 'plugins.toml'} (from --config)" in result.stderr
    monkeypatch.setenv("RESTOCK_CONFIG", str(tmp_path / "plugins.toml"))
    from_env = CliRunner().invoke(main, ["worker", "--once"])
    assert "(from RESTOCK_CONFIG)" in from_env.stderr


# ---------------------------------------------------------------------- plugins


def test_plugins_fails_on_a_configured_plugin_that_is_not_installed(in_empty_dir: Path) -> None:
    (in_empty_dir / "plugins.toml").write_text(
        '[[plugins]]\nresolve = "loger"\n[[plugins]]\nresolve = "manual"\n'
    )
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 2
    assert "error: configuration: plugin 'loger': unknown plugin 'loger'" in result.stderr
    assert "logger" in result.stdout  # the table is still printed


def test_plugins_from_entry_points_only(in_empty_dir: Path) -> None:
    result = CliRunner().invoke(main, ["plugins", "--entry-points", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["logger"]["distribution"] == "restock-core"
    assert rows["manual"]["module"] == "restock_core.builtin.manual"
    assert rows["logger"]["configured"] == ["logger"]  # the built-in defaults
    table = CliRunner().invoke(main, ["plugins", "--entry-points"]).stdout
    assert "restock_core.builtin.logger" in table and "CONFIGURED AS" in table


# ---------------------------------------------------------------------- start-up cost


HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "jinja2", "httpx", "prometheus_client")


def _imported_after(code: str, cwd: Path) -> list[str]:
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    )
    return out.stdout.rsplit("HEAVY:", 1)[1].split()


def test_importing_the_cli_and_help_import_nothing_heavy(in_empty_dir: Path) -> None:
    assert _imported_after("import restock_core.cli", in_empty_dir) == []
    help_run = (
        "from restock_core.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert _imported_after(help_run, in_empty_dir) == []
    listing = (
        "from restock_core.cli import main\n"
        "try:\n    main(['plugins', '--entry-points'])\nexcept SystemExit:\n    pass"
    )
    assert _imported_after(listing, in_empty_dir) == []
    # and the lazy package still gives the full API on first use
    assert "sqlalchemy" in _imported_after("from restock_core import App", in_empty_dir)


# ---------------------------------------------------------------------- progress


def test_check_draws_progress_only_on_a_terminal(run, tmp_path: Path) -> None:
    for i in range(3):
        run("subscribe", f"v{i}", "--email", f"p{i}@example.com")
    piped = run("check")
    assert piped.exit_code == 0 and "checked 3 variant/scope pairs" in piped.stdout
    assert "checking stock" not in piped.stderr  # not a TTY: no bar, no stray label
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "restock_core.cli",
                "check",
                "--config",
                str(tmp_path / "plugins.toml"),
            ],
            stdout=subprocess.PIPE,
            stderr=follower,
            cwd=tmp_path,
            timeout=120,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert b"checking stock (variant/scope pairs)" in drawn and b"3" in drawn


# ---------------------------------------------------------------------- serve behind a proxy


def test_serve_behind_a_proxy_that_strips_a_path_prefix(in_empty_dir: Path) -> None:
    """public_url = https://shop.example/restock: the proxy forwards /restock/x as /x, and
    the OpenAPI docs (and anything else that builds URLs) carry the /restock prefix."""
    import subprocess
    import sys

    import httpx

    from restock_core.testing import wait_for

    from .test_serve_e2e import free_port

    port = free_port()
    (in_empty_dir / "plugins.toml").write_text(
        f'[restock]\ndatabase = "sqlite:///{in_empty_dir / "r.db"}"\n'
        'public_url = "https://shop.example/restock"\n'
    )
    log = (in_empty_dir / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "restock_core.cli", "serve", "--port", str(port)],
        stdout=log,
        stderr=log,
        cwd=in_empty_dir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/health"), timeout=60)
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        docs = httpx.get(f"{base}/docs").text
        assert "url: '/restock/openapi.json'" in docs
        assert httpx.get(f"{base}/openapi.json").json()["servers"] == [{"url": "/restock"}]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    text = (in_empty_dir / "serve.log").read_text()
    assert f"restock: config {in_empty_dir / 'plugins.toml'} (from the current directory)" in text
    assert "(docs at /restock/docs, behind a proxy at /restock)" in text


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


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


# ---------------------------------------------------------------------- garbage collector

GC_STATE = "import gc, sys; print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"


def _gc_after(code: str, cwd: Path) -> str:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{GC_STATE}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[-2]


def test_the_worker_command_tunes_the_collector_but_a_library_drain_does_not(
    in_empty_dir: Path,
) -> None:
    """`restock worker` owns its process and freezes the start-up heap (fan-out speed); an
    application that calls `Worker.drain` itself keeps its own collector settings."""
    config = in_empty_dir / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "sqlite:///{in_empty_dir / "r.db"}"\n\n'
        '[[plugins]]\nresolve = "logger"\n\n[[plugins]]\nresolve = "manual"\n'
    )
    library = (
        "from restock_core import App\n"
        f"app = App.from_config({str(config)!r})\napp.migrate()\napp.worker().drain()"
    )
    assert _gc_after(library, in_empty_dir) == "700 False"
    command = (
        "from restock_core.cli import main\n"
        f"try:\n    main(['--config', {str(config)!r}, 'worker', '--once'])\n"
        "except SystemExit:\n    pass"
    )
    assert _gc_after(command, in_empty_dir) == "20000 True"
