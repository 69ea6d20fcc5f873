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
from cloudserve.serving import _image


def test_build_image_writes_a_context_for_every_cloud(sklearn_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "image"
    assert main(["build-image", str(sklearn_dir), "--output", str(out), "--no-build"]) == 0
    dockerfile = (out / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "cloudserve.serving", "--host", "0.0.0.0"]' in dockerfile
    assert "EXPOSE 8080" in dockerfile
    assert "\nUSER" not in dockerfile  # SageMaker expects containers to run as root
    assert read_manifest(out / "model").version == "7"
    requirements = (out / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    # cloudserve is on no index: a wheel built from this source tree goes into the context
    assert len(list((out / "wheels").glob("cloudserve-*.whl"))) == 1
    assert "COPY wheels /opt/cloudserve/wheels" in dockerfile
    assert not any("cloudserve" in r for r in requirements)  # installed --no-deps, last
    assert "wrote" in capsys.readouterr().out


def test_the_image_sets_nothing_that_hides_the_clouds_model(sklearn_dir: Path, tmp_path: Path):
    """An image ENV CLOUDSERVE_MODEL_DIR once shadowed AZUREML_MODEL_DIR, and the baked model
    sat at /opt/ml/model, where SageMaker mounts the model it hands over."""
    context = _image.write_build_context(sklearn_dir, tmp_path / "ctx")
    dockerfile = context.dockerfile.read_text()
    assert "MODEL_DIR" not in dockerfile
    assert "COPY model /opt/cloudserve/model" in dockerfile
    assert "/opt/ml/model" not in dockerfile


def test_no_package_host_is_written_into_the_dockerfile(torch_dir: Path, tmp_path: Path):
    context = _image.write_build_context(torch_dir, tmp_path / "ctx")
    text = context.dockerfile.read_text() + (tmp_path / "ctx" / "requirements.txt").read_text()
    assert "://" not in text and "index-url" not in text
    assert any(r.startswith("torch==") and "+" not in r for r in context.requirements)


def test_build_image_without_an_engine_says_how_to_build_later(
    custom_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PATH", str(tmp_path / "no-engines-here"))
    assert main(["build-image", str(custom_dir), "--output", str(tmp_path / "img")]) == 0
    assert "no container engine answered" in capsys.readouterr().out
    assert "torch" not in (tmp_path / "img" / "requirements.txt").read_text()


def test_podman_is_used_when_docker_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """build-image once tried `docker build` only; Podman runs containers on many machines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for engine, code in (("docker", 1), ("podman", 0)):
        script = bin_dir / engine
        script.write_text(f"#!/bin/sh\nexit {code}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert _image.container_engine() == "podman"
    assert _image.container_engine("docker") is None


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
