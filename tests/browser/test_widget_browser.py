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


def sign_ups(restock: Served) -> list[tuple[str, str, str, int]]:
    """What reached restock's sign-up route: (method, path, Content-Type, status)."""
    return [r for r in restock.requests if r[1] == "/widget/subscriptions"]


def test_sign_up_is_one_simple_request_without_preflight(shop: Any, page: Any) -> None:
    """The widget posts its JSON as text/plain (a CORS "simple" request): the browser sends
    the POST alone, no OPTIONS first, and reads the answer (the origin is allowed)."""
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, '<div data-restock-variant="shirt-blue-m"></div>')
    sent: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: (
            sent.append((r.method, r.headers.get("content-type")))
            if r.url.endswith("/widget/subscriptions")
            else None
        ),
    )
    page.goto(store.url + "/p")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Notify me").click()
    page.locator("[role=status]").filter(has_text="We'll email you").wait_for()
    assert sent == [("POST", "text/plain;charset=UTF-8")]
    # what reached the server: the POST alone (the browser sent no preflight)
    assert sign_ups(restock) == [("POST", "/widget/subscriptions", "text/plain;charset=UTF-8", 201)]
    assert not [r for r in restock.requests if r[0] == "OPTIONS"]
    assert emails(app, "shirt-blue-m") == ["ada@example.com"]


def test_an_older_widget_posting_json_still_preflights_and_signs_up(shop: Any, page: Any) -> None:
    """A widget.js cached before the change posts application/json: the preflight is still
    answered for the storefront's origin and the sign-up goes through."""
    app, restock, store = shop
    store.pages["/p"] = product_page(restock, "")
    page.goto(store.url + "/p")
    status = page.evaluate(
        """url => fetch(url, {method: "POST", credentials: "omit",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({variant_id: "shirt-blue-m", scope: "default", consent: true,
                                   locale: "en", email: "old@example.com"})}).then(r => r.status)""",
        restock.url + "/widget/subscriptions",
    )
    assert status == 201
    assert sign_ups(restock) == [
        ("OPTIONS", "/widget/subscriptions", "", 200),
        ("POST", "/widget/subscriptions", "application/json", 201),
    ]
    assert emails(app, "shirt-blue-m") == ["old@example.com"]


#: a plain HTML form that makes a browser POST a JSON body as text/plain (the `=` between
#: the field's name and value lands inside a JSON string), submitted by the page itself
JSON_FORM = """<form id="f" method="post" enctype="text/plain" action="{action}">
<input type="hidden" name='{{"variant_id":"shirt-blue-m","consent":true,"email":"{email}","locale":"'
  value='"}}'></form><script>document.getElementById("f").submit()</script>"""


def test_a_page_not_in_cors_origins_cannot_sign_anyone_up(shop: Any, page: Any) -> None:
    """A simple request is sent whatever the page's origin; restock refuses it (403) when
    the Origin is not in cors_origins, so a foreign page's widget or plain form stores
    nothing. The same form on the storefront's own origin does sign up: the body is good
    and the Origin is the whole difference."""
    app, restock, store = shop
    foreign = Storefront()
    try:
        action = restock.url + "/widget/subscriptions"
        # the widget, rendered without the availability check, on a page of another origin
        foreign.pages["/p"] = product_page(
            restock, '<div data-restock-variant="shirt-blue-m" data-restock-sold-out="true"></div>'
        )
        page.goto(foreign.url + "/p")
        page.get_by_label("Email").fill("ada@example.com")
        page.get_by_role("checkbox").check()
        page.get_by_role("button", name="Notify me").click()
        page.get_by_text("Something went wrong. Please try again.").wait_for()
        # a plain form from the same foreign page: a navigation, the 403 is what it shows
        foreign.pages["/form"] = JSON_FORM.format(action=action, email="victim@example.com")
        with page.expect_navigation(url=action):
            page.goto(foreign.url + "/form")
        assert '"code":"origin_not_allowed"' in page.content()
        assert sign_ups(restock) == [
            ("POST", "/widget/subscriptions", "text/plain;charset=UTF-8", 403),
            ("POST", "/widget/subscriptions", "text/plain", 403),
        ]
        assert emails(app, "shirt-blue-m") == []
        # the control: the same form on the storefront's own (allowed) origin
        store.pages["/form"] = JSON_FORM.format(action=action, email="grace@example.com")
        with page.expect_navigation(url=action):
            page.goto(store.url + "/form")
        assert '"status":"subscribed"' in page.content()
        assert emails(app, "shirt-blue-m") == ["grace@example.com"]
        assert not [r for r in restock.requests if r[0] == "OPTIONS"]
    finally:
        foreign.stop()
