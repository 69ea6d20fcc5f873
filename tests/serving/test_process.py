"""``python -m cloudserve.serving`` as the local provider and the container start it."""

from __future__ import annotations

import os
import re
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


def _drain_output(proc: subprocess.Popen) -> list[bytes]:
    """Collect the server's output in a thread so its pipe never fills."""
    lines: list[bytes] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: list[bytes], needle: bytes, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(needle in line for line in lines) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"expected {count} lines with {needle!r}:\n" + b"".join(lines).decode())


def test_sigterm_with_two_workers_under_load_drains_without_a_reset(custom_dir: Path):
    proc, url = start(custom_dir, "--workers", "2")
    _drain_output(proc)
    ok, refused, failed = [0], [0], []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/invocations", json=[[1, 1]])
                except httpx.ConnectError:
                    refused[0] += 1  # the server no longer listens: expected after SIGTERM
                    return
                except httpx.TransportError as exc:  # reset, or closed without an answer
                    failed.append(repr(exc))
                    return
                if r.status_code == 200:
                    ok[0] += 1
                else:
                    failed.append(f"HTTP {r.status_code}: {r.text}")

    try:
        wait_ready(proc, url)
        time.sleep(3)  # the other worker loads too
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        before = ok[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    assert before > 50, "the load did not get going"
    assert failed == [], failed[:5]
    assert refused[0] == 8  # every client ended on a refused connect, none on a reset


def test_workers_log_info_lines_and_error_ids_with_timestamps(model_root: Path):
    proc, url = start(make_custom(model_root / "logs"), "--workers", "2")
    lines = _drain_output(proc)
    try:
        _wait_for(lines, b"serving custom model", 2)
        r = httpx.post(f"{url}/invocations", json=[[666, 1]], timeout=30)
        assert r.status_code == 500
        error_id = r.json()["error_id"]
        _wait_for(lines, error_id.encode(), 1)
    finally:
        proc.terminate()
        proc.wait(30)
    stamp = rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    serving = [ln for ln in lines if b"serving custom model" in ln]
    assert len(serving) == 2 and all(re.match(stamp + rb"INFO ", ln) for ln in serving), serving
    logged = [ln for ln in lines if error_id.encode() in ln]
    assert re.match(stamp + rb"ERROR ", logged[0]), logged


def test_a_corrupt_model_with_two_workers_exits_non_zero_with_the_load_error(tmp_path: Path):
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    proc, _ = start(tmp_path, "--workers", "2")
    try:
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else b""
    assert code == 1, output.decode()
    assert b"cannot load the model" in output
    assert b"a worker could not load the model" in output
