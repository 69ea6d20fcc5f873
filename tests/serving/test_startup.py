"""Start-up as each cloud starts the runtime: arguments, port, routes and where the model is.

These run the runtime as a plain process; ``tests/containers`` runs the built image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_process import free_port, wait_ready

from cloudserve.errors import InvalidRequest
from cloudserve.serving import load_model
from cloudserve.serving.__main__ import parse_args
from cloudserve.serving._location import (
    download_gcs,
    find_model_source,
    locate_model,
    resolve_azureml_model_dir,
)
from conftest import ROWS, make_custom

CLOUD_VARIABLES = (
    "AIP_STORAGE_URI",
    "AIP_HTTP_PORT",
    "AIP_PREDICT_ROUTE",
    "AIP_HEALTH_ROUTE",
    "AZUREML_MODEL_DIR",
    "SAGEMAKER_BIND_TO_PORT",
)


@pytest.fixture(autouse=True)
def no_cloud_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in CLOUD_VARIABLES:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """Empty stand-ins for /opt/ml/model, /mnt/models and the baked-in model."""
    return {
        "sagemaker_dir": tmp_path / "opt-ml-model",
        "kserve_dir": tmp_path / "mnt-models",
        "baked_dir": tmp_path / "baked",
    }


# -- arguments and port ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0", "serve"],  # SageMaker: `docker run IMAGE serve` after ENTRYPOINT args
        ["serve", "--host", "0.0.0.0"],
        ["--host", "0.0.0.0", "serve", "--model-name", "churn"],
    ],
)
def test_serve_is_accepted_anywhere_in_argv(argv: list[str]):
    settings = parse_args(argv)
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.model_dir is None  # the model the cloud hands over, found at start-up


def test_kserve_spellings_of_model_name_and_port():
    settings = parse_args(["--model_name", "churn", "--http_port", "8081"])
    assert (settings.model_name, settings.port) == ("churn", 8081)


def test_other_positional_arguments_are_still_refused(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        parse_args(["train"])
    assert exited.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "port"),
    [({}, 8080), ({"AIP_HTTP_PORT": "7080"}, 7080), ({"SAGEMAKER_BIND_TO_PORT": "9090"}, 9090)],
)
def test_port_follows_the_clouds_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], port: int
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert parse_args(["serve"]).port == port


# -- where the model is ---------------------------------------------------------------------


def test_nothing_handed_over_names_every_place_looked_at(places: dict[str, Path]):
    with pytest.raises(InvalidRequest) as err:
        find_model_source({}, **places)
    for place in ("AIP_STORAGE_URI", "AZUREML_MODEL_DIR", *(str(p) for p in places.values())):
        assert place in str(err.value)


def test_baked_model_is_only_the_fallback(places: dict[str, Path]):
    make_custom(places["baked_dir"])
    assert find_model_source({}, **places).kind == "baked"
    make_custom(places["kserve_dir"])
    assert find_model_source({}, **places).kind == "kserve"
    make_custom(places["sagemaker_dir"])
    assert find_model_source({}, **places).kind == "sagemaker"


def test_azureml_model_dir_wins_over_the_mounts_and_an_image_env(
    places: dict[str, Path], tmp_path: Path
):
    make_custom(places["sagemaker_dir"])
    make_custom(places["baked_dir"])
    azure = make_custom(tmp_path / "azureml-models" / "churn" / "3" / "model")
    # An image once set CLOUDSERVE_MODEL_DIR=/opt/ml/model, which hid AZUREML_MODEL_DIR.
    env = {
        "CLOUDSERVE_MODEL_DIR": str(places["sagemaker_dir"]),
        "AZUREML_MODEL_DIR": str(azure.parent),
    }
    source, path = locate_model(env, **places)
    assert source.kind == "azureml"
    assert path == azure


def test_azureml_folder_model_is_the_one_subfolder(tmp_path: Path, sklearn_dir: Path):
    version_dir = tmp_path / "azureml-models" / "churn" / "7"
    shutil.copytree(sklearn_dir, version_dir / "churn-model")
    resolved = resolve_azureml_model_dir(version_dir)
    assert resolved == version_dir / "churn-model"
    assert load_model(resolved).framework == "sklearn"


def test_azureml_file_model_is_the_file_itself(tmp_path: Path, sklearn_dir: Path):
    version_dir = tmp_path / "azureml-models" / "churn" / "7"
    version_dir.mkdir(parents=True)
    shutil.copy2(sklearn_dir / "model.joblib", version_dir / "model.joblib")
    resolved = resolve_azureml_model_dir(version_dir)
    assert load_model(resolved).framework == "sklearn"


def test_azureml_dir_with_two_folders_is_a_clear_error(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(InvalidRequest, match="neither a model nor one model folder"):
        resolve_azureml_model_dir(tmp_path)


def test_vertex_storage_uri_must_be_gcs(tmp_path: Path):
    with pytest.raises(InvalidRequest, match="must be a gs:// URI"):
        download_gcs("s3://bucket/model", tmp_path)


# -- Vertex AI: the model is in Cloud Storage (a local emulator here) -------------------------


@pytest.fixture(scope="module")
def gcs_emulator():
    """A local GCS (``gcp-storage-emulator``) on a free port; yields its ``host:port``."""
    server_mod = pytest.importorskip(
        "gcp_storage_emulator.server", reason="gcp-storage-emulator is a test dependency"
    )
    pytest.importorskip("google.cloud.storage", reason="the gcs extra is not installed")
    port = free_port()
    server = server_mod.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def upload_dir(emulator: str, bucket: str, prefix: str, directory: Path) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    os.environ["STORAGE_EMULATOR_HOST"] = emulator
    try:
        client = storage.Client(project="test", credentials=AnonymousCredentials())
        b = client.bucket(bucket)
        if not b.exists():
            b = client.create_bucket(bucket)
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                b.blob(f"{prefix}/{path.relative_to(directory)}").upload_from_filename(str(path))
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]
    return f"gs://{bucket}/{prefix}"


def test_vertex_storage_uri_is_downloaded(
    gcs_emulator: str, sklearn_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    uri = upload_dir(gcs_emulator, "vertex-models", "churn/7/model", sklearn_dir)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    source, path = locate_model(
        {"AIP_STORAGE_URI": uri}, download_dir=tmp_path / "dl", baked_dir=sklearn_dir
    )
    assert source.kind == "vertex"
    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in sklearn_dir.iterdir())
    expected = load_model(sklearn_dir).predict(ROWS)
    assert load_model(path).predict(ROWS) == expected


def test_vertex_start_serves_the_model_from_storage(gcs_emulator: str, custom_dir: Path):
    """The process started with only Vertex's variables answers with the GCS model."""
    uri = upload_dir(gcs_emulator, "vertex-models", "custom/1/model", custom_dir)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in CLOUD_VARIABLES},
        "AIP_HTTP_PORT": str(port),
        "AIP_STORAGE_URI": uri,
        "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/d:predict",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/e/deployedModels/d",
        "STORAGE_EMULATOR_HOST": gcs_emulator,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudserve.serving"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        assert httpx.get(f"{url}/v1/endpoints/e/deployedModels/d").status_code == 200
        r = httpx.post(
            f"{url}/v1/endpoints/e/deployedModels/d:predict", json={"instances": [[1, 2]]}
        )
        assert r.json() == {"predictions": [3.5]}  # the custom sum model from GCS
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
