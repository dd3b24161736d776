"""The example provider, installed the way a user installs a plugin, then used for a restock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restock_core.testing import FakeHTTPServer, ProviderContract, RecordedRequest, Reply

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))  # the contract tests below import the module in-process

from restock_webhook_provider import WebhookOptions, WebhookProvider  # noqa: E402

from restock_core.config import Secret  # noqa: E402
from restock_core.models import Channel  # noqa: E402


class Fake:
    """A receiver that answers like a real webhook endpoint would."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.rejected: set[str] = set()
        self.accepted: list[str] = []
        self.server = FakeHTTPServer(self.handle).start()

    def handle(self, request: RecordedRequest) -> Reply:
        if self.mode == "429":
            return Reply(429, {"error": "slow down"}, headers={"Retry-After": "7"})
        if self.mode == "500":
            return Reply(500, {"error": "boom"})
        messages = request.json["messages"]
        rejected = {m["id"]: "unknown recipient" for m in messages if m["to"] in self.rejected}
        self.accepted += [m["to"] for m in messages if m["id"] not in rejected]
        return Reply(200, {"rejected": rejected})

    # the ProviderContract's fake interface
    def accept(self) -> None:
        self.mode = "ok"

    def rate_limit(self, retry_after: int) -> None:
        self.mode = "429"

    def server_error(self) -> None:
        self.mode = "500"

    def reject_recipients(self, addresses) -> None:
        self.rejected = set(addresses)

    def received(self) -> list[str]:
        return list(self.accepted)


@pytest.fixture
def provider_fake():
    fake = Fake()
    yield fake
    fake.server.stop()


@pytest.fixture
def provider(provider_fake):
    return WebhookProvider(
        WebhookOptions(url=provider_fake.server.url + "/hook", secret=Secret("whsec-example"))
    )


@pytest.fixture
def provider_secrets():
    return ["whsec-example"]


@pytest.fixture
def contract_channel():
    return Channel.EMAIL


class TestWebhookProviderContract(ProviderContract):
    pass


def test_signature_and_body(provider, provider_fake) -> None:
    import hashlib
    import hmac

    from restock_core.testing import make_message

    provider.send([make_message(1)])
    request = provider_fake.server.requests[-1]
    expected = hmac.new(b"whsec-example", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-restock-signature"] == f"sha256={expected}"
    assert (
        request.json["messages"][0]["headers"]["List-Unsubscribe-Post"]
        == "List-Unsubscribe=One-Click"
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install the example into its own target directory, as a user would install it."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(HERE),
        ],
        check=True,
    )
    return target


def test_installed_plugin_is_listed_and_delivers(
    installed: Path, tmp_path: Path, database_url: str
) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("RESTOCK_CONFIG", None)
    listing = subprocess.run(
        [sys.executable, "-m", "restock_core.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["json-post"]["distribution"] == "restock-webhook-provider"
    assert rows["json-post"]["kind"] == "provider"

    fake = Fake()
    try:
        config = tmp_path / "plugins.toml"
        config.write_text(
            f'[restock]\ndatabase = "{database_url}"\n\n'
            f'[[plugins]]\nresolve = "json-post"\noptions = {{ url = "{fake.server.url}/hook" }}\n\n'
            '[[plugins]]\nresolve = "manual"\n'
        )
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        for args in (
            ["db", "upgrade"],
            ["subscribe", "v1", "--email", "ada@example.com"],
            ["stock", "set", "v1", "2"],
            ["worker", "--once"],
        ):
            result = subprocess.run([*cli, *args], capture_output=True, text=True, env=env)
            assert result.returncode == 0, result.stderr
        assert fake.accepted == ["ada@example.com"]
        table = subprocess.run(
            [*cli, "subscriptions"], capture_output=True, text=True, env=env
        ).stdout
        assert "notified" in table
    finally:
        fake.server.stop()


def test_a_restock_reaches_the_webhook(make_app, provider_fake) -> None:
    """The end-to-end test from docs/writing-a-provider.md, with the shipped fixtures."""
    import restock_webhook_provider

    app = make_app(
        {
            "plugins": [
                {"resolve": "json-post", "options": {"url": provider_fake.server.url + "/hook"}},
                {"resolve": "manual"},
            ]
        },
        plugins=[restock_webhook_provider],  # not needed once the package is installed
    )
    app.subscribe("v1", email="ada@example.com")
    app.set_stock("v1", 2)
    app.worker().drain()
    assert provider_fake.received() == ["ada@example.com"]
