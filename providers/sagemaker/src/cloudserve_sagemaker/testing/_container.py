"""The fake's stand-in for a SageMaker serving container.

A model's ``model.tar.gz`` is unpacked once per S3 object. When it holds ``code/inference.py``
(the framework route) the fake calls its ``model_fn`` / ``input_fn`` / ``predict_fn`` /
``output_fn`` exactly as the SageMaker inference toolkit does, so the generated handlers are
what answers. Otherwise (the container route) the cloudserve runtime image would serve the
directory; the fake runs the same runtime in-process through ``cloudserve.serving``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["Container", "ContainerError", "ContainerPool"]


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

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Answer one ``/invocations`` request: (response body, content type)."""
        try:
            if self.handlers is not None:
                data = self.handlers.input_fn(body, content_type)
                prediction = self.handlers.predict_fn(data, self.model)
                out, out_type = self.handlers.output_fn(prediction, accept)
            else:
                instances = _decode(body, content_type)
                prediction = self.model.predict(instances)
                out, out_type = _encode(prediction, accept)
        except ContainerError:
            raise
        except Exception as exc:  # the container turns bad input into a 4xx, like the toolkit
            raise ContainerError(400, f"{type(exc).__name__}: {exc}") from exc
        return (out.encode() if isinstance(out, str) else out), out_type


def _decode(body: bytes, content_type: str) -> Any:
    from cloudserve import codecs

    if codecs.media_type(content_type) == "application/jsonlines":
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    return codecs.decode_request(body, content_type or codecs.JSON)[0]


def _encode(prediction: Any, accept: str) -> tuple[bytes, str]:
    from cloudserve import codecs

    if codecs.media_type(accept) == "application/jsonlines":
        return "".join(json.dumps(p) + "\n" for p in prediction).encode(), "application/jsonlines"
    return codecs.encode_response(prediction, accept or codecs.JSON)


def _unpack(data: bytes, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(into, filter="data")


def _import_handlers(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ContainerPool:
    """Loaded containers keyed by the digest of their ``model.tar.gz``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()

    def get(self, tarball: bytes) -> Container:
        """The container serving this tarball, loading it on first use."""
        digest = hashlib.sha256(tarball).hexdigest()[:16]
        with self._lock:
            found = self._containers.get(digest)
            if found is None:
                found = self._load(tarball, digest)
                self._containers[digest] = found
            return found

    def _load(self, tarball: bytes, digest: str) -> Container:
        from cloudserve.serving import load_model

        model_dir = self.workdir / digest
        _unpack(tarball, model_dir)
        script = model_dir / "code" / "inference.py"
        if script.exists():
            handlers = _import_handlers(script, f"cloudserve_fake_inference_{digest}")
            return Container(model_dir, handlers, handlers.model_fn(str(model_dir)))
        return Container(model_dir, None, load_model(model_dir))
