"""Price refresh from the Cloud Billing Catalog API, against the fake's ``services.skus.list``."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from cloudserve.cli import main
from cloudserve.errors import ConfigError, NotFound, ServiceUnavailable, Throttled
from cloudserve.pricing import MissingPricesWarning, PriceRow, load_catalog, packaged_catalog
from cloudserve.pricing.catalog import parse_rows
from cloudserve.provider import Capability
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeBillingCatalog, FakeVertex
from cloudserve_vertex.testing._billing import sku

MACHINES = {"n1-standard-2", "n1-standard-4", "n1-standard-8", "g2-standard-4"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    with FakeVertex(workdir=tmp_path_factory.mktemp("fake-vertex")).serve() as f:
        yield f
        assert f.rejected() == [], "every request fits the discovery document"


@pytest.fixture(autouse=True)
def fresh_prices(fake):
    """Every test starts from the seeded SKUs and no pending faults."""
    fake.service.billing = FakeBillingCatalog()
    fake.service.faults.throttle = fake.service.faults.unavailable = 0


def provider(fake: FakeVertex, **overrides: object) -> VertexProvider:
    return VertexProvider(fake.config(**overrides))


def today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def by_key(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["instance_type"], r["kind"], r["item"]): r for r in rows}


def test_capability_is_declared_without_an_unsupported_reason():
    assert VertexProvider.supports(Capability.PRICING_REFRESH)
    assert Capability.PRICING_REFRESH not in VertexProvider.unsupported


def test_machines_are_priced_from_core_and_ram_skus_and_gpus_are_add_ons(fake):
    rows = provider(fake).refresh_prices().rows
    assert len(rows) == 3 * len(MACHINES) + 3  # + the T4 add-on for hosting, batch, training
    for r in rows:
        PriceRow.model_validate(r)
        assert r["source_url"] == f"{fake.url}/v1/services/C7E2-9256-1C43/skus"
        assert r["as_of"] == today() and r["region"] == "us-central1" and r["price"] > 0
    got = by_key(rows)
    # hand-computed from the fake's SKUs: vCPUs × core + GiB × RAM (+ built-in GPUs × GPU)
    assert got[("n1-standard-2", "hosting", "instance")]["price"] == pytest.approx(
        2 * 0.03675 + 7.5 * 0.0048
    )
    assert got[("n1-standard-4", "batch", "instance")]["price"] == pytest.approx(0.219)
    assert got[("n1-standard-2", "training", "instance")]["price"] == pytest.approx(
        2 * 0.03655 + 7.5 * 0.0048
    )
    g2 = got[("g2-standard-4", "hosting", "instance")]
    assert g2["price"] == pytest.approx(4 * 0.02563 + 16 * 0.003003 + 1 * 0.6623)
    assert g2["accelerator"] == "NVIDIA_L4" and g2["accelerator_count"] == 1
    t4 = got[("NVIDIA_TESLA_T4", "hosting", "accelerator")]
    assert t4["price"] == pytest.approx(0.4025) and t4["accelerator_count"] == 1
    assert "vCPU ×" in got[("n1-standard-8", "hosting", "instance")]["note"]


def test_a_row_without_source_or_date_is_refused(fake):
    rows = provider(fake).refresh_prices().rows
    for column in ("source_url", "as_of"):
        with pytest.raises(ConfigError, match=column):
            parse_rows([{**rows[0], column: ""}], origin="vertex.refresh_prices()")


def test_the_configured_location_is_priced(fake):
    rows = provider(fake, location="europe-west4").refresh_prices().rows
    n1 = by_key(rows)[("n1-standard-2", "hosting", "instance")]
    assert n1["region"] == "europe-west4"
    assert n1["price"] == pytest.approx(2 * 0.03675 * 1.1 + 7.5 * 0.0048 * 1.1, abs=1e-6)


def test_paging_follows_next_page_token(fake):
    fake.billing.page_size = 7
    fake.billing.skus["C7E2-9256-1C43"].reverse()
    rows = provider(fake).refresh_prices().rows
    assert len(rows) == 3 * len(MACHINES) + 3
    total = len(fake.billing.skus["C7E2-9256-1C43"])
    assert len(fake.billing.queries) == -(-total // 7)
    assert all(q["currencyCode"] == "USD" for q in fake.billing.queries)


def test_missing_zero_and_ambiguous_skus_are_reported_never_zero(fake):
    fake.billing.remove("Nvidia L4 GPU")  # g2-standard-4 includes an L4: it cannot be priced
    fake.billing.set_price("Custom Training Nvidia Tesla T4 GPU", 0.0)
    fake.billing.add(  # a second N1 training core SKU with another rate
        sku("Custom Training N1 Predefined Instance Core (v2)", 0.05, regions=["us-central1"])
    )
    p = provider(fake)
    with pytest.warns(MissingPricesWarning, match="g2-standard-4"):
        result = p.refresh_prices()
    rows = result.rows
    assert all(r["price"] > 0 for r in rows)
    got = by_key(rows)
    assert ("g2-standard-4", "hosting", "instance") not in got
    assert ("NVIDIA_TESLA_T4", "training", "accelerator") not in got
    assert ("NVIDIA_TESLA_T4", "hosting", "accelerator") in got
    assert ("n1-standard-2", "hosting", "instance") in got
    assert set(result.missing) == {
        "g2-standard-4 prediction",
        "g2-standard-4 training",
        "NVIDIA_TESLA_T4 training",
        "n1-standard-2 training",
        "n1-standard-4 training",
        "n1-standard-8 training",
    }
    assert "taken as unknown" in result.missing["NVIDIA_TESLA_T4 training"]
    assert "ambiguous" in result.missing["n1-standard-2 training"]


def test_spot_and_commitment_skus_are_not_used(fake):
    fake.billing.remove("Vertex AI: Online/Batch Prediction N1 Predefined Instance Core")
    p = provider(fake)
    with pytest.warns(MissingPricesWarning, match="n1-standard-2 prediction"):
        result = p.refresh_prices()
    rows = result.rows
    assert ("n1-standard-2", "hosting", "instance") not in by_key(rows)


def test_a_throttled_page_is_retried(fake):
    fake.inject("throttle", times=2)
    assert len(provider(fake).refresh_prices().rows) == 3 * len(MACHINES) + 3


def test_api_errors_map_through_the_error_table(fake):
    fake.inject("throttle", times=50)
    with pytest.raises(Throttled) as exc:
        provider(fake).refresh_prices()
    assert exc.value.code == "429" and exc.value.provider == "vertex"
    fake.service.faults.throttle = 0
    fake.inject("unavailable", times=50)
    with pytest.raises(ServiceUnavailable):
        provider(fake).refresh_prices()


def test_the_real_host_through_an_authorised_session(tmp_path):
    # No api_endpoint: the provider calls https://cloudbilling.googleapis.com, which the fake
    # answers in-process through `responses`.
    with FakeVertex(workdir=tmp_path / "fake").intercept() as fake:
        p = VertexProvider(fake.config(api_endpoint=None))
        rows = p.refresh_prices().rows
        assert rows[0]["source_url"] == (
            "https://cloudbilling.googleapis.com/v1/services/C7E2-9256-1C43/skus"
        )
        fake.billing.skus.clear()  # the service id is unknown now: 404
        with pytest.raises(NotFound):
            p.refresh_prices()


def test_cli_refresh_merges_into_the_user_catalog(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    target = {
        "provider": "vertex",
        "project": fake.project,
        "location": "us-central1",
        "staging_bucket": "gs://fake-staging",
        "credentials": "anonymous",
        "api_endpoint": fake.url,
        "retry": {"max_attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.02},
    }
    (tmp_path / "cloudserve.yaml").write_text(yaml.safe_dump({"targets": {"gcp": target}}))
    fake.billing.set_price("Online/Batch Prediction Nvidia Tesla T4 GPU", 0.35)
    fake.billing.remove("Nvidia L4 GPU")
    assert main(["pricing", "refresh", "--provider", "vertex"]) == 0
    out = capsys.readouterr().out
    # the table names what had no price (the CLI shows it there, not as a warning)
    assert "refreshed" in out and "g2-standard-4" in out
    cat = load_catalog()
    t4 = cat.find("vertex", "us-central1", "hosting", "accelerator", "NVIDIA_TESLA_T4")
    assert t4 is not None and t4.price == 0.35 and t4.as_of.isoformat() == today()
    # the missing machine keeps its previous, dated row — it never becomes $0
    g2 = cat.find("vertex", "us-central1", "hosting", "instance", "g2-standard-4")
    old = packaged_catalog().find("vertex", "us-central1", "hosting", "instance", "g2-standard-4")
    assert g2 == old and g2 is not None and g2.price > 0
