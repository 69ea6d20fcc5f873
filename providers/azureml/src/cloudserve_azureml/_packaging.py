"""What Azure ML needs to serve a cloudserve model: scoring scripts, environments, names.

Framework route: the model artifact is registered as a ``custom_model`` asset (a folder or a
single file), and a generated ``score.py`` runs under Azure's inference server
(``azmlinfsrv``) in an environment built from a base image plus a conda file. Both are
self-contained: ``score.py`` is a thin wrapper around ``cloudserve_handler.py``, the source text
of the core's handler template (``cloudserve._handler``), shipped beside it; the conda file pins
Python, numpy, the framework and every distribution the model's pickle imports at the versions
of the environment that staged the model, plus ``azureml-inference-server-http``. cloudserve
itself is on no package index and is never listed.

Container route: the cloudserve runtime image as a custom-container environment whose
``inference_config`` routes point at the runtime's health and scoring routes; the runtime finds
the model under ``AZUREML_MODEL_DIR`` itself.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import pickle
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.specs import DeploySpec

__all__ = [
    "BATCH_SCRIPT_NAME",
    "HANDLER_NAME",
    "INFERENCE_SERVER",
    "RUNTIME_PORT",
    "SCORE_NAME",
    "TRIAL_WRAPPER_NAME",
    "asset_name",
    "batch_code",
    "batch_endpoint_name",
    "conda_file",
    "deployment_name",
    "inference_config",
    "model_requirements",
    "scoring_code",
    "script_requirements",
    "spec_hash",
    "trial_wrapper",
]

RUNTIME_PORT = 8080
SCORE_NAME = "score.py"
BATCH_SCRIPT_NAME = "batch_score.py"
HANDLER_NAME = "cloudserve_handler.py"
TRIAL_WRAPPER_NAME = "cloudserve_trial.py"
# Azure's docs: a custom environment for an online deployment lists the inference server.
# https://learn.microsoft.com/azure/machine-learning/how-to-inference-server-http
INFERENCE_SERVER = "azureml-inference-server-http>=1.3,<2"
# Batch deployments run score scripts through Azure's parallel-run driver, which needs
# azureml-core in the environment ("required for batch deployments to work",
# https://learn.microsoft.com/training/modules/deploy-model-batch-endpoint/4-deploy-custom-model-batch-endpoint).
BATCH_RUNTIME = "azureml-core"

# The framework distribution every model of a framework needs, whatever its file holds.
FRAMEWORK_DISTS = {
    "sklearn": ("scikit-learn", "joblib"),
    "xgboost": ("xgboost",),
    "onnx": ("onnxruntime",),
    "pytorch": ("torch",),
}
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
_HERE = Path(__file__).parent


def _source(module_file: str) -> str:
    return (_HERE / module_file).read_text()


def handler_source() -> str:
    """The core's handler template, as the text shipped next to the generated scripts."""
    from cloudserve import _handler

    return Path(_handler.__file__).read_text()


def scoring_code(directory: Path) -> Path:
    """Write ``score.py`` + ``cloudserve_handler.py`` into ``directory``; return it."""
    return _write(directory, {SCORE_NAME: _source("_score_script.py")})


def batch_script_source() -> str:
    """The source of ``batch_score.py``."""
    return _source("_batch_script.py")


def batch_code(directory: Path) -> Path:
    """Write ``batch_score.py`` + ``cloudserve_handler.py`` into ``directory``; return it."""
    return _write(directory, {BATCH_SCRIPT_NAME: batch_script_source()})


def trial_wrapper() -> str:
    """The source of ``cloudserve_trial.py`` (standard library only)."""
    return _source("_trial_script.py")


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in {**files, HANDLER_NAME: handler_source()}.items():
        (directory / name).write_text(text)
    return directory


def code_digest(directory: Path) -> str:
    """A short hash of a code directory's files (the code asset's version)."""
    digest = hashlib.sha256()
    for f in sorted(directory.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:12]


# -- environment pins ---------------------------------------------------------------------------


def _installed(dist: str) -> str | None:
    """The installed version without a local label (``2.13.0+cpu`` → ``2.13.0``): a local
    label names a build no package index serves."""
    try:
        return importlib.metadata.version(dist).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def _pin(dist: str, why: str) -> str:
    version = _installed(dist)
    if version is None:
        raise InvalidRequest(
            f"{why} needs {dist}, which is not installed where the model is staged: install the "
            "version the model was trained with, so the Azure environment can pin it",
            provider="azureml",
        )
    return f"{dist}=={version}"


def pickle_modules(path: Path) -> set[str]:
    """Every module a pickle (plain or joblib) imports while it loads.

    The file is loaded once, in this process (as the pre-deploy smoke test does): only stage
    pickles you trust.
    """
    seen: set[str] = set()

    def record(find_class: Any) -> Any:
        def wrapped(self: Any, module: str, name: str) -> Any:
            seen.add(module)
            return find_class(self, module, name)

        return wrapped

    if path.suffix == ".joblib" or _is_joblib(path):
        from joblib import numpy_pickle

        cls = numpy_pickle.NumpyUnpickler
        original = cls.find_class
        cls.find_class = record(original)  # type: ignore[method-assign]
        try:
            numpy_pickle.load(path)
        finally:
            cls.find_class = original  # type: ignore[method-assign]
        return seen | {"joblib"}

    class Recorder(pickle.Unpickler):
        find_class = record(pickle.Unpickler.find_class)

    with path.open("rb") as fh:
        Recorder(fh).load()
    return seen


def _is_joblib(path: Path) -> bool:
    # joblib.dump writes plain pickle opcodes with NumpyArrayWrapper globals in them
    head = path.read_bytes()[:4096]
    return b"joblib.numpy_pickle" in head or head[:2] == b"\x1f\x8b" or head[:3] == b"ZF\x78"


def _distributions(modules: Iterable[str]) -> dict[str, str]:
    """Top-level module → the distribution that provides it, for non-stdlib modules."""
    by_module = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for module in modules:
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("builtins", "__builtin__", "copy_reg"):
            continue
        if top.startswith("cloudserve"):
            raise InvalidRequest(
                f"the model's pickle imports {module}: cloudserve is on no package index, so an "
                "Azure environment cannot provide it; pickle the plain framework object",
                provider="azureml",
            )
        dists = by_module.get(top)
        if not dists:
            raise InvalidRequest(
                f"the model's pickle imports module '{module}', which no installed distribution "
                "provides (a class from a local file?): Azure cannot install it; package it or "
                "use the container route",
                provider="azureml",
            )
        found[top] = dists[0]
    return found


def model_requirements(artifact: str | Path, framework: str | None) -> list[str]:
    """The pip lines a model needs, pinned at the versions installed here (the staging env).

    numpy (the handler's one import), the framework's distributions, and every distribution a
    pickled artifact imports; pandas when a scikit-learn model was fitted on named columns.
    """
    path = Path(artifact)
    stamp = max((f.stat().st_mtime_ns for f in path.rglob("*")), default=0) if path.is_dir() else 0
    mtime = path.stat().st_mtime_ns if path.exists() else 0
    return list(_model_requirements(str(path.resolve()), max(stamp, mtime), framework))


@functools.lru_cache(maxsize=32)
def _model_requirements(artifact: str, stamp: int, framework: str | None) -> tuple[str, ...]:
    path = Path(artifact)
    pins = {"numpy": _pin("numpy", "the scoring script")}
    fw = framework or detect(path)
    for dist in FRAMEWORK_DISTS.get(fw, ()):
        pins[dist.lower()] = _pin(dist, f"a {fw} model")
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    for f in files:
        if f.suffix.lower() not in PICKLE_SUFFIXES:
            continue
        for dist in _distributions(pickle_modules(f)).values():
            pins.setdefault(dist.lower(), _pin(dist, f"the pickle {f.name}"))
    return tuple(sorted(pins.values(), key=str.lower))


#: the frameworks ``score.py`` (the core's handler template) loads on the framework route
FRAMEWORK_ROUTE = ("sklearn", "xgboost")


def container_image(model: Any, serving_image: str | None, target: str | None) -> str | None:
    """The image the container route deploys for ``model`` (``None``: the framework route).

    The model's own ``image`` wins; a model ``score.py`` loads takes the framework route; any
    other takes the target's ``serving_image``, and without one it is refused with the command
    that builds and records it."""
    if model.image:
        return str(model.image)
    framework = model.framework or (detect(Path(model.artifact)) if model.artifact else "custom")
    framework = {"scikit-learn": "sklearn"}.get(framework, framework)
    if framework in FRAMEWORK_ROUTE:
        return None
    if serving_image:
        return serving_image
    from cloudserve.errors import InvalidRequest

    raise InvalidRequest(
        f"{model.name} v{model.version} ({framework}) has no Azure ML framework route: score.py"
        f" loads {' and '.join(FRAMEWORK_ROUTE)} models. Use the container route: `cloudserve"
        f" build-image {model.artifact or 'MODEL_DIR'} --push {target or 'TARGET'}` builds the"
        " cloudserve serving image with the model's library versions, pushes it to the"
        " workspace's registry and sets the target's serving_image (or give"
        " ModelSpec(image=...))",
        provider="azureml",
    )


def detect(path: Path) -> str:
    """The framework of a model folder (its manifest or files) or of a single model file."""
    from cloudserve.packaging import detect_framework

    if path.is_dir():
        return detect_framework(path)
    suffix = path.suffix.lower()
    for fw, suffixes in {
        "sklearn": (*PICKLE_SUFFIXES, ".skops"),
        "xgboost": (".ubj", ".xgb", ".bst", ".json"),
        "onnx": (".onnx",),
        "pytorch": (".pt", ".pth"),
    }.items():
        if suffix in suffixes:
            return fw
    return "custom"


def script_requirements(paths: Iterable[Path]) -> list[str]:
    """Pins of the installed distributions that some Python files import (a training script)."""
    modules: set[str] = set()
    for path in paths:
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
    local = {p.stem for p in paths}
    by_module = importlib.metadata.packages_distributions()
    pins = set()
    for module in modules:
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in local or top.startswith("cloudserve"):
            continue
        for dist in by_module.get(top, [])[:1]:
            version = _installed(dist)
            if version is not None:
                pins.add(f"{dist}=={version}")
    return sorted(pins, key=str.lower)


def capture_requirements() -> list[str]:
    """What ``score.py`` needs to write custom-logging collections (data capture)."""
    return ["azureml-ai-monitoring", _pin("pandas", "data capture")]


def scoring_env_vars(spec: DeploySpec) -> dict[str, str]:
    """Settings the generated scripts read: the framework (a file model has no manifest) and
    whether to capture inputs and outputs."""
    assert spec.model.artifact is not None
    env = {"CLOUDSERVE_FRAMEWORK": spec.model.framework or detect(Path(spec.model.artifact))}
    if spec.data_capture is not None and spec.data_capture.enabled:
        env["CLOUDSERVE_DATA_CAPTURE"] = "1"
    return env


def content_version(*parts: Any) -> str:
    """An asset version from its content (the same content → the same version, reused)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def python_version() -> str:
    """The staging interpreter's ``MAJOR.MINOR``: the environment's Python (pins match it)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def conda_file(pip: list[str], *, python: str | None = None) -> dict[str, Any]:
    """A conda spec: Python from conda-forge, everything else from pip, in the order given."""
    return {
        "name": "cloudserve",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python or python_version()}", "pip", {"pip": list(pip)}],
    }


def inference_config() -> dict[str, Any]:
    """Routes of the cloudserve runtime image, for a custom-container environment."""
    return {
        "liveness_route": {"port": RUNTIME_PORT, "path": "/ping"},
        "readiness_route": {"port": RUNTIME_PORT, "path": "/ping"},
        "scoring_route": {"port": RUNTIME_PORT, "path": "/score"},
    }


# -- names ------------------------------------------------------------------------------------


# Online/batch endpoint and deployment names (Azure's naming rules for endpoints:
# https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas#azure-machine-learning-online-endpoints-and-batch-endpoints)
NAME_RULE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")


def valid_name(name: str) -> bool:
    """Whether Azure accepts ``name`` for an endpoint or a deployment."""
    return NAME_RULE.match(name) is not None


def deployment_name(variant: str) -> str:
    """The Azure deployment name for a variant (3–32 characters, a letter first, letters,
    digits and ``-``, not ending in ``-``)."""
    name = re.sub(r"[^a-z0-9-]", "-", variant.lower()).strip("-")
    if len(name) < 3:
        name = f"{name}-cs"
    if not name[0].isalpha():
        name = f"v-{name}"
    if len(name) > 32:
        name = f"{name[:23].rstrip('-')}-{hashlib.sha256(variant.encode()).hexdigest()[:8]}"
    return name


def spec_hash(spec: DeploySpec) -> str:
    """A short hash of everything that makes a deployment differ (same hash → no-op)."""
    # the mirrored share lives on the endpoint, not the deployment (0: the hashes stay as they were)
    data = spec.model_copy(update={"shadow": 0}).model_dump_json(
        exclude={"traffic", "keep_on_failure"}
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def asset_name(*parts: str) -> str:
    """An asset name Azure accepts, from cloudserve names."""
    return re.sub(r"[^a-zA-Z0-9_-]", "-", "-".join(parts))[:255]


def batch_endpoint_name(model: str) -> str:
    """The batch endpoint that serves a model's batch jobs (3–32 characters, a letter first,
    letters, digits and ``-``, not ending in ``-``)."""
    name = "csb-" + re.sub(r"[^a-z0-9-]", "-", model.lower()).strip("-")
    if len(name) > 32:
        name = f"{name[:23].rstrip('-')}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"
    return name.rstrip("-")
