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
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .base import InventoryAdapter, ObserverPlugin, Provider
from .config import Config, PluginEntry, ReleasePolicy, Settings, structure_options
from .errors import ConfigError
from .models import Channel

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


@attrs.frozen
class Factory:
    """A named factory handed to the core by a plugin's ``register_*`` hook."""

    name: str
    kind: str  # "provider" | "inventory_adapter" | "observer"
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
            self._factories = self._collect(self.pm)
        return self._factories

    def _collect(self, pm: pluggy.PluginManager) -> dict[str, Factory]:
        """Call every ``register_*`` hook implementation (``@hookimpl`` only: pluggy's own
        list, so a same-named function without the marker registers nothing) with a
        ``register`` callback that records factories under the implementing plugin."""
        found: dict[str, Factory] = {}
        for kind, hook_name in (
            ("provider", "register_providers"),
            ("inventory_adapter", "register_inventory_adapters"),
            ("observer", "register_observers"),
        ):
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                impl.function(register=self._registrar(found, kind, impl.plugin_name))
        return found

    @staticmethod
    def _registrar(found: dict[str, Factory], kind: str, plugin_name: str) -> Callable[..., None]:
        def register(
            name: str,
            factory: Callable[..., Any],
            options: type | None = None,
            description: str | None = None,
        ) -> None:
            if name in found:
                other = found[name].plugin
                raise ConfigError(
                    f"two plugins register the name {name!r}: {other} and {plugin_name}"
                )
            if options is not None and not attrs.has(options):
                raise ConfigError(
                    f"options for {name!r} must be an attrs class, got {options!r}",
                    plugin=plugin_name,
                )
            found[name] = Factory(name, kind, factory, options, plugin_name, description)

        return register

    def describe(self, config: Config | None = None) -> list[dict[str, Any]]:
        """Rows for `restock plugins`, from what pluggy knows: one per factory a plugin
        registers (name, kind), one per plugin that only observes (kind "observer"), one per
        installed plugin that failed to load (kind "broken"). Each row names the pluggy
        plugin, its distribution and version, the hooks it implements and the instance ids
        `config` configures from it."""
        configured: dict[str, list[str]] = {}
        for entry in config.plugins if config is not None else ():
            configured.setdefault(entry.resolve, []).append(entry.id)
        by_plugin: dict[str, list[Factory]] = {}
        for factory in self.factories.values():
            by_plugin.setdefault(factory.plugin, []).append(factory)
        rows: list[dict[str, Any]] = []
        for plugin in self.pm.get_plugins():
            name = self.pm.get_name(plugin) or repr(plugin)
            if name.startswith("_") or ":observer:" in name:
                continue  # pluggy internals; instance observers are listed with their plugin
            dist, version = self.distributions.get(name, (None, None))
            base = {
                "plugin": name,
                "distribution": dist,
                "version": version,
                "hooks": sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()),
            }
            factories = sorted(by_plugin.get(name, []), key=lambda f: (f.kind, f.name))
            for factory in factories:
                rows.append(
                    {
                        "name": factory.name,
                        "kind": factory.kind,
                        **base,
                        "configured": configured.get(factory.name, []),
                        "description": factory.description,
                    }
                )
            if not factories:
                rows.append(
                    {
                        "name": name,
                        "kind": "observer",
                        **base,
                        "configured": [],
                        "description": None,
                    }
                )
        for name, error in sorted(self.broken.items()):
            rows.append(
                {
                    "name": name,
                    "kind": "broken",
                    "plugin": name,
                    "distribution": None,
                    "version": None,
                    "hooks": [],
                    "configured": configured.get(name, []),
                    "description": error,
                }
            )
        rows.sort(
            key=lambda r: ({"broken": 2, "observer": 1}.get(r["kind"], 0), r["kind"], r["name"])
        )
        return rows

    def check(self, config: Config) -> list[ConfigError]:
        """What is wrong with the plugins `config` names (unknown or broken plugins),
        without building anything."""
        problems = []
        for entry in config.plugins:
            try:
                self._resolve_factory(entry)
            except ConfigError as exc:
                problems.append(exc)
        return problems

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
        if any(
            hasattr(target, hook)
            for hook in ("register_providers", "register_inventory_adapters", "register_observers")
        ):
            own = self._collect(_manager(target, entry.resolve))
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
                    f"factory returned {type(obj).__name__}, which is not a "
                    "restock_core.Provider (subclass it: name, channels, max_batch_size, send())",
                    plugin=entry.id,
                )
            if kind == "inventory_adapter" and not isinstance(obj, InventoryAdapter):
                raise ConfigError(
                    f"factory returned {type(obj).__name__}, which is not a "
                    "restock_core.InventoryAdapter (subclass it: name, availability())",
                    plugin=entry.id,
                )
            if kind == "observer" and not isinstance(obj, ObserverPlugin):
                raise ConfigError(
                    f"factory returned {type(obj).__name__}, which is not a "
                    "restock_core.ObserverPlugin (subclass it: name, observers())",
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


def _manager(plugin: object, name: str) -> pluggy.PluginManager:
    """A plugin manager holding only `plugin` (an unpackaged "module:attribute" plugin)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=name)
    return pm


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
