"""Where the model comes from when the server is started by a cloud rather than by a person.

Each cloud hands a container its model its own way; the first that applies wins:

==================  ==========================================================================
source              how it arrives
==================  ==========================================================================
``--model-dir``     the command line (``cloudserve serve PATH``, the local provider)
Vertex AI           ``AIP_STORAGE_URI=gs://…``: nothing is mounted, the container downloads it
Azure ML            ``AZUREML_MODEL_DIR=…/NAME/VERSION``; a folder model sits one level below,
                    in a folder named after the uploaded one; a file model is the file itself
SageMaker           ``/opt/ml/model`` (``model.tar.gz`` extracted there)
KServe              ``/mnt/models`` (the storage initializer's download)
baked in            the model ``cloudserve build-image`` copied into the image: only the fallback
                    for a plain ``docker run``, never over a model the cloud hands over
==================  ==========================================================================
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import MANIFEST_FILE, read_manifest

__all__ = [
    "BAKED_MODEL_DIR",
    "KSERVE_MODEL_DIR",
    "SAGEMAKER_MODEL_DIR",
    "ModelSource",
    "download_gcs",
    "find_model_source",
    "locate_model",
    "resolve_azureml_model_dir",
]

log = logging.getLogger("cloudserve.serving")

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
KSERVE_MODEL_DIR = Path("/mnt/models")
BAKED_MODEL_DIR = Path("/opt/cloudserve/model")


@dataclass(frozen=True)
class ModelSource:
    """Which contract handed the model over (``kind``) and where it is (a path or a URI)."""

    kind: str
    location: str


def _has_files(path: Path) -> bool:
    if path.is_file():
        return True
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:  # a mount point the server may not list
        return False


def find_model_source(
    environ: Mapping[str, str] | None = None,
    *,
    sagemaker_dir: Path = SAGEMAKER_MODEL_DIR,
    kserve_dir: Path = KSERVE_MODEL_DIR,
    baked_dir: Path = BAKED_MODEL_DIR,
) -> ModelSource:
    """The first model a cloud handed over, in the order of the module docstring.

    Raises ``InvalidRequest`` naming every place looked at when there is none.
    """
    env = os.environ if environ is None else environ
    if env.get("AIP_STORAGE_URI"):
        return ModelSource("vertex", env["AIP_STORAGE_URI"])
    azure = env.get("AZUREML_MODEL_DIR")
    if azure and _has_files(Path(azure)):
        return ModelSource("azureml", azure)
    for kind, path in (("sagemaker", sagemaker_dir), ("kserve", kserve_dir), ("baked", baked_dir)):
        if _has_files(path):
            return ModelSource(kind, str(path))
    looked = ["AIP_STORAGE_URI", f"AZUREML_MODEL_DIR ({azure or 'unset'})"]
    looked += [str(sagemaker_dir), str(kserve_dir), str(baked_dir)]
    raise InvalidRequest(
        f"no model was handed to this server: looked at {', '.join(looked)}; "
        "pass --model-dir or start the image the way a cloud does",
        code="no_model",
    )


def resolve_azureml_model_dir(path: str | Path) -> Path:
    """The model inside ``AZUREML_MODEL_DIR``: the directory itself when it holds a servable
    model (a file model, a manifest, an ``MLmodel``), else its one subfolder (a folder model)."""
    root = Path(path)
    if root.is_file() or (root / MANIFEST_FILE).exists() or (root / "MLmodel").exists():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    folders = [p for p in entries if p.is_dir()]
    if len(folders) == 1 and len(entries) == 1:
        return folders[0]
    try:
        read_manifest(root)
    except InvalidRequest as exc:
        names = sorted(p.name for p in entries)[:10]
        raise InvalidRequest(
            f"AZUREML_MODEL_DIR {root} holds {names}: neither a model nor one model folder",
            code="no_model",
        ) from exc
    return root


def download_gcs(uri: str, dest: Path) -> Path:
    """Download every object under ``gs://BUCKET/PREFIX`` into ``dest``; returns ``dest``.

    Uses ``google-cloud-storage`` with the container's default credentials (the Vertex service
    account); ``STORAGE_EMULATOR_HOST`` points it at an emulator.
    """
    if not uri.startswith("gs://"):
        raise InvalidRequest(
            f"AIP_STORAGE_URI must be a gs:// URI, got '{uri}'", code="bad_storage_uri"
        )
    bucket_name, _, prefix = uri[len("gs://") :].partition("/")
    prefix = prefix.strip("/")
    try:
        from google.cloud import storage
    except ModuleNotFoundError as exc:
        raise ImportError(
            "downloading AIP_STORAGE_URI needs google-cloud-storage: pip install 'cloudserve[gcs]'"
        ) from exc
    client = storage.Client()  # with STORAGE_EMULATOR_HOST: anonymous, at the emulator
    count = 0
    for blob in client.list_blobs(bucket_name, prefix=f"{prefix}/" if prefix else None):
        relative = blob.name[len(prefix) :].lstrip("/") if prefix else blob.name
        if not relative or relative.endswith("/"):  # a "folder" placeholder object
            continue
        target = dest / relative
        if dest.resolve() not in target.resolve().parents:
            raise InvalidRequest(f"object name {blob.name} leaves {dest}", code="bad_storage_uri")
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        count += 1
    if count == 0:
        raise InvalidRequest(f"no objects under {uri}", code="no_model")
    log.info("downloaded %d file(s) from %s to %s", count, uri, dest)
    return dest


def locate_model(
    environ: Mapping[str, str] | None = None,
    *,
    download_dir: Path | None = None,
    **dirs: Path,
) -> tuple[ModelSource, Path]:
    """Find the model a cloud handed over and make it a local path (downloading it for Vertex).

    ``dirs`` overrides the fixed places (``sagemaker_dir``, ``kserve_dir``, ``baked_dir``).
    """
    source = find_model_source(environ, **dirs)
    if source.kind == "vertex":
        dest = download_dir or Path(tempfile.mkdtemp(prefix="cloudserve-model-"))
        path = download_gcs(source.location, dest)
    elif source.kind == "azureml":
        path = resolve_azureml_model_dir(source.location)
    else:
        path = Path(source.location)
    log.info("model from %s (%s): %s", source.kind, source.location, path)
    return source, path
