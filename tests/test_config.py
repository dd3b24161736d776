"""plugins.toml: errors name the plugin and option, what was expected and what was given."""

from __future__ import annotations

from pathlib import Path

import pytest

from restock_core.app import App
from restock_core.config import Secret, load_config, parse_config
from restock_core.errors import ConfigError
from restock_core.plugins import PluginRegistry


def build(data: dict) -> App:
    data.setdefault("restock", {})["database"] = "sqlite://"
    return App(parse_config(data))


def test_defaults_are_the_embedded_setup() -> None:
    app = build({})
    assert set(app.providers) == {"logger"} and set(app.adapters) == {"manual"}
    assert app.settings.trigger_delay == 0 and app.settings.inventory_required == 1


def test_unknown_plugin_lists_installed_ones_and_the_extra() -> None:
    with pytest.raises(ConfigError) as caught:
        build({"plugins": [{"resolve": "mailgun"}, {"resolve": "manual"}]})
    message = str(caught.value)
    assert "unknown plugin 'mailgun'" in message and "logger" in message and "manual" in message


def test_unknown_first_party_plugin_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = PluginRegistry()
    registry.factories.pop("sendgrid", None)
    with pytest.raises(ConfigError) as caught:
        App(
            parse_config(
                {"restock": {"database": "sqlite://"}, "plugins": [{"resolve": "sendgrid"}]}
            ),
            registry=registry,
        )
    assert 'pip install "restock-core[sendgrid]"' in str(caught.value)


def test_unknown_option_names_plugin_option_and_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        build(
            {
                "plugins": [
                    {"resolve": "logger", "options": {"chanels": ["email"]}},
                    {"resolve": "manual"},
                ]
            }
        )
    message = str(caught.value)
    assert "plugin 'logger'" in message and "'chanels'" in message and "channels" in message


def test_wrong_type_says_expected_and_given() -> None:
    with pytest.raises(ConfigError) as caught:
        build(
            {
                "plugins": [
                    {"resolve": "logger", "options": {"max_batch_size": "ten"}},
                    {"resolve": "manual"},
                ]
            }
        )
    message = str(caught.value)
    assert (
        "option 'max_batch_size'" in message
        and "expected an integer" in message
        and "'ten'" in message
    )


def test_validator_error_names_plugin() -> None:
    with pytest.raises(ConfigError) as caught:
        build(
            {
                "plugins": [
                    {"resolve": "logger", "options": {"channels": ["fax"]}},
                    {"resolve": "manual"},
                ]
            }
        )
    assert "plugin 'logger'" in str(caught.value) and "fax" in str(caught.value)


def test_settings_errors_name_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"restock": {"trigger_delay": "soon"}})
    assert "option 'trigger_delay'" in str(caught.value) and "'soon'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"restock": {"inventory_required": 0}})
    assert "inventory_required" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"restok": {}})
    assert "[restok]" in str(caught.value)


def test_env_secrets_are_read_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTOCK_TEST_KEY", "s3cr3t-value")
    config = parse_config({"restock": {"admin_api_key": {"env": "RESTOCK_TEST_KEY"}}})
    key = config.settings.admin_api_key
    assert isinstance(key, Secret) and key.value == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config.settings)


def test_missing_env_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTOCK_MISSING", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config({"restock": {"admin_api_key": {"env": "RESTOCK_MISSING"}}})
    assert "RESTOCK_MISSING" in str(caught.value) and "admin_api_key" in str(caught.value)


def test_wrong_type_for_secret_hides_nothing_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"restock": {"admin_api_key": 12345}})
    assert "12345" not in str(caught.value) and "admin_api_key" in str(caught.value)


def test_module_attribute_resolve_and_duplicate_ids() -> None:
    app = build(
        {
            "plugins": [
                {"resolve": "tests.support:ScriptedProvider", "id": "mine"},
                {"resolve": "manual"},
            ]
        }
    )
    assert app.providers["mine"].obj.name == "scripted"
    with pytest.raises(ConfigError) as caught:
        build({"plugins": [{"resolve": "manual"}, {"resolve": "manual"}, {"resolve": "logger"}]})
    assert "two plugins have the id 'manual'" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build({"plugins": [{"resolve": "tests.nowhere:Thing"}]})
    assert "cannot import 'tests.nowhere'" in str(caught.value)


def test_missing_adapter_or_provider_is_explained() -> None:
    with pytest.raises(ConfigError, match="no inventory adapter"):
        build({"plugins": [{"resolve": "logger"}]})
    with pytest.raises(ConfigError, match="no notification provider"):
        build({"plugins": [{"resolve": "manual"}]})


def test_channel_routing_errors() -> None:
    with pytest.raises(ConfigError, match="names provider 'sendgrid'"):
        build({"restock": {"channels": {"email": "sendgrid"}}})
    with pytest.raises(ConfigError, match="unknown channel 'fax'"):
        build({"restock": {"channels": {"fax": "logger"}}})


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESTOCK_CONFIG", raising=False)
    assert load_config().path is None
    (tmp_path / "plugins.toml").write_text("[restock]\ntrigger_delay = 250\n")
    assert load_config().settings.trigger_delay == 250
    other = tmp_path / "other.toml"
    other.write_text("[restock]\ntrigger_delay = 5\n")
    monkeypatch.setenv("RESTOCK_CONFIG", str(other))
    assert load_config().settings.trigger_delay == 5
    assert load_config(other).settings.trigger_delay == 5
    bad = tmp_path / "bad.toml"
    bad.write_text("[restock\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_release_overrides_per_plugin() -> None:
    app = build(
        {
            "restock": {"per_unit": 2},
            "plugins": [
                {"resolve": "logger"},
                {"resolve": "manual", "release": {"wave_interval": 5}},
            ],
        }
    )
    policy = app.release_policy("manual")
    assert policy.per_unit == 2 and policy.wave_interval == 5.0
    with pytest.raises(ConfigError, match="per_unit"):
        build(
            {"plugins": [{"resolve": "logger"}, {"resolve": "manual", "release": {"per_unit": 0}}]}
        )


def test_a_broken_installed_plugin_only_fails_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "restock_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: restock-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[restock]\nbroken = restock_broken_missing_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = build({})  # the embedded default still works
    assert "broken" in app.registry.broken
    with pytest.raises(ConfigError) as caught:
        build({"plugins": [{"resolve": "broken"}, {"resolve": "manual"}]})
    assert "installed but failed to load" in str(caught.value) and "ModuleNotFoundError" in str(
        caught.value
    )


def test_validator_messages_are_attributed_to_whole_word_options() -> None:
    from restock_core.config import _option_named_in

    names = ["shop", "scopes", "location_ids"]
    assert _option_named_in("bad id gid://shopify/Location/x", names) is None
    assert _option_named_in("scopes.eu must be a non-empty list", names) == "scopes"
    assert (
        _option_named_in("location_ids: 'Paris' is not a location id; see shop", names)
        == "location_ids"
    )


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("batch_size", 0, "greater than 0"),
        ("lease", -5, "greater than 0"),
        ("poll_interval", 0, "greater than 0"),
        ("trigger_delay", -1, "must not be negative"),
        ("public_url", "shop.example", "http://"),
        ("port", 70000, "at most 65535"),
    ],
)
def test_settings_are_validated_like_plugin_options(setting: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"restock": {setting: value}})
    assert f"option {setting!r}" in str(caught.value) and says in str(caught.value)
