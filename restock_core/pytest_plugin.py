"""The pytest plugin shipped with restock-core (entry point group ``pytest11``, name
``restock``): installed with restock-core, it is active in every pytest run, so a plugin
author's tests get the same fixtures as restock's own.

Fixtures:

- ``database_url``: every test that uses it runs twice, on a fresh SQLite file and in a fresh
  PostgreSQL schema (``RESTOCK_TEST_PG``, default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). PostgreSQL tests skip when the
  server is unreachable, except under ``CI=true``, where they fail; ``RESTOCK_TEST_PG=off``
  leaves them out on purpose (they are skipped, even in CI).
- ``postgres_url``: a fresh PostgreSQL schema only.
- ``make_app``: ``make_app({"restock": {...}, "plugins": [...]}, plugins=[...])`` builds a
  migrated :class:`restock_core.App` on ``database_url`` and closes it after the test.
- ``restock_app``: ``make_app()`` with the built-in defaults (logger provider, manual stock).

It also registers assertion rewriting for :mod:`restock_core.testing`, so a failing contract
test shows the values it compared, not a bare ``AssertionError``.

Nothing heavy is imported until a fixture is used: pytest runs that never touch restock pay
nothing for having it installed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.register_assert_rewrite("restock_core.testing")

if TYPE_CHECKING:
    from .app import App

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_admin_url() -> str:
    return os.environ.get("RESTOCK_TEST_PG", DEFAULT_PG_URL)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgres: needs the PostgreSQL server in RESTOCK_TEST_PG (fails instead of skipping "
        "under CI=true)",
    )


def _pg_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    url = _pg_admin_url()
    if url.lower() in ("off", "no", "0", ""):
        return "off"
    from .db import ping

    try:
        ping(url)
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def _restock_pg_state() -> str | None:
    return _pg_problem()


def _fresh_schema(problem: str | None) -> Iterator[str]:
    if problem == "off":
        pytest.skip("PostgreSQL tests are turned off (RESTOCK_TEST_PG=off)")
    if problem is not None:
        if _in_ci():
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    from .db import create_schema, drop_schema

    admin_url = _pg_admin_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    create_schema(admin_url, schema)
    try:
        separator = "&" if "?" in admin_url else "?"
        yield f"{admin_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        drop_schema(admin_url, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _restock_pg_state: str | None
) -> Iterator[str]:
    """Every storage test runs twice: on a fresh SQLite file and in a fresh PostgreSQL schema.
    In CI (CI=true) a missing PostgreSQL fails the test instead of skipping it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'restock.db'}"
        return
    yield from _fresh_schema(_restock_pg_state)


@pytest.fixture
def postgres_url(_restock_pg_state: str | None) -> Iterator[str]:
    """A fresh PostgreSQL schema, for tests that only make sense there (several workers)."""
    yield from _fresh_schema(_restock_pg_state)


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., App]]:
    """Build a migrated App on the test database: make_app({"restock": {...}, "plugins": [...]},
    plugins=[module_or_object_with_hookimpls])."""
    from .app import App
    from .config import parse_config

    made: list[App] = []

    def factory(data: dict[str, Any] | None = None, *, plugins: Any = ()) -> App:
        data = dict(data or {})
        data["restock"] = {"database": database_url, **data.get("restock", {})}
        app = App(parse_config(data), plugins=plugins)
        app.migrate()
        made.append(app)
        return app

    yield factory
    for app in made:
        app.close()


@pytest.fixture
def restock_app(make_app: Callable[..., App]) -> App:
    """A migrated App with the built-in defaults: the logger provider and manual stock."""
    return make_app()
