"""``python -m cloudserve.serving`` as the local provider and the container start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import make_custom


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model_dir: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudserve.serving",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
            *args,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the server did not become ready")


def test_sigterm_drains_in_flight_requests_then_exits_0(model_root: Path):
    slow = make_custom(model_root / "drain", delay=1.0)
    proc, url = start(slow, "--batch-size", "1")
    try:
        wait_ready(proc, url)
        result: dict = {}

        def call() -> None:
            result["r"] = httpx.post(f"{url}/invocations", json=[[1, 1]], timeout=30)

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.3)  # the request is inside the model now
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert proc.wait(30) == 0
        assert result["r"].status_code == 200
        assert result["r"].json() == {"predictions": [2.5]}
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_model_that_cannot_load_makes_the_process_exit_1(tmp_path: Path):
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    proc, _ = start(tmp_path)
    assert proc.wait(60) == 1
    assert b"cannot load the model" in (proc.stdout.read() if proc.stdout else b"")


def test_vertex_env_vars_pick_port_and_routes(custom_dir: Path):
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_PREDICT_ROUTE": "/v1/endpoints/e/deployedModels/d:predict",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/e/deployedModels/d",
        "AZUREML_MODEL_DIR": str(custom_dir),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudserve.serving", "serve", "--workers", "2"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        assert httpx.get(f"{url}/v1/endpoints/e/deployedModels/d").status_code == 200
        r = httpx.post(
            f"{url}/v1/endpoints/e/deployedModels/d:predict", json={"instances": [[1, 2]]}
        )
        assert r.json() == {"predictions": [3.5]}
        assert "cloudserve_requests_total" in httpx.get(f"{url}/metrics").text
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
