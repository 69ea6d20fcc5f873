"""Numbered defects of the SageMaker provider (issue 14), each with the test that caught it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sagemaker_harness import fast_config, start_fake

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.client import Client
from cloudserve.specs import Compute, ModelSpec
from cloudserve.testing import make_sklearn_model, sample_rows, write_csv
from cloudserve_sagemaker import SageMakerProvider
from cloudserve_sagemaker._validate import has_local_storage
from cloudserve_sagemaker.testing import FakeSageMaker

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSageMaker]:
    f = start_fake(tmp_path, creating_polls=1, updating_polls=1, job_polls=1)
    yield f
    f.stop()
    assert f.rejected() == []


def client_for(fake: FakeSageMaker, **overrides: Any) -> Client:
    return Client(SageMakerProvider(fast_config(fake, **overrides), target="aws"))


def model(tmp_path: Path, version: str = "1") -> ModelSpec:
    directory = make_sklearn_model(tmp_path / f"model-v{version}", version=version)
    return ModelSpec(name="churn", version=version, artifact=str(directory), framework="sklearn")


def endpoint_config(fake: FakeSageMaker, endpoint: str) -> dict[str, Any]:
    sm = fake.client("sagemaker")
    name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return dict(sm.describe_endpoint_config(EndpointConfigName=name))


# -- 5: KmsKeyId with instance types that have local NVMe storage --------------------------------


def test_5_no_kms_key_for_instances_with_local_storage(fake: FakeSageMaker, tmp_path: Path) -> None:
    client = client_for(fake, kms_key_id=KEY)
    client.deploy(model(tmp_path), "gpu", Compute(size="gpu.t4"))
    config = endpoint_config(fake, "gpu")
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"
    assert "KmsKeyId" not in config
    client.deploy(model(tmp_path), "cpu", Compute(size="cpu.small"))
    assert endpoint_config(fake, "cpu")["KmsKeyId"] == KEY


def test_5_no_volume_key_for_transform_instances_with_local_storage(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    client = client_for(fake, kms_key_id=KEY)
    source = write_csv(tmp_path / "in" / "rows.csv", sample_rows(5))
    job = client.batch_predict(
        model(tmp_path), source, tmp_path / "out", compute=Compute(instance_type="ml.g5.xlarge")
    )
    d = fake.client("sagemaker").describe_transform_job(TransformJobName=job.id)
    assert "VolumeKmsKeyId" not in d["TransformResources"]
    assert d["TransformOutput"]["KmsKeyId"] == KEY


@pytest.mark.parametrize(
    "instance_type, local",
    [
        ("ml.g4dn.xlarge", True),
        ("ml.g5.2xlarge", True),
        ("ml.g6.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.m5d.large", True),
        ("ml.c6id.xlarge", True),
        ("ml.m5.large", False),
        ("ml.c5.xlarge", False),
        ("ml.p3.2xlarge", False),
        ("ml.inf2.xlarge", False),
    ],
)
def test_5_local_storage_families(instance_type: str, local: bool) -> None:
    assert has_local_storage(instance_type) is local


# -- 6: serverless endpoints take at most 4 MB a request ----------------------------------------


def test_6_serverless_predictions_go_in_chunks_of_at_most_4_mb(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    client = client_for(fake)
    spec = model(tmp_path)
    client.deploy(spec, "sls", Compute(serverless=True, replicas=0))
    rows = sample_rows(130_000, seed=3)  # ~5 MB of JSON: over 4 MB, under 6 MB
    pred = client.predict("sls", rows)
    calls = fake.requests("InvokeEndpoint")
    assert len(calls) >= 2 and all(c.size <= 4 * 1024 * 1024 for c in calls)
    from cloudserve.serving import load_model

    assert pred.outputs == load_model(spec.artifact).predict(rows)


# -- 8: tuning runs the training image; grid search stays within 30 categorical values ----------


def tuning_spec(tmp_path: Path, **update: Any) -> Any:
    from cloudserve.testing import ProviderHarness

    base = ProviderHarness().tuning_spec(tmp_path)
    return base.model_copy(update={"max_trials": 2, **update})


def test_8_tuning_uses_the_training_image(fake: FakeSageMaker, tmp_path: Path) -> None:
    client = client_for(fake)
    base = tuning_spec(tmp_path)
    train = base.train.model_copy(update={"framework": "pytorch", "framework_version": "2.1"})
    job = client.tune(base.model_copy(update={"train": train}))
    d = fake.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=job.id
    )
    image = d["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"]
    assert image == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310"
    sklearn = client.tune(tuning_spec(tmp_path))
    d = fake.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=sklearn.id
    )
    image = d["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"]
    assert image.endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")


def test_8_grid_over_40_integers_is_refused_before_any_request(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    from cloudserve.errors import InvalidRequest
    from cloudserve.specs import IntRange

    client = client_for(fake)
    spec = tuning_spec(tmp_path, strategy="grid", search_space={"depth": IntRange(low=1, high=40)})
    with pytest.raises(InvalidRequest, match=r"search_space.depth: .*30 values \(40 here\)"):
        client.tune(spec)
    with pytest.raises(InvalidRequest, match="seed"):
        client.tune(tuning_spec(tmp_path, seed=-5))
    assert fake.requests() == []


# -- 9: deploy(wait=False) registers autoscaling once the endpoint is in service ----------------


def test_9_autoscaling_after_deploy_without_waiting(fake: FakeSageMaker, tmp_path: Path) -> None:
    client = client_for(fake)
    aas = fake.client("application-autoscaling")
    compute = Compute(replicas=1, min_replicas=1, max_replicas=3, autoscale_target=40)
    fake.state.creating_polls = 3
    ep = client.deploy(model(tmp_path), "churn", compute, wait=False)
    assert ep.status.value == "CREATING"
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # Another process (a fresh provider) polls the endpoint until it is up.
    other = client_for(fake)
    for _ in range(10):
        if other.get_endpoint("churn").status.value == "READY":
            break
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["MinCapacity"], target["MaxCapacity"]) == (
        "endpoint/churn/variant/v1",
        1,
        3,
    )
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 40
    variant = other.get_endpoint("churn").variants[0]
    assert (variant.min_replicas, variant.max_replicas) == (1, 3)
    client.delete_endpoint("churn")
    assert fake.leftovers() == []


# -- 11: parameters (predict_proba) reach the model; a CSV header in another order ---------------


def named_model(tmp_path: Path) -> tuple[ModelSpec, Any, Any]:
    """A classifier fitted on named columns; returns (spec, model, the frame it saw)."""
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from cloudserve.packaging import write_manifest

    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(200, 3)) * [1, 10, 100], columns=["a", "b", "c"])
    y = (frame["a"] + frame["b"] / 10 - frame["c"] / 100 > 0).astype(int)
    clf = LogisticRegression().fit(frame, y)
    directory = tmp_path / "named"
    directory.mkdir()
    joblib.dump(clf, directory / "model.joblib")
    write_manifest(directory, framework="sklearn", version="1")
    spec = ModelSpec(name="named", version="1", artifact=str(directory), framework="sklearn")
    return spec, clf, frame


def test_11_predict_proba_reaches_the_model(fake: FakeSageMaker, tmp_path: Path) -> None:
    client = client_for(fake)
    spec, clf, frame = named_model(tmp_path)
    client.deploy(spec, "named")
    rows = frame.iloc[:5].values.tolist()
    got = client.predict("named", rows, parameters={"method": "predict_proba"}).outputs
    assert [p for row in got for p in row] == pytest.approx(
        [p for row in clf.predict_proba(frame.iloc[:5]).tolist() for p in row]
    )


def test_11_batch_csv_header_in_another_order(fake: FakeSageMaker, tmp_path: Path) -> None:
    from cloudserve.testing import ProviderHarness

    client = client_for(fake)
    spec, clf, frame = named_model(tmp_path)
    part = frame.iloc[:30]
    source = tmp_path / "in" / "rows.csv"
    source.parent.mkdir()
    part[["c", "a", "b"]].to_csv(source, index=False)  # the header in another order
    job = client.batch_predict(spec, source, tmp_path / "out")
    assert job.wait(timeout=60).status.value == "SUCCEEDED"
    assert ProviderHarness().read_batch_output(str(tmp_path / "out")) == clf.predict(part).tolist()


# -- decisions checked against the documentation (docs/providers/sagemaker.md) -------------------


@pytest.mark.parametrize(
    "overrides, kwargs, match",
    [
        ({}, {"compute": Compute(serverless=True, replicas=0, max_concurrency=500)}, "at most 200"),
        (
            {"vpc": {"subnets": ["subnet-1"], "security_group_ids": ["sg-1"]}},
            {"compute": Compute(serverless=True, replicas=0)},
            "VPC",
        ),
        ({}, {"compute": Compute(serverless=True, replicas=0), "traffic": 20}, "one production"),
        ({}, {"endpoint": "churn-"}, "endpoint 'churn-' is not a SageMaker name"),
        ({}, {"variant": "v1-"}, "variant 'v1-'"),
    ],
)
def test_what_sagemaker_refuses_is_refused_before_any_request(
    fake: FakeSageMaker,
    tmp_path: Path,
    overrides: dict[str, Any],
    kwargs: dict[str, Any],
    match: str,
) -> None:
    from cloudserve.errors import InvalidRequest

    client = client_for(fake, **overrides)
    endpoint = kwargs.pop("endpoint", "churn")
    with pytest.raises(InvalidRequest, match=match):
        client.deploy(model(tmp_path), endpoint, **kwargs)
    assert fake.requests() == []


def test_a_model_error_with_a_5xx_status_is_a_model_fault(fake: FakeSageMaker) -> None:
    from botocore.exceptions import ClientError

    from cloudserve.errors import InvalidRequest, OperationFailed

    provider = SageMakerProvider(fast_config(fake))

    def model_error(status: int) -> ClientError:
        response = {
            "Error": {"Code": "ModelError", "Message": "Received server error"},
            "OriginalStatusCode": status,
            "OriginalMessage": "model crashed" if status >= 500 else "bad row",
            "ResponseMetadata": {"HTTPStatusCode": 424},
        }
        return ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]

    fault = provider.translate(model_error(500))
    assert isinstance(fault, OperationFailed) and "model crashed" in str(fault)
    assert isinstance(provider.translate(model_error(400)), InvalidRequest)
