"""`restock init`: a commented plugins.toml for the chosen plugins.

Every `[restock]` setting and every option of each chosen plugin is written: required options
with a value (secrets as `{ env = "NAME" }`, others with an example that passes validation),
the rest commented out at their defaults. Option descriptions come from the `#:` comments of
the plugin's attrs options class, so third-party plugins are documented the same way.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .config import Settings, _describe_type, _is_secret_type
from .errors import ConfigError
from .plugins import FIRST_PARTY_EXTRAS, Factory, PluginRegistry

DEFAULT_PLUGINS = ("logger", "manual")

#: `[restock]` settings, one line each (docs/configuration.md has the full table)
SETTINGS_HELP = {
    "database": "SQLAlchemy URL: SQLite (embedded) or postgresql+psycopg://user@host/db",
    "trigger_delay": "milliseconds to wait after a restock before releasing anyone",
    "inventory_required": 'smallest available quantity that counts as "back in stock"',
    "admin_api_key": "bearer key for PUT /stock and the admin reads; unset disables them",
    "secret_key": "signs unsubscribe links; generated and kept in the database when unset",
    "public_url": "base of unsubscribe links and webhook URLs (include any path prefix)",
    "host": "where `restock serve` listens",
    "port": "where `restock serve` listens",
    "per_unit": "release at most per_unit x available subscribers per wave; unset = everyone",
    "wave_interval": "seconds between waves when per_unit limits them",
    "max_attempts": "attempts per message before it fails for good",
    "retry_base": "seconds before the first retry; doubles per attempt, with jitter",
    "retry_max": "longest retry delay, seconds",
    "lease": "seconds a worker may hold claimed deliveries before another takes them over",
    "batch_size": "deliveries a worker claims per round",
    "release_batch_size": "subscribers released per transaction",
    "poll_interval": "longest an idle worker sleeps, seconds (new work wakes it at once)",
    "reconcile_interval": "seconds; overrides every adapter's reconciliation poll interval",
    "max_body_bytes": "larger request bodies get 413",
    "channels": 'channel -> provider id, e.g. { email = "mail", sms = "twilio" }',
    "log_level": "DEBUG, INFO, WARNING, ERROR (RESTOCK_LOG_FORMAT=json for JSON lines)",
}

#: settings written uncommented
ACTIVE_SETTINGS = ("database", "trigger_delay", "inventory_required")

#: an EXAMPLES value meaning "read it from the environment": { env = "PLUGIN_OPTION" }
FROM_ENV = object()

#: example values for required options of first-party plugins that pass their validators
EXAMPLES: Mapping[tuple[str, str], Any] = {
    ("sendgrid", "from_email"): "shop@example.com",
    ("resend", "from_email"): "shop@example.com",
    ("twilio", "account_sid"): "AC" + "0" * 32,
    # optional in the options class (API keys may replace it for requests), but always needed
    # to verify Twilio's webhooks
    ("twilio", "auth_token"): FROM_ENV,
    # Twilio needs exactly one sender; this is Twilio's documented magic test number
    ("twilio", "from_number"): "+15005550006",
    ("shopify", "shop"): "example.myshopify.com",
    ("magento2", "base_url"): "https://magento.example.com",
    ("medusa", "base_url"): "http://127.0.0.1:9000",
    # the Store API needs a publishable key (or use_admin_api with admin_token)
    ("medusa", "publishable_key"): FROM_ENV,
}

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def resolve_choices(names: Sequence[str]) -> list[Factory]:
    """The factories for `--plugins`, in the order given, plus logger/manual when no provider
    or no inventory adapter was chosen (restock needs one of each)."""
    registry = PluginRegistry()
    factories = registry.factories
    chosen: list[Factory] = []
    for name in names:
        if name in factories:
            if factories[name] not in chosen:
                chosen.append(factories[name])
            continue
        if name in registry.broken:
            raise ConfigError(
                f"is installed but failed to load: {registry.broken[name]}", plugin=name
            )
        hint = ""
        if name in FIRST_PARTY_EXTRAS:
            hint = f'; install it with: pip install "{FIRST_PARTY_EXTRAS[name]}"'
        installed = ", ".join(sorted(factories)) or "(none)"
        raise ConfigError(f"unknown plugin {name!r}; installed plugins: {installed}{hint}")
    kinds = {f.kind for f in chosen}
    defaults = [factories[n] for n in DEFAULT_PLUGINS if n in factories]
    for default in defaults:
        if default.kind not in kinds:
            chosen.append(default)
    return chosen


def toml_value(value: Any) -> str:
    """A TOML literal for the values options take (strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: same escapes as JSON for what we write
    if isinstance(value, list | tuple | frozenset | set):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def field_docs(cls: type) -> dict[str, str]:
    """`#:` comments above a field and `# ...` comments after it, from the class's source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        found = re.match(r"^\s+(\w+)\s*:[^=]*(?:=.*?)?(?:\s#\s*(?P<tail>.*))?$", line)
        if found and not stripped.startswith(("def ", "@", "#")):
            text = " ".join([*pending, found.group("tail") or ""]).strip()
            if text:
                docs[found.group(1)] = text
        pending = []
    return docs


def _default(field: attrs.Attribute) -> Any:  # type: ignore[type-arg]
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


def _env_name(plugin: str, option: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{plugin}_{option}".upper())


def _example(plugin: str, name: str, doc: str, tp: Any) -> Any:
    if (plugin, name) in EXAMPLES:
        return EXAMPLES[(plugin, name)]
    quoted = re.search(r'e\.g\. "([^"]+)"', doc)
    if quoted:
        return quoted.group(1)
    if name.endswith("url"):
        return "https://example.com"
    if "email" in name:
        return "shop@example.com"
    if tp is int:
        return 1
    if tp is float:
        return 1.0
    if tp is bool:
        return False
    return "CHANGE-ME"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, width=94)] if text else []


def _settings_block(database: str | None) -> list[str]:
    lines = ["[restock]"]
    hints = typing.get_type_hints(Settings)
    for field in attrs.fields(Settings):
        help_text = SETTINGS_HELP.get(field.name, "")
        default = _default(field)
        if field.name == "database" and database:
            default = database
        lines += _comment(help_text)
        if field.name in ACTIVE_SETTINGS:
            lines.append(f"{field.name} = {toml_value(default)}")
        elif field.name == "admin_api_key":
            lines.append('# admin_api_key = { env = "RESTOCK_ADMIN_KEY" }')
        elif field.name == "secret_key":
            lines.append('# secret_key = { env = "RESTOCK_SECRET_KEY" }')
        elif default is None:
            lines.append(f"# {field.name} =   ({_describe_type(hints.get(field.name, Any))})")
        else:
            lines.append(f"# {field.name} = {toml_value(default)}")
    return lines


def _plugin_block(factory: Factory, env_vars: list[str]) -> list[str]:
    title = f"{factory.name} ({factory.kind.replace('_', ' ')})"
    if factory.description:
        title += f": {factory.description}"
    lines = ["", *_comment(title), "[[plugins]]", f"resolve = {toml_value(factory.name)}"]
    options = factory.options
    if options is None:
        lines.append("# (this plugin takes no options)")
        return lines
    fields = attrs.fields(options)
    if not fields:
        return lines
    hints = typing.get_type_hints(options)
    docs = field_docs(options)
    lines.append("[plugins.options]")
    for field in fields:
        tp = hints.get(field.name, Any)
        doc = docs.get(field.name, "")
        lines += _comment(doc)
        if field.default is attrs.NOTHING:
            if _is_secret_type(tp):
                env = _env_name(factory.name, field.name)
                env_vars.append(env)
                lines.append(f'{field.name} = {{ env = "{env}" }}  # required (a secret)')
            else:
                value = _example(factory.name, field.name, doc, tp)
                lines.append(f"{field.name} = {toml_value(value)}  # required: use your own")
            continue
        if (factory.name, field.name) in EXAMPLES:
            value = EXAMPLES[(factory.name, field.name)]
            if value is FROM_ENV:
                env = _env_name(factory.name, field.name)
                env_vars.append(env)
                lines.append(f'{field.name} = {{ env = "{env}" }}')
            else:
                lines.append(f"{field.name} = {toml_value(value)}  # an example: use your own")
            continue
        default = _default(field)
        if default is None:
            lines.append(f"# {field.name} =   ({_describe_type(tp)}; unset by default)")
            continue
        try:
            lines.append(f"# {field.name} = {toml_value(default)}")
        except TypeError:
            lines.append(f"# {field.name} =   ({_describe_type(tp)})")
    return lines


def render_config(
    factories: Sequence[Factory], *, database: str | None = None
) -> tuple[str, list[str]]:
    """The plugins.toml text and the environment variables its secrets read."""
    env_vars: list[str] = []
    lines = [
        "# restock configuration, written by `restock init`.",
        "# Lines starting with # are defaults or documentation; uncomment to change them.",
        "# Check it with `restock config check`; see docs/configuration.md for every setting.",
        '# Secrets: write { env = "NAME" } and set NAME in the environment, never a literal.',
        "",
        *_settings_block(database),
    ]
    for factory in factories:
        lines += _plugin_block(factory, env_vars)
    return "\n".join(lines) + "\n", env_vars
