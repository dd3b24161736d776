"""Options of the `shopify` inventory adapter (docs/plugins/shopify.md) and Shopify id helpers."""

from __future__ import annotations

import re
from typing import Any

import attrs

from restock_core import Secret, http_url, not_negative, positive

DEFAULT_SCOPE = "default"
_GID = re.compile(r"^gid://shopify/(?P<kind>[A-Za-z]+)/(?P<id>\d+)$")
_API_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
_SHOP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9](:\d+)?$")


def to_gid(kind: str, value: object) -> str | None:
    """`123`, `"123"` or `"gid://shopify/<kind>/123"` -> the gid; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"gid://shopify/{kind}/{value}" if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit() and text.isascii():
        return f"gid://shopify/{kind}/{int(text)}"
    match = _GID.match(text)
    if match and match["kind"] == kind:
        return text
    return None


def numeric_id(gid: str) -> str:
    """`gid://shopify/ProductVariant/123` -> `"123"`."""
    return gid.rsplit("/", 1)[-1]


def _shop(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _SHOP.match(value or ""):
        raise ValueError(
            f"shop must be the shop's host name such as 'example.myshopify.com' "
            f"(no https://, no path), got {value!r}"
        )


def _api_version(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _API_VERSION.match(value or ""):
        raise ValueError(
            f"api_version must look like '2025-01' (YYYY-01/04/07/10) or 'unstable', got {value!r}"
        )


def _location_list(name: str, values: Any) -> tuple[str, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{name} must be a non-empty list of location ids, got {values!r}")
    out = []
    for value in values:
        gid = to_gid("Location", value)
        if gid is None:
            raise ValueError(
                f"{name}: {value!r} is not a location id (a number such as '123', or a Location gid)"
            )
        out.append(gid)
    return tuple(dict.fromkeys(out))


def _check_location_ids(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _location_list("location_ids", value)


def _check_scopes(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    for name, locations in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise ValueError(f"scopes: scope names must be non-empty strings, got {name!r}")
        if name == DEFAULT_SCOPE:
            raise ValueError(
                "scopes: the name 'default' is reserved (it counts every location, or "
                "the listed location ids); give this scope another name"
            )
        _location_list(f"scopes.{name}", locations)


@attrs.frozen
class ShopifyOptions:
    """Options of the `shopify` inventory adapter (see docs/plugins/shopify.md)."""

    #: the shop's myshopify host name, e.g. "example.myshopify.com"
    shop: str = attrs.field(validator=_shop)
    #: Admin API access token (`shpat_…`), sent as X-Shopify-Access-Token
    access_token: Secret = attrs.field()
    #: the app's client secret: verifies webhooks (HMAC, base64) and app proxy signatures (hex)
    client_secret: Secret | None = None
    #: GraphQL Admin API version
    api_version: str = attrs.field(default="2025-01", validator=_api_version)
    #: where the Admin API lives; default https://<shop> (tests, proxies)
    base_url: str | None = attrs.field(default=None, validator=http_url)
    #: seconds for connect/read/write/pool of every request
    timeout: float = attrs.field(default=10.0, validator=positive)
    #: locations that count toward the "default" scope; unset = every location (inventoryQuantity)
    location_ids: list[str | int] | None = attrs.field(default=None, validator=_check_location_ids)
    #: named scopes: scope name -> the locations whose available quantities add up to it
    scopes: dict[str, list[str]] = attrs.field(factory=dict, validator=_check_scopes)
    #: seconds between reconciliation passes (the safety net next to webhooks); None = never
    poll_interval: float | None = attrs.field(default=300.0, validator=positive)
    #: storefront base URL for product links; default https://<shop>
    storefront_url: str | None = attrs.field(default=None, validator=http_url)
    #: seconds in total one call may wait on Shopify's cost throttle before giving up
    max_throttle_wait: float = attrs.field(default=10.0, validator=not_negative)
    #: retries of 5xx answers and network errors before an AdapterError
    max_retries: int = attrs.field(default=2, validator=not_negative)
    #: the largest query cost sent in one request (Shopify refuses single queries above 1000)
    max_query_cost: int = attrs.field(default=1000, validator=positive)
    #: inventory levels read per item when scopes or location_ids need per-location numbers
    max_locations: int = attrs.field(default=10, validator=positive)
    #: seconds an app proxy request's `timestamp` may differ from now; None = no check
    proxy_max_age: float | None = attrs.field(default=90.0, validator=positive)
    #: seconds between GraphQL order reconciliation passes (missed webhooks, cancellations);
    #: unset = none
    orders_poll_interval: float | None = attrs.field(default=None, validator=positive)
    #: seconds of order updates the first pass reads (after a start) at least
    orders_lookback: float = attrs.field(default=86400.0, validator=positive)
    #: line items read per order by the reconciliation (more are logged, not counted)
    orders_max_lines: int = attrs.field(default=20, validator=positive)

    @property
    def admin_url(self) -> str:
        base = (self.base_url or f"https://{self.shop}").rstrip("/")
        return f"{base}/admin/api/{self.api_version}/graphql.json"

    @property
    def storefront(self) -> str:
        return (self.storefront_url or f"https://{self.shop}").rstrip("/")

    @property
    def default_locations(self) -> tuple[str, ...] | None:
        if self.location_ids is None:
            return None
        return _location_list("location_ids", self.location_ids)

    def scope_locations(self, scope: str) -> tuple[str, ...] | None:
        """The locations a scope adds up; None for "every location". KeyError: unknown scope."""
        if scope == DEFAULT_SCOPE:
            return self.default_locations
        return _location_list(f"scopes.{scope}", self.scopes[scope])

    def knows_scope(self, scope: str) -> bool:
        return scope == DEFAULT_SCOPE or scope in self.scopes
