"""Plugin contracts and their discovery.

Every plugin, built-in or third-party, is found through the `restock` entry-point group and
hands named factories to the core through `register_providers` / `register_inventory_adapters`
(the llm/conda pattern). `plugins.toml` then picks factories by name and configures them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs
import pluggy

from . import hookspecs
from .config import Config, PluginEntry, ReleasePolicy, Settings, structure_options
from .errors import ConfigError
from .models import Channel, Message, SendResult, StockKey, VariantInfo

log = logging.getLogger("restock.plugins")

ENTRY_POINT_GROUP = "restock"

#: first-party plugin name -> the pip extra that installs it
FIRST_PARTY_EXTRAS = {
    "sendgrid": "restock-core[sendgrid]",
    "resend": "restock-core[resend]",
    "twilio": "restock-core[twilio]",
    "shopify": "restock-core[shopify]",
    "magento2": "restock-core[magento2]",
    "medusa": "restock-core[medusa]",
}


@runtime_checkable
class Provider(Protocol):
    """Sends notifications.

    - ``name``: the registered name (``"sendgrid"``);
    - ``channels``: the channels it serves;
    - ``max_batch_size``: the most messages one ``send`` call receives;
    - ``send(messages)``: one :class:`SendResult` per message. Per-message failures are
      results, not exceptions; anything raised counts as a transient failure of the batch.

    Optional: ``routes(app) -> APIRouter | None`` (status webhooks), ``bind(app)``, ``close()``.
    """

    name: str
    channels: frozenset[Channel]
    max_batch_size: int

    def send(self, messages: Sequence[Message]) -> Sequence[SendResult]: ...


@runtime_checkable
class InventoryAdapter(Protocol):
    """Reads stock from a commerce platform.

    - ``availability(keys)``: ``{key: quantity or None}`` for a batch of keys (None means
      untracked or unknown); use the platform's batch endpoints;
    - ``describe(variant_ids)``: ``{variant_id: VariantInfo}`` for templates (may be partial);
    - ``poll_interval``: seconds between reconciliation passes, or None for no polling.

    Optional: ``routes(app) -> APIRouter | None`` (webhooks, platform-shaped sign-up), ``bind(app)``,
    ``max_batch_size`` (keys per ``availability`` call, default 250), ``close()``.
    """

    name: str
    poll_interval: float | None

    def availability(self, keys: Sequence[StockKey]) -> Mapping[StockKey, int | None]: ...

    def describe(self, variant_ids: Sequence[str]) -> Mapping[str, VariantInfo]: ...


@attrs.frozen
class Factory:
    """A named factory handed to the core by a plugin's ``register_*`` hook."""

    name: str
    kind: str  # "provider" | "inventory_adapter"
    factory: Callable[..., Any]
    options: type | None
    plugin: str  # the pluggy plugin name (entry point name or module)
    description: str | None = None

    def build(self, raw_options: Mapping[str, Any], *, instance_id: str) -> Any:
        if self.options is None:
            if raw_options:
                raise ConfigError(
                    "this plugin takes no options",
                    plugin=instance_id,
                    option=next(iter(raw_options)),
                )
            return self.factory()
        options = structure_options(self.options, raw_options, plugin=instance_id)
        return self.factory(options)


@attrs.define
class PluginInstance:
    """A configured plugin: one `[[plugins]]` entry built into a provider or adapter."""

    id: str
    kind: str
    factory: Factory
    obj: Any
    release: ReleasePolicy | None = None

    KINDS: ClassVar[tuple[str, ...]] = ("provider", "inventory_adapter")


class PluginRegistry:
    """Loads entry points, collects factories and builds the configured instances."""

    def __init__(self, *, load_entry_points: bool = True, plugins: Iterable[object] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        #: entry point name -> why it could not be loaded
        self.broken: dict[str, str] = {}
        #: pluggy plugin name -> (distribution, version) for `restock plugins`
        self.distributions: dict[str, tuple[str, str]] = {}
        if load_entry_points:
            self._load_entry_points()
        for plugin in plugins:
            self.pm.register(plugin)
        self._factories: dict[str, Factory] | None = None

    def _load_entry_points(self) -> None:
        """Like pluggy's load_setuptools_entrypoints, but one broken plugin does not stop
        the others: it is reported when (and only when) a config asks for it."""
        for dist in list(importlib.metadata.distributions()):
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or self.pm.get_plugin(ep.name) is not None:
                    continue
                if self.pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                    self.pm.register(plugin, name=ep.name)
                except Exception as exc:
                    self.broken[ep.name] = f"{type(exc).__name__}: {exc}"
                    log.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
                    continue
                self.distributions[ep.name] = (dist.metadata["name"], dist.version)

    def register(self, plugin: object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)
        self._factories = None

    @property
    def factories(self) -> dict[str, Factory]:
        if self._factories is None:
            self._factories = self._collect(self.pm.get_plugins())
        return self._factories

    def _collect(self, plugins: Iterable[object]) -> dict[str, Factory]:
        found: dict[str, Factory] = {}
        for plugin in plugins:
            plugin_name = self.pm.get_name(plugin) or repr(plugin)
            for kind, hook_name in (
                ("provider", "register_providers"),
                ("inventory_adapter", "register_inventory_adapters"),
            ):
                impl = getattr(plugin, hook_name, None)
                if impl is None or not callable(impl):
                    continue

                def register(
                    name: str,
                    factory: Callable[..., Any],
                    options: type | None = None,
                    description: str | None = None,
                    *,
                    _kind: str = kind,
                    _plugin: str = plugin_name,
                ) -> None:
                    if name in found:
                        other = found[name].plugin
                        raise ConfigError(
                            f"two plugins register the name {name!r}: {other} and {_plugin}"
                        )
                    if options is not None and not attrs.has(options):
                        raise ConfigError(
                            f"options for {name!r} must be an attrs class, got {options!r}",
                            plugin=_plugin,
                        )
                    found[name] = Factory(name, _kind, factory, options, _plugin, description)

                impl(register=register)
        return found

    def describe(self) -> list[dict[str, str | None]]:
        """Rows for `restock plugins`: name, kind, distribution, version."""
        rows = []
        for factory in sorted(self.factories.values(), key=lambda f: (f.kind, f.name)):
            dist, version = self.distributions.get(factory.plugin, (None, None))
            rows.append(
                {
                    "name": factory.name,
                    "kind": factory.kind,
                    "distribution": dist,
                    "version": version,
                    "description": factory.description,
                }
            )
        return rows

    def _resolve_factory(self, entry: PluginEntry) -> Factory:
        if ":" in entry.resolve:
            return self._import_factory(entry)
        factory = self.factories.get(entry.resolve)
        if factory is not None:
            return factory
        if entry.resolve in self.broken:
            raise ConfigError(
                f"plugin {entry.resolve!r} is installed but failed to load: "
                f"{self.broken[entry.resolve]}",
                plugin=entry.id,
            )
        installed = ", ".join(sorted(self.factories)) or "(none)"
        hint = ""
        if entry.resolve in FIRST_PARTY_EXTRAS:
            hint = f'; install it with: pip install "{FIRST_PARTY_EXTRAS[entry.resolve]}"'
        raise ConfigError(
            f"unknown plugin {entry.resolve!r}; installed plugins: {installed}{hint}",
            plugin=entry.id,
        )

    def _import_factory(self, entry: PluginEntry) -> Factory:
        module_name, _, attribute = entry.resolve.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r}: {exc}", plugin=entry.id) from None
        try:
            target = getattr(module, attribute)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", plugin=entry.id
            ) from None
        if hasattr(target, "register_providers") or hasattr(target, "register_inventory_adapters"):
            own = self._collect([target])
            if len(own) != 1:
                raise ConfigError(
                    f"{entry.resolve} registers {len(own)} factories; name one of them "
                    f"({', '.join(own)}) after installing it as an entry point",
                    plugin=entry.id,
                )
            return next(iter(own.values()))
        if not callable(target):
            raise ConfigError(f"{entry.resolve} is not callable", plugin=entry.id)
        kind = "provider" if hasattr(target, "send") else "inventory_adapter"
        options = getattr(target, "Options", None)
        return Factory(attribute, kind, target, options, entry.resolve)

    def build(self, config: Config) -> list[PluginInstance]:
        instances = []
        for entry in config.plugins:
            factory = self._resolve_factory(entry)
            try:
                obj = factory.build(entry.options, instance_id=entry.id)
            except ConfigError:
                raise
            except Exception as exc:  # a plugin's own constructor refused its options
                raise ConfigError(f"could not be set up: {exc}", plugin=entry.id) from exc
            kind = factory.kind
            if kind == "provider" and not isinstance(obj, Provider):
                raise ConfigError(
                    "factory did not return a provider (needs name, channels, "
                    "max_batch_size and send())",
                    plugin=entry.id,
                )
            if kind == "inventory_adapter" and not isinstance(obj, InventoryAdapter):
                raise ConfigError(
                    "factory did not return an inventory adapter (needs name, poll_interval, "
                    "availability() and describe())",
                    plugin=entry.id,
                )
            release = None
            if entry.release is not None:
                merged = {
                    "per_unit": config.settings.per_unit,
                    "wave_interval": config.settings.wave_interval,
                    **entry.release,
                }
                release = structure_options(ReleasePolicy, merged, plugin=entry.id)
            instances.append(PluginInstance(entry.id, kind, factory, obj, release))
        return instances


def channel_routing(
    settings: Settings, instances: Sequence[PluginInstance]
) -> dict[Channel, PluginInstance]:
    """Which provider instance sends each channel: `[restock.channels]`, else the first
    configured provider that serves it."""
    providers = {i.id: i for i in instances if i.kind == "provider"}
    routing: dict[Channel, PluginInstance] = {}
    for channel_name, provider_id in settings.channels.items():
        try:
            channel = Channel(channel_name)
        except ValueError:
            raise ConfigError(
                f"unknown channel {channel_name!r}; channels are email, sms", option="channels"
            ) from None
        if provider_id not in providers:
            raise ConfigError(
                f"channel {channel_name!r} names provider {provider_id!r}, which is not "
                f"configured (configured: {', '.join(providers) or 'none'})",
                option="channels",
            )
        if channel not in providers[provider_id].obj.channels:
            raise ConfigError(
                f"provider {provider_id!r} does not serve {channel_name}", option="channels"
            )
        routing[channel] = providers[provider_id]
    for instance in providers.values():
        for channel in instance.obj.channels:
            routing.setdefault(Channel(channel), instance)
    return routing
