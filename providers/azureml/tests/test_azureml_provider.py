"""Provider behaviour checked against the fake's state, through the real MLClient."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from azureml_harness import AzureMLHarness, fast_config

from cloudserve.client import Client
from cloudserve.errors import AuthError, InvalidRequest, NotFound, OperationFailed
from cloudserve.specs import Compute, DataCapture, ModelSpec
from cloudserve.testing import sample_rows
from cloudserve_azureml import AzureMLProvider


def model(harness: AzureMLHarness, tmp_path: Path, version: str = "1") -> ModelSpec:
    return harness.model_spec(tmp_path, version)


def test_deploy_sets_instance_type_counts_and_settings(harness, client, tmp_path):
    client.deploy(
        model(harness, tmp_path),
        "cs-state",
        Compute(size="cpu.medium", replicas=2, max_replicas=2, max_concurrency=3),
    )
    fake = harness.fake
    (dep,) = fake.deployments("cs-state")
    props = dep["properties"]
    assert dep["sku"]["capacity"] == 2 or props.get("instanceCount", 2) == 2
    assert props["instanceType"] == "Standard_DS3_v2"
    assert props["requestSettings"]["maxConcurrentRequestsPerInstance"] == 3
    assert props["livenessProbe"]["failureThreshold"] == 30
    assert props["codeConfiguration"]["scoringScript"] == "score.py"
    assert fake.traffic("cs-state") == {dep["name"]: 100}
    assert fake.model_versions("cs-conf") == ["1"]
    ep = fake.resource("onlineEndpoints/cs-state")
    assert ep["properties"]["authMode"] == "Key"


def test_canary_then_blue_green_keeps_traffic_at_100(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path, "1"), "cs-canary")
    client.deploy(model(harness, tmp_path, "2"), "cs-canary", traffic=25)
    fake = harness.fake
    assert sum(fake.traffic("cs-canary").values()) == 100
    assert sorted(fake.traffic("cs-canary").values()) == [25, 75]
    assert fake.model_versions("cs-conf") == ["1", "2"]
    client.deploy(model(harness, tmp_path, "2"), "cs-canary")
    assert list(fake.traffic("cs-canary").values()) == [100]
    assert [d["name"] for d in fake.deployments("cs-canary")] == ["v2-cs"]
    assert fake.model_versions("cs-conf") == ["2"], "the replaced deploy's model goes with it"
    client.delete_endpoint("cs-canary")
    assert fake.leftovers() == []


def test_registered_model_survives_endpoint_delete(harness, client, tmp_path):
    mv = client.register_model(model(harness, tmp_path, "7"), lineage={"data": "abc"})
    assert mv.lineage == {"data": "abc"}
    client.deploy(mv, "cs-reg")
    client.delete_endpoint("cs-reg")
    assert harness.fake.leftovers() == ["models/cs-conf/versions/7"]
    assert [m.version for m in client.list_models("cs-conf")] == ["7"]


def test_lro_polls_in_progress_before_success(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path), "cs-polls")
    polls = [u for m, u in harness.fake.requests_made() if "mfeOperationsStatus" in u]
    # endpoint create, deployment create, traffic update: each polled past 2 InProgress answers
    assert len(polls) >= 3 * 3


def test_predict_sends_key_and_deployment_header(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path, "1"), "cs-pred")
    client.deploy(model(harness, tmp_path, "2"), "cs-pred", traffic=10)
    pred = client.predict("cs-pred", sample_rows(3), variant="v2")
    assert pred.variant == "v2" and pred.model_version == "2"
    assert harness.fake.scoring_requests()[-1].deployment == "v2-cs"


def test_key_rotation_is_picked_up_after_a_401(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path), "cs-keys")
    first = client.predict("cs-keys", sample_rows(2)).outputs
    ml = harness.fake.ml_client()
    ml.online_endpoints.begin_regenerate_keys("cs-keys", key_type="primary").result()
    assert client.predict("cs-keys", sample_rows(2)).outputs == first
    statuses = [r.status for r in harness.fake.scoring_requests()]
    assert 401 not in statuses or statuses[-1] == 200


def test_large_input_is_chunked_in_order(harness, tmp_path):
    provider = AzureMLProvider(
        fast_config(harness.fake, max_request_mb=0.0005), credential=harness.fake.credential()
    )
    client = Client(provider)
    client.deploy(model(harness, tmp_path), "cs-chunk")
    rows = sample_rows(40, seed=4)
    chunked = client.predict("cs-chunk", rows).outputs
    assert len(harness.fake.scoring_requests()) > 1
    whole = [client.predict("cs-chunk", [r]).outputs[0] for r in rows[:5]]
    assert chunked[:5] == whole and len(chunked) == 40


def test_metrics_from_azure_monitor(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path), "cs-metrics")
    for _ in range(3):
        client.predict("cs-metrics", sample_rows(2))
    with pytest.raises(InvalidRequest):
        client.predict("cs-metrics", [[1.0]])
    report = client.metrics("cs-metrics", "1h")
    assert report.invocations == 4
    assert report.errors == {"4xx": 1}
    assert report.p50_ms is not None and report.p50_ms <= report.p99_ms


def test_data_capture_writes_and_reads_model_inputs(harness, client, tmp_path):
    client.deploy(
        model(harness, tmp_path), "cs-capture", data_capture=DataCapture(sampling_rate=1.0)
    )
    (dep,) = harness.fake.deployments("cs-capture")
    inputs = dep["properties"]["dataCollector"]["collections"]["model_inputs"]
    assert inputs["dataCollectionMode"] == "Enabled" and inputs["samplingRate"] == 1.0
    rows = sample_rows(6, seed=9)
    client.predict("cs-capture", rows)
    assert client.provider.captured_inputs("cs-capture", 3600) == rows
    client.delete_endpoint("cs-capture")
    assert harness.fake.leftovers() == []


def test_sdk_output_goes_to_logging_not_the_terminal(harness, client, tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)
    client.deploy(model(harness, tmp_path), "cs-quiet")
    out, err = capfd.readouterr()
    assert "Check: endpoint" not in out + err
    assert "may be too small" not in out + err


def test_unknown_variant_and_missing_endpoint(harness, client, tmp_path):
    client.deploy(model(harness, tmp_path), "cs-miss")
    with pytest.raises(NotFound):
        client.predict("cs-miss", sample_rows(1), variant="nope")
    with pytest.raises(NotFound) as info:
        client.get_endpoint("cs-gone")
    assert info.value.code == "404"


def test_failed_deploy_with_keep_on_failure_keeps_resources(harness, client, tmp_path):
    harness.fake.inject("fail_operation", message="boom")
    with pytest.raises(OperationFailed):
        client.deploy(model(harness, tmp_path), "cs-keep", keep_on_failure=True)
    assert "onlineEndpoints/cs-keep" in harness.fake.leftovers()


def test_validation_happens_before_any_request(harness, client, tmp_path):
    before = len(harness.fake.requests_made())
    with pytest.raises(InvalidRequest):
        client.deploy(model(harness, tmp_path), "cs", Compute())  # name too short for Azure
    with pytest.raises(InvalidRequest):
        client.deploy(model(harness, tmp_path), "cs-gpu", Compute(size="gpu.l4"))
    with pytest.raises(InvalidRequest):
        client.deploy(model(harness, tmp_path), "cs-auto", Compute(min_replicas=1, max_replicas=3))
    assert len(harness.fake.requests_made()) == before


def test_wrong_key_is_refused_by_the_fake(harness, client, tmp_path):
    import requests

    client.deploy(model(harness, tmp_path), "cs-auth")
    uri = harness.fake.resource("onlineEndpoints/cs-auth")["properties"]["scoringUri"]
    resp = requests.post(
        uri, json={"instances": sample_rows(1)}, headers={"Authorization": "Bearer wrong"}
    )
    assert resp.status_code == 401


def test_auth_error_maps_to_auth_error(harness, tmp_path):
    from cloudserve_azureml._errors import ERROR_TABLE, ScoringError

    err = ERROR_TABLE.translate(ScoringError(403, "no"), provider="azureml")
    assert isinstance(err, AuthError) and err.__cause__ is not None
