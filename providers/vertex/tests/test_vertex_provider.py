"""The Vertex provider through the real GAPIC clients, checked against the fake's state."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from vertex_harness import churn_model as model

from cloudserve.client import Client
from cloudserve.errors import (
    InvalidRequest,
    NotFound,
    OperationFailed,
    Throttled,
)
from cloudserve.resources import EndpointStatus, JobStatus
from cloudserve.specs import (
    Choice,
    Compute,
    DataCapture,
    IntRange,
    LogUniform,
    Objective,
    TrainSpec,
    TuningSpec,
)
from cloudserve.testing import TRAIN_SCRIPT, sample_rows, write_csv
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex


def deployed(fake: FakeVertex, endpoint: str = "ep") -> list[dict]:
    ep = fake.endpoint(endpoint)
    assert ep is not None
    return ep["deployedModels"]


def test_deploy_state(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    ep = client.deploy(model(tmp_path), "ep", Compute(size="cpu.medium", replicas=2))
    assert ep.status is EndpointStatus.READY
    [dm] = deployed(fake)
    res = dm["dedicatedResources"]
    assert res["machineSpec"]["machineType"] == "n1-standard-4"
    assert (res["minReplicaCount"], res["maxReplicaCount"]) == (2, 2)
    assert dm["displayName"] == "v1"
    assert fake.traffic("ep") == {"v1": 100}
    [version] = fake.model_versions("churn")
    assert version["labels"]["managed-by"] == "cloudserve"
    # a model pickled by today's scikit-learn (newer than any prebuilt container's) takes the
    # container route: the runtime image, told its port and routes; Vertex sets AIP_STORAGE_URI
    assert version["labels"]["cloudserve-route"] == "container"
    spec = version["containerSpec"]
    assert spec["imageUri"] == client.provider.config.serving_image
    assert spec["ports"] == [{"containerPort": 8080}]
    assert (spec["predictRoute"], spec["healthRoute"]) == ("/predict", "/health")
    assert version["artifactUri"] == f"{fake.staging_bucket}/cloudserve/models/churn/1"
    staged = fake.objects(fake.staging_bucket, "cloudserve/models/churn/1/")
    assert "cloudserve/models/churn/1/model.joblib" in staged
    assert any(path.startswith("/ui/") for _, path in _paths(fake)), "LROs are polled at /ui/"


def _paths(fake: FakeVertex) -> list[tuple[str, str]]:
    from urllib.parse import urlsplit

    return [(m, urlsplit(u).path) for m, u in fake.requests_made()]


def test_autoscaling_and_accelerator(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    compute = Compute(
        size="gpu.t4", replicas=1, min_replicas=1, max_replicas=3, autoscale_target=60
    )
    client.deploy(model(tmp_path), "ep", compute)
    from google.cloud.aiplatform_v1 import AcceleratorType

    res = deployed(fake)[0]["dedicatedResources"]
    assert res["machineSpec"] == {
        "machineType": "n1-standard-4",
        "acceleratorType": AcceleratorType.NVIDIA_TESLA_T4.value,
        "acceleratorCount": 1,
    }
    assert (res["minReplicaCount"], res["maxReplicaCount"]) == (1, 3)
    assert res["autoscalingMetricSpecs"][0]["target"] == 60


def test_canary_traffic_and_versions(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path, "1"), "ep")
    ep = client.deploy(model(tmp_path, "2"), "ep", traffic=10)
    assert ep.traffic == {"v1": 90, "v2": 10}
    assert fake.traffic("ep") == {"v1": 90, "v2": 10}
    versions = fake.model_versions("churn")
    assert [v["versionId"] for v in versions] == ["1", "2"], "v2 is a new version of one model"
    assert [v["versionDescription"] for v in versions] == ["1", "2"]
    client.set_traffic("ep", {"v1": 30, "v2": 70})
    assert fake.traffic("ep") == {"v1": 30, "v2": 70}
    assert sum(fake.traffic("ep").values()) == 100
    with pytest.raises(InvalidRequest, match="traffic split"):
        client.predict("ep", sample_rows(2), variant="v2")
    client.set_traffic("ep", {"v1": 0, "v2": 100})
    pred = client.predict("ep", sample_rows(3), variant="v2")
    assert pred.model_version == "2" and pred.variant == "v2" and len(pred.outputs) == 3


def test_blue_green_then_delete_leaves_nothing(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path, "1"), "ep")
    ep = client.deploy(model(tmp_path, "2"), "ep")
    assert ep.traffic == {"v2": 100}
    assert [d["displayName"] for d in deployed(fake)] == ["v2"], "v1 undeployed after the move"
    client.delete_endpoint("ep")
    assert fake.leftovers() == []


def test_failed_deploy_rolls_back(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    fake.inject("fail_deploy", message="replicas never became healthy")
    with pytest.raises(OperationFailed, match="never became healthy"):
        client.deploy(model(tmp_path), "ep")
    assert fake.leftovers() == []
    assert fake.endpoint("ep") is None


def test_failed_deploy_kept_for_debugging(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    fake.inject("fail_deploy", message="boom")
    with pytest.raises(OperationFailed):
        client.deploy(model(tmp_path), "ep", keep_on_failure=True)
    assert fake.endpoint("ep") is not None and fake.model_versions("churn")
    client.delete_endpoint("ep")
    assert fake.leftovers() == []


def test_large_input_is_split_and_reassembled(fake: FakeVertex, tmp_path: Path) -> None:
    provider = VertexProvider(fake.config(max_request_mb=0.002, predict_concurrency=3))
    client = Client(provider)
    client.deploy(model(tmp_path), "ep")
    rows = sample_rows(120, seed=5)
    before = sum(1 for _, p in _paths(fake) if p.endswith(":predict"))
    pred = client.predict("ep", rows)
    sent = sum(1 for _, p in _paths(fake) if p.endswith(":predict")) - before
    assert sent > 1
    assert len(pred.outputs) == 120
    one_by_one = [client.predict("ep", [r]).outputs[0] for r in rows[:10]]
    assert pred.outputs[:10] == one_by_one, "chunks come back in input order"
    provider.close()


def test_raw_predict_csv(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "ep")
    rows = sample_rows(3)
    body = "\n".join(",".join(str(v) for v in r) for r in rows).encode()
    answer = orjson.loads(client.provider.raw_predict("ep", body, "text/csv"))
    assert answer["predictions"] == client.predict("ep", rows).outputs


def test_batch_job_config_and_output(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    rows = sample_rows(30, seed=2)
    src = write_csv(tmp_path / "in.csv", rows)
    job = client.batch_predict(
        model(tmp_path),
        src,
        tmp_path / "out",
        compute=Compute(size="cpu.large", replicas=2),
        batch_size=8,
    )
    assert job.status in (JobStatus.PENDING, JobStatus.RUNNING)
    [stored] = fake.batch_jobs()
    assert stored["inputConfig"]["instancesFormat"] == "csv"
    assert stored["inputConfig"]["gcsSource"]["uris"][0].startswith(fake.staging_bucket + "/")
    assert stored["outputConfig"]["predictionsFormat"] == "jsonl"
    assert stored["dedicatedResources"]["machineSpec"]["machineType"] == "n1-standard-8"
    assert stored["dedicatedResources"]["startingReplicaCount"] == 2
    assert stored["manualBatchTuningParameters"]["batchSize"] == 8
    done = job.wait(timeout=60)
    assert done.status is JobStatus.SUCCEEDED and done.rows_total == 30
    lines = (tmp_path / "out" / "prediction.results-00000-of-00001").read_text().splitlines()
    assert [orjson.loads(x)["instance"] for x in lines] == rows
    assert (tmp_path / "out" / "prediction.errors_stats-00000-of-00001").exists()


def test_failed_batch_job(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", sample_rows(3))
    fake.inject("fail_job", message="quota for n1-standard-2 exhausted")
    job = client.batch_predict(model(tmp_path), src, tmp_path / "out")
    with pytest.raises(OperationFailed, match="quota"):
        job.wait(timeout=60)


def test_tuning_study_spec_and_trials(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    spec = TuningSpec(
        train=TrainSpec(entrypoint=str(script)),
        search_space={
            "lr": LogUniform(low=1e-4, high=1e-1),
            "depth": IntRange(low=2, high=10),
            "kind": Choice(values=["a", "b"]),
        },
        objective=Objective(metric="val_score"),
        max_trials=4,
        parallel_trials=2,
        strategy="random",
    )
    job = client.tune(spec)
    [stored] = fake.tuning_jobs()
    study = stored["studySpec"]
    params = {p["parameterId"]: p for p in study["parameters"]}
    assert params["lr"]["doubleValueSpec"] == {"minValue": 1e-4, "maxValue": 0.1}
    assert params["lr"]["scaleType"] == 2  # UNIT_LOG_SCALE
    assert params["depth"]["integerValueSpec"] == {"minValue": "2", "maxValue": "10"}
    assert params["kind"]["categoricalValueSpec"] == {"values": ["a", "b"]}
    assert study["metrics"] == [{"metricId": "val_score", "goal": 1}]
    assert study["algorithm"] == 3  # RANDOM_SEARCH
    assert (stored["maxTrialCount"], stored["parallelTrialCount"]) == (4, 2)
    pool = stored["trialJobSpec"]["workerPoolSpecs"][0]
    assert pool["pythonPackageSpec"]["pythonModule"] == "cloudserve_trainer"
    done = job.wait(timeout=120)
    assert done.status is JobStatus.SUCCEEDED and len(done.trials) == 4
    assert done.best_trial is not None
    assert done.best_trial.value == max(t.value for t in done.trials if t.value is not None)
    assert all(set(t.params) == {"lr", "depth", "kind"} for t in done.trials)


def test_metrics_by_variant_and_errors(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "ep")
    for _ in range(3):
        client.predict("ep", sample_rows(2))
    with pytest.raises(InvalidRequest):
        client.predict("ep", [[1.0, 2.0]])
    report = client.metrics("ep", "1h")
    assert report.invocations == 4
    assert report.errors == {"4xx": 1}
    assert report.per_variant["v1"].invocations == 4
    assert report.p50_ms is not None and report.p50_ms <= report.p99_ms


def test_capture_reads_request_log(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "ep", data_capture=DataCapture(sampling_rate=1.0))
    cfg = fake.endpoint("ep")["predictRequestResponseLoggingConfig"]
    assert cfg["enabled"] and cfg["bigqueryDestination"]["outputUri"].startswith("bq://")
    rows = sample_rows(6, seed=9)
    client.predict("ep", rows)
    assert client.provider.captured_inputs("ep", 3600) == rows


def test_registry_versions(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    first = client.register_model(model(tmp_path, "1"))
    again = client.register_model(model(tmp_path, "1"))
    client.register_model(model(tmp_path, "2"))
    assert (first.version, again.version) == ("1", "1")
    assert [v["versionId"] for v in fake.model_versions("churn")] == ["1", "2"]
    assert sorted(m.version for m in client.list_models("churn")) == ["1", "2"]


def test_faults_map_onto_the_error_tree(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path), "ep")
    fake.inject("throttle", times=100, retry_after="0.01")
    with pytest.raises(Throttled) as info:
        client.get_endpoint("ep")
    assert info.value.retry_after == 0.01
    assert type(info.value.__cause__).__name__ == "TooManyRequests"
    fake.inject("throttle", times=0)
    fake.inject("slow", times=2, delay_s=0.05)
    fake.inject("unavailable", times=2)
    assert len(client.predict("ep", sample_rows(2)).outputs) == 2
    with pytest.raises(NotFound):
        client.get_endpoint("nope")


def test_through_responses_on_google_hosts(tmp_path: Path) -> None:
    with FakeVertex(workdir=tmp_path / "fake").intercept() as fake:
        provider = VertexProvider(fake.config())
        assert provider.config.api_endpoint is None, "the real googleapis.com hosts are used"
        client = Client(provider)
        client.deploy(model(tmp_path), "ep")
        assert len(client.predict("ep", sample_rows(4)).outputs) == 4
        client.delete_endpoint("ep")
        assert fake.leftovers() == []
        provider.close()


def test_batch_reads_jsonl_from_gcs(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    rows = sample_rows(5)
    fake.put_object("gs://data/in.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))
    job = client.batch_predict(model(tmp_path), "gs://data/in.jsonl", "gs://data/out/")
    done = job.wait(timeout=60)
    assert done.status is JobStatus.SUCCEEDED
    out = [o for o in fake.objects("data", "out/") if "/prediction.results-" in o]
    assert [o.rsplit("/", 1)[-1] for o in out] == ["prediction.results-00000-of-00001"]


def test_batch_results_in_several_shards(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    from vertex_harness import VertexHarness

    fake.service.batch_shard_rows = 7
    rows = sample_rows(30, seed=3)
    job = client.batch_predict(
        model(tmp_path), write_csv(tmp_path / "in.csv", rows), tmp_path / "o"
    )
    assert job.wait(timeout=60).status is JobStatus.SUCCEEDED
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names[-5:] == [f"prediction.results-{i:05d}-of-00005" for i in range(5)]
    assert names[0] == "prediction.errors_stats-00000-of-00001"
    client.deploy(model(tmp_path), "ep")
    expected = client.predict("ep", rows).outputs
    assert VertexHarness().read_batch_output(str(tmp_path / "o")) == expected, "shards in order"
