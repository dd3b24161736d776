"""The Shopify adapter against the fake GraphQL Admin API: the shared contract, batching,
throttling, error classification, descriptions and options."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from restock_shopify import ShopifyAdapter, ShopifyOptions
from restock_shopify.fake import TOKEN, FakeShopify, ScopedFake

from restock_core.config import structure_options
from restock_core.errors import AdapterError, ConfigError
from restock_core.models import StockKey
from restock_core.testing import InventoryAdapterContract


def gid(number: int) -> str:
    return f"gid://shopify/ProductVariant/{number}"


class TestShopifyContract(InventoryAdapterContract):
    """Whole-shop "default" scope: read from `inventoryQuantity`."""

    @pytest.fixture
    def adapter(self, make_adapter: Any) -> ShopifyAdapter:
        return make_adapter()

    @pytest.fixture
    def adapter_fake(self, fake: FakeShopify) -> ScopedFake:
        return ScopedFake(fake, {"default": None})

    @pytest.fixture
    def known_keys(self) -> list[StockKey]:
        return [StockKey(gid(n)) for n in (101, 102, 103)]


class TestShopifyScopedContract(InventoryAdapterContract):
    """A named location-set scope: the available quantities of its locations, summed."""

    @pytest.fixture
    def adapter(self, make_adapter: Any) -> ShopifyAdapter:
        return make_adapter(scopes={"eu": ["gid://shopify/Location/2", "3"]})

    @pytest.fixture
    def adapter_fake(self, fake: FakeShopify) -> ScopedFake:
        return ScopedFake(fake, {"eu": [2, 3]})

    @pytest.fixture
    def known_keys(self) -> list[StockKey]:
        return [StockKey(gid(n), "eu") for n in (101, 102, 103)]


def test_request_shape(make_adapter: Any, fake: FakeShopify) -> None:
    fake.set_available(101, 4)
    adapter = make_adapter()
    found = adapter.availability([StockKey(gid(101)), StockKey(gid(102))])
    assert found == {StockKey(gid(101)): 4, StockKey(gid(102)): 0}
    (request,) = fake.graphql_requests()
    assert request.method == "POST"
    assert request.path == "/admin/api/2025-01/graphql.json"
    assert request.headers["x-shopify-access-token"] == TOKEN
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert "nodes(ids: $ids)" in body["query"]
    assert "inventoryQuantity" in body["query"] and "tracked" in body["query"]
    assert "inventoryLevels" not in body["query"]  # whole shop: no per-location levels needed
    assert body["variables"] == {"ids": [gid(101), gid(102)]}


def test_numeric_ids_and_junk(make_adapter: Any, fake: FakeShopify) -> None:
    fake.set_available(102, 7)
    adapter = make_adapter()
    keys = [StockKey("102"), StockKey("not-a-shopify-id"), StockKey(gid(999)), StockKey("103", "x")]
    found = adapter.availability(keys)
    assert found == {keys[0]: 7, keys[1]: None, keys[2]: None, keys[3]: None}
    (request,) = fake.graphql_requests()
    assert request.json["variables"]["ids"] == [gid(102), gid(999)]  # junk never sent


def test_batches_of_at_most_250(make_adapter: Any, fake: FakeShopify) -> None:
    for number in range(1, 601):
        fake.add_variant(number, available=number % 3)
    adapter = make_adapter()
    assert adapter.max_batch_size == 250
    keys = [StockKey(gid(n)) for n in range(1, 601)]
    found = adapter.availability(keys)
    assert found == {k: n % 3 for n, k in enumerate(keys, start=1)}
    sizes = [len(r.json["variables"]["ids"]) for r in fake.graphql_requests()]
    assert sizes == [250, 250, 100]


def test_location_scopes_and_location_ids(make_adapter: Any, fake: FakeShopify) -> None:
    fake.add_variant(200, levels={1: 5, 2: 3, 3: 2})
    adapter = make_adapter(location_ids=["1", 2], scopes={"eu": ["3"], "all": ["1", "2", "3"]})
    keys = [StockKey(gid(200)), StockKey(gid(200), "eu"), StockKey(gid(200), "all")]
    assert adapter.availability(keys) == {keys[0]: 8, keys[1]: 2, keys[2]: 10}
    (request,) = fake.graphql_requests()  # every scope from one query
    assert 'quantities(names: ["available"])' in request.json["query"]
    assert "location { id }" in request.json["query"]


def test_per_location_reads_keep_query_cost_under_the_limit(
    make_adapter: Any, fake: FakeShopify
) -> None:
    for number in range(1, 101):
        fake.add_variant(number, levels={2: 1})
    adapter = make_adapter(scopes={"eu": ["2"]})
    found = adapter.availability([StockKey(gid(n), "eu") for n in range(1, 101)])
    assert set(found.values()) == {1}
    sizes = [len(r.json["variables"]["ids"]) for r in fake.graphql_requests()]
    assert sum(sizes) == 100 and max(sizes) <= 1000 // 35


def test_query_too_costly_is_split(make_adapter: Any, fake: FakeShopify) -> None:
    fake.max_ids_per_query = 2
    fake.set_available(103, 9)
    adapter = make_adapter()
    keys = [StockKey(gid(n)) for n in (101, 102, 103)]
    assert adapter.availability(keys)[keys[2]] == 9
    sizes = [len(r.json["variables"]["ids"]) for r in fake.graphql_requests()]
    assert sizes[0] == 3 and sum(sizes[1:]) == 3


@pytest.mark.parametrize("status", [200, 429])
def test_throttled_is_waited_out_and_retried(
    make_adapter: Any, fake: FakeShopify, status: int
) -> None:
    fake.set_available(101, 3)
    fake.throttle(1, status=status)
    adapter = make_adapter()
    assert adapter.availability([StockKey(gid(101))]) == {StockKey(gid(101)): 3}
    assert fake.requests_made() == 2


def test_still_throttled_is_an_adapter_error(make_adapter: Any, fake: FakeShopify) -> None:
    fake.throttle(1000)
    adapter = make_adapter(max_throttle_wait=0.2)
    with pytest.raises(AdapterError, match="throttled"):
        adapter.availability([StockKey(gid(101))])
    assert fake.requests_made() >= 2


def test_not_found_is_an_adapter_error(make_adapter: Any, fake: FakeShopify) -> None:
    adapter = make_adapter(api_version="2019-04")  # the fake serves 2025-01 only
    with pytest.raises(AdapterError, match="404"):
        adapter.availability([StockKey(gid(101))])


def test_server_errors_are_retried_then_an_adapter_error(
    make_adapter: Any, fake: FakeShopify
) -> None:
    fake.status = 503
    adapter = make_adapter(max_retries=2)
    with pytest.raises(AdapterError, match="503"):
        adapter.availability([StockKey(gid(101))])
    assert fake.requests_made() == 3


def test_unreachable_is_an_adapter_error(shopify_options: dict[str, Any]) -> None:
    raw = {**shopify_options, "base_url": "http://127.0.0.1:9", "max_retries": 0}
    adapter = ShopifyAdapter(structure_options(ShopifyOptions, raw, plugin="shopify"))
    with pytest.raises(AdapterError, match="cannot reach"):
        adapter.availability([StockKey(gid(101))])
    adapter.close()


def test_no_secret_in_errors_logs_or_repr(
    make_adapter: Any, fake: FakeShopify, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter()
    fake.throttle(1)
    adapter.availability([StockKey(gid(101))])
    for status in (401, 503):
        fake.status = status
        with pytest.raises(AdapterError) as caught:
            adapter.availability([StockKey(gid(101))])
        assert TOKEN not in str(caught.value)
    for secret in (TOKEN, "shpss_fake_client_secret_5678"):
        assert secret not in caplog.text
        assert secret not in repr(adapter)
        assert secret not in repr(adapter.options)


def test_describe(make_adapter: Any, fake: FakeShopify) -> None:
    fake.add_variant(300, title="Default Title", product_title="Mug", handle="mug", image_url=None)
    adapter = make_adapter()
    info = adapter.describe([gid(101), "300", gid(999), "junk"])
    assert set(info) == {gid(101), "300"}
    assert info[gid(101)].title == "Size 101"
    assert info[gid(101)].product_title == "Blue Shirt"
    assert info[gid(101)].url == "https://shop.example/products/shirt-101?variant=101"
    assert info[gid(101)].image_url == "https://cdn.shopify.com/s/files/blue-shirt.jpg"
    assert info["300"].title is None  # Shopify's "Default Title" of a one-variant product
    assert info["300"].url == "https://shop.example/products/mug?variant=300"
    (request,) = fake.graphql_requests()
    assert "nodes(ids: $ids)" in request.json["query"]


def test_variant_for_item_is_cached(make_adapter: Any, fake: FakeShopify) -> None:
    adapter = make_adapter()
    item = "gid://shopify/InventoryItem/1000102"
    assert adapter.variant_for_item(item) == gid(102)
    assert adapter.variant_for_item(item) == gid(102)
    assert fake.requests_made() == 1
    adapter.availability([StockKey(gid(101))])  # availability reads fill the cache too
    assert adapter.variant_for_item("gid://shopify/InventoryItem/1000101") == gid(101)
    assert fake.requests_made() == 2


def test_registered_through_the_entry_point() -> None:
    from restock_core.plugins import PluginRegistry

    factory = PluginRegistry().factories["shopify"]
    assert factory.kind == "inventory_adapter"
    assert factory.options is ShopifyOptions


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("shop", "https://example.myshopify.com", "host name"),
        ("api_version", "2025-02", "api_version"),
        ("timeout", 0, "greater than 0"),
        ("location_ids", ["Paris"], "location id"),
        ("scopes", {"default": ["1"]}, "default"),
        ("scopes", {"eu": []}, "non-empty"),
        ("base_url", "example.com", "http"),
    ],
)
def test_bad_options_name_the_option(option: str, value: Any, words: str) -> None:
    raw = {"shop": "example.myshopify.com", "access_token": TOKEN, option: value}
    with pytest.raises(ConfigError) as caught:
        structure_options(ShopifyOptions, raw, plugin="shopify")
    assert caught.value.option == option
    assert words in str(caught.value)


def test_option_defaults() -> None:
    options = structure_options(
        ShopifyOptions, {"shop": "example.myshopify.com", "access_token": TOKEN}, plugin="shopify"
    )
    assert options.admin_url == "https://example.myshopify.com/admin/api/2025-01/graphql.json"
    assert options.storefront == "https://example.myshopify.com"
    assert options.poll_interval == 300.0
    assert options.default_locations is None
