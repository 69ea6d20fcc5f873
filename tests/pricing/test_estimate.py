"""Estimates checked against figures worked out by hand from the catalog rows.

Catalog figures used (USD per hour, on demand):
  SageMaker us-east-1   ml.m5.large 0.115, ml.m5.xlarge 0.23, ml.g4dn.xlarge 0.736
  Vertex us-central1    n1-standard-2 0.1095, n1-standard-4 0.219 (training 0.2185),
                        n1-standard-8 0.438, NVIDIA_TESLA_T4 add-on 0.4025
  Azure ML eastus       Standard_DS2_v2 0.146, Standard_DS3_v2 0.293, Standard_NC4as_T4_v3 0.526
  Egress                SageMaker 0.09 per GB
"""

from __future__ import annotations

import warnings
from datetime import date

import pytest

import cloudserve as cs
from cloudserve.errors import InvalidRequest
from cloudserve.pricing import (
    Catalog,
    CustomPrice,
    PriceOverrides,
    PriceRow,
    StalePriceWarning,
    estimate,
    packaged_catalog,
)

MODEL = cs.ModelSpec(name="m", artifact="s3://bucket/model")
NO_OVERRIDES = PriceOverrides()
REGION = {"sagemaker": "us-east-1", "vertex": "us-central1", "azureml": "eastus"}


def deploy(**compute) -> cs.DeploySpec:
    return cs.DeploySpec(model=MODEL, endpoint="e", compute=cs.Compute(**compute))


def est(spec, provider, region="default", **kw):
    region = REGION.get(provider) if region == "default" else region
    kw.setdefault("overrides", NO_OVERRIDES)
    kw.setdefault("catalog", packaged_catalog())
    return estimate(spec, provider=provider, region=region, **kw)


# Hand-computed: hourly = (machine + accelerator add-on × count) × replicas; monthly × 730.
SAME_SIZE = {
    ("cpu.medium", "sagemaker"): ("ml.m5.xlarge", 2 * 0.23),
    ("cpu.medium", "vertex"): ("n1-standard-4", 2 * 0.219),
    ("cpu.medium", "azureml"): ("Standard_DS3_v2", 2 * 0.293),
    ("gpu.t4", "sagemaker"): ("ml.g4dn.xlarge", 2 * 0.736),
    # Vertex: the N1 machine and the T4 are billed separately and add up.
    ("gpu.t4", "vertex"): ("n1-standard-4", 2 * (0.219 + 0.4025)),
    ("gpu.t4", "azureml"): ("Standard_NC4as_T4_v3", 2 * 0.526),
}


@pytest.mark.parametrize(("size", "provider"), sorted(SAME_SIZE))
def test_same_size_across_clouds_matches_hand_computed(size, provider):
    instance, hourly = SAME_SIZE[(size, provider)]
    e = est(deploy(size=size, replicas=2), provider)
    assert e.known and e.kind == "hosting"
    assert e.instance_type == instance
    assert e.hourly == pytest.approx(hourly)
    assert e.monthly == pytest.approx(hourly * 730, abs=0.01)
    assert all(line.source and line.as_of for line in e.lines)


def test_vertex_gpu_lines_show_machine_and_accelerator():
    e = est(deploy(size="gpu.t4"), "vertex")
    assert [(line.item, line.quantity, line.unit_price) for line in e.lines] == [
        ("n1-standard-4 (hosting)", 1, 0.219),
        ("NVIDIA_TESLA_T4 add-on (hosting)", 1, 0.4025),
    ]


def test_explicit_vertex_machine_with_two_accelerators():
    e = est(
        deploy(
            size=None,
            instance_type="n1-standard-8",
            accelerator="NVIDIA_TESLA_T4",
            accelerator_count=2,
        ),
        "vertex",
    )
    assert e.hourly == pytest.approx(0.438 + 2 * 0.4025)


def test_autoscaling_gives_a_min_max_range():
    e = est(deploy(size="cpu.small", replicas=1, min_replicas=1, max_replicas=4), "sagemaker")
    assert e.hourly == pytest.approx(0.115)
    assert e.hourly_max == pytest.approx(4 * 0.115)
    assert e.monthly_max == pytest.approx(4 * 0.115 * 730, abs=0.01)


def test_batch_total_from_rows_and_throughput():
    spec = cs.BatchSpec(
        model=MODEL,
        input="gs://b/in.csv",
        output="gs://b/out/",
        compute=cs.Compute(size="cpu.small", replicas=2),
        rows_hint=1_000_000,
        rows_per_second_hint=200,
    )
    e = est(spec, "vertex")
    assert e.kind == "batch"
    assert e.hourly == pytest.approx(2 * 0.1095)
    # 1e6 rows / 200 rows/s = 5000 instance-seconds = 1.3889 instance-hours.
    assert e.total == pytest.approx(1_000_000 / 200 / 3600 * 0.1095, rel=1e-5)


def test_tuning_total_is_trials_times_time_times_instance():
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint="train.py", compute=cs.Compute(size="cpu.medium")),
        search_space={"lr": cs.LogUniform(low=1e-4, high=1e-1)},
        objective=cs.Objective(metric="auc"),
        max_trials=20,
        parallel_trials=4,
        trial_time_hint_s=1800,
    )
    e = est(spec, "vertex")
    assert e.kind == "training"
    assert e.total == pytest.approx(20 * 0.5 * 0.2185)
    assert e.hourly == pytest.approx(4 * 0.2185)


def test_tuning_without_time_hint_uses_max_runtime_as_upper_bound():
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint="t.py", max_runtime_s=7200),
        search_space={"d": cs.IntRange(low=1, high=3)},
        objective=cs.Objective(metric="auc"),
        max_trials=3,
    )
    e = est(spec, "sagemaker")
    assert e.total == pytest.approx(3 * 2 * 0.115)
    assert any("upper bound" in a for a in e.assumptions)


@pytest.mark.parametrize(
    ("spec", "provider", "region", "words"),
    [
        (deploy(size="cpu.small"), "sagemaker", "eu-north-99", "no hosting price"),
        (deploy(size="gpu.a10"), "vertex", "us-central1", "not available"),
        (deploy(size="cpu.small"), "memory", None, "no mapping"),
        (deploy(size=None, instance_type="ml.p5.48xlarge"), "sagemaker", "us-east-1", "ml.p5"),
        (deploy(size="cpu.small", replicas=0, serverless=True), "sagemaker", None, "serverless"),
    ],
)
def test_unknown_price_is_unknown_never_zero(spec, provider, region, words):
    e = est(spec, provider, region)
    assert e.hourly is None and e.monthly is None and e.total is None
    assert not e.known and words in (e.unknown_reason or "")


def test_typo_in_size_is_an_error_not_an_unknown_price():
    with pytest.raises(InvalidRequest, match="unknown size"):
        est(deploy(size="cpu.hueg"), "sagemaker")


def test_discount_custom_price_and_currency():
    ov = PriceOverrides(
        discounts={"sagemaker": 0.2},
        prices=[
            CustomPrice(
                provider="azureml", region="eastus", instance_type="Standard_DS2_v2", price=0.1
            )
        ],
        currency="EUR",
        fx_rates={"USD": 0.9},
    )
    sm = est(deploy(size="cpu.small"), "sagemaker", overrides=ov)
    assert sm.currency == "EUR"
    assert sm.hourly == pytest.approx(0.115 * 0.9 * 0.8)
    assert any("20% discount" in a for a in sm.assumptions)
    az = est(deploy(size="cpu.small"), "azureml", overrides=ov)
    assert az.hourly == pytest.approx(0.1 * 0.9)
    assert az.lines[0].source == "user override"


def test_missing_exchange_rate_makes_the_price_unknown():
    e = est(deploy(size="cpu.small"), "sagemaker", overrides=PriceOverrides(currency="EUR"))
    assert e.hourly is None and "fx_rates" in (e.unknown_reason or "")


def test_egress_adds_to_the_monthly_figure():
    e = est(deploy(size="cpu.small"), "sagemaker", egress_gb_per_month=100)
    assert e.hourly == pytest.approx(0.115)
    assert e.monthly == pytest.approx(0.115 * 730 + 100 * 0.09, abs=0.01)


def test_stale_prices_warn_with_their_date():
    old = PriceRow(
        provider="sagemaker",
        region="us-east-1",
        kind="hosting",
        instance_type="ml.m5.large",
        price=0.115,
        source_url="https://aws.amazon.com/sagemaker/pricing/",
        as_of=date(2020, 3, 1),
    )
    with pytest.warns(StalePriceWarning, match="2020-03-01"):
        e = est(deploy(size="cpu.small"), "sagemaker", catalog=Catalog([old]))
    assert e.as_of == "2020-03-01"
    assert any("2020-03-01" in a and "pricing refresh" in a for a in e.assumptions)


def test_fresh_prices_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", StalePriceWarning)
        est(deploy(size="cpu.small"), "azureml")


def test_overrides_file_is_read_from_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CLOUDSERVE_PRICING_OVERRIDES", raising=False)
    (tmp_path / "pricing").mkdir()
    (tmp_path / "pricing" / "overrides.yaml").write_text("discounts: {vertex: 0.5}\n")
    e = estimate(deploy(size="cpu.small"), provider="vertex", region="us-central1")
    assert e.hourly == pytest.approx(0.1095 * 0.5)


def test_bad_overrides_file_names_the_field(tmp_path):
    bad = tmp_path / "o.yaml"
    bad.write_text("discounts: {vertex: 1.5}\n")
    with pytest.raises(cs.ConfigError, match=r"discounts\.vertex"):
        PriceOverrides.from_file(bad)


def test_client_estimate_goes_through_the_catalog():
    from cloudserve.testing.memory import MemoryConfig, MemoryProvider

    client = cs.Client(MemoryProvider(MemoryConfig(label="estimate")))
    e = client.estimate(deploy(size="cpu.small"))
    assert e.provider == "memory" and e.hourly is None and e.unknown_reason
