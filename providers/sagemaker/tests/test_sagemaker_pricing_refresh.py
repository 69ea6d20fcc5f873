"""Price refresh from the AWS Price List API (boto3 ``pricing``), against the fake's GetProducts.

The fake serves ``AWSPriceListService.GetProducts`` over real HTTP on moto's port, so boto3
builds, signs and parses the JSON 1.1 calls for real.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml
from sagemaker_harness import BUCKET, ROLE, fast_config

from cloudserve.cli import main
from cloudserve.errors import CloudServeError, ConfigError, ServiceUnavailable, Throttled
from cloudserve.pricing import MissingPricesWarning, PriceRow, load_catalog, packaged_catalog
from cloudserve.pricing.catalog import parse_rows
from cloudserve.provider import Capability
from cloudserve_sagemaker import SageMakerProvider
from cloudserve_sagemaker.testing import FakeSageMaker
from cloudserve_sagemaker.testing._pricing import product

TYPES = {
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.g4dn.xlarge",
    "ml.g5.xlarge",
    "ml.g6.xlarge",
}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    with FakeSageMaker(workdir=tmp_path_factory.mktemp("fake-sm")) as f:
        yield f


@pytest.fixture(autouse=True)
def fresh_prices(fake):
    """Every test starts from the seeded price list and no pending faults."""
    from cloudserve_sagemaker.testing import FakePriceList

    seeded = FakePriceList()
    fake.price_list.documents = seeded.documents
    fake.price_list.page_size = seeded.page_size
    fake.price_list.calls.clear()
    fake.state.throttle = fake.state.unavailable = 0


def provider(fake: FakeSageMaker, **overrides: object) -> SageMakerProvider:
    return SageMakerProvider(fast_config(fake, **overrides))


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def test_capability_is_declared_without_an_unsupported_reason():
    assert SageMakerProvider.supports(Capability.PRICING_REFRESH)
    assert Capability.PRICING_REFRESH not in SageMakerProvider.unsupported


def test_refresh_returns_a_dated_sourced_row_per_kind_and_instance_type(fake):
    rows = provider(fake).refresh_prices().rows
    assert {r["instance_type"] for r in rows} == TYPES
    assert len(rows) == 3 * len(TYPES)
    by = {(r["instance_type"], r["kind"]): r for r in rows}
    for r in rows:
        PriceRow.model_validate(r)
        assert r["source_url"] == fake.url and r["as_of"] == today()
        assert r["region"] == "us-east-1" and r["currency"] == "USD" and r["price"] > 0
    # on-demand Hosting / Batch Transform / Training; Notebook, Processing, Reserved ignored
    assert by[("ml.m5.large", "hosting")]["price"] == 0.115
    assert by[("ml.g4dn.xlarge", "batch")]["price"] == 0.736
    g5 = by[("ml.g5.xlarge", "training")]
    assert (g5["vcpus"], g5["memory_gib"], g5["accelerator"], g5["accelerator_count"]) == (
        4,
        16,
        "A10G",
        1,
    )
    assert "sku " in g5["note"] and "Train:ml.g5.xlarge" in g5["note"]


def test_a_row_without_source_or_date_is_refused(fake):
    rows = provider(fake).refresh_prices().rows
    for column in ("source_url", "as_of"):
        with pytest.raises(ConfigError, match=column):
            parse_rows([{**rows[0], column: None}], origin="sagemaker.refresh_prices()")


def test_queries_filter_ml_instances_of_the_region_by_instance_name(fake):
    provider(fake, region="eu-west-1").refresh_prices()
    calls = fake.price_list.calls
    assert len(calls) == len(TYPES)
    for call in calls:
        assert call["ServiceCode"] == "AmazonSageMaker"
        fields = {f["Field"]: f["Value"] for f in call["Filters"]}
        assert fields["productFamily"] == "ML Instance"
        assert fields["regionCode"] == "eu-west-1"
        assert fields["instanceName"] in TYPES


def test_the_configured_region_is_priced(fake):
    rows = provider(fake, region="eu-west-1").refresh_prices().rows
    m5 = next(r for r in rows if r["instance_type"] == "ml.m5.large" and r["kind"] == "hosting")
    assert m5["region"] == "eu-west-1" and m5["price"] == round(0.115 * 1.12, 4)


def test_paging_is_followed_with_next_token(fake):
    fake.price_list.page_size = 2  # five components an instance type: three pages each
    fake.price_list.documents.reverse()  # Hosting now comes last
    rows = provider(fake).refresh_prices().rows
    assert len(rows) == 3 * len(TYPES)
    assert sum(1 for c in fake.price_list.calls if c.get("NextToken")) == 2 * len(TYPES)


def test_missing_zero_and_ambiguous_prices_are_reported_never_zero(fake):
    fake.price_list.remove("ml.g6.xlarge")
    fake.price_list.remove("ml.g5.xlarge", "Training")
    fake.price_list.set_price("ml.m5.2xlarge", "Batch Transform", 0.0)
    # a second Hosting product for ml.m5.xlarge with another rate (and the same usage type)
    fake.price_list.add(
        product("us-east-1", "ml.m5.xlarge", "Hosting", 0.99, vcpu=4, memory=16, gpu=0)
    )
    p = provider(fake)
    with pytest.warns(MissingPricesWarning, match="ml.g6.xlarge"):
        result = p.refresh_prices()
    rows = result.rows
    assert all(r["price"] > 0 for r in rows)
    got = {(r["instance_type"], r["kind"]) for r in rows}
    assert ("ml.g6.xlarge", "hosting") not in got and ("ml.g5.xlarge", "training") not in got
    assert ("ml.g5.xlarge", "hosting") in got
    assert set(result.missing) == {
        "ml.g6.xlarge hosting",
        "ml.g6.xlarge batch",
        "ml.g6.xlarge training",
        "ml.g5.xlarge training",
        "ml.m5.2xlarge batch",
        "ml.m5.xlarge hosting",
    }
    assert "taken as unknown" in result.missing["ml.m5.2xlarge batch"]
    assert "ambiguous" in result.missing["ml.m5.xlarge hosting"]


def test_a_throttled_page_is_retried(fake):
    fake.inject("throttle", times=2)
    assert len(provider(fake).refresh_prices().rows) == 3 * len(TYPES)


def test_api_errors_map_through_the_error_table(fake):
    fake.inject("throttle", times=50)
    with pytest.raises(Throttled) as exc:
        provider(fake).refresh_prices()
    assert exc.value.code == "ThrottlingException" and exc.value.provider == "sagemaker"
    fake.state.throttle = 0
    fake.inject("unavailable", times=50)
    with pytest.raises(ServiceUnavailable):
        provider(fake).refresh_prices()


def test_an_invalid_parameter_answer_is_an_error_with_its_code(fake):
    from cloudserve_sagemaker._pricing import PriceList, pricing_client

    p = provider(fake)
    client = pricing_client(p.cfg)
    reader = PriceList(client, p.call)
    contains = [{"Type": "CONTAINS", "Field": "instanceName", "Value": "m5"}]
    with pytest.raises(CloudServeError) as exc:
        list(reader.pages(ServiceCode="AmazonSageMaker", Filters=contains))
    assert exc.value.code == "InvalidParameterException"


def test_cli_refresh_merges_into_the_user_catalog(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    target = {
        "provider": "sagemaker",
        "region": "us-east-1",
        "role_arn": ROLE,
        "bucket": BUCKET,
        "endpoint_url": fake.url,
        "retry": {"max_attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.02},
    }
    (tmp_path / "cloudserve.yaml").write_text(yaml.safe_dump({"targets": {"aws": target}}))
    fake.price_list.set_price("ml.m5.large", "Hosting", 0.121)
    fake.price_list.remove("ml.g6.xlarge")
    assert main(["pricing", "refresh", "--provider", "sagemaker"]) == 0
    out = capsys.readouterr().out
    # the table names what had no price (the CLI shows it there, not as a warning)
    assert "refreshed" in out and "ml.g6.xlarge" in out
    cat = load_catalog()
    m5 = cat.find("sagemaker", "us-east-1", "hosting", "instance", "ml.m5.large")
    assert m5 is not None and m5.price == 0.121 and m5.as_of.isoformat() == today()
    # the missing type keeps its previous, dated row — it never becomes $0
    g6 = cat.find("sagemaker", "us-east-1", "hosting", "instance", "ml.g6.xlarge")
    old = packaged_catalog().find("sagemaker", "us-east-1", "hosting", "instance", "ml.g6.xlarge")
    assert g6 == old and g6 is not None and g6.price > 0
