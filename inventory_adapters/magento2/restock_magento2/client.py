"""A small Magento 2 REST client on httpx: Bearer auth, explicit timeout, searchCriteria
encoding, total_count pagination, retries that honour Retry-After, and errors that name the
status and path but never the token (reference/shopify-magento.md §4)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from restock_core import AdapterError, parse_retry_after

from .options import Magento2Options

log = logging.getLogger("restock.magento2")

USER_AGENT = "restock-magento2/0.1.0"

#: (field, value, condition_type); filters inside one group are OR, groups are AND
Filter = tuple[str, str, str]


NO_ROUTE_MESSAGE = "Request does not match any route."


class MagentoHTTPError(AdapterError):
    """Magento answered with an error status (`status`: 401, 404, 429, 500 ...).
    `no_route` is true for Magento's 404 "Request does not match any route." (the endpoint
    does not exist here, e.g. MSI disabled), as opposed to a 404 for a missing entity."""

    def __init__(self, message: str, *, status: int | None = None, no_route: bool = False):
        super().__init__(message)
        self.status = status
        self.no_route = no_route


def search_criteria(
    groups: Sequence[Sequence[Filter]],
    *,
    page_size: int | None = None,
    current_page: int | None = None,
    sort: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Magento's searchCriteria as flat query parameters
    (`searchCriteria[filter_groups][0][filters][0][field]=sku`, ...)."""
    params: list[tuple[str, str]] = []
    for g, group in enumerate(groups):
        for f, (field, value, condition) in enumerate(group):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params += [
                (f"{prefix}[field]", field),
                (f"{prefix}[value]", value),
                (f"{prefix}[condition_type]", condition),
            ]
    for s, (field, direction) in enumerate(sort):
        params += [
            (f"searchCriteria[sortOrders][{s}][field]", field),
            (f"searchCriteria[sortOrders][{s}][direction]", direction),
        ]
    if page_size is not None:
        params.append(("searchCriteria[pageSize]", str(page_size)))
    if current_page is not None:
        params.append(("searchCriteria[currentPage]", str(current_page)))
    return params


def magento_message(body: Any) -> str:
    """Magento's error body `{"message": "... %1 ...", "parameters": [...] | {...}}` as text."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return ""
    message: str = body["message"]
    parameters = body.get("parameters")
    if isinstance(parameters, list):
        for index, value in enumerate(parameters, start=1):
            message = message.replace(f"%{index}", str(value))
    elif isinstance(parameters, dict):
        for name, value in parameters.items():
            message = message.replace(f"%{name}", str(value))
    return message[:300]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    return parse_retry_after(value)


class MagentoClient:
    """GET requests against `<base_url>/rest/<store_code>`; every answer that is not JSON data
    becomes an AdapterError naming the status (401, 404 ...) and the path."""

    def __init__(
        self,
        options: Magento2Options,
        *,
        name: str = "magento2",
        transport: httpx.BaseTransport | None = None,
    ):
        self.options = options
        self.name = name
        self.http = httpx.Client(
            base_url=options.rest_root,
            timeout=httpx.Timeout(options.timeout),
            headers={
                "Authorization": f"Bearer {options.access_token.value}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            transport=transport,
        )
        self.requests = 0

    def __repr__(self) -> str:
        return f"MagentoClient({self.options.rest_root!r})"

    def close(self) -> None:
        self.http.close()

    def _fail(
        self, message: str, status: int | None = None, *, no_route: bool = False
    ) -> MagentoHTTPError:
        return MagentoHTTPError(f"{self.name}: {message}", status=status, no_route=no_route)

    def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """GET `path` (e.g. "/V1/inventory/source-items") and return the decoded JSON.

        429, 5xx and network errors are retried `max_retries` times (waiting Retry-After when
        given, at most `max_retry_wait`; else exponential backoff); the rest raise at once."""
        options = self.options
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                self.requests += 1
                response = self.http.get(path, params=list(params))
            except httpx.TransportError as exc:
                problem = f"GET {path} failed: {type(exc).__name__}: {exc}"
                response = None
            if response is not None:
                status = response.status_code
                if status < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise self._fail(
                            f"GET {path} answered {status} with a body that is not JSON"
                        ) from None
                detail = self._detail(response)
                if status in (401, 403):
                    raise self._fail(
                        f"{status} {'Unauthorized' if status == 401 else 'Forbidden'} from "
                        f"GET {path}{detail}: check access_token (an integration token used as a "
                        "Bearer token needs oauth/consumer/enable_integration_as_bearer = 1) and "
                        "the integration's API resources (Magento_InventoryApi::source, "
                        "Magento_InventorySalesApi::stock, Magento_Catalog::products)",
                        status,
                    )
                if status == 404:
                    raise self._fail(
                        f"404 Not Found from GET {path}{detail}: check base_url and store_code, "
                        "and that Magento's Inventory (MSI) modules are enabled",
                        status,
                        no_route=NO_ROUTE_MESSAGE in detail,
                    )
                if status != 429 and status < 500:
                    raise self._fail(f"{status} from GET {path}{detail}", status)
                problem = f"{status} from GET {path}{detail}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait > options.max_retry_wait:
                    raise self._fail(
                        f"{problem}; Retry-After {wait:.0f} s is longer than max_retry_wait "
                        f"({options.max_retry_wait:.0f} s)",
                        status,
                    )
            if attempt > options.max_retries:
                tries = f"{attempt} attempt" + ("s" if attempt > 1 else "")
                raise self._fail(
                    f"{problem} (gave up after {tries})",
                    response.status_code if response is not None else None,
                )
            if wait is None:
                wait = options.retry_backoff * (2 ** (attempt - 1))
            log.info("%s: %s; retrying in %.2f s", self.name, problem, wait)
            time.sleep(wait)

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            message = magento_message(response.json())
        except ValueError:
            message = ""
        return f" ({message})" if message else ""

    def search(
        self,
        path: str,
        groups: Sequence[Sequence[Filter]],
        *,
        page_size: int,
        sort: Sequence[tuple[str, str]] = (),
        extra: Sequence[tuple[str, str]] = (),
    ) -> Iterator[dict[str, Any]]:
        """Every item of a searchCriteria search, page by page. Pages are counted from
        `total_count`: Magento answers a page past the end with the last page again."""
        page = 1
        pages = 1
        while page <= pages:
            params = search_criteria(groups, page_size=page_size, current_page=page, sort=sort)
            body = self.get(path, [*params, *extra])
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise self._fail(f"GET {path} answered without an items list")
            items = body["items"]
            total = body.get("total_count")
            if isinstance(total, int) and not isinstance(total, bool):
                pages = max(1, math.ceil(total / page_size))
            for item in items:
                if isinstance(item, dict):
                    yield item
            if not items:
                break
            page += 1
