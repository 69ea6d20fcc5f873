"""The SageMaker provider against the fake: what SageMaker holds after each operation.

Every assertion on cloud state is a describe_* / list_* call through boto3 to the fake, so the
tests check the requests the provider really made, not its own bookkeeping.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sagemaker_harness import BUCKET, SERVING_IMAGE, fast_config

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.client import Client
from cloudserve.errors import (
    InvalidRequest,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
)
from cloudserve.provider import RetrySettings
from cloudserve.resources import EndpointStatus, JobStatus
from cloudserve.specs import BatchSpec, Compute, DataCapture, ModelSpec
from cloudserve.testing import ProviderHarness, make_sklearn_model, sample_rows, write_csv
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
from cloudserve_sagemaker.testing import FakeSageMaker


@pytest.fixture
def sm(fake: FakeSageMaker) -> Any:
    return fake.client("sagemaker")


def model(tmp_path: Path, version: str = "1") -> ModelSpec:
    directory = make_sklearn_model(tmp_path / f"model-v{version}", version=version)
    return ModelSpec(name="churn", version=version, artifact=str(directory), framework="sklearn")


def local_predictions(spec: ModelSpec, rows: list[list[float]]) -> list[Any]:
    from cloudserve.serving import load_model

    assert spec.artifact is not None
    return load_model(spec.artifact).predict(rows)


def config_of(sm: Any, endpoint: str) -> dict[str, Any]:
    name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return sm.describe_endpoint_config(EndpointConfigName=name)


# -- packaging and import hygiene ----------------------------------------------------------------


def test_import_loads_no_aws_sdk() -> None:
    code = (
        "import sys, cloudserve_sagemaker; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'moto')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_point_finds_the_provider() -> None:
    from cloudserve.registry import get_provider_class

    assert get_provider_class("sagemaker") is SageMakerProvider


def test_config_is_strict() -> None:
    with pytest.raises(ValueError):
        SageMakerConfig(role_arn="not-an-arn", bucket="b-1")
    with pytest.raises(ValueError):
        SageMakerConfig(role_arn="arn:aws:iam::123456789012:role/x", bucket="b-1", nope=1)  # type: ignore[call-arg]
    cfg = SageMakerConfig(role_arn="arn:aws:iam::123456789012:role/x", bucket="b-1", prefix="/a/b/")
    assert cfg.s3_uri("models", "m") == "s3://b-1/a/b/models/m"


# -- endpoints --------------------------------------------------------------------------------


def test_deploy_state_instance_type_capture_and_artifact(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    spec = model(tmp_path)
    seen: list[str] = []
    ep = client.deploy(
        spec,
        "churn",
        Compute(size="cpu.medium", replicas=2),
        data_capture=DataCapture(sampling_rate=0.5),
        progress=lambda p: seen.append(p.status),
    )
    assert ep.status is EndpointStatus.READY
    assert "Creating" in seen and seen[-1] == "InService"
    cfg = config_of(sm, "churn")
    (row,) = cfg["ProductionVariants"]
    assert (row["VariantName"], row["InstanceType"], row["InitialInstanceCount"]) == (
        "v1",
        "ml.m5.xlarge",
        2,
    )
    assert row["InitialVariantWeight"] == 100
    capture = cfg["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 50
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/cloudserve/capture"
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    container = sm.describe_model(ModelName=row["ModelName"])["PrimaryContainer"]
    # this environment's scikit-learn is newer than every prebuilt image: the container route
    assert container["Image"] == SERVING_IMAGE
    assert container["Environment"]["CLOUDSERVE_MODEL_VERSION"] == "1"
    assert "SAGEMAKER_PROGRAM" not in container["Environment"]
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    tar = fake.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:gz") as t:
        names = set(t.getnames())
    assert {"model.joblib", "cloudserve.json"} <= names and not any(
        n.startswith("code/") for n in names
    )
    assert ep.variants[0].instance_type == "ml.m5.xlarge" and ep.variants[0].replicas == 2


def test_blue_green_update_removes_old_config_and_model(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path, "1"), "churn")
    old = config_of(sm, "churn")
    ep = client.deploy(model(tmp_path, "2"), "churn")
    assert ep.traffic == {"v2": 100}
    assert len(fake.requests("UpdateEndpoint")) == 1
    names = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert old["EndpointConfigName"] not in names and len(names) == 1
    models = [m["ModelName"] for m in sm.list_models()["Models"]]
    assert models == [config_of(sm, "churn")["ProductionVariants"][0]["ModelName"]]
    rows = sample_rows(3)
    pred = client.predict("churn", rows)
    assert pred.model_version == "2" and pred.outputs == local_predictions(
        model(tmp_path, "2"), rows
    )


def test_failed_update_rolls_back_and_cleans_up(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path, "1"), "churn")
    before = fake.leftovers()
    fake.inject("fail_endpoint", message="image pull failed: cs-7")
    with pytest.raises(OperationFailed, match="cs-7"):
        client.deploy(model(tmp_path, "2"), "churn")
    assert fake.leftovers() == before, "the new config and model are removed"
    ep = client.get_endpoint("churn")
    assert ep.status is EndpointStatus.READY and ep.traffic == {"v1": 100}
    assert client.predict("churn", sample_rows(1)).model_version == "1"


def test_failed_create_keeps_resources_when_asked(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    fake.inject("fail_endpoint", message="cs-keep")
    with pytest.raises(OperationFailed):
        client.deploy(model(tmp_path), "churn", keep_on_failure=True)
    kinds = {item.split("/")[0] for item in fake.leftovers()}
    assert kinds == {"model", "endpoint-config", "endpoint"}
    assert client.get_endpoint("churn").status is EndpointStatus.FAILED
    client.delete_endpoint("churn")
    assert fake.leftovers() == []


def test_canary_weights_and_set_traffic_in_the_fake(
    client: Client, sm: Any, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path, "1"), "churn")
    client.deploy(model(tmp_path, "2"), "churn", traffic=25)
    weights = {
        r["VariantName"]: r["InitialVariantWeight"]
        for r in config_of(sm, "churn")["ProductionVariants"]
    }
    assert weights == {"v1": 75, "v2": 25}
    client.set_traffic("churn", {"v1": 40, "v2": 60})
    live = {
        v["VariantName"]: v["CurrentWeight"]
        for v in sm.describe_endpoint(EndpointName="churn")["ProductionVariants"]
    }
    assert live == {"v1": 40, "v2": 60}
    pred = client.predict("churn", sample_rows(2), variant="v2")
    assert (pred.variant, pred.model_version) == ("v2", "2")
    with pytest.raises(NotFound):
        client.set_traffic("churn", {"v1": 50, "v9": 50})


def test_autoscaling_target_tracking(client: Client, fake: FakeSageMaker, tmp_path: Path) -> None:
    aas = fake.client("application-autoscaling")
    ep = client.deploy(
        model(tmp_path),
        "churn",
        Compute(replicas=1, min_replicas=1, max_replicas=4, autoscale_target=50),
    )
    assert (ep.variants[0].min_replicas, ep.variants[0].max_replicas) == (1, 4)
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/churn/variant/v1"
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling" and tracking["TargetValue"] == 50
    metric = tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
    assert metric == "SageMakerVariantInvocationsPerInstance"
    client.delete_endpoint("churn")
    assert fake.leftovers() == []


def test_serverless_variant(client: Client, sm: Any, tmp_path: Path) -> None:
    client.deploy(
        model(tmp_path),
        "churn",
        Compute(serverless=True, replicas=0, serverless_memory_mb=3072, max_concurrency=7),
    )
    (row,) = config_of(sm, "churn")["ProductionVariants"]
    assert row["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 7}
    assert "InstanceType" not in row
    assert len(client.predict("churn", sample_rows(2)).outputs) == 2


@pytest.mark.parametrize(
    "compute, capture",
    [
        (Compute(serverless=True, replicas=0, serverless_memory_mb=1500), None),
        (Compute(serverless=True, replicas=0), DataCapture()),
        (Compute(accelerator="T4", accelerator_count=1), None),
        (Compute(size="gpu.nope"), None),
    ],
)
def test_specs_sagemaker_cannot_honour_send_nothing(
    client: Client,
    fake: FakeSageMaker,
    tmp_path: Path,
    compute: Compute,
    capture: DataCapture | None,
) -> None:
    spec = model(tmp_path)
    with pytest.raises(InvalidRequest):
        client.deploy(spec, "churn", compute, data_capture=capture)
    assert fake.requests() == []


def test_onnx_without_a_serving_image_is_refused_before_any_request(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    client = Client(SageMakerProvider(fast_config(fake, serving_image=None), target="aws"))
    spec = model(tmp_path).model_copy(update={"framework": "onnx"})
    with pytest.raises(InvalidRequest, match=r"cloudserve build-image .* --push"):
        client.deploy(spec, "churn")
    assert fake.requests() == []


# -- retries and errors ---------------------------------------------------------------------------


def test_retries_are_cloudserves_alone(client: Client, fake: FakeSageMaker, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "churn")
    start = len(fake.requests("DescribeEndpoint"))
    fake.inject("throttle", times=2)
    client.get_endpoint("churn")
    assert len(fake.requests("DescribeEndpoint")) - start == 3, "botocore must not retry on its own"
    start = len(fake.requests("DescribeEndpoint"))
    fake.inject("throttle", times=1000)
    with pytest.raises(Throttled) as info:
        client.get_endpoint("churn")
    assert info.value.code == "ThrottlingException"
    attempts = client.provider.config.retry.max_attempts
    assert len(fake.requests("DescribeEndpoint")) - start == attempts
    fake.inject("throttle", times=0)


def test_creates_are_not_retried(fake: FakeSageMaker, tmp_path: Path) -> None:
    provider = SageMakerProvider(
        fast_config(
            fake, retry=RetrySettings(max_attempts=5, initial_backoff_s=0.001, max_backoff_s=0.01)
        )
    )
    fake.inject("fail_create_endpoint", message="cs-limit")
    with pytest.raises(InvalidRequest, match="cs-limit"):
        Client(provider).deploy(model(tmp_path), "churn")
    assert len(fake.requests("CreateEndpoint")) == 1
    assert fake.leftovers() == []


def test_model_error_is_invalid_request(client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "churn")
    with pytest.raises(InvalidRequest) as info:
        client.predict("churn", [[1.0, 2.0]])
    assert info.value.code == "ModelError" and info.value.__cause__ is not None


# -- prediction -------------------------------------------------------------------------------


def test_large_input_split_into_concurrent_chunks_in_order(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    # A 0.25 MB payload limit makes the split happen with a small, fast input; the same code
    # path splits at the real 6 MB limit by default.
    client = Client(
        SageMakerProvider(fast_config(fake, max_payload_mb=0.25, predict_concurrency=4))
    )
    spec = model(tmp_path)
    client.deploy(spec, "churn")
    rows = sample_rows(20_000, seed=5)
    pred = client.predict("churn", rows)
    calls = fake.requests("InvokeEndpoint")
    assert len(calls) >= 3 and all(c.size <= 0.25 * 1024 * 1024 for c in calls)
    assert pred.raw["chunks"] == len(calls)
    assert pred.outputs == local_predictions(spec, rows)


def test_fake_refuses_payloads_over_six_megabytes(
    fake: FakeSageMaker, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path), "churn")
    runtime = fake.client("sagemaker-runtime")
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(
            EndpointName="churn", Body=b" " * (6 * 1024 * 1024 + 1), ContentType="application/json"
        )
    assert info.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(PayloadTooLarge):
        raise client.provider.translate(info.value)


# -- batch ------------------------------------------------------------------------------------


def test_batch_transform_settings_and_outputs(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    spec = model(tmp_path)
    rows = sample_rows(40, seed=9)
    source = write_csv(tmp_path / "in" / "rows.csv", rows)
    out = tmp_path / "out"
    job = client.batch_predict(spec, source, out, max_concurrency=4, max_payload_mb=5)
    d = sm.describe_transform_job(TransformJobName=job.id)
    assert d["BatchStrategy"] == "MultiRecord"
    assert (d["MaxPayloadInMB"], d["MaxConcurrentTransforms"]) == (5, 4)
    # the CSV has a header, so its rows go as named JSON Lines records
    assert d["TransformInput"]["SplitType"] == "Line"
    assert d["TransformInput"]["ContentType"] == "application/jsonlines"
    assert d["TransformOutput"]["AssembleWith"] == "Line"
    assert d["TransformResources"]["InstanceType"] == "ml.m5.large"
    done = job.wait(timeout=60)
    assert done.status is JobStatus.SUCCEEDED and done.rows_total == 40
    assert ProviderHarness().read_batch_output(str(out)) == local_predictions(spec, rows)
    assert sm.list_models()["Models"] == [], "the job's model is removed once it ends"


def test_batch_limits_rejected_before_any_request(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "rows.csv", sample_rows(3))
    with pytest.raises(InvalidRequest, match="100 MB"):
        client.batch_predict(
            model(tmp_path), source, tmp_path / "o", max_concurrency=10, max_payload_mb=20
        )
    with pytest.raises(InvalidRequest, match="line"):
        client.batch_predict(
            BatchSpec(model=model(tmp_path), input=str(source), output="o", format="parquet")
        )
    assert fake.requests() == []


def test_failed_batch_job(client: Client, fake: FakeSageMaker, tmp_path: Path) -> None:
    fake.inject("fail_job", message="cs-bad-records")
    source = write_csv(tmp_path / "rows.csv", sample_rows(3))
    job = client.batch_predict(model(tmp_path), source, tmp_path / "o")
    with pytest.raises(OperationFailed, match="cs-bad-records"):
        job.wait(timeout=30)


# -- tuning -----------------------------------------------------------------------------------


def test_tuning_job_ranges_strategy_and_best_trial(client: Client, sm: Any, tmp_path: Path) -> None:
    spec = (
        ProviderHarness()
        .tuning_spec(tmp_path)
        .model_copy(update={"early_stopping": True, "max_trials": 4, "parallel_trials": 2})
    )
    job = client.tune(spec)
    d = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job.id)
    cfg = d["HyperParameterTuningJobConfig"]
    assert cfg["Strategy"] == "Random" and cfg["RandomSeed"] == 1
    assert cfg["TrainingJobEarlyStoppingType"] == "Auto"
    assert cfg["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    assert cfg["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "val_score",
    }
    ranges = cfg["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "depth", "MinValue": "2", "MaxValue": "10", "ScalingType": "Linear"}
    ]
    assert ranges["CategoricalParameterRanges"] == [{"Name": "kind", "Values": ["a", "b"]}]
    algo = d["TrainingJobDefinition"]["AlgorithmSpecification"]
    assert algo["MetricDefinitions"] == [{"Name": "val_score", "Regex": spec.objective.pattern}]
    static = d["TrainingJobDefinition"]["StaticHyperParameters"]
    assert json.loads(static["sagemaker_program"]) == "train.py"
    done = job.wait(timeout=120)
    assert len(done.trials) == 4 and all(isinstance(t.params["depth"], int) for t in done.trials)
    assert done.best_trial is not None
    assert done.best_trial.value == max(t.value for t in done.trials if t.value is not None)


def test_grid_search_uses_categorical_ranges(client: Client, sm: Any, tmp_path: Path) -> None:
    from cloudserve.specs import Choice, IntRange

    base = ProviderHarness().tuning_spec(tmp_path)
    spec = base.model_copy(
        update={
            "strategy": "grid",
            "search_space": {"depth": IntRange(low=2, high=4), "kind": Choice(values=["a", "b"])},
            "max_trials": 6,
        }
    )
    job = client.tune(spec)
    ranges = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job.id)[
        "HyperParameterTuningJobConfig"
    ]["ParameterRanges"]
    assert set(ranges) == {"CategoricalParameterRanges"}
    assert {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]} == {
        "depth": ["2", "3", "4"],
        "kind": ["a", "b"],
    }
    assert len(job.wait(timeout=120).trials) == 6


# -- monitoring and registry ---------------------------------------------------------------


def test_metrics_per_variant_with_errors(client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "churn")
    for _ in range(3):
        client.predict("churn", sample_rows(2))
    with pytest.raises(InvalidRequest):
        client.predict("churn", [[1.0]])
    report = client.metrics("churn", "15m")
    assert report.invocations == 4 and report.errors == {"4xx": 1, "5xx": 0}
    assert set(report.per_variant) == {"v1"}
    assert (
        report.p50_ms is not None
        and report.p99_ms is not None
        and 0 < report.p50_ms <= report.p99_ms
    )
    assert report.source == "cloudwatch:AWS/SageMaker"


def test_capture_files_and_rows(client: Client, fake: FakeSageMaker, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "churn", data_capture=DataCapture())
    rows = sample_rows(5, seed=2)
    client.predict("churn", rows)
    objects = fake.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix="cloudserve/capture/churn/v1/"
    )["Contents"]
    assert len(objects) == 1 and objects[0]["Key"].endswith(".jsonl")
    assert client.provider.captured_inputs("churn", 3600) == rows


def test_registry_packages(client: Client, sm: Any, tmp_path: Path) -> None:
    mv = client.register_model(model(tmp_path, "3"), lineage={"params": {"C": 1.0}})
    assert (mv.name, mv.version, mv.stage) == ("churn", "3", "PendingManualApproval")
    assert mv.lineage == {"params": {"C": 1.0}}
    again = client.register_model(model(tmp_path, "3"))
    assert again.version == "3"
    packages = sm.list_model_packages(ModelPackageGroupName="churn")["ModelPackageSummaryList"]
    assert len(packages) == 1
    d = sm.describe_model_package(ModelPackageName=packages[0]["ModelPackageArn"])
    assert d["CustomerMetadataProperties"]["cloudserve:version"] == "3"
    assert [m.version for m in client.list_models()] == ["3"]


def test_registry_metadata_fits_the_service_model(client: Client, tmp_path: Path) -> None:
    """Defect 7: lineage as JSON text broke the value pattern, an image-only model sent an
    empty framework value, and a value over 256 characters was cut to invalid JSON."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudserve-runtime:1"
    spec = model(tmp_path, "4").model_copy(update={"framework": None, "image": image})
    lineage = {
        "params": {"C": 1.0, "penalty": "l2"},
        "notes": "trained on the March extract, " * 30,
        "data": "s3://bucket/train.csv",
    }
    assert len(lineage["notes"]) > 256
    mv = client.register_model(spec, lineage=lineage)
    assert mv.lineage == lineage and mv.framework is None
    (listed,) = client.list_models("churn")
    assert listed.lineage == lineage


def test_registry_refuses_lineage_that_cannot_fit(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="50"):
        client.register_model(model(tmp_path), lineage={"big": "x" * 20_000})
    assert fake.requests("CreateModelPackage") == []


def test_canary_keeps_scaling_of_the_old_variant_and_failed_update_restores_it(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    aas = fake.client("application-autoscaling")

    def ranges() -> dict[str, tuple[int, int]]:
        targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        return {t["ResourceId"]: (t["MinCapacity"], t["MaxCapacity"]) for t in targets}

    client.deploy(
        model(tmp_path, "1"), "churn", Compute(replicas=1, min_replicas=1, max_replicas=3)
    )
    fake.inject("fail_endpoint", message="cs-rollback")
    with pytest.raises(OperationFailed):
        client.deploy(model(tmp_path, "2"), "churn", traffic=10)
    assert ranges() == {"endpoint/churn/variant/v1": (1, 3)}
    client.deploy(model(tmp_path, "2"), "churn", traffic=10)
    assert ranges() == {"endpoint/churn/variant/v1": (1, 3)}
    assert client.get_endpoint("churn").traffic == {"v1": 90, "v2": 10}


def test_redeploy_after_set_traffic_restores_the_spec_split(client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path, "1"), "churn")
    client.deploy(model(tmp_path, "2"), "churn", traffic=10)
    client.set_traffic("churn", {"v1": 50, "v2": 50})
    ep = client.deploy(model(tmp_path, "2"), "churn", traffic=10)
    assert ep.traffic == {"v1": 90, "v2": 10}


def test_deploy_without_waiting_returns_creating(client: Client, tmp_path: Path) -> None:
    ep = client.deploy(model(tmp_path), "churn", wait=False)
    assert ep.status is EndpointStatus.CREATING
    assert client.get_endpoint("churn").status is EndpointStatus.READY


def test_throttled_create_is_sent_again_but_a_5xx_create_is_not(
    client: Client, fake: FakeSageMaker, sm: Any
) -> None:
    provider = client.provider
    assert isinstance(provider, SageMakerProvider)
    fake.inject("throttle", times=2)
    provider.api.sm("create_model_package_group", retry=False, ModelPackageGroupName="g-one")
    assert len(fake.requests("CreateModelPackageGroup")) == 3
    fake.inject("unavailable", times=1)
    with pytest.raises(ServiceUnavailable):
        provider.api.sm("create_model_package_group", retry=False, ModelPackageGroupName="g-two")
    assert len(fake.requests("CreateModelPackageGroup")) == 4


def test_container_route_serves_the_artifact_without_generated_code(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudserve-runtime:1"
    spec = model(tmp_path).model_copy(update={"image": image})
    client.deploy(spec, "churn")
    (row,) = config_of(sm, "churn")["ProductionVariants"]
    container = sm.describe_model(ModelName=row["ModelName"])["PrimaryContainer"]
    assert container["Image"] == image and "SAGEMAKER_PROGRAM" not in container["Environment"]
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    tar = fake.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:gz") as t:
        assert not any(n.startswith("code/") for n in t.getnames())
    rows = sample_rows(4)
    assert client.predict("churn", rows).outputs == local_predictions(spec, rows)


def test_async_endpoint_failure_and_realtime_refusal(fake: FakeSageMaker, tmp_path: Path) -> None:
    from cloudserve_sagemaker import AsyncInferenceSettings

    client = Client(SageMakerProvider(fast_config(fake, async_inference=AsyncInferenceSettings())))
    client.deploy(model(tmp_path), "churn")
    cfg = config_of(fake.client("sagemaker"), "churn")["AsyncInferenceConfig"]
    assert cfg["OutputConfig"]["S3OutputPath"] == f"s3://{BUCKET}/cloudserve/async-output/churn"
    bad = client.predict_async("churn", [[1.0]])
    assert bad.refresh().status is JobStatus.FAILED
    with pytest.raises(OperationFailed):
        bad.wait(timeout=10)
    with pytest.raises(InvalidRequest):
        client.predict("churn", sample_rows(1))


def test_plan_lists_the_calls_and_sends_none(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    from cloudserve.specs import DeploySpec

    spec = DeploySpec(
        model=model(tmp_path), endpoint="churn", compute=Compute(replicas=1, max_replicas=3)
    )
    ops = [c.operation for c in client.provider.plan(spec)]
    assert ops == [
        "PutObject",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    ]
    assert fake.requests() == []
