"""What the framework route sends, run the way Azure runs it — no cloudserve installed.

- ``score.py`` under Azure's own inference server (``azmlinfsrv``, PyPI package
  ``azureml-inference-server-http``), in a venv holding exactly the pip lines of the generated
  environment, with the model mounted as Azure mounts a folder model and a file model;
- ``batch_score.py`` under the documented batch contract (``init()``, ``run(mini_batch)``);
- both generated environments resolve with ``pip install --dry-run`` for their Python version,
  binary wheels only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests

from cloudserve.testing import make_sklearn_model, sample_rows, write_csv
from cloudserve.testing.refvenv import clean_env, reference_venv
from cloudserve_azureml import _packaging as pkg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sklearn_model(tmp_path_factory.mktemp("azureml-ref") / "churn")


@pytest.fixture(scope="session")
def serving_lines(model_dir: Path) -> list[str]:
    """The pip lines of the environment a deploy of ``model_dir`` generates."""
    return [pkg.INFERENCE_SERVER, *pkg.model_requirements(model_dir, "sklearn")]


@pytest.fixture(scope="session")
def serving_python(serving_lines: list[str]) -> Path:
    return reference_venv("azureml-score", serving_lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mounted(root: Path, model_dir: Path, *, file_model: bool) -> Path:
    """``AZUREML_MODEL_DIR`` as Azure lays it out: NAME/VERSION/<folder> or NAME/VERSION/<file>."""
    mount = root / "azureml-models" / "churn" / "1"
    mount.mkdir(parents=True)
    if file_model:
        shutil.copy(model_dir / "model.joblib", mount / "churn.joblib")
    else:
        shutil.copytree(model_dir, mount / model_dir.name)
    return mount


@pytest.fixture(scope="session", params=["folder", "file"])
def scoring_url(
    request: pytest.FixtureRequest,
    serving_python: Path,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    root = tmp_path_factory.mktemp(f"azmlinfsrv-{request.param}")
    mount = _mounted(root, model_dir, file_model=request.param == "file")
    code = pkg.scoring_code(root / "code")
    port = _free_port()
    env = clean_env(
        AZUREML_MODEL_DIR=str(mount), CLOUDSERVE_FRAMEWORK="sklearn", AML_APP_ROOT=str(code)
    )
    server = subprocess.Popen(
        [
            str(serving_python.parent / "azmlinfsrv"),
            "--entry_script",
            str(code / pkg.SCORE_NAME),
            "--model_dir",
            str(mount),
            "--port",
            str(port),
        ],
        cwd=code,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise AssertionError(f"azmlinfsrv exited:\n{server.stdout.read()}")  # type: ignore[union-attr]
            try:
                if requests.get(url + "/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            raise AssertionError("azmlinfsrv did not become healthy within 90 s")
        yield url + "/score"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _model(model_dir: Path) -> Any:
    return joblib.load(model_dir / "model.joblib")


def test_the_environment_holds_no_cloudserve_and_lists_the_inference_server(serving_lines):
    assert not any(line.lower().startswith("cloudserve") for line in serving_lines)
    assert serving_lines[0].startswith("azureml-inference-server-http")


def test_score_py_answers_predictions_under_azmlinfsrv(scoring_url, model_dir):
    rows = sample_rows(5, seed=11)
    resp = requests.post(scoring_url, json={"instances": rows}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"] == _model(model_dir).predict(rows).tolist()


def test_score_py_answers_probabilities_under_azmlinfsrv(scoring_url, model_dir):
    rows = sample_rows(3, seed=12)
    body = {"instances": rows, "parameters": {"method": "predict_proba"}}
    resp = requests.post(scoring_url, json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    np.testing.assert_allclose(resp.json()["predictions"], _model(model_dir).predict_proba(rows))


def test_a_wrong_shape_is_a_4xx_and_the_server_stays_up(scoring_url):
    resp = requests.post(scoring_url, json={"instances": [[1.0, 2.0]]}, timeout=30)
    assert 400 <= resp.status_code < 500, resp.text
    assert requests.post(scoring_url, json={"instances": sample_rows(1)}, timeout=30).ok


@pytest.fixture(scope="session")
def batch_run(serving_python: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run ``batch_score.py`` as Azure's batch driver does: init() once, run(mini_batch)."""
    root = tmp_path_factory.mktemp("azureml-batch")
    mount = _mounted(root, model_dir, file_model=False)
    code = pkg.batch_code(root / "code")

    def run(files: list[Path]) -> list[str]:
        driver = (
            "import json, sys, batch_score\n"
            "batch_score.init()\n"
            "print(json.dumps(batch_score.run(json.loads(sys.argv[1]))))\n"
        )
        out = subprocess.run(
            [str(serving_python), "-c", driver, json.dumps([str(f) for f in files])],
            cwd=code,
            env=clean_env(AZUREML_MODEL_DIR=str(mount), CLOUDSERVE_BATCH_ROWS="3"),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run


def test_batch_script_gives_one_line_per_row_and_isolates_bad_rows(batch_run, model_dir, tmp_path):
    rows = sample_rows(7, seed=13)
    good = write_csv(tmp_path / "good.csv", rows)
    mixed = write_csv(tmp_path / "mixed.csv", rows[:2])
    with mixed.open("a") as fh:
        fh.write(",".join(["oops"] * len(rows[0])) + "\n")
    lines = batch_run([good, mixed])
    parsed = [next(iter(__import__("csv").reader([line]))) for line in lines]
    assert len(parsed) == 7 + 3
    expected = _model(model_dir).predict(rows).tolist()
    assert [json.loads(r[2]) for r in parsed if r[0] == "good.csv"] == expected
    mixed_rows = [r for r in parsed if r[0] == "mixed.csv"]
    assert [bool(r[3]) for r in mixed_rows] == [False, False, True]


@pytest.mark.parametrize("kind", ["serving", "batch"])
def test_generated_environments_resolve_for_their_python(kind, model_dir):
    pins = pkg.model_requirements(model_dir, "sklearn")
    first = pkg.INFERENCE_SERVER if kind == "serving" else pkg.BATCH_RUNTIME
    conda = pkg.conda_file([first, *pins])
    python = conda["dependencies"][0].split("=", 1)[1]
    lines = conda["dependencies"][2]["pip"]
    dry_run = ["install", "--dry-run", "--quiet", "--ignore-installed", "--report", "-"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            *dry_run,
            "--python-version",
            python,
            "--only-binary=:all:",
            *lines,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    names = {item["metadata"]["name"].lower() for item in report["install"]}
    assert "scikit-learn" in names and not any(n.startswith("cloudserve") for n in names)
