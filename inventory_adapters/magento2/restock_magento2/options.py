"""Options of the `magento2` inventory adapter (docs/plugins/magento2.md) and the scope model.

A *scope* (the `scope` of a subscription) names where a quantity is counted: an MSI stock and
the sources whose quantities add up to it. Scopes come from the `stocks` option (name -> stock
id and source codes); "default" is Magento's default stock (id 1, source "default") unless
`stocks` says otherwise. With `resolve_scopes`, an unconfigured scope that is a number is taken
as a stock id and any other as a website code (MSI stock resolver), and the stock's sources are
read from its stock-source links.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from restock_core import Secret, http_url, not_negative, positive

DEFAULT_SCOPE = "default"
DEFAULT_STOCK_ID = 1
DEFAULT_SOURCE = "default"
URL_FIELDS = ("sku", "url_key", "id", "store")
FORM_VARIANTS = ("sku", "product_id")

_STORE_CODE = re.compile(r"^[A-Za-z0-9_]*$")


@attrs.frozen
class ScopeStock:
    """What a scope counts: one MSI stock and the source codes summed for it (empty = the
    stock's sources, looked up through its stock-source links)."""

    stock_id: int
    sources: tuple[str, ...] = ()


def parse_stock(name: str, value: Any) -> ScopeStock:
    """`1` or `{ stock_id = 1, sources = ["default"] }` -> ScopeStock; ValueError otherwise."""
    where = f"stocks.{name}"
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise ValueError(f"stocks: scope names must be non-empty strings, got {name!r}")
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a stock id or a table, got {value!r}")
    if isinstance(value, int):
        value = {"stock_id": value}
    if not isinstance(value, Mapping):
        raise ValueError(
            f'{where} must be a stock id or a table like {{ stock_id = 1, sources = ["default"] }}, '
            f"got {value!r}"
        )
    unknown = sorted(set(value) - {"stock_id", "sources"})
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected stock_id, sources")
    stock_id = value.get("stock_id")
    if isinstance(stock_id, bool) or not isinstance(stock_id, int) or stock_id < 1:
        raise ValueError(f"{where}.stock_id must be a positive integer, got {stock_id!r}")
    sources = value.get("sources", [])
    if isinstance(sources, str) or not isinstance(sources, list | tuple):
        raise ValueError(f"{where}.sources must be a list of source codes, got {sources!r}")
    for code in sources:
        if not isinstance(code, str) or not code.strip() or "," in code:
            raise ValueError(
                f"{where}.sources: {code!r} is not a source code (a non-empty string without commas)"
            )
    return ScopeStock(stock_id, tuple(dict.fromkeys(c.strip() for c in sources)))


def _base_url(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    http_url(instance, attribute, value)
    if re.search(r"(^|/)rest(/|$)", urlsplit(value).path):
        raise ValueError(
            f"base_url is the shop's base URL (e.g. 'https://shop.example'), without /rest; "
            f"got {value!r}"
        )


def _store_code(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _STORE_CODE.match(value):
        raise ValueError(
            f"store_code must be a Magento store code (letters, digits, '_'; '' for /rest/V1), "
            f"got {value!r}"
        )


def _batch(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 500:
        raise ValueError(f"{attribute.name} must be between 1 and 500, got {value!r}")


def _concurrency(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 32:
        raise ValueError(f"{attribute.name} must be between 1 and 32, got {value!r}")


def _check_stocks(instance: Any, attribute: attrs.Attribute, value: Mapping[str, Any]) -> None:
    for name, stock in value.items():
        parse_stock(name, stock)


def _check_template(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is None:
        return
    http_url(instance, attribute, value)
    for _, field, _, _ in string.Formatter().parse(value):
        if field is not None and field not in URL_FIELDS:
            raise ValueError(
                f"product_url_template: unknown placeholder {{{field}}}; use "
                + ", ".join("{" + f + "}" for f in URL_FIELDS)
            )


def _check_store_scopes(
    instance: Any, attribute: attrs.Attribute, value: Mapping[str, Any]
) -> None:
    for store, scope in value.items():
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError(f"store_scopes.{store} must be a scope name, got {scope!r}")


def _form_variant(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in FORM_VARIANTS:
        raise ValueError(f"form_variant must be 'sku' or 'product_id', got {value!r}")


@attrs.frozen
class Magento2Options:
    """Options of the `magento2` inventory adapter (see docs/plugins/magento2.md)."""

    #: the Magento base URL, e.g. "https://shop.example" (REST lives under /rest/...)
    base_url: str = attrs.field(validator=_base_url)
    #: integration access token, sent as `Authorization: Bearer <token>`
    access_token: Secret = attrs.field()
    #: store code in the REST path /rest/<store_code>/V1/...; "" for /rest/V1/...
    store_code: str = attrs.field(default="default", validator=_store_code)
    #: seconds for connect/read/write/pool of every request
    timeout: float = attrs.field(default=10.0, validator=positive)
    #: seconds between reconciliation passes (polling is the signal: no webhooks in Open Source)
    poll_interval: float | None = attrs.field(default=300.0, validator=positive)
    #: scope name -> stock id, or { stock_id = N, sources = ["code", ...] }
    stocks: dict[str, Any] = attrs.field(factory=dict, validator=_check_stocks)
    #: unconfigured scopes: a number is a stock id, anything else a website code (stock resolver)
    resolve_scopes: bool = True
    #: record Magento's salable quantity (after reservations for unshipped orders and the
    #: out-of-stock threshold) instead of the physical source-item quantity
    salable_check: bool = True
    #: SKUs per availability() call (they travel in the URL)
    max_batch_size: int = attrs.field(default=100, validator=_batch)
    #: searchCriteria[pageSize] for source-item and product searches (Magento's limit is 300
    #: when Web API input limits are on)
    page_size: int = attrs.field(default=300, validator=_batch)
    #: SKUs per are-products-salable request (20 when Web API input limits are on)
    salable_batch_size: int = attrs.field(default=100, validator=_batch)
    #: get-product-salable-quantity requests in flight at once (one per SKU in stock)
    salable_concurrency: int = attrs.field(default=4, validator=_concurrency)
    #: retries of 429, 5xx and network errors before an AdapterError
    max_retries: int = attrs.field(default=2, validator=not_negative)
    #: the longest Retry-After honoured (seconds); a longer one fails the call at once
    max_retry_wait: float = attrs.field(default=30.0, validator=not_negative)
    #: first backoff (seconds) when a retryable answer has no Retry-After; doubles per retry
    retry_backoff: float = attrs.field(default=0.5, validator=not_negative)
    #: product links: a template with {sku}, {url_key}, {id}, {store} (the store code)
    product_url_template: str | None = attrs.field(default=None, validator=_check_template)
    #: the storefront for product links and images; default base_url
    storefront_url: str | None = attrs.field(default=None, validator=http_url)
    #: product URL suffix after url_key (Magento's default is ".html")
    url_suffix: str = ".html"
    #: read names/url keys/images with GET /V1/products; false = only product_url_template
    describe_products: bool = True
    #: the Klaviyo form's `a` / the client API's `company_id` must equal this; unset = any
    klaviyo_company_id: str | None = None
    #: the Klaviyo form's `store` (store id or code) or client API catalogId -> scope name
    store_scopes: dict[str, str] = attrs.field(factory=dict, validator=_check_store_scopes)
    #: what the form's `variant` holds: "sku" or "product_id" (looked up to a SKU)
    form_variant: str = attrs.field(default="sku", validator=_form_variant)
    #: origins allowed to read the form route's answers (CORS); ["*"] for any
    cors_origins: list[str] = attrs.field(factory=list)
    #: seconds between polls of GET /V1/orders for revenue attribution; unset = no polling
    orders_poll_interval: float | None = attrs.field(default=None, validator=positive)
    #: seconds of orders the first poll reads when no order of this source is recorded yet
    orders_lookback: float = attrs.field(default=86400.0, validator=positive)

    @property
    def rest_root(self) -> str:
        base = self.base_url.rstrip("/")
        return f"{base}/rest/{self.store_code}" if self.store_code else f"{base}/rest"

    @property
    def storefront(self) -> str:
        return (self.storefront_url or self.base_url).rstrip("/")

    def configured_scopes(self) -> dict[str, ScopeStock]:
        scopes = {DEFAULT_SCOPE: ScopeStock(DEFAULT_STOCK_ID, (DEFAULT_SOURCE,))}
        scopes.update({name: parse_stock(name, value) for name, value in self.stocks.items()})
        return scopes
