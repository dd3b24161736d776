"""Fixtures for the Medusa adapter tests, and the one-time preparation of the real Medusa
backend for the `medusa`-marked tests.

The preparation (npm install of @medusajs/* into the cache, database, migrations, admin user:
minutes on a fresh machine) runs once per session *before* the first test, with its own time
limit (RESTOCK_MEDUSA_SETUP_TIMEOUT seconds, default 1800), so it never counts against a
test's 300 s timeout. `.ci/run` does the same before pytest; then this finds everything in
place and takes seconds. scripts/medusa-server.sh holds a lock on the shared cache, so two
sessions preparing at once queue up instead of clobbering each other.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from restock_medusa.testing import FakeMedusa

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "medusa-server.sh"
SETUP_RESULT = pytest.StashKey[str | None]()


@pytest.fixture
def fake_medusa() -> Iterator[FakeMedusa]:
    fake = FakeMedusa()
    fake.server.start()
    yield fake
    fake.server.stop()


def prepare_medusa(timeout: float) -> str | None:
    """`medusa-server.sh setup`; None when it worked, else why it did not."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(SCRIPT), "setup"],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if done.returncode != 0:
        return f"medusa-server.sh setup: exit {done.returncode}: {done.stderr[-2000:]}"
    steps = "; ".join(line for line in done.stderr.splitlines() if line.strip())
    print(f"\nMedusa backend prepared in {time.monotonic() - started:.1f} s ({steps[-500:]})")
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Prepare the real backend when a `medusa` test is selected, outside any test's timeout."""
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("medusa") for item in session.items):
        return
    timeout = float(os.environ.get("RESTOCK_MEDUSA_SETUP_TIMEOUT", "1800"))
    session.config.stash[SETUP_RESULT] = prepare_medusa(timeout)


@pytest.fixture(scope="session")
def medusa_prepared(request: pytest.FixtureRequest) -> str | None:
    """None when the backend is installed and migrated; else the reason it is not."""
    if SETUP_RESULT not in request.config.stash:  # selected without collection (unlikely)
        request.config.stash[SETUP_RESULT] = prepare_medusa(240)
    return request.config.stash[SETUP_RESULT]
