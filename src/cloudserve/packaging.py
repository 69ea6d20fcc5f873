"""Model directories: the ``cloudserve.json`` manifest, framework detection and staging.

A servable model directory holds the artifact plus a small manifest::

    model/
      model.joblib          (or model.ubj / model.json, model.onnx, model.pt, predictor.py …)
      cloudserve.json       {"framework": "sklearn", "version": "3", "signature": {...}}

When the manifest is absent the framework is detected from the files, and an MLflow model
directory (an ``MLmodel`` file with a ``sklearn``, ``xgboost`` or ``onnx`` flavor) is read as
is. Providers call :func:`stage_model` to copy an artifact into a clean directory with a
manifest before they upload it.

Loading a pickle (``.joblib``, ``.pkl``) runs code from the file: only serve pickled models you
trust. ``.skops`` and ``.onnx`` files are the safer formats for artifacts of unknown origin.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any, Literal, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudserve.errors import InvalidRequest

__all__ = [
    "FRAMEWORKS",
    "MANIFEST_FILE",
    "Framework",
    "Manifest",
    "Signature",
    "archive_model",
    "custom_manifest_hint",
    "detect_framework",
    "find_artifact",
    "read_manifest",
    "stage_model",
    "write_manifest",
]

MANIFEST_FILE = "cloudserve.json"
Framework = Literal["sklearn", "xgboost", "onnx", "pytorch", "custom"]
FRAMEWORKS: tuple[str, ...] = ("sklearn", "xgboost", "onnx", "pytorch", "custom")

# File suffixes that identify a framework, in the order they are tried.
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "onnx": (".onnx",),
    "pytorch": (".pt", ".pth", ".torchscript"),
    "xgboost": (".ubj", ".xgb", ".bst"),
    "sklearn": (".skops", ".joblib", ".pkl", ".pickle"),
}
_ALIASES = {"scikit-learn": "sklearn", "torch": "pytorch", "torchscript": "pytorch"}


class Signature(BaseModel):
    """What one input row looks like. Every field is optional; the loaders infer what they can.

    ``n_features`` is checked on every request (a row of another width is a 400);
    ``feature_names`` orders the values of dict rows (``dataframe_records``, CSV with a header);
    ``dtype`` is the numpy dtype rows are converted to; ``input_name`` names the tensor for ONNX
    and the Open Inference Protocol.
    """

    model_config = ConfigDict(extra="forbid")

    n_features: int | None = Field(default=None, ge=1)
    feature_names: list[str] | None = None
    dtype: str = "float64"
    input_name: str | None = None


class Manifest(BaseModel):
    """The contents of ``cloudserve.json``.

    ``artifact`` is the model file inside the directory (found by suffix when absent);
    ``predictor`` is ``"module:Class"`` for ``framework="custom"``, the module living in the
    model directory.
    """

    model_config = ConfigDict(extra="allow")

    framework: Framework
    version: str = "1"
    name: str | None = None
    signature: Signature = Field(default_factory=Signature)
    artifact: str | None = None
    predictor: str | None = None


def _normalise(framework: str) -> str:
    name = _ALIASES.get(framework.lower(), framework.lower())
    if name not in FRAMEWORKS:
        raise InvalidRequest(
            f"unknown framework '{framework}'; use one of {', '.join(FRAMEWORKS)}",
            code="unknown_framework",
        )
    return name


def write_manifest(
    model_dir: str | Path,
    *,
    framework: str,
    version: str = "1",
    signature: Signature | dict[str, Any] | None = None,
    **extra: Any,
) -> Manifest:
    """Write ``cloudserve.json`` into ``model_dir`` and return the manifest written.

    ``extra`` carries the other manifest fields (``artifact``, ``predictor``, ``name``).
    """
    manifest = Manifest.model_validate(
        {
            "framework": _normalise(framework),
            "version": str(version),
            "signature": signature or {},
            **extra,
        }
    )
    path = Path(model_dir)
    path.mkdir(parents=True, exist_ok=True)
    data = manifest.model_dump(mode="json", exclude_none=True)
    (path / MANIFEST_FILE).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return manifest


def read_manifest(model_dir: str | Path) -> Manifest:
    """The manifest of a model directory: ``cloudserve.json``, else an MLflow ``MLmodel``, else
    one detected from the files. Raises ``InvalidRequest`` when nothing servable is found."""
    path = Path(model_dir)
    if path.is_file():
        return Manifest(framework=_by_suffix(path.parent, [path]), artifact=path.name)
    if not path.is_dir():
        raise InvalidRequest(f"model directory {path} does not exist", code="no_model")
    file = path / MANIFEST_FILE
    if file.exists():
        try:
            return Manifest.model_validate_json(file.read_bytes())
        except ValidationError as exc:
            raise InvalidRequest(
                f"{file} is not a valid manifest: {exc}", code="bad_manifest"
            ) from exc
    if (path / "MLmodel").exists():
        return _mlflow_manifest(path)
    return Manifest(framework=_by_suffix(path, sorted(path.iterdir())))


def detect_framework(model_dir: str | Path) -> str:
    """The framework of a model directory (or single model file), as the manifest names it."""
    return read_manifest(model_dir).framework


def find_artifact(model_dir: str | Path, manifest: Manifest) -> Path:
    """The model file a loader should open (the directory itself for ``custom``)."""
    path = Path(model_dir)
    if path.is_file():
        return path
    if manifest.artifact:
        found = path / manifest.artifact
        if not found.exists():
            raise InvalidRequest(f"{found} named by the manifest does not exist", code="no_model")
        return found
    if manifest.framework == "custom":
        return path
    suffixes = _SUFFIXES[manifest.framework]
    if manifest.framework == "xgboost":
        suffixes = (*suffixes, ".json")
    for suffix in suffixes:
        files = sorted(p for p in path.glob(f"*{suffix}") if p.name != MANIFEST_FILE)
        if files:
            return files[0]
    raise InvalidRequest(
        f"no {manifest.framework} model file ({', '.join(suffixes)}) in {path}", code="no_model"
    )


def custom_manifest_hint(model_dir: str | Path) -> str:
    """What a custom model's manifest needs, with the call that writes it for ``model_dir``."""
    path = Path(model_dir)
    modules = sorted(p.stem for p in path.glob("*.py")) if path.is_dir() else []
    module = modules[0] if len(modules) == 1 else "MODULE"
    return (
        f"a custom model needs {MANIFEST_FILE} with 'predictor': 'module:Class' naming its "
        "cloudserve.serving.Predictor subclass (a .py file in the model directory); write it "
        f"with cloudserve.packaging.write_manifest({str(path)!r}, framework='custom', "
        f"predictor='{module}:CLASS')"
    )


def _by_suffix(root: Path, files: list[Path]) -> Framework:
    for framework, suffixes in _SUFFIXES.items():
        if any(f.suffix.lower() in suffixes for f in files):
            return cast(Framework, framework)
    for f in files:  # an XGBoost model saved as JSON has a "learner" object at the top
        if f.suffix.lower() == ".json" and f.name != MANIFEST_FILE and _is_xgboost_json(f):
            return "xgboost"
    if any(f.suffix == ".py" for f in files):  # Python code and no model file: a custom model
        raise InvalidRequest(
            f"cannot tell the framework of {root}: no model file, only Python code; "
            + custom_manifest_hint(root),
            code="unknown_framework",
        )
    raise InvalidRequest(
        f"cannot tell the framework of {root}: no {MANIFEST_FILE}, no MLmodel and no known model "
        "file (.joblib .pkl .skops .ubj .json .onnx .pt)",
        code="unknown_framework",
    )


def _is_xgboost_json(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return b'"learner"' in fh.read(4096)
    except OSError:
        return False


def _mlflow_manifest(path: Path) -> Manifest:
    import yaml

    doc = yaml.safe_load((path / "MLmodel").read_text()) or {}
    flavors = doc.get("flavors") or {}
    signature = _mlflow_signature(doc.get("signature") or {})
    if "onnx" in flavors:
        return Manifest(framework="onnx", artifact=flavors["onnx"].get("data"), signature=signature)
    if "xgboost" in flavors:
        data = flavors["xgboost"].get("data")
        return Manifest(framework="xgboost", artifact=data, signature=signature)
    if "sklearn" in flavors:
        artifact = flavors["sklearn"].get("pickled_model")
        return Manifest(framework="sklearn", artifact=artifact, signature=signature)
    raise InvalidRequest(
        f"MLflow model {path} has flavors {sorted(flavors)}; cloudserve serves sklearn, xgboost "
        "and onnx flavors",
        code="unknown_framework",
    )


def _mlflow_signature(sig: dict[str, Any]) -> Signature:
    try:
        inputs = json.loads(sig.get("inputs") or "[]")
    except (TypeError, ValueError):
        return Signature()
    names = [c["name"] for c in inputs if isinstance(c, dict) and c.get("name")]
    if not names or len(names) != len(inputs):
        return Signature()
    return Signature(n_features=len(names), feature_names=names)


def stage_model(
    artifact: str | Path,
    dest: str | Path,
    *,
    framework: str | None = None,
    version: str = "1",
    name: str | None = None,
) -> Path:
    """Copy a model file or directory into ``dest`` with a manifest; returns ``dest``.

    An existing manifest is kept (its version updated to ``version``); otherwise the framework
    is ``framework`` or the one detected. ``dest`` is emptied first.
    """
    src, out = Path(artifact), Path(dest)
    if out.exists():
        shutil.rmtree(out)
    if src.is_dir():
        shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif src.is_file():
        out.mkdir(parents=True)
        shutil.copy2(src, out / src.name)
    else:
        raise InvalidRequest(f"model artifact {src} does not exist", code="no_model")
    described = (out / MANIFEST_FILE).exists() or (out / "MLmodel").exists()
    # A framework the caller names wins over detection (a .bin TorchScript file, say).
    current = (
        read_manifest(out)
        if described or not framework
        else Manifest(framework=_normalise(framework))
    )
    if (framework or current.framework) == "custom" and not current.predictor:
        raise InvalidRequest(custom_manifest_hint(src), code="bad_manifest")
    fields = current.model_dump(exclude_none=True, exclude={"framework", "version", "signature"})
    if src.is_file():
        fields.setdefault("artifact", src.name)
    if name and "name" not in fields:
        fields["name"] = name
    write_manifest(
        out,
        framework=framework or current.framework,
        version=version,
        signature=current.signature,
        **fields,
    )
    return out


def archive_model(model_dir: str | Path, dest: str | Path) -> Path:
    """Pack a staged model directory as ``model.tar.gz`` (files at the archive root)."""
    src, out = Path(model_dir), Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for item in sorted(src.iterdir()):
            tar.add(item, arcname=item.name)
    return out
