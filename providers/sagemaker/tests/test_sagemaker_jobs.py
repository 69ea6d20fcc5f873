"""Jobs and logs on SageMaker: ``list_jobs`` / ``cancel_job`` over transform and tuning jobs,
``endpoint_logs`` from CloudWatch Logs — real boto3 against the fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sagemaker_harness import BUCKET, ROLE

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.cli import main
from cloudserve.client import Client
from cloudserve.errors import NotFound
from cloudserve.resources import BatchJob, JobStatus, TuningJob
from cloudserve.specs import ModelSpec
from cloudserve.testing import ProviderHarness, make_sklearn_model, sample_rows, write_csv
from cloudserve_sagemaker.testing import FakeSageMaker


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSageMaker]:
    """Jobs stay InProgress for three describes, long enough to be stopped."""
    from sagemaker_harness import start_fake

    f = start_fake(tmp_path, job_polls=3)
    yield f
    f.stop()
    assert f.rejected() == [], "every request the provider sends passes the service model"


@pytest.fixture
def sm(fake: FakeSageMaker) -> Any:
    return fake.client("sagemaker")


def settle(sm: Any, job_id: str) -> str:
    """Describe the transform job until it ends (each describe is a poll of the fake)."""
    for _ in range(10):
        status = sm.describe_transform_job(TransformJobName=job_id)["TransformJobStatus"]
        if status != "InProgress":
            return str(status)
    raise AssertionError(f"{job_id} is still InProgress")


def model(tmp_path: Path) -> ModelSpec:
    directory = make_sklearn_model(tmp_path / "model")
    return ModelSpec(name="churn", version="1", artifact=str(directory), framework="sklearn")


def start_batch(client: Client, tmp_path: Path) -> BatchJob:
    source = write_csv(tmp_path / "in" / "rows.csv", sample_rows(5))
    return client.batch_predict(model(tmp_path), source, tmp_path / "out")


def start_tuning(client: Client, tmp_path: Path) -> TuningJob:
    spec = ProviderHarness().tuning_spec(tmp_path).model_copy(update={"max_trials": 1})
    return client.tune(spec)


def foreign_jobs(sm: Any) -> None:
    """A transform job named like cloudserve's and a tuning job, neither tagged by it."""
    sm.create_model(
        ModelName="someone-elses",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/theirs:1",
            "ModelDataUrl": f"s3://{BUCKET}/theirs/model.tar.gz",
        },
    )
    sm.create_transform_job(
        TransformJobName="cs-batch-not-ours",
        ModelName="someone-elses",
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/theirs/in"}
            }
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/theirs/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="their-tuning",
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "auc"},
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {
                "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/theirs:1",
                "TrainingInputMode": "File",
            },
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/theirs/tuning"},
            "ResourceConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    )


def test_list_shows_cloudserves_jobs_newest_first_and_no_foreign_ones(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    batch = start_batch(client, tmp_path)
    foreign_jobs(sm)
    tuning = start_tuning(client, tmp_path)
    listed = client.list_jobs()
    assert [j.id for j in listed] == [tuning.id, batch.id]
    assert isinstance(listed[0], TuningJob) and isinstance(listed[1], BatchJob)
    # described as get_tuning_job / get_batch_job describe them
    tuned, batched = listed
    assert tuned.status is JobStatus.RUNNING and tuned.objective == "val_score"
    assert batched.status is JobStatus.RUNNING and batched.input == batch.input
    # read with the SDK's paginators, tags read to tell cloudserve's jobs apart
    assert fake.requests("ListTransformJobs") and fake.requests("ListHyperParameterTuningJobs")
    # once the job succeeded, listing still downloads no outputs; get_batch_job does
    assert settle(sm, batch.id) == "Completed"
    batched = client.list_jobs()[1]
    assert batched.status is JobStatus.SUCCEEDED and batched.rows_total is None
    assert not (tmp_path / "out").exists()
    assert client.get_job(batch.id).rows_total == 5 and (tmp_path / "out").exists()


def test_cancel_stops_a_running_transform_job_and_keeps_no_output(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    job = start_batch(client, tmp_path)
    assert job.status is JobStatus.RUNNING
    output = sm.describe_transform_job(TransformJobName=job.id)["TransformOutput"]["S3OutputPath"]
    cancelled = client.cancel_job(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert [r.operation for r in fake.requests("StopTransformJob")] == ["StopTransformJob"]
    assert sm.describe_transform_job(TransformJobName=job.id)["TransformJobStatus"] == "Stopped"
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    s3 = fake.client("s3")
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0
    assert not (tmp_path / "out").exists()


def test_cancel_stops_a_running_tuning_job(
    client: Client, sm: Any, fake: FakeSageMaker, tmp_path: Path
) -> None:
    job = start_tuning(client, tmp_path)
    assert job.status is JobStatus.RUNNING
    client.provider.cancel_job(job.id)
    native = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=job.id)
    assert native["HyperParameterTuningJobStatus"] == "Stopped"
    assert client.provider.get_tuning_job(job.id).status is JobStatus.CANCELLED
    assert len(fake.requests("StopHyperParameterTuningJob")) == 1


def test_an_ended_job_is_left_as_it_is(client: Client, fake: FakeSageMaker, tmp_path: Path) -> None:
    job = start_batch(client, tmp_path).wait(timeout=60)
    assert job.status is JobStatus.SUCCEEDED
    assert client.cancel_job(job.id).status is JobStatus.SUCCEEDED
    assert fake.requests("StopTransformJob") == []


def test_unknown_job_is_not_found(client: Client, fake: FakeSageMaker) -> None:
    with pytest.raises(NotFound, match="cs-batch-nothing"):
        client.cancel_job("cs-batch-nothing")
    assert fake.requests("StopTransformJob") == []


def test_the_fake_refuses_to_stop_what_has_ended_or_does_not_exist(
    sm: Any, client: Client, tmp_path: Path
) -> None:
    from botocore.exceptions import ClientError

    job = start_batch(client, tmp_path).wait(timeout=60)
    with pytest.raises(ClientError, match="Completed"):
        sm.stop_transform_job(TransformJobName=job.id)
    with pytest.raises(ClientError) as missing:
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="nothing-here")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFound"


def test_logs_are_the_last_lines_of_every_variant_oldest_first(
    client: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path), "churn")
    assert client.logs("churn", tail=5)[0].startswith("v1/i-")  # the container's start-up line
    for _ in range(3):
        client.predict("churn", sample_rows(2))
    with pytest.raises(Exception, match="model rejected"):
        client.predict("churn", [[1.0]])
    lines = client.logs("churn", tail=3)
    access = '"POST /invocations HTTP/1.1"'
    assert [line.split(": ", 1)[1][: len(access) + 4] for line in lines] == [
        f"{access} 200",
        f"{access} 200",
        f"{access} 400",
    ]
    assert all(line.startswith("v1/i-") for line in lines)
    every = client.logs("churn", tail=100)
    assert len(every) == 5 and "loaded from /opt/ml/model" in every[0]
    logs = fake.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/")
    assert [g["logGroupName"] for g in groups["logGroups"]] == ["/aws/sagemaker/Endpoints/churn"]


def test_logs_of_a_missing_endpoint_are_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        client.logs("nowhere", tail=10)


def write_config(fake: FakeSageMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cloudserve.yaml`` with a target ``aws`` on the fake, in the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    target = {
        "provider": "sagemaker",
        "region": fake.region,
        "role_arn": ROLE,
        "bucket": BUCKET,
        "endpoint_url": fake.url,
    }
    (tmp_path / "cloudserve.yaml").write_text(yaml.safe_dump({"targets": {"aws": target}}))


def test_cli_lists_and_cancels_jobs_as_json(
    fake: FakeSageMaker, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    job = start_batch(client, tmp_path)
    write_config(fake, tmp_path, monkeypatch)
    assert main(["jobs", "list", "--target", "aws", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["status"]) for j in listed] == [(job.id, "RUNNING")]
    assert main(["jobs", "cancel", job.id, "--target", "aws", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "CANCELLED"


def test_cli_logs_as_json(
    fake: FakeSageMaker, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    client.deploy(model(tmp_path), "churn")
    client.predict("churn", sample_rows(1))
    write_config(fake, tmp_path, monkeypatch)
    assert main(["logs", "churn", "--tail", "1", "--target", "aws", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["endpoint"] == "churn"
    [line] = out["lines"]
    assert line.startswith("v1/i-") and line.endswith('"POST /invocations HTTP/1.1" 200')
