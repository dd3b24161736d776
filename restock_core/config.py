"""plugins.toml: the `[restock]` settings and the `[[plugins]]` list ({resolve, id, options}).

Options are validated field by field into attrs classes so that an error names the plugin,
the option, what was expected and what was given — never a bare cattrs traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from .errors import ConfigError
from .validators import at_most, exact_origins, http_url, not_negative, positive

MAX_INT = 2**31 - 1  # integer columns are 32 bits wide

DEFAULT_CONFIG_NAME = "plugins.toml"


class Secret(str):
    """A string that never shows itself in repr, logs or error messages."""

    def __repr__(self) -> str:
        return "Secret('***')"

    @property
    def value(self) -> str:
        return str.__str__(self)


@attrs.frozen
class ReleasePolicy:
    """How many subscribers a restock releases, and how fast (see docs/release-policy.md)."""

    per_unit: int | None = attrs.field(default=None)
    wave_interval: float = 60.0  # seconds between waves when per_unit limits a wave

    @per_unit.validator
    def _check_per_unit(self, attribute: Any, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"per_unit must be at least 1 or unset, got {value}")


def _networks(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    from .limits import parse_networks

    parse_networks(value)


def _regions(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    import phonenumbers

    known = phonenumbers.SUPPORTED_REGIONS
    for region in value:
        if region not in known:
            raise ValueError(
                f"sms_countries: expected ISO 3166 alpha-2 region codes such as 'US', got "
                f"{region!r}"
            )


#: what `[restock] retention` can name; a single number applies to all but `requests`
RETENTION_CATEGORIES = ("notified", "unsubscribed", "failed", "consents", "requests")
#: stored provider requests (Resend batch keys) are forgotten after this many days unless
#: `retention.requests` says otherwise; Resend keeps an idempotency key 24 hours
DEFAULT_REQUESTS_RETENTION = 7.0


def _opt_in(instance: Any, attribute: attrs.Attribute, value: bool | list[str]) -> None:
    if isinstance(value, bool):
        return
    for channel in value:
        if channel not in ("email", "sms"):
            raise ValueError(
                f"double_opt_in: expected true, false or a list of channels (email, sms), "
                f"got {channel!r}"
            )


def _retention(
    instance: Any, attribute: attrs.Attribute, value: float | dict[str, float] | None
) -> None:
    if value is None:
        return
    items = value.items() if isinstance(value, dict) else [("retention", value)]
    for name, days in items:
        if isinstance(value, dict) and name not in RETENTION_CATEGORIES:
            raise ValueError(
                f"retention: unknown category {name!r}; expected one of "
                + ", ".join(RETENTION_CATEGORIES)
            )
        if isinstance(days, bool) or not isinstance(days, int | float) or days <= 0:
            raise ValueError(f"retention: {name} must be a positive number of days, got {days!r}")


@attrs.frozen
class Settings:
    """The `[restock]` table."""

    database: str = "sqlite:///restock.db"
    #: milliseconds, like the Medusa plugin's option
    trigger_delay: int = attrs.field(default=0, validator=not_negative)
    inventory_required: int = attrs.field(default=1, validator=[positive, at_most(MAX_INT)])
    admin_api_key: Secret | None = None
    #: server-to-server key (a shop's backend): may set message content; see docs/security.md
    secret_api_key: Secret | None = None
    secret_key: Secret | None = None  # signs unsubscribe links; generated and stored if unset
    #: days after a notification in which an order of the variant counts as a conversion
    attribution_window: float = attrs.field(default=7.0, validator=positive)
    public_url: str = attrs.field(default="http://127.0.0.1:8000", validator=http_url)
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8000, validator=[not_negative, at_most(65535)])
    per_unit: int | None = attrs.field(default=None, validator=positive)
    wave_interval: float = attrs.field(default=60.0, validator=not_negative)
    max_attempts: int = attrs.field(default=8, validator=positive)
    #: seconds; doubles per attempt, with jitter
    retry_base: float = attrs.field(default=2.0, validator=not_negative)
    retry_max: float = attrs.field(default=3600.0, validator=not_negative)
    #: seconds a worker may hold a claimed delivery
    lease: float = attrs.field(default=60.0, validator=positive)
    #: deliveries claimed per round
    batch_size: int = attrs.field(default=1000, validator=positive)
    release_batch_size: int = attrs.field(default=1000, validator=positive)
    #: seconds an idle worker waits before looking again
    poll_interval: float = attrs.field(default=1.0, validator=positive)
    #: seconds; overrides adapters' own poll interval
    reconcile_interval: float | None = attrs.field(default=None, validator=positive)
    #: providers' batched status webhooks can be large
    max_body_bytes: int = attrs.field(default=1_048_576, validator=positive)
    channels: dict[str, str] = attrs.field(factory=dict)  # channel -> provider instance id
    log_level: str = "INFO"
    # -- the public edge (docs/security.md); every limit: 0 turns it off
    #: hosts a URL in a message may point at (exact host names); empty: any http(s) host
    allowed_url_hosts: list[str] = attrs.field(factory=list)
    #: public sign-ups per client IP per `limit_window`
    limit_signups_per_ip: int = attrs.field(default=30, validator=not_negative)
    #: public sign-ups per variant per `limit_window` (a burst against one product)
    limit_signups_per_variant: int = attrs.field(default=1000, validator=not_negative)
    #: seconds over which the per-IP and per-variant budgets refill
    limit_window: float = attrs.field(default=600.0, validator=positive)
    #: pending sign-ups one email address or phone number may have at once (public callers)
    limit_active_per_contact: int = attrs.field(default=50, validator=not_negative)
    #: proxies (addresses or CIDR blocks) whose X-Forwarded-For is believed
    trusted_proxies: list[str] = attrs.field(factory=list, validator=_networks)
    #: ISO 3166 alpha-2 regions SMS sign-ups may come from; empty: any
    sms_countries: list[str] = attrs.field(factory=list, validator=_regions)
    #: exact origins (scheme://host[:port]) whose pages may call the public routes (widget)
    cors_origins: list[str] = attrs.field(factory=list, validator=exact_origins)
    #: a directory of message templates overriding the shipped ones by file name
    templates: str | None = None
    #: double opt-in for public sign-ups: true (every channel), false, or ["email", ...]
    double_opt_in: bool | list[str] = attrs.field(default=False, validator=_opt_in)
    #: hours an unconfirmed sign-up waits for its confirmation before it is deleted
    confirm_ttl: float = attrs.field(default=48.0, validator=positive)
    #: days to keep finished sign-ups, consent records and provider requests: one number
    #: (every category but requests) or a table {notified, unsubscribed, failed, consents,
    #: requests}; unset: kept (provider requests: 7 days)
    retention: float | dict[str, float] | None = attrs.field(default=None, validator=_retention)

    def opt_in(self, channel: str) -> bool:
        """Whether a public sign-up on `channel` needs a confirmation (double opt-in)."""
        if isinstance(self.double_opt_in, bool):
            return self.double_opt_in
        return str(channel) in self.double_opt_in

    def retention_days(self) -> dict[str, float]:
        """Days per category that retention purges after (categories absent: kept)."""
        value = self.retention
        if value is None:
            days: dict[str, float] = {}
        elif isinstance(value, dict):
            days = {k: float(v) for k, v in value.items()}
        else:
            days = {k: float(value) for k in RETENTION_CATEGORIES if k != "requests"}
        days.setdefault("requests", DEFAULT_REQUESTS_RETENTION)
        return days

    @property
    def release_policy(self) -> ReleasePolicy:
        return ReleasePolicy(per_unit=self.per_unit, wave_interval=self.wave_interval)


@attrs.frozen
class PluginEntry:
    """One `[[plugins]]` table, before resolution."""

    resolve: str
    id: str
    options: Mapping[str, Any]
    release: Mapping[str, Any] | None = None
    position: int = 0


@attrs.frozen
class Config:
    settings: Settings
    plugins: tuple[PluginEntry, ...]
    path: Path | None = None


_converter = cattrs.Converter()


def _describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "nothing"
    if tp is Secret:
        return 'a string or { env = "NAME" }'
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        args = typing.get_args(tp)
        inner = _describe_type(args[0]) if args else "values"
        return f"a list of {inner}"
    if origin in (dict, typing.Mapping) or tp is dict:
        return "a table"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp))


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return "a value (hidden)"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _is_secret_type(tp: Any) -> bool:
    return tp is Secret or Secret in typing.get_args(tp)


def _resolve_env(value: Any, *, plugin: str | None, option: str) -> Any:
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = value["env"]
        if name not in os.environ:
            raise ConfigError(
                f"environment variable {name} is not set (the option reads it with "
                f'{{ env = "{name}" }})',
                plugin=plugin,
                option=option,
            )
        return Secret(os.environ[name])
    return value


def _structure_value(value: Any, tp: Any) -> Any:
    """Structure strictly: cattrs happily turns 5 into "5"; configs should not."""
    if tp is Any:
        return value
    if tp is Secret:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return Secret(value)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        last: Exception | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _structure_value(value, arg)
            except (TypeError, ValueError) as exc:
                last = exc
        raise TypeError(str(last))
    if tp is bool and not isinstance(value, bool):
        raise TypeError("not a boolean")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError("not an integer")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("not a number")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise TypeError("not a string")
    if origin in (list, tuple) and isinstance(value, str | bytes | Mapping):
        raise TypeError("not a list")
    if (origin in (dict, typing.Mapping) or tp is dict) and not isinstance(value, Mapping):
        raise TypeError("not a table")
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_structure_value(v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    return _converter.structure(value, tp)


def structure_options(cls: type, raw: Mapping[str, Any] | None, *, plugin: str | None) -> Any:
    """Validate `raw` into the attrs class `cls`, with errors naming plugin and option."""
    raw = dict(raw or {})
    fields = {f.name: f for f in attrs.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ConfigError(
            f"unknown option; valid options are: {valid}", plugin=plugin, option=unknown[0]
        )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        tp = hints.get(name, Any)
        if name not in raw:
            if field.default is attrs.NOTHING:
                raise ConfigError(f"is required ({_describe_type(tp)})", plugin=plugin, option=name)
            continue
        secret = _is_secret_type(tp)
        value = _resolve_env(raw[name], plugin=plugin, option=name)
        try:
            kwargs[name] = _structure_value(value, tp)
        except (TypeError, ValueError, cattrs.BaseValidationError):
            raise ConfigError(
                f"expected {_describe_type(tp)}, got {_shown(value, secret)}",
                plugin=plugin,
                option=name,
            ) from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        raise ConfigError(
            message, plugin=plugin, option=_option_named_in(message, fields)
        ) from None


def _option_named_in(message: str, names: Iterable[str]) -> str | None:
    """Which option a validator's message is about: the earliest option name standing as a
    whole word ("shop" does not match inside "gid://shopify")."""
    best: tuple[int, str] | None = None
    for name in names:
        found = re.search(rf"(?<![\w/.:-]){re.escape(name)}(?![\w/-])", message)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), name)
    return best[1] if best else None


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config, then RESTOCK_CONFIG, then ./plugins.toml; None means built-in defaults."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    env = os.environ.get("RESTOCK_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"RESTOCK_CONFIG points at {env!r}, which does not exist")
        return path
    path = Path(DEFAULT_CONFIG_NAME)
    return path if path.is_file() else None


def default_plugins() -> tuple[PluginEntry, ...]:
    return (
        PluginEntry(resolve="logger", id="logger", options={}, position=0),
        PluginEntry(resolve="manual", id="manual", options={}, position=1),
    )


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    unknown = sorted(set(data) - {"restock", "plugins"})
    if unknown:
        raise ConfigError(
            f"unknown top-level table [{unknown[0]}]; expected [restock], [[plugins]]"
        )
    restock_table = data.get("restock", {})
    if not isinstance(restock_table, Mapping):
        raise ConfigError("[restock] must be a table")
    settings = structure_options(Settings, restock_table, plugin=None)
    settings = _resolved_templates(settings, path)
    raw_plugins = data.get("plugins")
    if raw_plugins is None:
        return Config(settings=settings, plugins=default_plugins(), path=path)
    if not isinstance(raw_plugins, list):
        raise ConfigError("plugins must be an array of tables: [[plugins]]")
    entries: list[PluginEntry] = []
    seen: set[str] = set()
    for position, item in enumerate(raw_plugins):
        where = f"[[plugins]] #{position + 1}"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where} must be a table")
        extra = sorted(set(item) - {"resolve", "id", "options", "release"})
        if extra:
            raise ConfigError(
                f"{where}: unknown key {extra[0]!r}; expected resolve, id, options, release"
            )
        resolve = item.get("resolve")
        if not isinstance(resolve, str) or not resolve:
            raise ConfigError(f"{where}: 'resolve' is required (a plugin name or module:attribute)")
        plugin_id = item.get("id", resolve.rsplit(":", 1)[-1].rsplit(".", 1)[-1])
        if (
            not isinstance(plugin_id, str)
            or not plugin_id.replace("-", "").replace("_", "").isalnum()
        ):
            raise ConfigError(
                f"{where}: 'id' must be letters, digits, '-' or '_', got {plugin_id!r}"
            )
        if plugin_id in seen:
            raise ConfigError(
                f"{where}: two plugins have the id {plugin_id!r}; give one an explicit id"
            )
        seen.add(plugin_id)
        options = item.get("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError("options must be a table", plugin=plugin_id)
        release = item.get("release")
        if release is not None and not isinstance(release, Mapping):
            raise ConfigError("release must be a table", plugin=plugin_id)
        entries.append(PluginEntry(resolve, plugin_id, dict(options), release, position))
    return Config(settings=settings, plugins=tuple(entries), path=path)


def _resolved_templates(settings: Settings, path: Path | None) -> Settings:
    """`templates` must be an existing directory; a relative path is read from the config
    file's folder."""
    if settings.templates is None:
        return settings
    folder = Path(settings.templates).expanduser()
    if not folder.is_absolute() and path is not None:
        folder = path.parent / folder
    if not folder.is_dir():
        raise ConfigError(f"template directory {str(folder)!r} does not exist", option="templates")
    return attrs.evolve(settings, templates=str(folder.resolve()))


def load_config(
    explicit: str | os.PathLike[str] | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Config:
    path = find_config_path(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if overrides:
        data.setdefault("restock", {}).update(overrides)
    config = parse_config(data, path)
    return config
