"""What the framework route sends, run the way Azure runs it — no cloudserve installed.

- ``score.py`` under Azure's own inference server (``azmlinfsrv``, PyPI package
  ``azureml-inference-server-http``), in a venv holding exactly the pip lines of the generated
  environment, with the model mounted as Azure mounts a folder model and a file model;
- ``batch_score.py`` under the documented batch contract (``init()``, ``run(mini_batch)``);
- both generated environments resolve with ``pip install --dry-run`` for their Python version,
  binary wheels only.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _azmlinfsrv(python: Path, code: Path, mount: Path, **env: str) -> Iterator[str]:
    """``azmlinfsrv`` serving ``code``'s ``score.py`` on a free port until the block ends;
    yields its scoring URL."""
    port = _free_port()
    server = subprocess.Popen(
        [
            str(python.parent / "azmlinfsrv"),
            "--entry_script",
            str(code / pkg.SCORE_NAME),
            "--model_dir",
            str(mount),
            "--port",
            str(port),
        ],
        cwd=code,
        env=clean_env(AZUREML_MODEL_DIR=str(mount), AML_APP_ROOT=str(code), **env),
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
    with _azmlinfsrv(serving_python, code, mount, CLOUDSERVE_FRAMEWORK="sklearn") as url:
        yield url


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


@pytest.fixture(scope="session")
def request_log(
    serving_lines: list[str], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``score.py`` with the shadow request log on, under ``azmlinfsrv`` in a venv holding the
    pip lines a shadow deploy generates (the real ``azureml-ai-monitoring``), its ``Collector``
    sending to a stand-in for the deployment's data-collector sidecar; yields the scoring URL and
    what the sidecar received (headers and JSON body of each POST)."""
    import http.server
    import threading

    python = reference_venv("azureml-score-log", [*serving_lines, *pkg.capture_requirements()])
    received: list[dict[str, Any]] = []

    class Sidecar(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    sidecar = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sidecar)
    threading.Thread(target=sidecar.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("azmlinfsrv-log")
    mount = _mounted(root, model_dir, file_model=False)
    code = pkg.scoring_code(root / "code")
    config = root / "mdc.json"  # what Azure writes from the deployment's data_collector
    config.write_text(json.dumps({"collections": {"cloudserve_requests": {"enabled": True}}}))
    try:
        with _azmlinfsrv(
            python,
            code,
            mount,
            CLOUDSERVE_FRAMEWORK="sklearn",
            CLOUDSERVE_REQUEST_LOG="1",
            AZUREML_MDC_CONFIG_PATH=str(config),
            AZUREML_MDC_HOST="127.0.0.1",
            AZUREML_MDC_PORT=str(sidecar.server_address[1]),
        ) as url:
            yield url, received
    finally:
        sidecar.shutdown()


def _logged(received: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """The request-log row the sidecar received for ``request_id`` (waits up to 20 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for post in list(received):
            if post["headers"].get("ce-type") != "azureml.inference.cloudserve_requests":
                continue
            for row in json.loads(post["body"]):
                if row.get("request_id") == request_id:
                    return row
        time.sleep(0.2)
    raise AssertionError(f"no request-log row for {request_id}: {received}")


def test_request_log_rows_reach_the_data_collector_under_azmlinfsrv(request_log, model_dir):
    url, received = request_log
    rows = sample_rows(3, seed=14)
    resp = requests.post(url, json={"instances": rows, "request_id": "rid-1"}, timeout=30)
    assert resp.status_code == 200, resp.text
    expected = _model(model_dir).predict(rows).tolist()
    assert resp.json()["predictions"] == expected  # the answer is unchanged by the log
    row = _logged(received, "rid-1")
    assert json.loads(row["outputs"])["predictions"] == expected
    assert row["error"] is None and row["latency_ms"] > 0 and row["ts"] > 0
    # a body without an id: the client-request-id header names it; a bad request is logged too
    bad = requests.post(
        url,
        json={"instances": [[1.0, 2.0]]},
        headers={"x-ms-client-request-id": "rid-2"},
        timeout=30,
    )
    assert 400 <= bad.status_code < 500
    row = _logged(received, "rid-2")
    assert row["outputs"] is None and row["error"]
