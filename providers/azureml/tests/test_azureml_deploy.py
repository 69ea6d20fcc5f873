"""Deploy and predict against the strict fake: Azure's 424, model mounts, retries, waits, names.

Each test named ``test_defect_N_…`` pins one numbered defect of the Azure ML issue.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from azureml_harness import AzureMLHarness, fast_config

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest, ServiceUnavailable, Timeout
from cloudserve.provider import RetrySettings
from cloudserve.testing import sample_rows
from cloudserve.waiting import Progress
from cloudserve_azureml import AzureMLProvider


def _model(harness: AzureMLHarness, tmp_path: Path, version: str = "1"):
    return harness.model_spec(tmp_path, version)


def _sklearn(path: Path) -> object:
    return joblib.load(next(path.glob("*.joblib")) if path.is_dir() else path)


def _arm(harness: AzureMLHarness) -> list[tuple[str, str]]:
    return [(m, u) for m, u in harness.fake.requests_made() if "management.azure.com" in u]


def _scoring_posts(harness: AzureMLHarness) -> list[str]:
    return [u for m, u in harness.fake.requests_made() if ".inference.ml.azure.com" in u]


# -- what the framework route uploads --------------------------------------------------------


def test_defect_1_2_environment_pins_the_model_and_lists_no_cloudserve(harness, client, tmp_path):
    import sklearn

    client.deploy(_model(harness, tmp_path), "cs-env")
    (dep,) = harness.fake.deployments("cs-env")
    env = harness.fake.service._asset(dep["properties"]["environmentId"])
    from cloudserve_azureml.testing._images import pip_lines

    python, lines = pip_lines(env["properties"]["condaFile"])
    assert not any(line.lower().startswith("cloudserve") for line in lines)
    assert any(line.startswith("azureml-inference-server-http") for line in lines)
    assert f"scikit-learn=={sklearn.__version__}" in lines
    assert any(line.startswith("numpy==") for line in lines)
    assert any(line.startswith("joblib==") for line in lines)  # the pickle imports joblib
    assert python is not None


def test_an_environment_that_does_not_resolve_fails_like_an_image_build(harness, tmp_path):
    provider = AzureMLProvider(
        fast_config(harness.fake, extra_requirements=["no-such-distribution-cs==0.0.1"]),
        credential=harness.fake.credential(),
    )
    with pytest.raises(Exception, match="ImageBuildFailure"):
        Client(provider).deploy(_model(harness, tmp_path), "cs-build")
    assert harness.fake.leftovers() == [], "the failed deploy removed what it created"


def test_defect_3_a_single_file_model_is_served(harness, client, tmp_path):
    folder = Path(str(_model(harness, tmp_path).artifact))
    single = tmp_path / "file-model" / "churn.joblib"
    single.parent.mkdir()
    shutil.copy(next(folder.glob("*.joblib")), single)
    spec = _model(harness, tmp_path).model_copy(update={"artifact": str(single), "name": "cs-file"})
    client.deploy(spec, "cs-file")
    rows = sample_rows(4, seed=3)
    assert client.predict("cs-file", rows).outputs == _sklearn(single).predict(rows).tolist()


def test_defect_4_container_route_leaves_the_model_dir_to_the_runtime(harness, client, tmp_path):
    spec = _model(harness, tmp_path).model_copy(update={"image": "example.azurecr.io/cs:1"})
    client.deploy(spec, "cs-image")
    (dep,) = harness.fake.deployments("cs-image")
    env = dep["properties"].get("environmentVariables") or {}
    assert "CLOUDSERVE_MODEL_DIR" not in env  # AZUREML_MODEL_DIR is the model Azure mounts
    rows = sample_rows(3)
    assert (
        client.predict("cs-image", rows).outputs
        == _sklearn(Path(spec.artifact)).predict(rows).tolist()
    )


def test_defect_5_bad_input_is_invalid_request_after_one_post(harness, client, tmp_path):
    client.deploy(_model(harness, tmp_path), "cs-424")
    posts = len(_scoring_posts(harness))
    with pytest.raises(InvalidRequest) as info:
        client.predict("cs-424", [[1.0, 2.0]])  # the model takes more columns
    assert len(_scoring_posts(harness)) == posts + 1
    assert info.value.code == "400"
    assert harness.fake.scoring_requests()[-1].status == 424  # what Azure answered


def test_defect_6_parameters_reach_the_model(harness, client, tmp_path):
    spec = _model(harness, tmp_path)
    client.deploy(spec, "cs-proba")
    rows = sample_rows(3, seed=2)
    got = client.predict("cs-proba", rows, parameters={"method": "predict_proba"}).outputs
    want = _sklearn(Path(spec.artifact)).predict_proba(rows).tolist()
    np.testing.assert_allclose(got, want)


# -- retries, waits, rollback ----------------------------------------------------------------


def test_defect_8_a_503_on_a_poll_is_retried_not_rolled_back(harness, client, tmp_path):
    harness.fake.inject("unavailable_poll", times=2)
    client.deploy(_model(harness, tmp_path), "cs-blip")
    assert harness.fake.traffic("cs-blip") == {"v1-cs": 100}
    puts = [u for m, u in _arm(harness) if m == "PUT" and "/deployments/" in u]
    assert len(puts) == 1, "the deployment PUT was sent once"
    assert not [u for m, u in _arm(harness) if m == "DELETE"], "nothing was rolled back"


def test_defect_9_failed_in_place_update_keeps_the_deployment(harness, client, tmp_path):
    client.deploy(_model(harness, tmp_path, "1"), "cs-upd")
    staged = _model(harness, tmp_path, "2")
    client.deploy(staged, "cs-upd", traffic=0)  # v2 beside v1, taking no traffic yet
    harness.fake.inject("fail_operation", message="the new revision crashed")
    changed = staged.model_copy(update={"env": {"CHANGED": "1"}})
    with pytest.raises(Exception, match="crashed"):
        client.deploy(changed, "cs-upd", traffic=0)
    # Azure would let a rollback delete v2 (no traffic): the failed update must not
    assert sorted(d["name"] for d in harness.fake.deployments("cs-upd")) == ["v1-cs", "v2-cs"]
    assert harness.fake.traffic("cs-upd").get("v1-cs") == 100


def test_defect_10_resets_and_read_timeouts_are_typed_and_retried(harness, client, tmp_path):
    client.deploy(_model(harness, tmp_path), "cs-reset")
    harness.fake.inject("reset_scoring")
    harness.fake.inject("timeout_scoring")
    rows = sample_rows(2)
    assert len(client.predict("cs-reset", rows).outputs) == 2
    provider = AzureMLProvider(
        fast_config(harness.fake).model_copy(update={"retry": RetrySettings(max_attempts=1)}),
        credential=harness.fake.credential(),
    )
    harness.fake.inject("reset_scoring")
    with pytest.raises(ServiceUnavailable):
        provider.predict("cs-reset", rows)


def test_defect_11_predict_makes_no_arm_call_after_warm_up(harness, client, tmp_path):
    client.deploy(_model(harness, tmp_path, "1"), "cs-warm")
    client.deploy(_model(harness, tmp_path, "2"), "cs-warm", traffic=20)
    client.predict("cs-warm", sample_rows(1))  # warm-up: endpoint, keys, deployments
    before = len(_arm(harness))
    for _ in range(5):
        pred = client.predict("cs-warm", sample_rows(2))
        assert pred.model_version in ("1", "2")
    client.predict("cs-warm", sample_rows(2), variant="v2")
    assert len(_arm(harness)) == before
    # keys rotated elsewhere: one 401, one refresh, then the answer
    harness.fake.ml_client().online_endpoints.begin_regenerate_keys(
        "cs-warm", key_type="primary"
    ).result()
    assert len(client.predict("cs-warm", sample_rows(2)).outputs) == 2


def test_defect_14_first_deploy_below_100_takes_all_traffic(harness, client, tmp_path):
    client.deploy(_model(harness, tmp_path), "cs-first", traffic=25)
    assert harness.fake.traffic("cs-first") == {"v1-cs": 100}


@pytest.mark.parametrize("name", ["cs-ends-", "ab", "x" * 33])
def test_defect_14_endpoint_names_outside_azure_rules_fail_before_any_call(
    harness, client, tmp_path, name
):
    before = len(harness.fake.requests_made())
    with pytest.raises(InvalidRequest, match="endpoint"):
        client.deploy(_model(harness, tmp_path), name)
    assert len(harness.fake.requests_made()) == before


def test_defect_14_deploy_honours_wait_timeout_and_progress(harness, client, tmp_path):
    seen: list[Progress] = []
    client.deploy(_model(harness, tmp_path), "cs-prog", progress=seen.append)
    assert {p.description for p in seen} >= {"deployment v1-cs", "endpoint cs-prog"}

    ep = client.deploy(_model(harness, tmp_path, "2"), "cs-nowait", wait=False)
    assert ep.name == "cs-nowait"
    assert harness.fake.traffic("cs-nowait") == {}, "traffic moves once the deployment is up"
    client.deploy(_model(harness, tmp_path, "2"), "cs-nowait")  # the same spec: completes it
    assert harness.fake.traffic("cs-nowait") == {"v2-cs": 100}

    slow = type(harness.fake)(workdir=tmp_path / "slow", in_progress_polls=10_000).start()
    config = fast_config(slow)
    # the target would wait an hour: the call's own timeout is what ends it
    config = config.model_copy(
        update={"waits": config.waits.model_copy(update={"deploy_timeout_s": 3600.0})}
    )
    try:
        started = time.monotonic()
        with pytest.raises(Timeout):
            Client(AzureMLProvider(config, credential=slow.credential())).deploy(
                _model(harness, tmp_path), "cs-slow", timeout=0.5
            )
        assert time.monotonic() - started < 60, "deploy(timeout=0.5) gave up long before 1 h"
        assert "onlineEndpoints/cs-slow" in slow.leftovers(), "no rollback under Azure"
    finally:
        slow.stop()


def test_defect_7_captured_lines_hold_records(harness, client, tmp_path):
    from cloudserve.specs import DataCapture

    client.deploy(_model(harness, tmp_path), "cs-cap", data_capture=DataCapture(sampling_rate=1.0))
    (dep,) = harness.fake.deployments("cs-cap")
    assert dep["properties"]["environmentVariables"]["CLOUDSERVE_DATA_CAPTURE"] == "1"
    rows = sample_rows(3, seed=8)
    client.predict("cs-cap", rows)
    blobs = harness.fake.service.blobs.under(
        harness.fake.service.storage_account, harness.fake.service.container, "modelDataCollector"
    )
    inputs = [json.loads(b) for n, b in blobs.items() if "/model_inputs/" in n]
    assert inputs and isinstance(inputs[0]["data"][0], dict), "the documented line format"
    assert client.provider.captured_inputs("cs-cap", 3600) == rows


def test_a_changed_spec_waits_for_the_running_operation_instead_of_a_409(harness, client, tmp_path):
    spec = _model(harness, tmp_path)
    client.deploy(spec, "cs-busy", wait=False)  # the deployment is still being created
    client.deploy(spec.model_copy(update={"env": {"CHANGED": "1"}}), "cs-busy")
    assert harness.fake.traffic("cs-busy") == {"v1-cs": 100}
    puts = [u for m, u in _arm(harness) if m == "PUT" and "/deployments/" in u]
    assert len(puts) == 2


def test_a_409_is_a_running_operation_not_an_existing_resource():
    from azure.core.exceptions import HttpResponseError

    from cloudserve_azureml._errors import ERROR_TABLE

    class Answer:
        status_code = 409
        reason = "Conflict"
        headers: dict[str, str] = {}

        def text(self) -> str:
            return "Conflict of operation, another operation on same entity is already running"

    err = ERROR_TABLE.translate(HttpResponseError(response=Answer()), provider="azureml")
    assert isinstance(err, ServiceUnavailable) and err.retryable


def test_the_fake_refuses_what_the_sdks_schema_refuses(harness):
    import requests

    fake = harness.fake
    base = (
        f"https://management.azure.com/subscriptions/{fake.subscription_id}/resourceGroups/"
        f"{fake.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/"
        f"{fake.workspace}/onlineEndpoints"
    )
    headers = {"Authorization": "Bearer fake-token"}
    bad = requests.put(
        f"{base}/cs-schema", json={"properties": {"authMode": "Banana"}}, headers=headers
    )
    assert bad.status_code == 400 and "Banana" in bad.text
    assert fake.resource("onlineEndpoints/cs-schema") is None, "nothing is stored"
    named = requests.put(
        f"{base}/cs-ends-", json={"properties": {"authMode": "Key"}}, headers=headers
    )
    assert named.status_code == 400
    good = requests.put(
        f"{base}/cs-schema", json={"properties": {"authMode": "Key"}}, headers=headers
    )
    assert good.status_code in (200, 201), good.text


def test_a_pickle_azure_cannot_serve_is_refused_before_any_request(
    harness, client, tmp_path, local_class_pickle
):
    spec = _model(harness, tmp_path).model_copy(update={"artifact": str(local_class_pickle)})
    before = len(harness.fake.requests_made())
    with pytest.raises(InvalidRequest, match="my_local_features"):
        client.deploy(spec, "cs-local-class")
    assert len(harness.fake.requests_made()) == before
