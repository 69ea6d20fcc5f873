"""The serving image, built with Podman and started exactly as each cloud starts it.

Every image is built with one model baked in; each cloud then hands it another model of the same
framework (different answers), and the answers must be that model's. A plain ``podman run`` with
nothing handed over serves the baked model.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from _models import ROWS

from cloudserve.packaging import archive_model
from cloudserve.serving import load_model
from conftest import FRAMEWORKS, Container, free_port, run_container

pytestmark = pytest.mark.slow

VERTEX_PREDICT = "/v1/endpoints/123/deployedModels/456:predict"
VERTEX_HEALTH = "/v1/endpoints/123/deployedModels/456"
AZUREML_MODEL_DIR = "/var/azureml-app/azureml-models/churn/1"


@pytest.fixture(scope="module")
def gcs():
    pytest.importorskip("gcp_storage_emulator", reason="a local GCS for the Vertex AI start-up")
    from cloudserve.testing.gcs import gcs_emulator

    with gcs_emulator() as host:
        yield host


Predict = Callable[[Container], list]


def _sagemaker_predict(c: Container) -> list:
    r = httpx.post(f"{c.url}/invocations", json={"instances": ROWS}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _vertex_predict(c: Container) -> list:
    r = httpx.post(f"{c.url}{VERTEX_PREDICT}", json={"instances": ROWS}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _azure_predict(c: Container) -> list:
    r = httpx.post(f"{c.url}/score", json=ROWS, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _kserve_predict(name: str) -> Predict:
    def predict(c: Container) -> list:
        tensor = {
            "name": "input-0",
            "shape": [len(ROWS), len(ROWS[0])],
            "datatype": "FP32",
            "data": ROWS,
        }
        r = httpx.post(f"{c.url}/v2/models/{name}/infer", json={"inputs": [tensor]}, timeout=30)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        return np.asarray(out["data"]).reshape(out["shape"]).tolist()

    return predict


@contextmanager
def start_as(cloud: str, image: str, handed: Path, tmp_path: Path, gcs_host: str | None):
    """Start the image the way ``cloud`` does; yields (container, health route, predict)."""
    if cloud == "sagemaker":
        # SageMaker downloads model.tar.gz, extracts it at /opt/ml/model, runs `IMAGE serve`.
        archive = archive_model(handed, tmp_path / "model.tar.gz")
        extracted = tmp_path / "opt-ml-model"
        with tarfile.open(archive) as tar:
            tar.extractall(extracted, filter="data")
        with run_container(image, "serve", mounts={extracted: "/opt/ml/model"}) as c:
            yield c, "/ping", _sagemaker_predict
    elif cloud == "vertex":
        # Vertex mounts nothing: only AIP_* variables, the model in Cloud Storage.
        from cloudserve.testing.gcs import upload_dir

        assert gcs_host is not None
        uri = upload_dir(gcs_host, "vertex-staging", f"{tmp_path.name}/model", handed)
        port = free_port()
        env = {
            "AIP_STORAGE_URI": uri,
            "AIP_HTTP_PORT": str(port),
            "AIP_PREDICT_ROUTE": VERTEX_PREDICT,
            "AIP_HEALTH_ROUTE": VERTEX_HEALTH,
            "AIP_ENDPOINT_ID": "123",
            "AIP_DEPLOYED_MODEL_ID": "456",
            "STORAGE_EMULATOR_HOST": gcs_host,  # the one test-only variable: where GCS is
        }
        with run_container(image, env=env, host_network_port=port) as c:
            yield c, VERTEX_HEALTH, _vertex_predict
    elif cloud == "azureml":
        # A folder model appears one level below AZUREML_MODEL_DIR, named after the folder.
        mounted = shutil.copytree(handed, tmp_path / "churn-model")
        env = {"AZUREML_MODEL_DIR": AZUREML_MODEL_DIR}
        mounts = {mounted: f"{AZUREML_MODEL_DIR}/churn-model"}
        with run_container(image, env=env, mounts=mounts) as c:
            yield c, "/ready", _azure_predict
    elif cloud == "kserve":
        args = ("--model_name", "churn-kserve")
        with run_container(image, *args, mounts={handed: "/mnt/models"}) as c:
            yield c, "/v2/health/ready", _kserve_predict("churn-kserve")
    else:  # a plain `podman run IMAGE`: nothing handed over, the baked model answers
        with run_container(image) as c:
            yield c, "/ping", _sagemaker_predict


def _close(a: list, b: list) -> bool:
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cloud", ["sagemaker", "vertex", "azureml", "kserve", "plain"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_image_answers_as_each_cloud_starts_it(
    framework: str, cloud: str, built_images, model_pair, tmp_path: Path, request
):
    image = built_images(framework)
    baked, handed = model_pair(framework)
    expected = load_model(handed if cloud != "plain" else baked).predict(ROWS)
    other = load_model(baked if cloud != "plain" else handed).predict(ROWS)
    assert not _close(expected, other), "the two test models must answer differently"
    gcs_host = request.getfixturevalue("gcs") if cloud == "vertex" else None
    with start_as(cloud, image, handed, tmp_path, gcs_host) as (c, health, predict):
        c.wait_healthy(health)
        answers = predict(c)
        assert _close(answers, expected), f"{cloud} got {answers}, the model says {expected}"
        if cloud == "sagemaker":
            assert c.stop() == 0  # SIGTERM drains and exits 0, as the clouds expect


@pytest.mark.parametrize("kind", ["xgb-classifier", "lgbm-classifier"])
def test_a_pickled_gradient_boosting_classifier_builds_an_image_that_loads_it(
    kind: str, built_images, model_pair, tmp_path: Path
):
    """The pickle imports xgboost / lightgbm: the image must have pinned them."""
    image = built_images(kind)
    baked, handed = model_pair(kind)
    expected = load_model(handed).predict(ROWS)
    with start_as("sagemaker", image, handed, tmp_path, None) as (c, health, predict):
        c.wait_healthy(health)
        assert predict(c) == expected
    with start_as("plain", image, handed, tmp_path, None) as (c, health, predict):
        c.wait_healthy(health)
        assert predict(c) == load_model(baked).predict(ROWS)


def test_the_sagemaker_providers_container_route_tarball_starts_as_sagemaker_starts_it(
    built_images, model_pair, tmp_path: Path
):
    """What the SageMaker provider uploads on the container route (its ``model.tar.gz``, no
    ``code/``), extracted at ``/opt/ml/model`` under the target's serving image run as
    ``IMAGE serve``, answers with the handed model."""
    pytest.importorskip("cloudserve_sagemaker", reason="the SageMaker provider package")
    from cloudserve.specs import ModelSpec
    from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
    from cloudserve_sagemaker._packaging import build_model_tarball

    image = built_images("sklearn")
    _, handed = model_pair("sklearn")
    config = SageMakerConfig(
        role_arn="arn:aws:iam::123456789012:role/x", bucket="b-1", serving_image=image
    )
    prepared = SageMakerProvider(config).prepare(
        ModelSpec(name="churn", artifact=str(handed), framework="sklearn")
    )
    assert prepared.route.kind == "container" and prepared.route.image == image
    assert prepared.staged is not None
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(build_model_tarball(prepared.staged, prepared.route))
    extracted = tmp_path / "opt-ml-model"
    with tarfile.open(tarball) as tar:
        assert not any(n.startswith("code/") for n in tar.getnames())
        tar.extractall(extracted, filter="data")
    with run_container(image, "serve", mounts={extracted: "/opt/ml/model"}) as c:
        c.wait_healthy("/ping")
        assert _close(_sagemaker_predict(c), load_model(handed).predict(ROWS))


def test_a_transform_jobs_default_parameters_reach_the_image_started_as_sagemaker_starts_it(
    built_images, model_pair, tmp_path: Path
):
    """SageMaker's container route sets ``BatchSpec.parameters`` once in the transform job's
    environment (``CLOUDSERVE_BATCH_PARAMETERS``): the image run as ``IMAGE serve`` answers a
    request without parameters with them, and a request's own parameters still win."""
    import json

    image = built_images("sklearn")
    _, handed = model_pair("sklearn")
    env = {"CLOUDSERVE_BATCH_PARAMETERS": json.dumps({"method": "predict_proba"})}
    with run_container(image, "serve", env=env, mounts={handed: "/opt/ml/model"}) as c:
        c.wait_healthy("/ping")
        model = load_model(handed)
        assert _close(_sagemaker_predict(c), model.predict(ROWS, {"method": "predict_proba"}))
        body = {"instances": ROWS, "parameters": {"method": "predict"}}
        r = httpx.post(f"{c.url}/invocations", json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert _close(r.json()["predictions"], model.predict(ROWS))
