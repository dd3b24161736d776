"""Migrations and models agree, and every hook is documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from restock_core import hookspecs
from restock_core.db import metadata

ROOT = Path(__file__).resolve().parents[1]


def test_migrations_match_the_models(make_app) -> None:
    app = make_app()
    with app.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrating_twice_is_harmless(make_app) -> None:
    app = make_app()
    app.migrate()
    app.subscribe("v1", email="a@example.com")
    app.migrate()
    assert len(app.list_subscriptions().items) == 1


def hook_names() -> list[str]:
    return [
        name
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, "restock_spec")
    ]


def test_every_hook_is_documented() -> None:
    names = hook_names()
    assert {"register_providers", "restocked", "notification_failed"} <= set(names)
    doc = (ROOT / "docs" / "hooks.md").read_text()
    documented = set(re.findall(r"^## `(\w+)\(", doc, flags=re.MULTILINE))
    assert set(names) - documented == set(), "undocumented hooks"
    assert documented - set(names) == set(), "documented hooks that do not exist"
    for name in names:
        func = getattr(hookspecs, name)
        params = list(inspect.signature(func).parameters)
        assert f"## `{name}({', '.join(params)})`" in doc, f"{name}: documented signature differs"


def test_every_plugin_option_is_documented() -> None:
    import attrs

    from restock_core.plugins import PluginRegistry

    registry = PluginRegistry()
    missing, checked = [], set()
    for name, factory in registry.factories.items():
        if factory.options is None or registry.distributions.get(factory.plugin, ("",))[0] not in {
            "restock-core",
            "restock-sendgrid",
            "restock-resend",
            "restock-twilio",
            "restock-shopify",
            "restock-magento2",
            "restock-medusa",
        }:
            continue
        checked.add(name)
        page = ROOT / "docs" / "plugins" / f"{name}.md"
        doc = (
            page.read_text() if page.exists() else (ROOT / "docs" / "configuration.md").read_text()
        )
        for field in attrs.fields(factory.options):
            if f"`{field.name}`" not in doc:
                missing.append(f"{name}.{field.name}")
    assert checked >= {
        "logger",
        "manual",
        "sendgrid",
        "resend",
        "twilio",
        "shopify",
        "magento2",
        "medusa",
    }
    assert missing == []
