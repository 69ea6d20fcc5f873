"""Shadow traffic on SageMaker (``ShadowProductionVariants``) against the fake: what is
particular to it — the endpoint config it makes, the shadow's own CloudWatch series, promotion
and deletion by a new config, shadow and canary being exclusive. The shared behaviour (production
answers unchanged, about the share mirrored, agreement rates) is also run by
``test_sagemaker_rollout_conformance``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve_sagemaker.testing import FakeSageMaker

EP = "cs-sh"


def model(root: Path, version: str, *, other_rule: bool = False) -> cs.ModelSpec:
    """Version ``version`` of the churn classifier; ``other_rule`` learns another boundary,
    so its labels differ from version 1's on a good share of rows."""
    directory = make_sklearn_model(root / f"model-v{version}", version=version)
    if other_rule:
        import joblib
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        x = np.random.default_rng(5).normal(size=(200, len(sample_rows(1)[0])))
        joblib.dump(
            LogisticRegression().fit(x, (x[:, 1] > 0).astype(int)), directory / "model.joblib"
        )
    return cs.ModelSpec(name="churn", version=version, artifact=str(directory), framework="sklearn")


def described(fake: FakeSageMaker) -> dict[str, Any]:
    sm = fake.client("sagemaker")
    ep = sm.describe_endpoint(EndpointName=EP)
    return {
        "endpoint": ep,
        "config": sm.describe_endpoint_config(EndpointConfigName=ep["EndpointConfigName"]),
    }


@pytest.fixture
def shadowed(client: Client, fake: FakeSageMaker, tmp_path: Path) -> Client:
    client.deploy(model(tmp_path, "1"), EP, variant="v1")
    ep = client.deploy(model(tmp_path, "2", other_rule=True), EP, variant="v2", shadow=20)
    assert ep.traffic == {"v1": 100, "v2": 0}
    assert ep.variant("v2").shadow == 20
    config = described(fake)["config"]
    assert [r["VariantName"] for r in config["ProductionVariants"]] == ["v1"]
    shadow = config["ShadowProductionVariants"]
    assert [(r["VariantName"], r["InitialVariantWeight"]) for r in shadow] == [("v2", 20.0)]
    assert config["ProductionVariants"][0]["InitialVariantWeight"] == 100.0
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    return client


def test_production_answers_are_unchanged_and_a_share_is_mirrored(
    shadowed: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    from cloudserve.serving import load_model

    v1 = load_model(str(tmp_path / "model-v1"))
    n = 120
    rows = sample_rows(n, seed=3)
    for row in rows:
        pred = shadowed.predict(EP, [row])
        assert pred.variant == "v1" and pred.outputs == v1.predict([row])
    report = shadowed.shadow_report(EP, window="1h")
    assert report.shadow_variant == "v2"
    assert report.production_invocations == n  # the shadow's invocations are not production's
    # binomial(120, 0.2): mean 24, sd 4.4 — far tails only
    assert 8 <= report.mirrored <= 45, report.mirrored
    assert report.both_answered == report.mirrored and report.shadow_errors == 0
    assert report.agreement_rate is not None and 0.2 < report.agreement_rate < 0.9
    assert report.disagreements
    for pair in report.disagreements:
        assert pair.production_variant == "v1" and pair.production_outputs != pair.shadow_outputs
    # the shadow's own CloudWatch series counts what was mirrored to it
    shadow_invocations = sum(
        point
        for r in fake.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName="Invocations", Statistics=["Sum"],
            Dimensions=[{"Name": "EndpointName", "Value": EP}, {"Name": "VariantName", "Value": "v2"}],
            StartTime=_hour_ago(), EndTime=_in_a_minute(), Period=3600,
        )["Datapoints"]
        for point in [r["Sum"]]
    )  # fmt: skip
    assert shadow_invocations == report.mirrored


def _hour_ago() -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) - timedelta(hours=1)


def _in_a_minute() -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(minutes=1)


def test_promoting_the_shadow_ends_mirroring(shadowed: Client, fake: FakeSageMaker) -> None:
    for row in sample_rows(20, seed=6):
        shadowed.predict(EP, [row])
    before = shadowed.shadow_report(EP).mirrored
    ep = shadowed.set_traffic(EP, {"v1": 0, "v2": 100})
    assert ep.variant("v2").shadow == 0 and ep.traffic == {"v1": 0, "v2": 100}
    config = described(fake)["config"]
    assert "ShadowProductionVariants" not in config
    assert sorted(r["VariantName"] for r in config["ProductionVariants"]) == ["v1", "v2"]
    for row in sample_rows(30, seed=7):
        assert shadowed.predict(EP, [row]).variant == "v2"
    assert shadowed.shadow_report(EP).mirrored == before
    shadowed.provider.delete_variant(EP, "v1")  # the old production variant can go now
    assert shadowed.get_endpoint(EP).traffic == {"v2": 100}


def test_deleting_the_shadow_ends_mirroring(shadowed: Client, fake: FakeSageMaker) -> None:
    ep = shadowed.provider.delete_variant(EP, "v2")
    assert [v.name for v in ep.variants] == ["v1"]
    assert "ShadowProductionVariants" not in described(fake)["config"]
    models = [m["ModelName"] for m in fake.client("sagemaker").list_models()["Models"]]
    assert len(models) == 1 and models[0].startswith(f"{EP}-v1-")  # the shadow's model went
    for row in sample_rows(20, seed=8):
        shadowed.predict(EP, [row])
    assert shadowed.shadow_report(EP).mirrored == 0


def test_shadow_rules_are_checked_before_anything_is_written(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    v1, v2, v3 = (model(tmp_path, v) for v in "123")
    writes = lambda: [  # noqa: E731
        r.operation for r in fake.requests() if not r.operation.startswith(("Describe", "List"))
    ]
    with pytest.raises(cs.InvalidRequest, match="none to mirror"):
        client.deploy(v1, EP, shadow=10)
    with pytest.raises(cs.InvalidRequest, match="takes no traffic"):
        client.deploy(v1, EP, traffic=10, shadow=10)
    with pytest.raises(cs.InvalidRequest, match="serverless"):
        client.deploy(v1, EP, compute=cs.Compute(serverless=True), shadow=10)
    assert writes() == []
    client.deploy(v1, "cs-sls", compute=cs.Compute(serverless=True))
    before = len(writes())
    with pytest.raises(cs.InvalidRequest, match="is serverless"):
        client.deploy(v2, "cs-sls", variant="v2", shadow=10)
    assert len(writes()) == before
    client.deploy(v1, EP, variant="v1")
    client.deploy(v2, EP, variant="v2", traffic=20)  # a canary split …
    before = len(writes())
    with pytest.raises(cs.InvalidRequest, match="exactly one production variant"):
        client.deploy(v3, EP, variant="v3", shadow=10)  # … and a shadow are exclusive
    with pytest.raises(cs.InvalidRequest, match="is the production variant"):
        client.deploy(v3, EP, variant="v1", shadow=10)
    assert len(writes()) == before
    client.set_traffic(EP, {"v1": 100, "v2": 0})
    client.provider.delete_variant(EP, "v2")
    client.deploy(v3, EP, variant="v3", shadow=10)
    before = len(writes())
    with pytest.raises(cs.InvalidRequest, match="a canary is refused"):
        client.deploy(v2, EP, variant="v2", traffic=20)
    assert len(writes()) == before


def test_fake_refuses_two_production_variants_beside_a_shadow(
    shadowed: Client, fake: FakeSageMaker
) -> None:
    sm = fake.client("sagemaker")
    config = described(fake)["config"]
    row = config["ProductionVariants"][0]
    with pytest.raises(Exception, match="only specify one variant for ProductionVariants"):
        sm.create_endpoint_config(
            EndpointConfigName="two-and-a-shadow",
            ProductionVariants=[row, {**row, "VariantName": "v9"}],
            ShadowProductionVariants=config["ShadowProductionVariants"],
        )
