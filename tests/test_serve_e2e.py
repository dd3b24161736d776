"""The README's promise, for real: `restock serve` in its own process; a sign-up, then a
stock update, makes the logger provider print the message within a second."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import httpx
import pytest

from restock_core.testing import wait_for

ADMIN = {"Authorization": "Bearer k"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@attrs.frozen
class Served:
    """A `restock serve` process that answers on `base`; its stdout and stderr go to `log`."""

    base: str
    log: Path


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Served]]:
    """Starts `restock serve` (logger and manual plugins, admin key "k", no trigger delay)
    in its own process and waits until /health answers; stops it after the test.
    `restock` adds lines to the [restock] table, `logger` sets the logger plugin's options."""
    started: list[tuple[subprocess.Popen[bytes], Callable[[], None]]] = []

    def start(restock: str = "", logger: str = "") -> Served:
        port = free_port()
        config = tmp_path / "plugins.toml"
        options = f"options = {{ {logger} }}\n" if logger else ""
        config.write_text(
            f'[restock]\ndatabase = "{database_url}"\ntrigger_delay = 0\nadmin_api_key = "k"\n'
            f'public_url = "http://127.0.0.1:{port}"\n{restock}\n'
            f'[[plugins]]\nresolve = "logger"\n{options}\n'
            '[[plugins]]\nresolve = "manual"\n'
        )
        cli = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
        if database_url.startswith("postgresql"):
            subprocess.run([*cli, "db", "upgrade"], check=True, capture_output=True)
        log_path = tmp_path / "serve.log"
        log = log_path.open("w")
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port)], stderr=log, stdout=log, env={**os.environ}
        )
        started.append((server, log.close))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), timeout=20)
        return Served(base=base, log=log_path)

    yield start
    for server, close_log in started:
        server.terminate()
        server.wait(10)
        close_log()


def test_serve_signup_restock_notifies_once(serve: Callable[..., Served]) -> None:
    served = serve()
    base = served.base
    created = httpx.post(
        f"{base}/subscriptions", json={"variant_id": "v1", "email": "ada@example.com"}
    )
    assert created.status_code == 202 and created.json() == {"status": "accepted"}
    listed = httpx.get(f"{base}/subscriptions", headers=ADMIN)
    sub_id = listed.json()["items"][0]["id"]
    started = time.monotonic()
    stock = httpx.put(f"{base}/stock/v1", json={"quantity": 1}, headers=ADMIN)
    assert stock.status_code == 200 and stock.json()["restocks_opened"]
    wait_for(lambda: "first to=ada@example.com" in served.log.read_text(), timeout=5)
    elapsed = time.monotonic() - started
    print(f"stock update -> logger line: {elapsed * 1000:.0f} ms")
    read = httpx.get(f"{base}/subscriptions/{sub_id}", headers=ADMIN)
    assert read.json()["status"] == "notified"
    # a second restock does not notify them again
    httpx.put(f"{base}/stock/v1", json={"quantity": 0}, headers=ADMIN)
    httpx.put(f"{base}/stock/v1", json={"quantity": 4}, headers=ADMIN)
    time.sleep(0.5)
    assert served.log.read_text().count("first to=ada@example.com") == 1


def test_serve_double_opt_in_end_to_end(tmp_path: Path, serve: Callable[..., Served]) -> None:
    """Double opt-in through `restock serve` and the logger provider: the sign-up is
    unconfirmed, the confirmation goes out through the outbox with a signed link, a GET on
    the link changes nothing, the POST confirms, and only then does a restock notify."""
    sent = tmp_path / "sent.jsonl"
    base = serve(restock="double_opt_in = true\n", logger=f'file = "{sent}"').base

    def status() -> str:
        return str(httpx.get(f"{base}/subscriptions", headers=ADMIN).json()["items"][0]["status"])

    created = httpx.post(
        f"{base}/subscriptions", json={"variant_id": "v1", "email": "ada@example.com"}
    )
    assert created.status_code == 202
    assert created.json() == {"status": "accepted", "confirm": True}
    assert status() == "unconfirmed"
    wait_for(lambda: sent.exists() and "/confirm/" in sent.read_text(), timeout=5)
    link = re.search(r"http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_.-]+", sent.read_text())
    assert link is not None
    # a restock before the confirmation notifies nobody
    httpx.put(f"{base}/stock/v1", json={"quantity": 2}, headers=ADMIN)
    httpx.put(f"{base}/stock/v1", json={"quantity": 0}, headers=ADMIN)
    assert httpx.get(link.group(0)).status_code == 200  # the page: changes nothing
    assert status() == "unconfirmed"
    assert httpx.post(link.group(0)).status_code == 200
    assert status() == "pending"
    httpx.put(f"{base}/stock/v1", json={"quantity": 3}, headers=ADMIN)
    wait_for(lambda: '"template": "restock"' in sent.read_text(), timeout=5)
    wait_for(lambda: status() == "notified", timeout=5)
    templates = [json.loads(line)["template"] for line in sent.read_text().splitlines()]
    assert templates == ["confirm", "restock"]
