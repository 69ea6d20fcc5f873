"""The fake's stand-in for a SageMaker serving container.

A model's ``model.tar.gz`` is unpacked once per S3 object and container environment, into
``model/`` (SageMaker's ``/opt/ml/model``). When the environment names ``SAGEMAKER_PROGRAM`` (the
framework route) the code is found the way the prebuilt images' ``sagemaker-containers`` finds it
(``_modules.import_module`` → ``_files.download_and_extract``, sagemaker-containers 2.8.6): an
``s3://`` ``SAGEMAKER_SUBMIT_DIRECTORY`` is downloaded and extracted whole into ``code/``
(``/opt/ml/code``), a directory is copied there, and ``import <program>`` runs from ``code/`` — a
module that is not at its root fails the container, as ``ModuleNotFoundError`` fails the ping
check there. Then ``model_fn`` / ``input_fn`` / ``predict_fn`` / ``output_fn`` are called in the
inference toolkit's order. Otherwise (the container route) the cloudserve runtime image would
serve the directory; the fake runs the same runtime in-process through ``cloudserve.serving``.

The fake runs the handlers in this process (with cloudserve importable); the reference tests
run them in a venv pinned to an image's libraries without cloudserve.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["Container", "ContainerError", "ContainerPool"]

# The handlers run in this process, so a container's environment is this process's while they
# run; one container at a time.
_ENV_LOCK = threading.Lock()


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class ContainerError(Exception):
    """The container answered with an error status (what SageMaker reports as ModelError)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Container:
    """One loaded model directory and the handlers that serve it."""

    model_dir: Path
    handlers: ModuleType | None
    model: Any
    env: Mapping[str, str] = field(default_factory=dict)

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Answer one ``/invocations`` request: (response body, content type)."""
        try:
            if self.handlers is not None:
                with _environment(self.env):
                    data = self.handlers.input_fn(body, content_type)
                    prediction = self.handlers.predict_fn(data, self.model)
                    out, out_type = self.handlers.output_fn(prediction, accept)
            else:
                # as the cloudserve runtime answers /invocations (a request without parameters
                # gets the environment's default, ServerSettings.default_parameters)
                instances, parameters = self.model.decode(body, content_type or "application/json")
                if not parameters:
                    from cloudserve.serving import ServerSettings

                    with _environment(self.env):
                        parameters = ServerSettings().default_parameters
                prediction = self.model.predict(instances, parameters)
                out, out_type = _encode(prediction, accept)
        except ContainerError:
            raise
        except Exception as exc:  # the container turns bad input into a 4xx, like the toolkit
            raise ContainerError(400, f"{type(exc).__name__}: {exc}") from exc
        return (out.encode() if isinstance(out, str) else out), out_type


def _encode(prediction: Any, accept: str) -> tuple[bytes, str]:
    from cloudserve import codecs

    return codecs.encode_response(prediction, accept or codecs.JSON)


def _unpack(data: bytes, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(into, filter="data")


MODEL_MOUNT = "/opt/ml/model"


def download_and_extract(
    uri: str, code_dir: Path, model_dir: Path, fetch: Callable[[str], bytes]
) -> None:
    """sagemaker-containers' ``_files.download_and_extract(uri, /opt/ml/code)``: an ``s3://``
    tarball is extracted whole, a directory (here: under the model mount) is copied."""
    if code_dir.exists():
        shutil.rmtree(code_dir)
    if uri.startswith("s3://"):
        code_dir.mkdir(parents=True)
        _unpack(fetch(uri), code_dir)
        return
    if uri == MODEL_MOUNT or uri.startswith(MODEL_MOUNT + "/"):
        source = model_dir / uri[len(MODEL_MOUNT) :].lstrip("/")
        if source.is_dir():
            shutil.copytree(source, code_dir)
            return
    raise ContainerError(500, f"SAGEMAKER_SUBMIT_DIRECTORY {uri!r} holds no code")


def _import_handlers(code_dir: Path, program: str, digest: str) -> ModuleType:
    module = program.removesuffix(".py")
    path = code_dir / f"{module}.py"
    if not path.is_file():
        raise ContainerError(500, f"ImportModuleError: No module named '{module}'")
    spec = importlib.util.spec_from_file_location(f"cloudserve_fake_{module}_{digest}", path)
    assert spec is not None and spec.loader is not None
    handlers = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code_dir))
    try:
        spec.loader.exec_module(handlers)
    except Exception as exc:
        raise ContainerError(500, f"ImportModuleError: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(code_dir))
    return handlers


class ContainerPool:
    """Loaded containers keyed by the digest of their ``model.tar.gz``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()

    def get(
        self, tarball: bytes, env: Mapping[str, str], fetch: Callable[[str], bytes]
    ) -> Container:
        """The container serving this tarball with this environment, loaded on first use;
        ContainerError when it would not start."""
        key = hashlib.sha256(tarball + json.dumps(dict(env), sort_keys=True).encode())
        digest = key.hexdigest()[:16]
        with self._lock:
            found = self._containers.get(digest)
            if found is None:
                found = self._load(tarball, digest, env, fetch)
                self._containers[digest] = found
            return found

    def _load(
        self, tarball: bytes, digest: str, env: Mapping[str, str], fetch: Callable[[str], bytes]
    ) -> Container:
        from cloudserve.serving import load_model

        root = self.workdir / digest
        model_dir = root / "model"
        _unpack(tarball, model_dir)
        program = env.get("SAGEMAKER_PROGRAM")
        if program:
            code_dir = root / "code"
            download_and_extract(
                env.get("SAGEMAKER_SUBMIT_DIRECTORY", ""), code_dir, model_dir, fetch
            )
            with _environment(env):
                handlers = _import_handlers(code_dir, program, digest)
                try:
                    model = handlers.model_fn(str(model_dir))
                except Exception as exc:
                    message = f"model_fn failed: {type(exc).__name__}: {exc}"
                    raise ContainerError(500, message) from exc
            return Container(model_dir, handlers, model, dict(env))
        try:
            return Container(model_dir, None, load_model(model_dir), dict(env))
        except Exception as exc:
            raise ContainerError(500, f"the model did not load: {exc}") from exc
