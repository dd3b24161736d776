"""The storefront widget in real Chromium, embedded on a page from another origin."""

from __future__ import annotations

from typing import Any

import pytest

from restock_core.app import App

from .conftest import Served, Storefront

pytestmark = pytest.mark.browser


def product_page(restock: Served, widgets: str, lang: str = "en", extra: str = "") -> str:
    return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>Shirt</title></head>
<body><h1>Shirt</h1><main>
<button id="buy">Add to cart</button>
{widgets}
<p id="after">Description below the widget.</p>
</main>{extra}
<script src="{restock.url}/widget.js" defer></script></body></html>"""


@pytest.fixture
def shop(
    make_sqlite_app: Any, serve: Any, storefront: Storefront
) -> tuple[App, Served, Storefront]:
    app = make_sqlite_app(
        {"cors_origins": [storefront.url], "admin_api_key": "k"},
        plugins=[{"resolve": "logger", "options": {"channels": ["email"]}}, {"resolve": "manual"}],
    )
    app.set_stock("shirt-blue-m", 0)
    app.set_stock("shirt-red-m", 7)
    return app, serve(app), storefront


def emails(app: App, variant: str) -> list[str]:
    return [s.contact for s in app.list_subscriptions(variant_id=variant).items]


def test_renders_for_sold_out_not_in_stock_then_subscribes(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock,
        '<div id="sold" data-restock-variant="shirt-blue-m" data-restock-scope="default"></div>'
        '<div id="instock" data-restock-variant="shirt-red-m"></div>',
    )
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/widget/availability" in r.url else None)
    page.goto(store.url + "/p")
    form = page.locator("#sold form.restock-widget")
    form.wait_for()
    page.wait_for_load_state("networkidle")
    assert len([u for u in seen if "shirt-red-m" in u]) == 1  # it did ask about the red one
    assert page.locator("#instock").inner_html() == ""
    assert page.locator("#instock").bounding_box()["height"] == 0  # nothing rendered, no shift
    assert page.get_by_role("heading", name="Shirt").is_visible()
    assert form.get_by_text("Notify me when available").is_visible()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Send me one message when this item is back in stock.").check()
    page.get_by_role("button", name="Notify me").click()
    status = page.locator("#sold [role=status]")
    status.filter(has_text="We'll email you when it's back").wait_for()
    assert not page.get_by_label("Email").is_visible()  # the form gave way to the confirmation
    assert emails(app, "shirt-blue-m") == ["ada@example.com"]
    sub = app.list_subscriptions(variant_id="shirt-blue-m").items[0]
    assert sub.locale == "en" and sub.attributes == {"form": "widget"}


def test_keyboard_only(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, '<div data-restock-variant="shirt-blue-m"></div>')
    page.goto(store.url + "/p")
    page.locator("form.restock-widget").wait_for()
    page.locator("#buy").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "email"
    page.keyboard.type("grace@example.com")
    page.keyboard.press("Tab")  # the honeypot is skipped (tabindex -1)
    assert page.evaluate("document.activeElement.type") == "checkbox"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    page.keyboard.press("Enter")
    page.locator("[role=status]").filter(has_text="We'll email you").wait_for()
    assert emails(app, "shirt-blue-m") == ["grace@example.com"]


def test_invalid_email_is_explained_and_focused(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, '<div data-restock-variant="shirt-blue-m"></div>')
    page.goto(store.url + "/p")
    email = page.get_by_label("Email")
    email.fill("not-an-email")
    page.get_by_label("Send me one message when this item is back in stock.").check()
    page.get_by_role("button", name="Notify me").click()
    error = page.get_by_text("Enter a valid email address, like name@example.com.")
    error.wait_for()
    assert email.get_attribute("aria-invalid") == "true"
    described = email.get_attribute("aria-describedby")
    assert page.locator(f"#{described}").inner_text() == error.inner_text()
    assert page.evaluate("document.activeElement.type") == "email"
    # one the browser lets through and the server refuses (email-validator): the same words
    email.fill("ada@example..com")
    page.get_by_role("button", name="Notify me").click()
    page.wait_for_load_state("networkidle")
    error.wait_for()
    assert emails(app, "shirt-blue-m") == []


def test_consent_is_required(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock,
        '<div data-restock-variant="shirt-blue-m" data-restock-consent="Yes, tell me once."></div>',
    )
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("button", name="Notify me").click()
    page.get_by_text("Tick the box so we may send you the message.").wait_for()
    box = page.get_by_label("Yes, tell me once.")  # the merchant's consent text
    assert box.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.type") == "checkbox"
    assert emails(app, "shirt-blue-m") == []


def test_variant_picker_changes(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock, '<div id="w" data-restock-variant="shirt-red-m"></div>'
    )
    page.goto(store.url + "/p")
    page.wait_for_load_state("networkidle")
    assert page.locator("#w").inner_html() == ""
    # a theme's variant picker rewrites the attribute
    page.evaluate("document.getElementById('w').dataset.restockVariant = 'shirt-blue-m'")
    page.locator("#w form").wait_for()
    # ... or announces the change with the event: back to the in-stock one, the form goes
    page.evaluate(
        "document.dispatchEvent(new CustomEvent('restock:variant', {detail: {variant: 'shirt-red-m'}}))"
    )
    page.locator("#w form").wait_for(state="detached")
    page.evaluate(
        "document.getElementById('w').dispatchEvent(new CustomEvent('restock:variant',"
        " {bubbles: true, detail: {variant: 'shirt-blue-m'}}))"
    )
    page.locator("#w form").wait_for()
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.locator("[role=status]").filter(has_text="We'll email you").wait_for()
    assert emails(app, "shirt-blue-m") == ["ada@example.com"]


def test_honeypot_signup_is_dropped(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, '<div data-restock-variant="shirt-blue-m"></div>')
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("bot@example.com")
    page.locator("input[name=website]").fill("http://spam.example", force=True)
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.locator("[role=status]").filter(has_text="We'll email you").wait_for()  # told nothing
    assert emails(app, "shirt-blue-m") == []


def test_german_and_theming(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock,
        '<div data-restock-variant="shirt-blue-m" style="--restock-accent: rgb(200, 0, 100)"></div>',
        lang="de-AT",
    )
    page.goto(store.url + "/p")
    page.get_by_text("Benachrichtigen, wenn verfügbar").wait_for()
    button = page.get_by_role("button", name="Benachrichtigen")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(200, 0, 100)"
    page.get_by_label("E-Mail").fill("ada@example.at")
    page.get_by_role("checkbox").check()
    button.click()
    page.get_by_text("Danke! Wir schreiben Ihnen eine E-Mail").wait_for()
    assert app.list_subscriptions(variant_id="shirt-blue-m").items[0].locale == "de-AT"


def test_window_config_strings(shop: Any, page: Any) -> None:
    app, restock, store = shop
    config = "<script>window.restockWidget = {strings: {title: 'Tell me when it is back', submit: 'Remind me'}};</script>"
    store.pages["/p"] = product_page(
        restock, config + '<div data-restock-variant="shirt-blue-m"></div>'
    )
    page.goto(store.url + "/p")
    page.get_by_text("Tell me when it is back").wait_for()
    assert page.get_by_role("button", name="Remind me").is_visible()


def test_rate_limited_answer_is_explained(shop: Any, page: Any) -> None:
    """The 429 the public-edge limits (issue 9) will send: the server part is simulated here
    with Playwright's request routing; the widget's handling is what is tested."""
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, '<div data-restock-variant="shirt-blue-m"></div>')
    page.route(
        "**/widget/subscriptions",
        lambda route: route.fulfill(
            status=429,
            headers={"Access-Control-Allow-Origin": store.url, "Retry-After": "60"},
            content_type="application/json",
            body='{"error": {"code": "rate_limited", "message": "slow down"}}',
        ),
    )
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.get_by_text("Too many attempts. Please wait a minute and try again.").wait_for()
    assert page.get_by_role("button", name="Notify me").is_enabled()


def test_in_stock_by_the_time_of_submit_hides_the_form(shop: Any, page: Any) -> None:
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock, '<div id="w" data-restock-variant="shirt-blue-m"></div>'
    )
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("ada@example.com")
    app.set_stock("shirt-blue-m", 3)  # restocked while the shopper was typing
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.locator("#w form").wait_for(state="detached")
    assert emails(app, "shirt-blue-m") == []


def test_origin_not_configured_renders_nothing(
    make_sqlite_app: Any, serve: Any, storefront: Storefront, page: Any
) -> None:
    app = make_sqlite_app({"cors_origins": ["https://another-shop.example"]})
    app.set_stock("shirt-blue-m", 0)
    restock = serve(app)
    storefront.pages["/p"] = product_page(
        restock, '<div id="w" data-restock-variant="shirt-blue-m"></div>'
    )
    page.goto(storefront.url + "/p")
    page.wait_for_load_state("networkidle")
    assert page.locator("#w").inner_html() == ""


def test_sms_field_when_an_sms_provider_is_configured(
    make_sqlite_app: Any, serve: Any, storefront: Storefront, page: Any
) -> None:
    app = make_sqlite_app({"cors_origins": [storefront.url]})  # logger serves email and sms
    app.set_stock("v", 0)
    restock = serve(app)
    storefront.pages["/p"] = product_page(restock, '<div data-restock-variant="v"></div>')
    page.goto(storefront.url + "/p")
    phone = page.get_by_label("Mobile number (optional)")
    phone.wait_for()
    phone.fill("+44 7700 900123")  # Ofcom's drama range: not a real number
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.get_by_text("Enter a valid mobile number with country code").wait_for()
    assert phone.get_attribute("aria-invalid") == "true"
    phone.fill("+44 7911 123456")
    page.get_by_role("button", name="Notify me").click()
    page.get_by_text("We'll text you when it's back").wait_for()
    assert [s.contact for s in app.list_subscriptions(variant_id="v").items] == ["+447911123456"]


def test_page_rendered_state_skips_the_check_and_posts_where_told(shop: Any, page: Any) -> None:
    """The platform embeds' mode (Shopify Liquid knows `variant.available`): no availability
    request, the form renders at once, the sign-up goes to data-restock-subscribe-url."""
    app, restock, store = shop
    store.pages["/p"] = product_page(
        restock,
        '<div id="w" data-restock-variant="shirt-blue-m" data-restock-sold-out="true"'
        f' data-restock-subscribe-url="{restock.url}/widget/subscriptions"></div>',
    )
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.locator("[role=status]").filter(has_text="We'll email you").wait_for()
    assert not [u for u in asked if "/widget/availability" in u]
    assert [u for u in asked if u == restock.url + "/widget/subscriptions"]
    assert emails(app, "shirt-blue-m") == ["ada@example.com"]
