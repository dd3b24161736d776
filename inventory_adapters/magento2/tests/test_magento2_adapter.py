"""The magento2 adapter against a fake Magento REST API: contract suite, wire format,
summing over sources, pagination, salable checks, scopes, errors and retries, describe."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from restock_magento2 import Magento2Adapter, Magento2Options
from restock_magento2.fake import TOKEN, FakeMagento

from restock_core.config import structure_options
from restock_core.errors import AdapterError, ConfigError
from restock_core.models import StockKey
from restock_core.testing import InventoryAdapterContract, Reply

SOURCE_ITEMS = "/V1/inventory/source-items"
SALABLE = "/V1/inventory/are-products-salable"
SKUS = ["MH01-M-Blue", "MH02-M-Blue", "MH03-M-Blue"]


def filters(request: Any) -> dict[str, tuple[str, str, str]]:
    """{field: (field, value, condition)} from a recorded searchCriteria request."""
    out = {}
    for g in range(4):
        prefix = f"searchCriteria[filter_groups][{g}][filters][0]"
        if f"{prefix}[field]" in request.query:
            field = request.query[f"{prefix}[field]"][0]
            out[field] = (
                field,
                request.query[f"{prefix}[value]"][0],
                request.query[f"{prefix}[condition_type]"][0],
            )
    return out


# --------------------------------------------------------------------------- contract


class SalableRequestBound:
    """With `salable_check` (the default) the generic bound of 2 requests per scope cannot
    hold: Magento has no batch salable-quantity endpoint, only
    `GET /V1/inventory/get-product-salable-quantity/{sku}/{stockId}` (Adobe, "Check salable
    quantities", https://developer.adobe.com/commerce/webapi/rest/inventory/check-salable-quantity/).
    The bound is one source-item search and one are-products-salable per scope, plus one
    request per SKU in stock; SKUs with nothing in stock cost nothing more."""

    def test_batch_uses_few_requests(
        self, adapter: Any, adapter_fake: Any, known_keys: list[StockKey]
    ) -> None:
        adapter_fake.set_stock(known_keys[0], 1)
        for key in known_keys[1:]:
            adapter_fake.set_stock(key, 0)
        before = adapter_fake.requests_made()
        found = adapter.availability(list(known_keys))
        assert [found[k] for k in known_keys] == [1] + [0] * (len(known_keys) - 1)
        scopes = {k.scope for k in known_keys}
        assert adapter_fake.requests_made() - before <= 2 * len(scopes) + 1


class TestContract(SalableRequestBound, InventoryAdapterContract):
    """The default configuration: salable quantities."""

    @pytest.fixture
    def adapter(self, make_adapter: Any) -> Magento2Adapter:
        return make_adapter()

    @pytest.fixture
    def adapter_fake(self, fake: FakeMagento) -> FakeMagento:
        return fake

    @pytest.fixture
    def known_keys(self) -> list[StockKey]:
        return [StockKey(sku) for sku in SKUS]


class TestContractPhysical(InventoryAdapterContract):
    """`salable_check = false`: physical source-item quantities, the generic request bound."""

    @pytest.fixture
    def adapter(self, make_adapter: Any) -> Magento2Adapter:
        return make_adapter(salable_check=False)

    @pytest.fixture
    def adapter_fake(self, fake: FakeMagento) -> FakeMagento:
        return fake

    @pytest.fixture
    def known_keys(self) -> list[StockKey]:
        return [StockKey(sku) for sku in SKUS]


class TestContractSalableMultiSource(SalableRequestBound, InventoryAdapterContract):
    """A named scope over two sources, with salable quantities."""

    @pytest.fixture
    def adapter(self, make_adapter: Any) -> Magento2Adapter:
        return make_adapter(stocks={"na": {"stock_id": 2, "sources": ["central", "east"]}})

    @pytest.fixture
    def adapter_fake(self, fake: FakeMagento) -> FakeMagento:
        return fake

    @pytest.fixture
    def known_keys(self, fake: FakeMagento) -> list[StockKey]:
        fake.scope_aliases["na"] = 2
        for sku in SKUS:
            fake.set_stock(StockKey(sku, "na"), 0)
        return [StockKey(sku, "na") for sku in SKUS]


# --------------------------------------------------------------------------- wire format


def test_request_carries_bearer_token_and_search_criteria(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("MH01-M-Blue", "default", 4)
    adapter = make_adapter()
    found = adapter.availability([StockKey(s) for s in SKUS])
    assert found[StockKey("MH01-M-Blue")] == 4
    [request] = fake.received(SOURCE_ITEMS)
    assert request.method == "GET"
    assert request.path == "/rest/default/V1/inventory/source-items"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert filters(request) == {
        "sku": ("sku", ",".join(SKUS), "in"),
        "source_code": ("source_code", "default", "in"),
    }
    assert request.query["searchCriteria[pageSize]"] == ["300"]
    assert request.query["searchCriteria[currentPage]"] == ["1"]
    assert request.query["searchCriteria[sortOrders][0][field]"] == ["sku"]


def test_empty_store_code_uses_rest_v1(make_adapter: Any, fake: FakeMagento):
    make_adapter(store_code="").availability([StockKey(SKUS[0])])
    assert fake.received(SOURCE_ITEMS)[0].path == "/rest/V1/inventory/source-items"


def test_store_code_in_path(make_adapter: Any, fake: FakeMagento):
    make_adapter(store_code="all").availability([StockKey(SKUS[0])])
    assert fake.received(SOURCE_ITEMS)[0].path == "/rest/all/V1/inventory/source-items"


def test_sums_in_stock_items_over_the_scopes_sources(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("S1", "central", 5)
    fake.set_source_item("S1", "east", 3)
    fake.set_source_item("S1", "west", 100)  # not one of the scope's sources
    fake.set_source_item("S2", "central", 2.5)
    fake.set_source_item("S2", "east", 7, status=0)  # out of stock at this source
    fake.set_source_item("S3", "central", 0)
    adapter = make_adapter(stocks={"na": {"stock_id": 2, "sources": ["central", "east"]}})
    keys = [StockKey(s, "na") for s in ("S1", "S2", "S3", "S4")]
    found = adapter.availability(keys)
    assert found == {keys[0]: 8, keys[1]: 2, keys[2]: 0, keys[3]: None}
    [request] = fake.received(SOURCE_ITEMS)
    assert filters(request)["source_code"] == ("source_code", "central,east", "in")


def test_sku_case_does_not_matter(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("MH01-M-Blue", "default", 6)
    key = StockKey("mh01-m-blue")
    assert make_adapter().availability([key]) == {key: 6}


def test_pagination_follows_total_count(make_adapter: Any, fake: FakeMagento):
    """Magento answers a page past the end with the last page again: pages are counted from
    total_count, so nothing is counted twice."""
    for sku in SKUS:
        fake.set_source_item(sku, "central", 1)
        fake.set_source_item(sku, "east", 2)
    adapter = make_adapter(
        page_size=4, stocks={"na": {"stock_id": 2, "sources": ["central", "east"]}}
    )
    found = adapter.availability([StockKey(s, "na") for s in SKUS])
    assert set(found.values()) == {3}
    pages = [r.query["searchCriteria[currentPage]"][0] for r in fake.received(SOURCE_ITEMS)]
    assert pages == ["1", "2"]
    assert all(r.query["searchCriteria[pageSize]"] == ["4"] for r in fake.received(SOURCE_ITEMS))


def test_batches_are_cut_to_max_batch_size(make_adapter: Any, fake: FakeMagento):
    keys = [StockKey(f"SKU-{n}") for n in range(250)]
    for key in keys:
        fake.set_source_item(key.variant_id, "default", 1)
    found = make_adapter(max_batch_size=100).availability(keys)
    assert set(found.values()) == {1}
    sizes = [len(filters(r)["sku"][1].split(",")) for r in fake.received(SOURCE_ITEMS)]
    assert sizes == [100, 100, 50]


def test_sku_with_a_comma_is_asked_alone(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("A,B", "default", 2)
    fake.set_source_item("C", "default", 1)
    keys = [StockKey("A,B"), StockKey("C")]
    assert make_adapter().availability(keys) == {keys[0]: 2, keys[1]: 1}
    conditions = sorted(filters(r)["sku"][1:] for r in fake.received(SOURCE_ITEMS))
    assert conditions == [("A,B", "eq"), ("C", "in")]


def test_salable_check_turns_not_salable_into_zero(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("MH01-M-Blue", "default", 5)
    fake.set_source_item("MH02-M-Blue", "default", 5)
    fake.salable_override[("mh02-m-blue", 1)] = False  # the stock index says not salable
    adapter = make_adapter()
    keys = [StockKey("MH01-M-Blue"), StockKey("MH02-M-Blue"), StockKey("GHOST")]
    assert adapter.availability(keys) == {keys[0]: 5, keys[1]: 0, keys[2]: None}
    # the quantity is asked only for the SKU the index calls salable
    [quantity] = fake.received("/get-product-salable-quantity/MH01-M-Blue/1")
    assert quantity.headers["authorization"] == f"Bearer {TOKEN}"
    assert not fake.received("/get-product-salable-quantity/MH02-M-Blue/1")
    [request] = fake.received(SALABLE)
    assert request.path == "/rest/default/V1/inventory/are-products-salable"
    assert request.query["stockId"] == ["1"]
    assert request.query["skus[0]"] == ["MH01-M-Blue"]
    assert request.query["skus[1]"] == ["MH02-M-Blue"]
    assert "skus[2]" not in request.query  # unknown SKUs are not asked about
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_salable_requests_are_chunked(make_adapter: Any, fake: FakeMagento):
    keys = [StockKey(f"SKU-{n}") for n in range(45)]
    for key in keys:
        fake.set_source_item(key.variant_id, "default", 1)
    found = make_adapter(salable_batch_size=20).availability(keys)
    assert set(found.values()) == {1}
    assert [len(r.query) - 1 for r in fake.received(SALABLE)] == [20, 20, 5]


def test_last_unit_reserved_by_an_unshipped_order_is_out_of_stock(
    make_adapter: Any, fake: FakeMagento
):
    """Issue 10 item 10. Source quantity 1, one order placed and not shipped: Magento keeps
    the source item at 1 and records a reservation of -1, so the salable quantity is 0 and
    the storefront shows "Out of stock" (Adobe, "Reservations",
    https://developer.adobe.com/commerce/php/development/components/inventory-management/reservations/).
    The default configuration must say 0, as the shop does; the physical reading says 1."""
    fake.set_source_item("MH01-M-Blue", "default", 1)
    fake.place_order("MH01-M-Blue", 1)
    key = StockKey("MH01-M-Blue")
    assert make_adapter().availability([key]) == {key: 0}
    assert make_adapter(salable_check=False).availability([key]) == {key: 1}


def test_records_the_salable_quantity_not_the_source_quantity(make_adapter: Any, fake: FakeMagento):
    """Salable = stock quantity + reservations - out-of-stock threshold
    (magento/inventory InventorySales/Model/GetProductSalableQty.php)."""
    fake.set_source_item("MH01-M-Blue", "default", 10)
    fake.place_order("MH01-M-Blue", 3)
    fake.set_source_item("MH02-M-Blue", "default", 4)
    fake.min_qty["mh02-m-blue"] = 1  # Out-of-Stock Threshold
    fake.set_source_item("MH03-M-Blue", "default", 5)
    fake.place_order("MH03-M-Blue", 2)
    fake.ship_order("MH03-M-Blue", 2)  # source 3, reservations compensated
    keys = [StockKey(s) for s in SKUS]
    assert make_adapter().availability(keys) == {keys[0]: 7, keys[1]: 3, keys[2]: 3}


@pytest.mark.parametrize(("concurrency", "expected"), [(1, 1), (4, 4)])
def test_salable_quantities_are_asked_a_few_at_a_time(
    make_adapter: Any, fake: FakeMagento, concurrency: int, expected: int
):
    keys = [StockKey(f"SKU-{n}") for n in range(8)]
    for n, key in enumerate(keys):
        fake.set_source_item(key.variant_id, "default", n + 1)
    fake.salable_delay = 0.2
    adapter = make_adapter(salable_concurrency=concurrency)
    assert adapter.availability(keys) == {key: n + 1 for n, key in enumerate(keys)}
    assert len([r for r in fake.server.requests if "salable-quantity" in r.path]) == 8
    assert fake.salable_max_in_flight == expected


def test_salable_quantity_of_a_vanished_sku_is_unknown(make_adapter: Any, fake: FakeMagento):
    """Magento answers 404 NoSuchEntity for a SKU deleted between the two reads: unknown, not
    an error for the whole batch; a product type without source items (400) likewise."""
    fake.set_source_item("MH01-M-Blue", "default", 2)
    fake.set_source_item("MH02-M-Blue", "default", 2)
    fake.products["mh02-m-blue"].type_id = "configurable"
    fake.set_source_item("MH03-M-Blue", "default", 2)
    fake.server.queue(
        Reply(
            404,
            {
                "message": "The product that was requested doesn't exist. Verify the product "
                "and try again.",
                "parameters": [],
            },
        ),
        when=lambda r: "/get-product-salable-quantity/MH01-M-Blue/" in r.path,
    )
    keys = [StockKey(s) for s in SKUS]
    assert make_adapter().availability(keys) == {keys[0]: None, keys[1]: None, keys[2]: 2}


def test_salable_quantity_route_missing_is_a_clear_error(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("MH01-M-Blue", "default", 2)
    fake.server.queue(
        Reply(404, {"message": "Request does not match any route.", "parameters": []}),
        when=lambda r: "/get-product-salable-quantity/" in r.path,
    )
    with pytest.raises(AdapterError, match="404 Not Found.*MSI"):
        make_adapter().availability([StockKey("MH01-M-Blue")])


def test_sku_with_a_slash_is_encoded_in_the_salable_path(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("24-MB/01", "default", 3)
    key = StockKey("24-MB/01")
    assert make_adapter().availability([key]) == {key: 3}
    [request] = fake.received("/get-product-salable-quantity/24-MB%2F01/1")
    assert request.method == "GET"


# --------------------------------------------------------------------------- scopes


def test_website_code_scope_is_resolved_once(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("S1", "central", 2)
    fake.set_source_item("S1", "east", 1)
    adapter = make_adapter()
    key = StockKey("S1", "na_site")
    assert adapter.availability([key]) == {key: 3}
    [resolver] = fake.received("/V1/inventory/stock-resolver/website/na_site")
    assert resolver.headers["authorization"] == f"Bearer {TOKEN}"
    [links] = fake.received("/V1/inventory/stock-source-links")
    assert filters(links) == {"stock_id": ("stock_id", "2", "eq")}
    assert adapter.availability([key]) == {key: 3}
    assert len(fake.received("/V1/inventory/stock-resolver/website/na_site")) == 1
    assert len(fake.received(SOURCE_ITEMS)) == 2


def test_numeric_scope_is_a_stock_id(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("S1", "central", 2)
    key = StockKey("S1", "2")
    assert make_adapter().availability([key]) == {key: 2}
    assert not fake.received("/stock-resolver/website/2")


def test_configured_stock_without_sources_reads_its_links(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item("S1", "east", 4)
    key = StockKey("S1", "us")
    assert make_adapter(stocks={"us": 2}).availability([key]) == {key: 4}
    assert filters(fake.received(SOURCE_ITEMS)[0])["source_code"][1] == "central,east"


def test_unknown_scope_is_none(make_adapter: Any, fake: FakeMagento, caplog: Any):
    key = StockKey(SKUS[0], "mars")
    assert make_adapter().availability([key]) == {key: None}
    assert not fake.received(SOURCE_ITEMS)
    assert "mars" in caplog.text
    key2 = StockKey(SKUS[0], "mars")
    assert make_adapter(resolve_scopes=False).availability([key2]) == {key2: None}


def test_store_to_scope_mapping(make_adapter: Any):
    adapter = make_adapter(store_scopes={"2": "na"}, stocks={"na": 2})
    assert adapter.scope_for_store("2") == "na"
    assert adapter.scope_for_store("na") == "na"
    assert adapter.scope_for_store("1") == "default"
    assert adapter.scope_for_store(None) == "default"


# --------------------------------------------------------------------------- errors


def test_401_names_the_status_and_hides_the_token(
    make_adapter: Any, fake: FakeMagento, caplog: Any
):
    caplog.set_level(logging.DEBUG)
    fake.unauthorized()
    adapter = make_adapter()
    with pytest.raises(AdapterError) as caught:
        adapter.availability([StockKey(SKUS[0])])
    text = str(caught.value)
    assert "401" in text and "Magento_InventoryApi::source" in text
    assert TOKEN not in text and TOKEN not in caplog.text and TOKEN not in repr(adapter)
    assert TOKEN not in repr(adapter.options)
    assert len(fake.received(SOURCE_ITEMS)) == 1  # not retried


def test_404_is_an_adapter_error(make_adapter: Any, fake: FakeMagento):
    adapter = make_adapter(base_url=fake.url + "/shop")
    with pytest.raises(AdapterError, match="404"):
        adapter.availability([StockKey(SKUS[0])])
    assert len(fake.server.requests) == 1


def test_400_shows_magentos_message(make_adapter: Any, fake: FakeMagento):
    fake.queue(
        Reply(400, {"message": '"%fieldName" is required.', "parameters": {"fieldName": "sku"}})
    )
    with pytest.raises(AdapterError, match='400 .*"sku" is required'):
        make_adapter().availability([StockKey(SKUS[0])])


def test_429_is_retried_after_retry_after(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item(SKUS[0], "default", 2)
    fake.queue(Reply(429, {"message": "Too many requests"}, headers={"Retry-After": "0"}))
    key = StockKey(SKUS[0])
    assert make_adapter().availability([key]) == {key: 2}
    assert len(fake.received(SOURCE_ITEMS)) == 2


def test_429_beyond_retries_is_an_adapter_error(make_adapter: Any, fake: FakeMagento):
    fake.queue(Reply(429, {"message": "Too many requests"}, headers={"Retry-After": "0"}), times=5)
    with pytest.raises(AdapterError, match="429.*gave up after 3 attempts"):
        make_adapter(max_retries=2).availability([StockKey(SKUS[0])])
    assert len(fake.received(SOURCE_ITEMS)) == 3


def test_long_retry_after_fails_at_once(make_adapter: Any, fake: FakeMagento):
    fake.queue(Reply(429, {}, headers={"Retry-After": "120"}), times=3)
    with pytest.raises(AdapterError, match="Retry-After 120 s"):
        make_adapter(max_retry_wait=5).availability([StockKey(SKUS[0])])
    assert len(fake.received(SOURCE_ITEMS)) == 1


def test_5xx_is_retried_with_backoff(make_adapter: Any, fake: FakeMagento):
    fake.set_source_item(SKUS[0], "default", 1)
    fake.queue(Reply(503, "Service Unavailable"), times=2)
    key = StockKey(SKUS[0])
    assert make_adapter(max_retries=2).availability([key]) == {key: 1}
    fake.status = 500
    with pytest.raises(AdapterError, match="500"):
        make_adapter(max_retries=1).availability([key])


def test_connection_refused_is_an_adapter_error(make_adapter: Any):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = make_adapter(base_url=f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(AdapterError, match="ConnectError"):
        adapter.availability([StockKey(SKUS[0])])


def test_timeout_is_explicit(make_adapter: Any):
    adapter = make_adapter(timeout=3.5)
    assert adapter.client.http.timeout.read == 3.5
    assert adapter.client.http.timeout.connect == 3.5


# --------------------------------------------------------------------------- describe


def test_describe_reads_products_in_one_search(make_adapter: Any, fake: FakeMagento):
    fake.add_product("NOIMG", name="Plain Tee", url_key="plain-tee")
    info = make_adapter().describe([*SKUS, "NOIMG", "GHOST"])
    assert info["MH01-M-Blue"].title == "Hoodie 1"
    assert info["MH01-M-Blue"].url == "https://shop.example/mh01-m-blue.html"
    assert (
        info["MH01-M-Blue"].image_url == "https://shop.example/media/catalog/product/m/h/mh01.jpg"
    )
    assert info["NOIMG"].image_url is None
    assert "GHOST" not in info
    [request] = fake.received("/V1/products")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert filters(request)["sku"] == ("sku", ",".join([*SKUS, "NOIMG", "GHOST"]), "in")
    assert request.query["fields"] == ["items[id,sku,name,custom_attributes],total_count"]


def test_describe_with_url_template(make_adapter: Any, fake: FakeMagento):
    template = "https://shop.example/{store}/p/{url_key}?sku={sku}"
    info = make_adapter(product_url_template=template).describe(["MH01-M-Blue", "GHOST 1"])
    assert info["MH01-M-Blue"].url == "https://shop.example/default/p/mh01-m-blue?sku=MH01-M-Blue"
    assert info["GHOST 1"].url == "https://shop.example/default/p/?sku=GHOST%201"


def test_describe_without_requests(make_adapter: Any, fake: FakeMagento):
    adapter = make_adapter(
        describe_products=False, product_url_template="https://shop.example/s/{sku}"
    )
    assert adapter.describe(["A"])["A"].url == "https://shop.example/s/A"
    assert fake.requests_made() == 0


def test_product_id_to_sku(make_adapter: Any, fake: FakeMagento):
    product = fake.add_product("LOOKUP-1")
    adapter = make_adapter()
    assert adapter.sku_for_product_id(str(product.id)) == "LOOKUP-1"
    assert adapter.sku_for_product_id("99999") is None
    assert filters(fake.received("/V1/products")[0])["entity_id"][2] == "eq"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("raw", "option", "words"),
    [
        ({"base_url": "shop.example"}, "base_url", "http"),
        ({"base_url": "https://shop.example/rest/default"}, "base_url", "without /rest"),
        ({"store_code": "de-DE"}, "store_code", "store code"),
        ({"stocks": {"eu": {"stock_id": 0}}}, "stocks", "positive"),
        ({"stocks": {"eu": {"stock": 2}}}, "stocks", "unknown key"),
        ({"stocks": {"eu": {"stock_id": 2, "sources": "eu"}}}, "stocks", "list"),
        ({"stocks": {"eu": True}}, "stocks", "stock id"),
        ({"product_url_template": "https://s/{slug}"}, "product_url_template", "{slug}"),
        ({"form_variant": "id"}, "form_variant", "product_id"),
        ({"max_batch_size": 1000}, "max_batch_size", "between"),
        ({"salable_concurrency": 0}, "salable_concurrency", "between 1 and 32"),
        ({"timeout": 0}, "timeout", "greater than 0"),
        ({"access_token": 5}, "access_token", "hidden"),
    ],
)
def test_bad_options_name_the_option(m2_options: dict[str, Any], raw: Any, option: str, words: str):
    with pytest.raises(ConfigError) as caught:
        structure_options(Magento2Options, {**m2_options, **raw}, plugin="m2")
    assert caught.value.option == option
    assert words in str(caught.value)


def test_access_token_is_required(m2_options: dict[str, Any]):
    raw = {k: v for k, v in m2_options.items() if k != "access_token"}
    with pytest.raises(ConfigError, match="access_token"):
        structure_options(Magento2Options, raw, plugin="m2")


def test_defaults(m2_options: dict[str, Any]):
    options = structure_options(Magento2Options, m2_options, plugin="m2")
    assert options.poll_interval == 300.0
    assert options.store_code == "default"
    assert options.configured_scopes()["default"].stock_id == 1
    assert options.configured_scopes()["default"].sources == ("default",)
    assert options.salable_check is True  # the quantity the storefront shows
    assert options.salable_concurrency == 4
