"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis): no
generated request, valid or not, gets a 5xx, and every status is one the schema documents."""

from __future__ import annotations

import shutil
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from restock_core.api import create_api
from restock_core.app import App
from restock_core.config import parse_config

_dir = tempfile.mkdtemp(prefix="restock-fuzz-")
_app = App(
    parse_config({"restock": {"database": f"sqlite:///{_dir}/fuzz.db", "admin_api_key": "k"}})
)
_app.migrate()
schema = schemathesis.openapi.from_asgi("/openapi.json", create_api(_app))


@pytest.fixture(scope="module", autouse=True)
def _close():
    yield
    _app.close()
    shutil.rmtree(_dir, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:
    case.call_and_validate(
        headers={"Authorization": "Bearer k"},
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
        ],
    )
