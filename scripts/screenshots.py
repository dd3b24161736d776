"""Screenshots of the widget and the dashboard for docs/ and the README.

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Seeds a temporary SQLite database with a small demo shop, serves restock and a product page
(another origin) on 127.0.0.1, and photographs them with headless Chromium through
Playwright (Debian's `chromium`; no browser download).
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import sync_playwright

from restock_core.api import create_api
from restock_core.app import App
from restock_core.config import parse_config
from restock_core.models import Channel, SendResult

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "demo-admin-key"
PRODUCTS = [
    ("linen-shirt-blue-m", "Linen shirt", "Blue / M", 41),
    ("linen-shirt-blue-l", "Linen shirt", "Blue / L", 27),
    ("trail-shoe-44", "Trail running shoe", "EU 44", 19),
    ("ceramic-mug-sand", "Ceramic mug", "Sand", 12),
    ("wool-beanie", "Merino beanie", "Charcoal", 7),
    ("canvas-tote", "Canvas tote", "Natural", 3),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FailSome:
    """A provider for the demo: most messages go out, two bounce."""

    name = "demo-mail"
    channels = frozenset({Channel.EMAIL, Channel.SMS})
    max_batch_size = 100

    def send(self, messages: Any) -> list[SendResult]:
        out = []
        for m in messages:
            if m.to.startswith("bounce"):
                out.append(
                    SendResult.failed(
                        m.delivery_id, "550 5.1.1 mailbox does not exist", suppress=True
                    )
                )
            else:
                out.append(SendResult.sent(m.delivery_id, f"demo-{m.delivery_id}"))
        return out


class DemoPlugin:
    from restock_core.hookspecs import hookimpl

    @hookimpl
    def register_providers(self, register: Any) -> None:
        register("demo-mail", FailSome)


def seed(app: App) -> None:
    n = 0
    for variant, product, title, count in PRODUCTS:
        app.set_stock(variant, 0)
        for _ in range(count):
            n += 1
            app.subscribe(
                variant,
                email=f"shopper{n}@example.com",
                product_title=product,
                variant_title=title,
                locale="de-AT" if n % 5 == 0 else "en",
                url=f"https://shop.example/products/{variant}",
            )
    for i in range(2):
        app.subscribe("canvas-tote", email=f"bounce{i}@example.com", product_title="Canvas tote")
    app.set_stock("canvas-tote", 4)
    app.worker().drain()
    app.set_stock("canvas-tote", 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="restock-shots-"))
    shop_port = free_port()
    app = App(
        parse_config(
            {
                "restock": {
                    "database": f"sqlite:///{folder / 'demo.db'}",
                    "admin_api_key": KEY,
                    "cors_origins": [f"http://127.0.0.1:{shop_port}"],
                    "retry_base": 0.0,
                },
                "plugins": [{"resolve": "demo-mail"}, {"resolve": "manual"}],
            }
        ),
        plugins=[DemoPlugin()],
    )
    app.migrate()
    seed(app)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_api(app), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    page_html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Linen shirt</title>
<style>body{{font:16px/1.5 Georgia,serif;margin:0;color:#222}}main{{display:flex;gap:40px;padding:40px;max-width:900px}}
.photo{{width:380px;height:420px;background:linear-gradient(135deg,#a9c4e4,#4f6d9a);border-radius:8px}}
.info{{flex:1}}h1{{margin:0 0 8px;font-weight:normal}}.price{{font-size:20px;margin:0 0 16px}}
button.buy{{width:100%;padding:12px;background:#ccc;color:#666;border:0;border-radius:6px;font-size:16px}}
.sizes span{{display:inline-block;border:1px solid #999;padding:4px 10px;margin:0 6px 12px 0;border-radius:4px}}
.sizes .on{{border:2px solid #222}}</style></head>
<body><main><div class="photo" role="img" aria-label="Blue linen shirt"></div><div class="info">
<h1>Linen shirt</h1><p class="price">€ 69.00</p><div class="sizes"><span>S</span><span class="on">M</span><span>L</span></div>
<button class="buy" disabled>Sold out</button>
<div data-restock-variant="linen-shirt-blue-m" style="--restock-accent:#2d4b73;--restock-font:system-ui,sans-serif"></div>
</div></main><script src="{base}/widget.js" defer></script></body></html>"""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: Any) -> None:
            pass

    shop = ThreadingHTTPServer(("127.0.0.1", shop_port), Handler)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        page.goto(f"http://127.0.0.1:{shop_port}/")
        page.locator("form.restock-widget").wait_for()
        page.get_by_label("Email").fill("ada@example.com")
        page.screenshot(path=str(out / "widget.png"))
        page.set_viewport_size({"width": 1200, "height": 700})
        page.goto(base + "/admin/login")
        page.get_by_label("Admin key").fill(KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Demand").wait_for()
        page.screenshot(path=str(out / "dashboard-demand.png"))
        page.goto(base + "/admin/subscribers?source=manual&variant=linen-shirt-blue-l")
        page.screenshot(path=str(out / "dashboard-subscribers.png"))
        page.goto(base + "/admin/restocks")
        page.screenshot(path=str(out / "dashboard-restocks.png"))
        page.goto(base + "/admin/deliverability")
        page.screenshot(path=str(out / "dashboard-deliverability.png"), full_page=True)
        page.goto(base + "/admin/charts")
        page.screenshot(path=str(out / "dashboard-charts.png"))
        page.goto(base + "/admin/messages?variant=linen-shirt-blue-m&locale=de-AT")
        page.screenshot(path=str(out / "dashboard-messages.png"), full_page=True)
        browser.close()
    server.should_exit = True
    shop.shutdown()
    app.close()
    print("wrote", ", ".join(sorted(p.name for p in out.glob("*.png"))), "to", out)


if __name__ == "__main__":
    main()
