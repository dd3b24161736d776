"""The README's promise, for real: `restock serve` in its own process; a sign-up, then a
stock update, makes the logger provider print the message within a second."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from restock_core.testing import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_signup_restock_notifies_once(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\ntrigger_delay = 0\nadmin_api_key = "k"\n'
        f'public_url = "http://127.0.0.1:{port}"\n\n[[plugins]]\nresolve = "logger"\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    restock = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
    if database_url.startswith("postgresql"):
        subprocess.run([*restock, "db", "upgrade"], check=True, capture_output=True)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*restock, "serve", "--port", str(port)], stderr=log, stdout=log, env={**os.environ}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), timeout=20)
        created = httpx.post(
            f"{base}/subscriptions", json={"variant_id": "v1", "email": "ada@example.com"}
        )
        assert created.status_code == 202 and created.json() == {"status": "accepted"}
        listed = httpx.get(f"{base}/subscriptions", headers={"Authorization": "Bearer k"})
        sub_id = listed.json()["items"][0]["id"]
        started = time.monotonic()
        stock = httpx.put(
            f"{base}/stock/v1", json={"quantity": 1}, headers={"Authorization": "Bearer k"}
        )
        assert stock.status_code == 200 and stock.json()["restocks_opened"]
        wait_for(
            lambda: "first to=ada@example.com" in (tmp_path / "serve.log").read_text(),
            timeout=5,
        )
        elapsed = time.monotonic() - started
        print(f"stock update -> logger line: {elapsed * 1000:.0f} ms")
        read = httpx.get(f"{base}/subscriptions/{sub_id}", headers={"Authorization": "Bearer k"})
        assert read.json()["status"] == "notified"
        # a second restock does not notify them again
        httpx.put(f"{base}/stock/v1", json={"quantity": 0}, headers={"Authorization": "Bearer k"})
        httpx.put(f"{base}/stock/v1", json={"quantity": 4}, headers={"Authorization": "Bearer k"})
        time.sleep(0.5)
        assert (tmp_path / "serve.log").read_text().count("first to=ada@example.com") == 1
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_double_opt_in_end_to_end(tmp_path: Path, database_url: str) -> None:
    """Double opt-in through `restock serve` and the logger provider: the sign-up is
    unconfirmed, the confirmation goes out through the outbox with a signed link, a GET on
    the link changes nothing, the POST confirms, and only then does a restock notify."""
    import re

    port = free_port()
    sent = tmp_path / "sent.jsonl"
    config = tmp_path / "plugins.toml"
    config.write_text(
        f'[restock]\ndatabase = "{database_url}"\ntrigger_delay = 0\nadmin_api_key = "k"\n'
        f'public_url = "http://127.0.0.1:{port}"\ndouble_opt_in = true\n\n'
        f'[[plugins]]\nresolve = "logger"\noptions = {{ file = "{sent}" }}\n\n'
        '[[plugins]]\nresolve = "manual"\n'
    )
    restock = [sys.executable, "-m", "restock_core.cli", "--config", str(config)]
    if database_url.startswith("postgresql"):
        subprocess.run([*restock, "db", "upgrade"], check=True, capture_output=True)
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [*restock, "serve", "--port", str(port)], stderr=log, stdout=log, env={**os.environ}
    )
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": "Bearer k"}

    def status() -> str:
        return str(httpx.get(f"{base}/subscriptions", headers=admin).json()["items"][0]["status"])

    try:
        wait_for(lambda: _up(base), timeout=20)
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
        httpx.put(f"{base}/stock/v1", json={"quantity": 2}, headers=admin)
        httpx.put(f"{base}/stock/v1", json={"quantity": 0}, headers=admin)
        assert httpx.get(link.group(0)).status_code == 200  # the page: changes nothing
        assert status() == "unconfirmed"
        assert httpx.post(link.group(0)).status_code == 200
        assert status() == "pending"
        httpx.put(f"{base}/stock/v1", json={"quantity": 3}, headers=admin)
        wait_for(lambda: '"template": "restock"' in sent.read_text(), timeout=5)
        wait_for(lambda: status() == "notified", timeout=5)
        templates = [json.loads(line)["template"] for line in sent.read_text().splitlines()]
        assert templates == ["confirm", "restock"]
    finally:
        server.terminate()
        server.wait(10)
        log.close()
