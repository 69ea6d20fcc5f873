"""Session fixtures: the cached base image, one built image per framework, running containers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _models import MAKERS
from _runtime import base_image, build_volumes, podman, podman_env

from cloudserve.serving._image import build_image, write_build_context
from cloudserve.testing.components import needs

FRAMEWORKS = ("sklearn", "xgboost", "onnx", "pytorch", "custom")  # sklearn first: the cheapest
_IMPORTS = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "onnx": "onnxruntime",
    "pytorch": "torch",
    "xgb-classifier": "xgboost",
    "lgbm-classifier": "lightgbm",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def podman_base() -> str:
    """The Debian base image (built once per machine, cached), with podman configured."""
    needs("podman", "builds and runs the serving image as each cloud starts it")
    needs("/usr/sbin/runc", "the OCI runtime podman uses on this kind of machine")
    needs("debootstrap", "makes the Debian base image (no image registry is reachable)")
    # Product code (build-image) calls podman too: give it the same configuration.
    os.environ["CONTAINERS_CONF"] = podman_env()["CONTAINERS_CONF"]
    return base_image()


@pytest.fixture(scope="session")
def model_pair(tmp_path_factory: pytest.TempPathFactory):
    """framework -> (baked, handed) model directories, made on first use."""
    root = tmp_path_factory.mktemp("container-models")
    made: dict[str, tuple[Path, Path]] = {}

    def get(framework: str) -> tuple[Path, Path]:
        if framework not in made:
            if framework in _IMPORTS:
                pytest.importorskip(_IMPORTS[framework], reason=f"the {framework} loader")
            if framework == "onnx":
                pytest.importorskip("skl2onnx", reason="makes the ONNX test model")
            maker = MAKERS[framework]
            made[framework] = (
                maker(root / f"{framework}-baked", 0),
                maker(root / f"{framework}-handed", 1),
            )
        return made[framework]

    return get


def _context_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def built_images(podman_base: str, model_pair, tmp_path_factory: pytest.TempPathFactory):
    """kind -> image, built with the ``baked`` model inside, once per session and kept in
    podman's store under a digest of its build context, so a later run reuses it (and a changed
    context rebuilds on the cached layers of the pinned environment)."""
    root = tmp_path_factory.mktemp("build-contexts")
    built: dict[str, str] = {}

    def get(kind: str) -> str:
        if kind not in built:
            baked, _ = model_pair(kind)
            context = write_build_context(baked, root / kind, base_image=podman_base)
            repo = f"localhost/cloudserve-test-{kind}"
            tag = f"{repo}:{_context_digest(context.directory)}"
            if podman("image", "exists", tag, check=False).returncode != 0:
                options = ("--network", "host", *build_volumes())
                build_image(context, tag, engine="podman", options=options)
                _drop_older(repo, tag)
            built[kind] = tag
        return built[kind]

    return get


def _drop_older(repo: str, keep: str) -> None:
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout
    for name in listed.split():
        if name != keep:
            podman("rmi", name, check=False)


class Container:
    """A running container and the URL its server answers on."""

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait_healthy(self, route: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = podman(
                "inspect", "-f", "{{.State.Running}}", self.name, check=False
            ).stdout.strip()
            if state == "false":
                pytest.fail(f"the container exited before it was healthy:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}{route}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        pytest.fail(f"{route} was not healthy after {timeout} s:\n{self.logs()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM, as the clouds stop containers; returns the exit code."""
        podman("stop", "-t", "30", self.name, check=False)
        code = podman("inspect", "-f", "{{.State.ExitCode}}", self.name, check=False).stdout.strip()
        return int(code) if code.lstrip("-").isdigit() else -1


@contextlib.contextmanager
def run_container(
    image: str,
    *args: str,
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
    host_network_port: int | None = None,
) -> Iterator[Container]:
    """``podman run -d`` the image. The server's 8080 is published on a free loopback port,
    unless ``host_network_port`` says it shares the host's network and listens there."""
    name = f"cloudserve-test-{uuid.uuid4().hex[:10]}"
    opts = ["--name", name]
    if host_network_port is None:
        port = free_port()
        opts += ["-p", f"127.0.0.1:{port}:8080"]
    else:
        port = host_network_port
        opts += ["--network", "host"]
    for key, value in (env or {}).items():
        opts += ["-e", f"{key}={value}"]
    for host, inside in (mounts or {}).items():
        opts += ["-v", f"{host}:{inside}:ro"]
    podman("run", "-d", *opts, image, *args, timeout=120)
    container = Container(name, f"http://127.0.0.1:{port}")
    try:
        yield container
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
