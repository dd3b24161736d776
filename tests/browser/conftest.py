"""Real headless Chromium (Debian's `chromium` package) driven by Playwright's Python API,
pointed at it with `executable_path` (no `playwright install`, no browser download).

Servers: restock's HTTP API in a uvicorn thread on an ephemeral 127.0.0.1 port, and a
"storefront" on another port (another origin) serving test pages that embed the widget.
In CI (CI=true) a missing Chromium or Playwright fails these tests instead of skipping."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn

from restock_core.api import create_api
from restock_core.app import App

CHROMIUM = os.environ.get("RESTOCK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests need Chromium in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable(
            "the playwright package is not installed (pip install -r requirements-dev.txt)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


class Served:
    """A uvicorn server for one App, on its own thread. `requests` lists what reached it:
    (method, path, Content-Type, status), the CORS preflights a browser sends included
    (Playwright's request events do not show those)."""

    def __init__(self, app: App):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, str, int]] = []
        api = create_api(app)

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await api(scope, receive, send)
                return
            kind = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    self.requests.append((scope["method"], scope["path"], kind, message["status"]))
                await send(message)

            await api(scope, receive, sending)

        config = uvicorn.Config(
            recorded, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("restock test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[App], Served]]:
    started: list[Served] = []

    def start(app: App) -> Served:
        served = Served(app)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


class Storefront:
    """Another origin: serves `pages` (path -> HTML) like a shop's product pages."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def storefront() -> Iterator[Storefront]:
    shop = Storefront()
    yield shop
    shop.stop()


@pytest.fixture
def make_sqlite_app(tmp_path: Any) -> Iterator[Callable[..., App]]:
    """A migrated App on a fresh SQLite file. (The dashboard's queries also run on
    PostgreSQL in tests/test_dashboard.py; the browser tests check the faces.)"""
    from restock_core.config import parse_config

    made: list[App] = []

    def factory(restock: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> App:
        data: dict[str, Any] = {
            "restock": {"database": f"sqlite:///{tmp_path / 'restock.db'}", **(restock or {})}
        }
        if plugins is not None:
            data["plugins"] = plugins
        app = App(parse_config(data))
        app.migrate()
        made.append(app)
        return app

    yield factory
    for app in made:
        app.close()
