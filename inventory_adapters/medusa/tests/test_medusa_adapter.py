"""The Medusa adapter's HTTP client against a fake Medusa v2 backend (Store and Admin API)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from restock_medusa import MedusaAdapter, MedusaOptions
from restock_medusa.testing import PK, PK_B, SC_A, SC_B, SK, FakeMedusa, medusa_options

from restock_core.config import structure_options
from restock_core.errors import AdapterError, ConfigError
from restock_core.models import StockKey
from restock_core.plugins import PluginRegistry
from restock_core.testing import InventoryAdapterContract, Reply


def build(url: str, **extra: Any) -> MedusaAdapter:
    options = structure_options(MedusaOptions, medusa_options(url, **extra), plugin="medusa")
    return MedusaAdapter(options)


KNOWN = [StockKey("variant_1", SC_A), StockKey("variant_2", SC_A), StockKey("variant_3", SC_B)]


class TestMedusaStoreContract(InventoryAdapterContract):
    @pytest.fixture
    def adapter(self, fake_medusa: FakeMedusa) -> Iterator[MedusaAdapter]:
        adapter = build(fake_medusa.url)
        yield adapter
        adapter.close()

    @pytest.fixture
    def adapter_fake(self, fake_medusa: FakeMedusa) -> FakeMedusa:
        return fake_medusa

    @pytest.fixture
    def known_keys(self) -> list[StockKey]:
        return KNOWN


class TestMedusaAdminContract(TestMedusaStoreContract):
    @pytest.fixture
    def adapter(self, fake_medusa: FakeMedusa) -> Iterator[MedusaAdapter]:
        adapter = build(fake_medusa.url, use_admin_api=True)
        yield adapter
        adapter.close()


class TestMedusaProductsRouteContract(TestMedusaStoreContract):
    @pytest.fixture
    def adapter(self, fake_medusa: FakeMedusa) -> Iterator[MedusaAdapter]:
        adapter = build(fake_medusa.url, store_route="products")
        yield adapter
        adapter.close()


def test_registered_through_the_entry_point() -> None:
    registry = PluginRegistry()
    factory = registry.factories["medusa"]
    assert factory.kind == "inventory_adapter"
    assert factory.options is MedusaOptions


def test_store_request_is_one_per_sales_channel_with_key_fields_and_channel(
    fake_medusa: FakeMedusa,
) -> None:
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 4)
    fake_medusa.set_stock(StockKey("variant_1", SC_B), 9)
    fake_medusa.set_stock(StockKey("variant_2", SC_A), 0)
    adapter = build(fake_medusa.url, sales_channels={"eu": SC_A})
    keys = [StockKey("variant_1", "eu"), StockKey("variant_2", "eu"), StockKey("variant_1", SC_B)]
    found = adapter.availability(keys)
    assert found == {keys[0]: 4, keys[1]: 0, keys[2]: 9}
    requests = fake_medusa.store_requests()
    assert len(requests) == 2
    by_channel = {tuple(r.query.get("sales_channel_id", [])): r for r in requests}
    eu = by_channel[(SC_A,)]
    assert eu.path == "/store/product-variants"
    assert eu.headers["x-publishable-api-key"] == PK
    assert eu.query["id[]"] == ["variant_1", "variant_2"]
    assert "+inventory_quantity" in eu.query["fields"][0].split(",")
    assert "manage_inventory" in eu.query["fields"][0].split(",")
    # the channel with its own publishable key uses that key
    assert by_channel[(SC_B,)].headers["x-publishable-api-key"] == PK_B


def test_default_scope_lets_the_key_decide(fake_medusa: FakeMedusa) -> None:
    fake_medusa.set_stock(StockKey("variant_1", SC_B), 3)
    adapter = build(fake_medusa.url, publishable_key=PK_B, publishable_keys={})
    key = StockKey("variant_1", "default")
    assert adapter.availability([key]) == {key: 3}
    assert "sales_channel_id" not in fake_medusa.store_requests()[-1].query


def test_ambiguous_default_scope_is_an_adapter_error(fake_medusa: FakeMedusa) -> None:
    adapter = build(fake_medusa.url)  # PK is linked to two channels
    with pytest.raises(AdapterError, match="single sales channel"):
        adapter.availability([StockKey("variant_1", "default")])


def test_pages_are_followed(fake_medusa: FakeMedusa) -> None:
    fake_medusa.page_cap = 2
    for index in range(4, 8):
        fake_medusa.add_variant(f"variant_{index}", stock={SC_A: index})
    adapter = build(fake_medusa.url)
    keys = [StockKey(f"variant_{i}", SC_A) for i in range(4, 8)]
    assert adapter.availability(keys) == {k: i for k, i in zip(keys, range(4, 8), strict=True)}
    offsets = [r.query["offset"][0] for r in fake_medusa.store_requests()]
    assert offsets == ["0", "2"]


def test_batches_are_split_at_max_batch_size(fake_medusa: FakeMedusa) -> None:
    for index in range(4, 9):
        fake_medusa.add_variant(f"variant_{index}", stock={SC_A: 1})
    adapter = build(fake_medusa.url, max_batch_size=2)
    keys = [StockKey(f"variant_{i}", SC_A) for i in range(4, 9)]
    assert set(adapter.availability(keys).values()) == {1}
    assert [len(r.query["id[]"]) for r in fake_medusa.store_requests()] == [2, 2, 1]


def test_manage_inventory_false_is_untracked(fake_medusa: FakeMedusa) -> None:
    fake_medusa.add_variant("variant_free", managed=False)
    adapter = build(fake_medusa.url)
    key = StockKey("variant_free", SC_A)
    assert adapter.availability([key]) == {key: None}


def test_rate_limit_and_server_errors_are_retried(fake_medusa: FakeMedusa) -> None:
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 2)
    fake_medusa.server.queue(Reply(429, {"message": "slow down"}, headers={"Retry-After": "0"}))
    fake_medusa.server.queue(Reply(503, {"message": "busy"}))
    adapter = build(fake_medusa.url)
    key = StockKey("variant_1", SC_A)
    assert adapter.availability([key]) == {key: 2}
    assert len(fake_medusa.store_requests()) == 3


def test_persistent_rate_limit_becomes_an_adapter_error(fake_medusa: FakeMedusa) -> None:
    fake_medusa.server.queue(Reply(429, {"message": "slow down"}), times=10)
    adapter = build(fake_medusa.url, max_retries=2)
    with pytest.raises(AdapterError, match="429"):
        adapter.availability([StockKey("variant_1", SC_A)])
    assert len(fake_medusa.store_requests()) == 3


def test_connection_errors_become_adapter_errors(fake_medusa: FakeMedusa) -> None:
    fake_medusa.server.queue(Reply(reset=True), times=10)
    adapter = build(fake_medusa.url, max_retries=1)
    with pytest.raises(AdapterError, match="failed after 2 attempts"):
        adapter.availability([StockKey("variant_1", SC_A)])


def test_missing_route_404_is_an_adapter_error_with_a_hint(fake_medusa: FakeMedusa) -> None:
    fake_medusa.server.queue(Reply(404, {"type": "not_found", "message": "Cannot GET"}))
    adapter = build(fake_medusa.url)
    with pytest.raises(AdapterError, match="404") as caught:
        adapter.availability([StockKey("variant_1", SC_A)])
    assert "store_route" in str(caught.value)


def test_a_rejected_publishable_key_reads_as_unauthorized(fake_medusa: FakeMedusa) -> None:
    # real Medusa answers 400 not_allowed for an unknown publishable key (verified 2.21.2)
    adapter = build(fake_medusa.url, publishable_key="pk_wrong", publishable_keys={})
    with pytest.raises(AdapterError, match="unauthorized"):
        adapter.availability([StockKey("variant_1", SC_A)])


def test_admin_api_sends_the_secret_key_as_basic_auth(fake_medusa: FakeMedusa) -> None:
    fake_medusa.set_stock(StockKey("variant_1", SC_A), 6)
    fake_medusa.set_stock(StockKey("variant_1", SC_B), 1)
    adapter = build(fake_medusa.url, use_admin_api=True)
    keys = [StockKey("variant_1", SC_A), StockKey("variant_1", "default")]
    assert adapter.availability(keys) == {keys[0]: 6, keys[1]: 7}  # default = all locations
    admin = [r for r in fake_medusa.server.requests if r.path.startswith("/admin/")]
    expected = "Basic " + base64.b64encode(f"{SK}:".encode()).decode()
    assert {r.headers["authorization"] for r in admin} == {expected}
    assert not fake_medusa.store_requests()


def test_describe_gives_titles_url_and_thumbnail(fake_medusa: FakeMedusa) -> None:
    adapter = build(fake_medusa.url)
    info = adapter.describe(["variant_1", "variant_2", "ghost"])
    assert set(info) == {"variant_1", "variant_2"}
    assert info["variant_1"].title == "Size 1"
    assert info["variant_1"].product_title == "Blue Shirt"
    assert info["variant_1"].url == "https://shop.example/products/blue-shirt"
    assert info["variant_1"].image_url == "https://cdn.example/shirt.png"
    (request,) = fake_medusa.store_requests()
    assert request.path == "/store/products"
    assert sorted(request.query["variants[id][]"]) == ["ghost", "variant_1", "variant_2"]


def test_describe_through_the_admin_api(fake_medusa: FakeMedusa) -> None:
    adapter = build(fake_medusa.url, use_admin_api=True)
    info = adapter.describe(["variant_1"])
    assert info["variant_1"].url == "https://shop.example/products/blue-shirt"


def test_options_are_validated_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        structure_options(MedusaOptions, {"publishable_key": PK}, plugin="medusa")
    with pytest.raises(ConfigError, match="publishable_key is required"):
        structure_options(MedusaOptions, {"base_url": "http://x"}, plugin="medusa")
    with pytest.raises(ConfigError, match="store_route"):
        structure_options(
            MedusaOptions,
            {"base_url": "http://x", "publishable_key": PK, "store_route": "variants"},
            plugin="medusa",
        )
    with pytest.raises(ConfigError, match="admin_token"):
        structure_options(
            MedusaOptions, {"base_url": "http://x", "use_admin_api": True}, plugin="medusa"
        )
    with pytest.raises(ConfigError, match="timeout"):
        structure_options(
            MedusaOptions, {"base_url": "http://x", "publishable_key": PK, "timeout": 0}, plugin="m"
        )


def test_secrets_stay_out_of_repr_logs_and_errors(fake_medusa: FakeMedusa, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = build(fake_medusa.url, use_admin_api=True)
    fake_medusa.unauthorized()
    with pytest.raises(AdapterError) as caught:
        adapter.availability([StockKey("variant_1", SC_A)])
    for secret in (SK, PK):
        assert secret not in str(caught.value)
        assert secret not in caplog.text
        assert secret not in repr(adapter)
    assert SK not in repr(adapter.options)
