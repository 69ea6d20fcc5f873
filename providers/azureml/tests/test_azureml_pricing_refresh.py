"""Price refresh from the Azure Retail Prices API, against the fake API in FakeAzureML."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml
from azureml_harness import fast_config

from cloudserve.cli import main
from cloudserve.errors import ConfigError, InvalidRequest, ServiceUnavailable, Throttled
from cloudserve.pricing import MissingPricesWarning, PriceRow, load_catalog, packaged_catalog
from cloudserve.pricing.catalog import parse_rows
from cloudserve.provider import Capability
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml._pricing import query_url
from cloudserve_azureml.testing import FakeAzureML

TYPES = {
    "Standard_DS2_v2",
    "Standard_DS3_v2",
    "Standard_DS4_v2",
    "Standard_NC4as_T4_v3",
    "Standard_NV36ads_A10_v5",
}


@pytest.fixture
def fake(tmp_path):
    with FakeAzureML(workdir=tmp_path / "fake") as f:
        yield f


def provider(fake: FakeAzureML, region: str | None = "eastus") -> AzureMLProvider:
    config = fast_config(fake).model_copy(update={"region": region})
    return AzureMLProvider(config, credential=fake.credential())


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def test_capability_is_declared_without_an_unsupported_reason():
    assert AzureMLProvider.supports(Capability.PRICING_REFRESH)
    assert Capability.PRICING_REFRESH not in AzureMLProvider.unsupported


def test_refresh_returns_a_dated_sourced_row_per_kind_and_instance_type(fake):
    rows = provider(fake).refresh_prices().rows
    assert {r["instance_type"] for r in rows} == TYPES
    assert sorted({r["kind"] for r in rows}) == ["batch", "hosting", "training"]
    assert len(rows) == 3 * len(TYPES)
    for r in rows:
        assert r["source_url"].startswith("https://prices.azure.com/api/retail/prices?")
        assert r["as_of"] == today()
        assert r["region"] == "eastus" and r["currency"] == "USD" and r["price"] > 0
        PriceRow.model_validate(r)
    by = {(r["instance_type"], r["kind"]): r for r in rows}
    # the Linux pay-as-you-go meter, not Windows, Spot, Low Priority, Dev/Test or reservation
    assert by[("Standard_DS3_v2", "hosting")]["price"] == 0.293
    assert by[("Standard_NC4as_T4_v3", "training")]["price"] == 0.526
    assert by[("Standard_NC4as_T4_v3", "batch")]["accelerator"] == "T4"
    assert by[("Standard_DS2_v2", "hosting")]["vcpus"] == 2


def test_a_row_without_source_or_date_is_refused(fake):
    rows = provider(fake).refresh_prices().rows
    for column in ("source_url", "as_of"):
        broken = [{**rows[0], column: ""}]
        with pytest.raises(ConfigError, match=column):
            parse_rows(broken, origin="azureml.refresh_prices()")


def test_the_query_asks_for_consumption_vm_meters_of_the_region(fake):
    provider(fake, region="westeurope").refresh_prices()
    filters = [q["$filter"] for q in fake.retail_prices.queries]
    assert len(filters) == len(TYPES)
    for f in filters:
        assert "serviceName eq 'Virtual Machines'" in f
        assert "armRegionName eq 'westeurope'" in f
        assert "priceType eq 'Consumption'" in f


def test_the_configured_region_is_priced(fake):
    rows = provider(fake, region="westeurope").refresh_prices().rows
    ds3 = next(r for r in rows if r["instance_type"] == "Standard_DS3_v2")
    assert ds3["region"] == "westeurope" and ds3["price"] == round(0.293 * 1.1, 4)


def test_paging_is_followed_to_the_last_page(fake):
    fake.retail_prices.page_size = 1
    fake.retail_prices.items.reverse()  # the Linux meter now comes after its variants
    rows = provider(fake).refresh_prices().rows
    ds3 = next(r for r in rows if r["instance_type"] == "Standard_DS3_v2")
    assert ds3["price"] == 0.293
    skips = [q for q in fake.retail_prices.queries if "$skip" in q]
    assert len(skips) >= 3 * len(TYPES)  # four Consumption meters a size: three further pages


def test_missing_and_zero_prices_are_reported_never_zero(fake):
    fake.retail_prices.remove("Standard_NV36ads_A10_v5")
    fake.retail_prices.set_price("Standard_DS2_v2", 0.0)
    p = provider(fake)
    with pytest.warns(MissingPricesWarning, match="Standard_NV36ads_A10_v5"):
        result = p.refresh_prices()
    rows = result.rows
    assert {r["instance_type"] for r in rows} == TYPES - {
        "Standard_NV36ads_A10_v5",
        "Standard_DS2_v2",
    }
    assert all(r["price"] > 0 for r in rows)
    assert set(result.missing) == {"Standard_NV36ads_A10_v5", "Standard_DS2_v2"}
    assert "taken as unknown" in result.missing["Standard_DS2_v2"]


def test_a_region_without_meters_reports_every_type_missing(fake):
    p = provider(fake, region="southindia")
    with pytest.warns(MissingPricesWarning, match="southindia"):
        result = p.refresh_prices()
    assert result.rows == []
    assert set(result.missing) == TYPES


def test_a_throttled_page_is_retried(fake):
    fake.inject("throttle", times=2, retry_after="0")
    rows = provider(fake).refresh_prices().rows
    assert len(rows) == 3 * len(TYPES)


def test_api_errors_map_through_the_error_table(fake):
    fake.inject("throttle", times=50, retry_after="0")
    with pytest.raises(Throttled) as exc:
        provider(fake).refresh_prices()
    assert exc.value.code == "429" and exc.value.provider == "azureml"
    fake.inject("throttle", times=0)
    fake.inject("unavailable", times=50)
    with pytest.raises(ServiceUnavailable):
        provider(fake).refresh_prices()


def test_a_bad_filter_is_an_invalid_request(fake):
    from cloudserve_azureml._pricing import RetailPrices

    p = provider(fake)
    bad = query_url("eastus", "x' or y", "https://prices.azure.com/api/retail/prices")
    with pytest.raises(InvalidRequest, match="400"):
        list(RetailPrices(p.call).items(bad))


def test_cli_refresh_merges_into_the_user_catalog(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    target = {
        "provider": "azureml",
        "subscription_id": fake.subscription_id,
        "resource_group": fake.resource_group,
        "workspace": fake.workspace,
        "region": "eastus",
        "retry": {"max_attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.02},
    }
    (tmp_path / "cloudserve.yaml").write_text(yaml.safe_dump({"targets": {"azure": target}}))
    fake.retail_prices.set_price("Standard_DS3_v2", 0.31)
    fake.retail_prices.remove("Standard_NV36ads_A10_v5")
    assert main(["pricing", "refresh", "--provider", "azureml"]) == 0
    out = capsys.readouterr().out
    # the table names what had no price (the CLI shows it there, not as a warning)
    assert "refreshed" in out and "Standard_NV36ads_A10_v5" in out
    cat = load_catalog()
    ds3 = cat.find("azureml", "eastus", "hosting", "instance", "Standard_DS3_v2")
    assert ds3 is not None and ds3.price == 0.31 and ds3.as_of.isoformat() == today()
    assert "prices.azure.com" in ds3.source_url
    # the missing type keeps its previous, dated row — it never becomes $0
    nv = cat.find("azureml", "eastus", "hosting", "instance", "Standard_NV36ads_A10_v5")
    old = packaged_catalog().find(
        "azureml", "eastus", "hosting", "instance", "Standard_NV36ads_A10_v5"
    )
    assert nv == old and nv is not None and nv.price > 0


def test_without_a_configured_region_the_catalog_main_region_is_priced(fake):
    rows = provider(fake, region=None).refresh_prices().rows
    assert rows and {r["region"] for r in rows} == {"eastus"}
