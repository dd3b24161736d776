"""Install for a shop: scripts/build-wheels makes a wheelhouse of the seven distributions and
their dependencies, and a fresh virtualenv installs core plus chosen plugins from it with no
package index at all (`pip install --no-index --find-links`). Slow (it builds and installs
about 60 wheels); it runs in CI like every other test, with its own generous timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {
    "sendgrid": "providers/sendgrid",
    "resend": "providers/resend",
    "twilio": "providers/twilio",
    "shopify": "inventory_adapters/shopify",
    "magento2": "inventory_adapters/magento2",
    "medusa": "inventory_adapters/medusa",
}


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


def test_extras_pin_the_plugin_versions_in_this_repository() -> None:
    core = _project(ROOT)
    core_version = Version(core["version"])
    extras = core["optional-dependencies"]
    for name, folder in PLUGINS.items():
        plugin = _project(ROOT / folder)
        (requirement,) = (Requirement(r) for r in extras[name])
        assert requirement.name == plugin["name"] == f"restock-{name}"
        assert requirement.specifier, f"extra {name!r} is unpinned"
        assert Version(plugin["version"]) in requirement.specifier, (name, requirement)
        # and each plugin accepts this core, but not the next minor version
        (needs_core,) = (
            Requirement(r) for r in plugin["dependencies"] if r.startswith("restock-core")
        )
        assert core_version in needs_core.specifier, (name, needs_core)
        next_minor = Version(f"{core_version.major}.{core_version.minor + 1}")
        assert next_minor not in needs_core.specifier, (name, needs_core)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "RESTOCK_", "VIRTUAL_ENV"))
    }
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_shop_installs_core_and_two_plugins_from_the_wheelhouse(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    built = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build-wheels"),
            "--out",
            str(wheelhouse),
            "--no-build-isolation",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(PATH=os.environ["PATH"]),
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    names = {p.name.split("-")[0] for p in wheelhouse.glob("*.whl")}
    assert {f"restock_{n}" for n in ["core", *PLUGINS]} <= names

    venv = tmp_path / "shop-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "restock-core[sendgrid,shopify]",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(PATH=os.environ["PATH"]),
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    shop = tmp_path / "shop"
    shop.mkdir()
    restock = str(venv / "bin" / "restock")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [restock, *args],
            capture_output=True,
            text=True,
            cwd=shop,
            env=_clean_env(PATH=os.environ["PATH"], HOME=str(tmp_path), **env),
        )

    listing = run("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    built_in = set(core["restock"])  # logger, manual, ... shipped inside restock-core
    assert set(rows) == built_in | {"sendgrid", "shopify"}  # twilio & co. not installed
    assert (rows["sendgrid"]["distribution"], rows["sendgrid"]["version"]) == (
        "restock-sendgrid",
        "0.1.0",
    )
    assert (rows["shopify"]["distribution"], rows["shopify"]["kind"]) == (
        "restock-shopify",
        "inventory_adapter",
    )
    table = run("plugins").stdout
    assert "restock-sendgrid" in table and "restock-shopify" in table
    # the installed code is the wheel's, not this checkout's
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import restock_core, restock_sendgrid; print(restock_core.__file__, restock_sendgrid.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=shop,
        env=_clean_env(PATH=os.environ["PATH"]),
        check=True,
    ).stdout
    assert str(ROOT) not in where and str(venv) in where

    # a config for the chosen plugins, checked; then the embedded flow end to end
    assert run("init", "--plugins", "sendgrid,shopify").returncode == 0
    secrets = {"SENDGRID_API_KEY": "SG.wheelhouse-test", "SHOPIFY_ACCESS_TOKEN": "shpat_test"}
    checked = run("config", "check", **secrets)
    assert checked.returncode == 0, checked.stderr
    assert "provider 'sendgrid' (sendgrid): email" in checked.stdout
    missing = run("init", "--plugins", "twilio", "--force")
    assert missing.returncode == 2 and 'pip install "restock-core[twilio]"' in missing.stderr
    (shop / "plugins.toml").unlink()
    for args in (
        ["db", "upgrade"],
        ["subscribe", "v1", "--email", "ada@example.com"],
        ["stock", "set", "v1", "3"],
        ["worker", "--once"],
    ):
        step = run(*args)
        assert step.returncode == 0, (args, step.stderr)
    assert "notified" in run("subscriptions").stdout  # migrations and templates shipped
