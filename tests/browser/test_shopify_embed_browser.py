"""The Shopify embed end to end in Chromium: the snippet's script (from
embeds/shopify/restock-notify.liquid) on a product page, the widget in its server-rendered
mode, and the sign-up through an app proxy to the Shopify plugin's signed route.

The "shop" here does what Shopify's app proxy is documented to do
(https://shopify.dev/docs/apps/build/online-store/app-proxies and
.../authenticate-app-proxies): forward /apps/restock/* on the shop's own domain to the app's
proxy URL with shop, path_prefix, timestamp, logged_in_customer_id and an HMAC signature
added to the query, the POST body passed through. Stock comes from the fake Shopify Admin API.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

pytest.importorskip("restock_shopify")

from restock_shopify.fake import TOKEN, FakeShopify, proxy_query  # noqa: E402

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SECRET = "shpss_fake_client_secret_5678"


def snippet_script(product_id: int) -> str:
    """The inline script of the Liquid snippet, with the product id Liquid would print."""
    liquid = (ROOT / "embeds" / "shopify" / "restock-notify.liquid").read_text()
    script = re.search(r"<script>\n(.*?)</script>", liquid, re.S).group(1)
    assert "{%" not in script
    return script.replace("{{ product.id }}", str(product_id))


class Shop:
    """The storefront domain: product page, and the app proxy in front of restock."""

    def __init__(self, restock_url: str, page: str, customer: str = ""):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _proxy(self) -> None:
                url = urlsplit(self.path)
                rest = url.path.removeprefix("/apps/restock")
                query = proxy_query(
                    SECRET, logged_in_customer_id=customer, **dict(parse_qsl(url.query))
                )
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = httpx.request(
                    self.command,
                    f"{restock_url}/shopify/proxy{rest}",
                    params=query,
                    content=body,
                    headers={"content-type": self.headers.get("content-type", "")},
                )
                outer.proxied.append((self.command, rest, answer.status_code))
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_POST(self) -> None:  # noqa: N802
                self._proxy()

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/apps/restock/"):
                    self._proxy()
                    return
                data = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.proxied: list[tuple[str, str, int]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def product_page(restock_url: str) -> str:
    # what the snippet renders for product 7 with variant 102 (in stock) selected; 101 is sold out
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shirt</title></head><body>
<h1>Shirt</h1>
<form action="/cart/add" method="post"><label for="v">Size</label>
<select id="v" name="id"><option value="102" selected>M</option><option value="101">L</option></select>
<button>Add to cart</button></form>
<div class="restock-notify" id="restock-notify-7" data-restock-variant="" data-restock-scope="default"
  data-restock-sold-out="true" data-restock-subscribe-url="/apps/restock/subscribe" data-restock-locale="en"></div>
<script type="application/json" id="restock-availability-7">{{"101": false, "102": true}}</script>
<script>{snippet_script(7)}</script>
<script src="{restock_url}/widget.js" defer></script></body></html>"""


def test_shopify_snippet_signs_up_through_the_app_proxy(
    make_sqlite_app: Any, serve: Any, page: Any
) -> None:
    with FakeShopify() as fake:
        fake.add_variant(101, available=0, title="L", handle="shirt")
        fake.add_variant(102, available=3, title="M", handle="shirt")
        app = make_sqlite_app(
            plugins=[
                {
                    "resolve": "shopify",
                    "options": {
                        "shop": "example.myshopify.com",
                        "access_token": TOKEN,
                        "client_secret": SECRET,
                        "base_url": fake.url,
                        "timeout": 5.0,
                    },
                },
                {"resolve": "logger", "options": {"channels": ["email"]}},
            ]
        )
        restock = serve(app)
        shop = Shop(restock.url, product_page(restock.url), customer="55")
        try:
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.url))
            page.goto(shop.url + "/products/shirt")
            page.wait_for_load_state("networkidle")
            assert page.locator("#restock-notify-7").inner_html() == ""  # M is in stock
            page.get_by_label("Size").select_option("101")  # the theme's picker: L, sold out
            page.get_by_label("Email").fill("ada@example.com")
            page.get_by_role("checkbox").check()
            page.get_by_role("button", name="Notify me").click()
            page.locator("[role=status]").filter(has_text="We'll email you").wait_for()
            assert shop.proxied == [("POST", "/subscribe", 202)]
            assert not [u for u in asked if "/widget/availability" in u]  # Liquid knew
            (sub,) = app.list_subscriptions().items
            assert sub.variant_id == "gid://shopify/ProductVariant/101"
            assert sub.contact == "ada@example.com" and sub.source == "shopify"
            assert sub.customer_id == "gid://shopify/Customer/55"  # from the signed query
            page.get_by_label("Size").select_option("102")  # back to M: the form goes
            page.locator("#restock-notify-7 form").wait_for(state="detached")
        finally:
            shop.stop()
