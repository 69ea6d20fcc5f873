"""``cloudserve serve`` and ``cloudserve build-image``."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_process import free_port, wait_ready

from cloudserve.cli import main
from cloudserve.packaging import read_manifest
from cloudserve.serving._image import docker_available


def test_build_image_writes_a_context_for_every_cloud(sklearn_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "image"
    assert main(["build-image", str(sklearn_dir), "--output", str(out), "--no-build"]) == 0
    dockerfile = (out / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "cloudserve.serving", "--host", "0.0.0.0"]' in dockerfile
    assert "EXPOSE 8080" in dockerfile and "USER 10001" in dockerfile
    assert read_manifest(out / "model").version == "7"
    assert (out / "cloudserve" / "serving" / "__main__.py").exists()
    requirements = (out / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert "wrote" in capsys.readouterr().out


def test_build_image_builds_only_when_docker_answers(custom_dir: Path, tmp_path: Path, capsys):
    if docker_available():
        pytest.skip(
            "a Docker engine answers here; building an image is too slow for the unit tests"
        )
    assert main(["build-image", str(custom_dir), "--output", str(tmp_path / "img")]) == 0
    assert "no Docker engine answered" in capsys.readouterr().out
    assert "torch" not in (tmp_path / "img" / "requirements.txt").read_text()


def test_serve_command_runs_the_server_until_sigterm(custom_dir: Path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudserve.cli",
            "serve",
            str(custom_dir),
            "--port",
            str(port),
            "--batch-size",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
