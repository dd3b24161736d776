"""The shape of the code: SQL only in the store, no import cycles, a cheap `import
restock_core`, pluggy as the registry, and the pure cores the store relies on."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

import restock_core
from restock_core import StockKey, StockUpdate
from restock_core.db import metadata
from restock_core.errors import ValidationError
from restock_core.hookspecs import hookimpl
from restock_core.plugins import PluginRegistry
from restock_core.signup import SignUpRequest, max_length
from restock_core.stock import MAX_QUANTITY, diff_stock

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "restock_core"
PLUGIN_PACKAGES = [
    *sorted((ROOT / "providers").glob("*/restock_*")),
    *sorted((ROOT / "inventory_adapters").glob("*/restock_*")),
    *sorted((ROOT / "examples").glob("*/restock_*")),
]
#: where queries may be built: the store, the table definitions and the migrations
SQL_ALLOWED = [CORE / "store", CORE / "db.py", CORE / "migrations", CORE / "migrate.py"]
SQL_CALLS = {"select", "insert", "update", "delete", "text", "tuple_", "exists"}


def _python_files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in sorted(root.rglob("*.py"))]


def _sql_uses(path: Path) -> list[str]:
    """`sa.select(...)`, `sqlalchemy.text(...)`, `conn.execute(...)` (any receiver named like a
    connection, engine or session) in a file. A GraphQL client's `execute` is not SQL."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        name = node.func.attr
        receiver = ast.unparse(owner).lower()
        database = any(word in receiver for word in ("conn", "engine", "session", "cursor"))
        if (name in ("execute", "exec_driver_sql") and database) or (
            name in SQL_CALLS and isinstance(owner, ast.Name) and owner.id in ("sa", "sqlalchemy")
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    return found


def test_no_sql_outside_the_store() -> None:
    files = [
        p
        for p in _python_files(CORE, *PLUGIN_PACKAGES)
        if not any(p == allowed or allowed in p.parents for allowed in SQL_ALLOWED)
    ]
    assert len(files) > 30  # the walk found the code
    offenders = [use for path in files for use in _sql_uses(path)]
    assert offenders == []


def test_the_sql_check_sees_sql() -> None:
    assert _sql_uses(CORE / "store" / "outbox.py")


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("store", {"app", "worker", "api", "cli", "plugins", "base"}),
        ("worker", {"app", "api", "cli"}),
        ("models", {"app", "worker", "api", "store", "db", "plugins"}),
        ("stock", {"app", "worker", "store", "db"}),
        ("base", {"app", "worker", "api", "store", "db", "plugins"}),
        ("web", {"app", "worker", "api", "store", "db"}),
    ],
)
def test_nothing_imports_back_up(module: str, must_not_import: set[str]) -> None:
    """Lower layers never import higher ones (type-only imports under TYPE_CHECKING are
    allowed: they run no code)."""
    root = CORE / module
    files = _python_files(root) if root.is_dir() else [root.with_suffix(".py")]
    bad = []
    for path in files:
        tree = ast.parse(path.read_text())
        type_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        runtime = ast.Module(body=[n for n in tree.body if id(n) not in type_only], type_ignores=[])
        imported = _imports_of(runtime, path)
        for name in must_not_import:
            if any(
                i == f"restock_core.{name}" or i.startswith(f"restock_core.{name}.")
                for i in imported
            ):
                bad.append(f"{path.relative_to(ROOT)} imports restock_core.{name}")
    assert bad == []


def _imports_of(tree: ast.Module, path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package + ".__init__"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("restock_core")
        ):
            if node.level:
                base = package.split(".")[: -node.level]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("restock_core"))
    return found


def test_every_module_imports_on_its_own() -> None:
    """Importing each module first (restock_core forgotten before each) works: no cycle
    hides behind import order."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in _python_files(CORE)
        if "migrations" not in p.parts
    )
    script = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    for loaded in [k for k in sys.modules if k.startswith('restock_core')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as exc:\n"
        "        print(m, type(exc).__name__, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", result.stdout


def test_import_restock_core_is_light() -> None:
    code = (
        "import sys, restock_core\n"
        "from restock_core import hookimpl, Secret, Provider, InventoryAdapter, DeliveryEvent\n"
        "from restock_core import positive, chunks, utcnow, SendResult, StockKey, AdapterError\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic', 'fastapi'})\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_public_api_names_resolve() -> None:
    for name in restock_core.__all__:
        assert getattr(restock_core, name) is not None, name
    with pytest.raises(AttributeError):
        restock_core.no_such_name  # noqa: B018


# ---------------------------------------------------------------------- pluggy registry


class Marked:
    @hookimpl
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        register("marked", lambda: None)


class Unmarked:
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        register("unmarked", lambda: None)


def test_only_hookimpls_register_factories() -> None:
    registry = PluginRegistry(load_entry_points=False, plugins=[Marked(), Unmarked()])
    assert "marked" in registry.factories
    assert "unmarked" not in registry.factories


# ---------------------------------------------------------------------- pure cores

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A = StockKey("a")
B = StockKey("b")


def test_diff_stock_applies_newer_and_drops_stale() -> None:
    current = {A: (0, T0)}
    updates = [
        StockUpdate(A, 5, T0 - timedelta(seconds=1)),  # older than stored: stale
        StockUpdate(A, 3, T0 + timedelta(seconds=1)),
        StockUpdate(B, 2, T0),  # new key
        StockUpdate(B, 0, T0 + timedelta(seconds=2)),  # later in the batch wins
    ]
    diff = diff_stock(current, updates, required=1)
    assert (diff.applied, diff.stale) == (3, 1)
    assert diff.inserts == ((B, 2, T0),)
    assert diff.changes == {A: (3, T0 + timedelta(seconds=1)), B: (0, T0 + timedelta(seconds=2))}
    assert diff.rising == {A: 3}  # B fell back below the required quantity


def test_diff_stock_clamps_and_respects_required() -> None:
    diff = diff_stock({}, [StockUpdate(A, -4, T0), StockUpdate(B, 2**40, T0)], required=3)
    assert diff.inserts == ((A, 0, T0), (B, MAX_QUANTITY, T0))
    assert diff.rising == {B: MAX_QUANTITY}
    assert diff_stock({}, [StockUpdate(A, None, T0)], required=1).rising == {}


# ---------------------------------------------------------------------- sign-up limits


def test_signup_limits_match_the_database_columns() -> None:
    columns = metadata.tables["subscriptions"].c
    for field in attrs.fields(SignUpRequest):
        limit = field.metadata.get("max_length")
        name = {"email": "contact", "phone": "contact"}.get(field.name, field.name)
        if limit is None or name not in columns:
            continue
        length = columns[name].type.length  # type: ignore[attr-defined]
        assert length is None or limit <= length, (field.name, limit, length)


def test_http_model_takes_its_limits_from_signup_request() -> None:
    from restock_core.api import SubscriptionIn
    from restock_core.signup import SignUpContext

    # the consent texts and the honeypot belong to the sign-up's context, not the request
    context = {
        "hp": "honeypot",
        "consent_text": "consent_text",
        "consent_version": "consent_version",
    }
    for name, info in SubscriptionIn.model_fields.items():
        if name in context:
            field = attrs.fields_dict(SignUpContext)[context[name]]
        else:
            field = attrs.fields_dict(SignUpRequest)[name]
        wanted = field.metadata.get("max_length")
        got = next((m.max_length for m in info.metadata if hasattr(m, "max_length")), None)
        if name != "source":
            assert got == wanted, name


def test_signup_request_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        SignUpRequest.parse("v1", locale="x" * (max_length("locale") + 1))
    assert err.value.field == "locale"
    with pytest.raises(ValidationError) as err:
        SignUpRequest.parse("  ")
    assert err.value.field == "variant_id"
    assert SignUpRequest.parse(" v1 ", scope=" eu ").scope == "eu"


class OnlyObserves:
    @hookimpl
    def restocked(self, restock, subscriptions):  # type: ignore[no-untyped-def]
        pass


def test_observer_only_plugins_are_listed() -> None:
    registry = PluginRegistry(load_entry_points=False, plugins=[Marked(), OnlyObserves()])
    rows = {row["name"]: row for row in registry.describe()}
    assert rows["marked"]["kind"] == "provider"
    observer = next(r for r in rows.values() if r["kind"] == "observer")
    assert observer["hooks"] == ["restocked"]


class DuckProvider:  # has everything but does not subclass restock_core.Provider
    name = "duck"
    channels = frozenset({"email"})
    max_batch_size = 1

    def send(self, messages):  # type: ignore[no-untyped-def]
        return []


class DuckPlugin:
    @hookimpl
    def register_providers(self, register):  # type: ignore[no-untyped-def]
        register("duck", DuckProvider)


def test_a_factory_must_return_a_base_class_instance() -> None:
    from restock_core.config import parse_config
    from restock_core.errors import ConfigError

    registry = PluginRegistry(plugins=[DuckPlugin()])
    config = parse_config({"plugins": [{"resolve": "duck"}, {"resolve": "manual"}]})
    with pytest.raises(ConfigError) as caught:
        registry.build(config)
    assert "plugin 'duck'" in str(caught.value)
    assert "DuckProvider, which is not a restock_core.Provider" in str(caught.value)
