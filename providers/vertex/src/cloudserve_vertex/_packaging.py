"""What reaches Vertex AI for a model, and which route serves it.

**Prebuilt route.** Vertex's prebuilt scikit-learn / XGBoost prediction containers run no code
of ours: they load ``model.joblib`` / ``model.pkl`` (XGBoost also ``model.bst``) from the
artifact root, turn ``instances`` into ``np.asarray(instances)`` and call ``model.predict``,
ignoring ``parameters`` (Google's predictors: ``google/cloud/aiplatform/prediction/sklearn/
predictor.py`` and ``…/xgboost/predictor.py`` in googleapis/python-aiplatform). The image is
chosen from the library version that wrote the artifact, in the SDK's own table
(``google.cloud.aiplatform.helpers.get_prebuilt_prediction_container_uri``): scikit-learn
0.20–1.6, XGBoost 0.82–2.1.

**Container route.** Everything a prebuilt container cannot load or serve — a pickle from a
newer scikit-learn, an XGBoost 3 model (its ``.bst`` is UBJSON with a vector ``base_score``
that the 2.1 container reads wrongly, silently), ``.ubj``/``.json``/ONNX/TorchScript/custom
models, pipelines that select columns by name — runs in the cloudserve runtime image named by
the target's ``serving_image`` (``cloudserve build-image --push TARGET`` sets it). Vertex hands
that container the artifact as ``AIP_STORAGE_URI`` and its port and routes as ``AIP_*``
variables; the ``containerSpec`` declares them.
"""

from __future__ import annotations

import math
import pickle
import re
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.specs import ModelSpec

__all__ = [
    "PREBUILT",
    "ModelFacts",
    "PickleFacts",
    "Route",
    "check_parameters",
    "choose_route",
    "inspect_model",
    "prebuilt_image",
    "read_pickle_facts",
    "rows_for_prebuilt",
    "stage",
    "xgboost_file_version",
]

# The SDK's table of prebuilt prediction containers (framework → versions with an image),
# google/cloud/aiplatform/constants/prediction.py; a test compares it with the installed SDK.
PREBUILT: dict[str, tuple[str, ...]] = {
    "sklearn": (
        "0.20",
        "0.22",
        "0.23",
        "0.24",
        "1.0",
        "1.2",
        "1.3",
        "1.4",
        "1.5",
        "1.6",
    ),
    "xgboost": (
        "0.82",
        "0.90",
        "1.1",
        "1.2",
        "1.3",
        "1.4",
        "1.5",
        "1.6",
        "1.7",
        "2.0",
        "2.1",
    ),
}
_IMAGE_NAME = {"sklearn": "sklearn-cpu", "xgboost": "xgboost-cpu"}
# The file names each prebuilt container loads, in the order its predictor tries them.
PREBUILT_FILES = {
    "sklearn": ("model.joblib", "model.pkl"),
    "xgboost": ("model.bst", "model.joblib", "model.pkl"),
}
_LOADABLE_SUFFIXES = {"sklearn": (".joblib", ".pkl"), "xgboost": (".bst", ".joblib", ".pkl")}
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
PORT = 8080
BUILD_HINT = "cloudserve build-image --push {target}"


def _registry_host(location: str) -> str:
    region = location.split("-", 1)[0]
    return {"europe": "europe-docker.pkg.dev", "asia": "asia-docker.pkg.dev"}.get(
        region, "us-docker.pkg.dev"
    )


def _minor(version: str) -> str:
    parts = re.findall(r"\d+", version)
    if len(parts) < 2:
        raise InvalidRequest(f"cannot read a version number from {version!r}", provider="vertex")
    # the SDK writes xgboost 0.90 with two digits; every other minor as written
    return f"{int(parts[0])}.{parts[1] if parts[0] == '0' else int(parts[1])}"


def prebuilt_image(framework: str, version: str, location: str) -> str | None:
    """The prebuilt prediction image serving ``framework`` ``version`` (None when there is none)."""
    key = _minor(version)
    if key not in PREBUILT.get(framework, ()):
        return None
    tag = f"{_IMAGE_NAME[framework]}.{key.replace('.', '-')}"
    return f"{_registry_host(location)}/vertex-ai/prediction/{tag}:latest"


# -- what the artifact is ------------------------------------------------------------------------


@dataclass
class ModelFacts:
    """What cloudserve learns from a staged artifact before choosing a route."""

    framework: str
    artifact: Path
    library_version: str | None = None
    feature_names: list[str] | None = None
    integer_outputs: bool = False
    # Why no prebuilt container can serve it, when that is known from the artifact alone.
    blocker: str | None = None


def _installed(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "")) or None


# What an inert read of a pickle builds for real: numpy's array and scalar data (joblib needs them
# to step over its inline arrays) and a few harmless containers. Every other class the pickle
# names becomes an inert stand-in that only keeps the state it is given: no code from the
# file runs, and a model written by another scikit-learn version can still be read.
_REAL = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("joblib.numpy_pickle", "NDArrayWrapper"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
    ("builtins", "slice"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
}


class _Inert:
    """A stand-in for any class a pickle names: keeps its state, runs nothing."""

    state: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        obj = object.__new__(cls)
        obj.state = {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and state and isinstance(state[0], dict):
            state = state[0]
        self.state = state if isinstance(state, dict) else {}

    def __setitem__(self, key: Any, value: Any) -> None:
        self.state[key] = value

    def append(self, item: Any) -> None:
        """Lists pickled as APPENDS."""

    def extend(self, items: Any) -> None:
        """Lists pickled as APPENDS."""


class _InertFinder:
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REAL:
            return super().find_class(module, name)  # type: ignore[misc]
        return type(name, (_Inert,), {"__module__": module})


def _read_inert(path: Path) -> Any:
    """The object tree of a joblib / pickle file, built from inert stand-ins."""
    if path.suffix != ".pkl":
        from joblib import numpy_pickle as jp

        class _Joblib(_InertFinder, jp.NumpyUnpickler):
            pass

        # joblib decompresses by magic number here; the helper's name changed across releases
        opener = getattr(jp, "_validate_fileobject_and_memmap", None) or jp._read_fileobject
        with path.open("rb") as raw, opener(raw, str(path), None) as opened:
            fh = opened[0] if isinstance(opened, tuple) else opened
            return _Joblib(str(path), fh, False).load()

    class _Plain(_InertFinder, pickle.Unpickler):
        pass

    with path.open("rb") as fh:
        return _Plain(fh).load()


@dataclass
class PickleFacts:
    """What an inert read of a pickled estimator tells."""

    sklearn_version: str | None = None
    feature_names: list[str] | None = None
    integer_outputs: bool = False
    selects_by_name: bool = False


def _steps(obj: Any) -> list[Any]:
    steps = obj.state.get("steps") if isinstance(obj, _Inert) else None
    return [step[1] for step in steps if isinstance(step, tuple)] if isinstance(steps, list) else []


def _selects_by_name(obj: Any) -> bool:
    """True when a pipeline step selects DataFrame columns by name (fails on an ndarray)."""
    if not isinstance(obj, _Inert):
        return False
    if any(_selects_by_name(step) for step in _steps(obj)):
        return True
    for item in obj.state.get("transformers") or []:
        if not isinstance(item, tuple) or len(item) < 3:
            continue
        columns = item[2]
        if isinstance(columns, str | type | _Inert):
            return True
        if isinstance(columns, list | tuple) and any(isinstance(c, str) for c in columns):
            return True
        if _selects_by_name(item[1]):
            return True
    return False


def read_pickle_facts(path: Path) -> PickleFacts:
    """Version, feature names, output type and column selection of a pickled estimator, read
    without running code from the file."""
    import numpy as np

    try:
        top = _read_inert(path)
    except Exception as exc:
        raise InvalidRequest(
            f"cannot read the model file {path.name}: {type(exc).__name__}: {exc}",
            provider="vertex",
        ) from exc
    facts = PickleFacts()
    if not isinstance(top, _Inert):
        return facts
    version = top.state.get("_sklearn_version")
    facts.sklearn_version = str(version) if version else None
    steps = _steps(top)
    first, last = (steps[0], steps[-1]) if steps else (top, top)
    names = top.state.get("feature_names_in_")
    if names is None and isinstance(first, _Inert):
        names = first.state.get("feature_names_in_")
    if names is not None:
        facts.feature_names = [str(n) for n in np.asarray(names).tolist()]
    classes = last.state.get("classes_") if isinstance(last, _Inert) else None
    facts.integer_outputs = classes is not None and np.asarray(classes).dtype.kind in "iub"
    facts.selects_by_name = _selects_by_name(top)
    return facts


def xgboost_file_version(path: Path) -> str | None:
    """The XGBoost version recorded in a UBJSON / JSON model file (None for the old binary)."""
    data = path.read_bytes()
    if data[:1] != b"{":
        return None
    if data[:2] == b'{"' or data[:3] == b'{ "':
        found = re.search(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)', data)
        return f"{int(found[1])}.{int(found[2])}" if found else None
    return _ubjson_version(data)


def _ubjson_version(data: bytes) -> str | None:
    """Read the top-level ``version`` array of an XGBoost UBJSON model
    (``[`` then optional ``$type`` and ``#count``, then the numbers)."""
    at = data.find(b"version[")
    if at < 0:
        return None
    pos = at + len(b"version[")
    sizes = {b"i": ("b", 1), b"U": ("B", 1), b"I": (">h", 2), b"l": (">i", 4), b"L": (">q", 8)}
    fixed = None
    if data[pos : pos + 1] == b"$":  # one element type for the whole array
        fixed, pos = data[pos + 1 : pos + 2], pos + 2
    if data[pos : pos + 1] == b"#":  # the element count: a typed integer to skip
        count_type = data[pos + 1 : pos + 2]
        if count_type not in sizes:
            return None
        pos += 2 + sizes[count_type][1]
    numbers: list[int] = []
    while len(numbers) < 2:
        if fixed is None:
            marker, pos = data[pos : pos + 1], pos + 1
        else:
            marker = fixed
        if marker not in sizes:
            return None
        fmt, width = sizes[marker]
        numbers.append(struct.unpack(fmt, data[pos : pos + width])[0])
        pos += width
    return f"{numbers[0]}.{numbers[1]}"


def inspect_model(directory: Path) -> ModelFacts:
    """Read the staged model's framework, writer version, feature names and output type."""
    from cloudserve.packaging import find_artifact, read_manifest

    manifest = read_manifest(directory)
    artifact = find_artifact(directory, manifest)
    facts = ModelFacts(manifest.framework, artifact)
    facts.feature_names = manifest.signature.feature_names
    recorded = (getattr(manifest, "libraries", None) or {}) if manifest.model_extra else {}
    if manifest.framework not in PREBUILT:
        facts.blocker = f"Vertex AI has no prebuilt prediction container for {manifest.framework}"
        return facts
    suffix = artifact.suffix.lower()
    if suffix not in _LOADABLE_SUFFIXES[manifest.framework]:
        facts.blocker = (
            f"Vertex's prebuilt {manifest.framework} containers load "
            f"{' / '.join(PREBUILT_FILES[manifest.framework])}, not a {suffix} file"
        )
        return facts
    if manifest.framework == "xgboost" and suffix == ".bst":
        written = xgboost_file_version(artifact)
        # the old binary format is only written by XGBoost < 3: any 1.x/2.x container reads it
        facts.library_version = written or recorded.get("xgboost") or "2.1"
        return facts
    read = read_pickle_facts(artifact)
    if manifest.framework == "sklearn":
        facts.library_version = recorded.get("scikit-learn") or read.sklearn_version
    else:
        facts.library_version = recorded.get("xgboost") or _installed("xgboost")
    if facts.feature_names is None:
        facts.feature_names = read.feature_names
    facts.integer_outputs = read.integer_outputs
    if read.selects_by_name:
        facts.blocker = (
            "the pipeline selects columns by name, and Google's prebuilt predictor hands the "
            "model an ndarray (np.asarray(instances)) without column names"
        )
    elif facts.library_version is None:
        facts.blocker = f"the {manifest.framework} version that wrote {artifact.name} is unknown"
    return facts


# -- which route ---------------------------------------------------------------------------------


@dataclass
class Route:
    """How a model version is served: ``prebuilt`` or ``container`` and with which image."""

    kind: str
    image: str
    facts: ModelFacts | None = None
    reason: str = ""

    @property
    def prebuilt(self) -> bool:
        return self.kind == "prebuilt"

    def container_spec(self, env: dict[str, str]) -> dict[str, Any]:
        """The ``ModelContainerSpec``: the image alone for a prebuilt container; for the
        cloudserve runtime its port and routes (Vertex passes them as ``AIP_HTTP_PORT``,
        ``AIP_PREDICT_ROUTE``, ``AIP_HEALTH_ROUTE``; ``AIP_STORAGE_URI`` is set by Vertex)."""
        spec: dict[str, Any] = {"image_uri": self.image}
        if not self.prebuilt:
            spec.update(
                predict_route=PREDICT_ROUTE,
                health_route=HEALTH_ROUTE,
                ports=[{"container_port": PORT}],
                env=[{"name": k, "value": v} for k, v in sorted(env.items())],
            )
        return spec


def choose_route(
    model: ModelSpec,
    facts: ModelFacts | None,
    *,
    location: str,
    serving_image: str | None,
    target: str,
) -> Route:
    """The prebuilt container when one can load and serve the artifact; else the container
    route with ``serving_image``; else ``InvalidRequest`` naming the versions and the command
    that builds and pushes the runtime image."""
    if model.image:
        return Route("container", model.image, facts, "the model names its image")
    if facts is None and model.framework in PREBUILT and model.framework_version:
        # a cloud artifact cloudserve cannot inspect: the version the caller states decides
        image = prebuilt_image(model.framework, model.framework_version, location)
        if image:
            return Route("prebuilt", image, None, f"{model.framework} {model.framework_version}")
    why = ""
    if facts is not None and facts.blocker is None:
        version = model.framework_version or facts.library_version
        image = prebuilt_image(facts.framework, version, location) if version else None
        if image:
            return Route("prebuilt", image, facts, f"{facts.framework} {version}")
        why = (
            f"the artifact was written by {facts.framework} {version}; Vertex's prebuilt "
            f"{facts.framework} containers cover {PREBUILT[facts.framework][0]}–"
            f"{PREBUILT[facts.framework][-1]}"
        )
        if facts.framework == "xgboost" and version and int(_minor(version).split(".")[0]) >= 3:
            why += " (an XGBoost 3 model loads in the 2.1 container but predicts wrongly)"
    elif facts is not None:
        why = facts.blocker or ""
    else:
        why = "the model has no local artifact cloudserve can inspect"
    if serving_image:
        return Route("container", serving_image, facts, why)
    raise InvalidRequest(
        f"model {model.name} v{model.version} needs the container route: {why}. The target has "
        f"no serving_image; build and push the cloudserve runtime image with "
        f"`{BUILD_HINT.format(target=target)}` (it sets serving_image), or give "
        "ModelSpec(image=…)",
        provider="vertex",
        code="needs_container_route",
    )


def check_parameters(route_kind: str, parameters: dict[str, Any] | None) -> None:
    """Prebuilt containers ignore ``parameters``: refuse them rather than answer wrongly."""
    if route_kind == "prebuilt" and parameters:
        raise InvalidRequest(
            f"parameters {sorted(parameters)} need the container route: Google's prebuilt "
            "predictor ignores parameters and always calls model.predict (redeploy with the "
            "target's serving_image, set by `cloudserve build-image --push TARGET`)",
            provider="vertex",
        )


def rows_for_prebuilt(instances: list[Any], feature_names: list[str] | None) -> list[Any]:
    """Instances as ``np.asarray``-ready rows: dict records reordered to the model's feature
    order, NaN sent as null (JSON has no NaN)."""
    out = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            if not feature_names:
                raise InvalidRequest(
                    "named columns need the model's feature names, and this model has none "
                    "recorded; send rows in the training column order",
                    provider="vertex",
                )
            missing = [n for n in feature_names if n not in row]
            extra = [k for k in row if k not in feature_names]
            if missing or extra:
                raise InvalidRequest(
                    f"row {i}: missing columns {missing}, unknown columns {extra}; the model "
                    f"takes {feature_names}",
                    provider="vertex",
                )
            row = [row[n] for n in feature_names]
        if isinstance(row, list | tuple):
            row = [_json_value(v) for v in row]
        out.append(row)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


# -- staging -------------------------------------------------------------------------------------


def stage(model: ModelSpec, workdir: Path) -> Path:
    """Copy ``model``'s local artifact into ``workdir/model`` with its manifest."""
    from cloudserve.packaging import stage_model

    if model.artifact is None:
        raise InvalidRequest("a model without an artifact needs ModelSpec(image=…)")
    return stage_model(
        model.artifact,
        workdir / "model",
        framework=model.framework,
        version=model.version,
        name=model.name,
    )


def prepare_prebuilt(directory: Path, facts: ModelFacts) -> None:
    """Rename the artifact to the file the prebuilt container loads and record the feature
    names in the manifest (cloudserve orders named columns with them before sending)."""
    from cloudserve.packaging import read_manifest, write_manifest

    suffix = facts.artifact.suffix.lower()
    target = directory / f"model{suffix}"
    if facts.artifact != target:
        facts.artifact.rename(target)
        facts.artifact = target
    current = read_manifest(directory)
    fields = current.model_dump(
        exclude_none=True, exclude={"framework", "version", "signature", "artifact"}
    )
    signature = current.signature.model_copy(update={"feature_names": facts.feature_names})
    write_manifest(
        directory,
        framework=facts.framework,
        version=current.version,
        signature=signature,
        artifact=target.name,
        **fields,
    )


def files_of(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def label_value(text: str) -> str:
    """``text`` as a valid GCP label value (lowercase, digits, ``_``, ``-``; 63 chars)."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def tempdir() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for staging."""
    return tempfile.TemporaryDirectory(prefix="cs-vertex-")
