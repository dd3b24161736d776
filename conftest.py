"""Fixtures shared by the core, plugin and end-to-end tests (one pytest run covers all)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from restock_core.app import App
from restock_core.config import parse_config

PG_ADMIN_URL = os.environ.get(
    "RESTOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return str(exc)


@pytest.fixture(scope="session")
def _pg_state() -> str | None:
    return _pg_available()


def _schema_url(schema: str) -> str:
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Any, _pg_state: str | None
) -> Iterator[str]:
    """Every storage test runs twice: on a fresh SQLite file and in a fresh PostgreSQL schema.
    In CI (CI=true) a missing PostgreSQL fails the test instead of skipping it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'restock.db'}"
        return
    yield from _fresh_schema(_pg_state)


@pytest.fixture
def postgres_url(_pg_state: str | None) -> Iterator[str]:
    """A fresh PostgreSQL schema, for tests that only make sense there (several workers)."""
    yield from _fresh_schema(_pg_state)


def _fresh_schema(_pg_state: str | None) -> Iterator[str]:
    if _pg_state is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {_pg_state}")
        pytest.skip(f"PostgreSQL not reachable: {_pg_state}")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield _schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def make_app(database_url: str) -> Iterator[Callable[..., App]]:
    """Build a migrated App on the test database: make_app({"restock": {...}, "plugins": [...]},
    plugins=[module_or_object_with_hookimpls])."""
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
