"""A small GraphQL Admin API client on httpx: auth header, explicit timeout, cost throttling
(reference/shopify-magento.md §2.5) and an error classification that never shows the token."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from restock_core import AdapterError, parse_retry_after

from .options import ShopifyOptions

log = logging.getLogger("restock.shopify")

USER_AGENT = "restock-shopify/0.1.0"


class QueryTooCostly(Exception):
    """Shopify refused one query as too expensive (MAX_COST_EXCEEDED): send smaller batches."""


def _codes(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    codes = []
    for error in errors:
        if isinstance(error, dict):
            extensions = error.get("extensions")
            if isinstance(extensions, dict) and isinstance(extensions.get("code"), str):
                codes.append(extensions["code"])
            elif str(error.get("message", "")).lower() == "throttled":  # older shape, no code
                codes.append("THROTTLED")
    return codes


def _first_message(errors: Any) -> str:
    if isinstance(errors, str):
        return errors[:300]
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", "error"))[:300]
    return str(errors)[:300]


def throttle_wait(body: Any) -> float:
    """Seconds until the bucket holds enough points for the query that was refused:
    (requestedQueryCost - currentlyAvailable) / restoreRate, from `extensions.cost`."""
    try:
        cost = body["extensions"]["cost"]
        status = cost["throttleStatus"]
        requested = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (KeyError, TypeError, ValueError):
        return 1.0
    if rate <= 0:
        return 1.0
    return max(0.05, (requested - available) / rate)


class ShopifyGraphQL:
    """POST /admin/api/{version}/graphql.json with X-Shopify-Access-Token."""

    def __init__(self, options: ShopifyOptions, *, transport: httpx.BaseTransport | None = None):
        self.options = options
        self.url = options.admin_url
        self.http = httpx.Client(
            timeout=httpx.Timeout(options.timeout),
            headers={
                "X-Shopify-Access-Token": options.access_token.value,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            transport=transport,
        )
        self.requests = 0

    def __repr__(self) -> str:
        return f"ShopifyGraphQL({self.url!r})"

    def close(self) -> None:
        self.http.close()

    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run one query and return its `data`. Throttled answers are waited out (at most
        `max_throttle_wait` seconds in total), 5xx and network errors retried `max_retries`
        times; everything else that is not data becomes an AdapterError."""
        options = self.options
        waited = 0.0
        failures = 0
        while True:
            try:
                self.requests += 1
                response = self.http.post(self.url, json={"query": query, "variables": variables})
            except httpx.TransportError as exc:
                failures += 1
                if failures > options.max_retries:
                    raise AdapterError(
                        f"shopify: cannot reach {self.url} ({type(exc).__name__}) after "
                        f"{failures} attempts"
                    ) from None
                time.sleep(min(0.25 * 2 ** (failures - 1), 2.0))
                continue
            status = response.status_code
            if status in (401, 403):
                word = "unauthorized" if status == 401 else "forbidden"
                raise AdapterError(
                    f"shopify: {status} {word}: the Admin API refused the access token "
                    "(check access_token and the app's read_products/read_inventory scopes, and "
                    "read_orders for order reconciliation)"
                )
            if status == 404:
                raise AdapterError(
                    f"shopify: 404 not found at {self.url} (check shop, base_url and api_version)"
                )
            if status >= 500:
                failures += 1
                if failures > options.max_retries:
                    raise AdapterError(
                        f"shopify: server error {status} after {failures} attempts"
                    ) from None
                time.sleep(min(0.25 * 2 ** (failures - 1), 2.0))
                continue
            try:
                body = response.json()
            except ValueError:
                raise AdapterError(
                    f"shopify: answer {status} is not JSON ({response.text[:100]!r})"
                ) from None
            errors = body.get("errors") if isinstance(body, dict) else None
            codes = _codes(errors)
            if status == 429 or "THROTTLED" in codes:
                remaining = options.max_throttle_wait - waited
                if remaining <= 0:
                    raise AdapterError(
                        f"shopify: still throttled after waiting {waited:.1f} s "
                        f"(max_throttle_wait = {options.max_throttle_wait})"
                    )
                wait = throttle_wait(body)
                wait = max(wait, parse_retry_after(response.headers.get("Retry-After")) or 0.0)
                wait = min(wait, remaining)
                log.info("shopify: throttled; waiting %.2f s", wait)
                time.sleep(wait)
                waited += wait
                continue
            if "MAX_COST_EXCEEDED" in codes:
                raise QueryTooCostly(_first_message(errors))
            if status >= 400:
                raise AdapterError(f"shopify: HTTP {status}: {_first_message(errors)}")
            data = body.get("data") if isinstance(body, dict) else None
            if errors and not data:
                raise AdapterError(f"shopify: GraphQL error: {_first_message(errors)}")
            if errors:  # partial data: use it, but say what went wrong
                log.warning("shopify: GraphQL answered with errors: %s", _first_message(errors))
            if not isinstance(data, dict):
                raise AdapterError("shopify: GraphQL answer has no data")
            return data
