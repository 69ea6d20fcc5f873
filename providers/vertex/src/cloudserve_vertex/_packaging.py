"""Making a model servable on Vertex AI, and a training script runnable as a tuning trial.

Framework route: the artifact is staged with ``cloudserve.packaging.stage_model`` and uploaded
to ``gs://BUCKET/PREFIX/models/NAME/VERSION/`` in the layout Vertex's prebuilt prediction
containers read (``model.joblib`` / ``model.pkl`` for scikit-learn, ``model.bst`` /
``model.joblib`` for XGBoost); the image comes from :data:`PREBUILT`. Every other artifact
(ONNX, TorchScript, custom predictors, XGBoost ``.ubj``/``.json``) takes the container route:
the cloudserve runtime image, told its routes and port through ``ModelContainerSpec``.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cloudserve.errors import InvalidRequest
from cloudserve.specs import ModelSpec, TrainSpec

__all__ = ["PREBUILT", "ServingPackage", "prebuilt_image", "stage", "trainer_package"]

# Vertex AI prebuilt prediction containers: framework → {major.minor: image tag}.
PREBUILT: dict[str, dict[str, str]] = {
    "sklearn": {
        "1.0": "sklearn-cpu.1-0",
        "1.2": "sklearn-cpu.1-2",
        "1.3": "sklearn-cpu.1-3",
        "1.5": "sklearn-cpu.1-5",
    },
    "xgboost": {"1.7": "xgboost-cpu.1-7", "2.0": "xgboost-cpu.2-0", "2.1": "xgboost-cpu.2-1"},
}
_DEFAULT_VERSION = {"sklearn": "1.5", "xgboost": "2.1"}
# The file names each prebuilt container looks for.
_PREBUILT_FILES = {"sklearn": (".joblib", ".pkl"), "xgboost": (".bst", ".joblib", ".pkl")}
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
PORT = 8080


def _registry_host(location: str) -> str:
    region = location.split("-", 1)[0]
    return {"europe": "europe-docker.pkg.dev", "asia": "asia-docker.pkg.dev"}.get(
        region, "us-docker.pkg.dev"
    )


def prebuilt_image(framework: str, version: str | None, location: str) -> str:
    """The prebuilt prediction image for a framework and version in ``location``."""
    table = PREBUILT.get(framework)
    if table is None:
        raise InvalidRequest(f"Vertex AI has no prebuilt prediction container for {framework}")
    wanted = version or _DEFAULT_VERSION[framework]
    key = ".".join(wanted.split(".")[:2])
    if key not in table:
        raise InvalidRequest(
            f"no prebuilt {framework} {wanted} container; known: {', '.join(table)}",
            provider="vertex",
        )
    return f"{_registry_host(location)}/vertex-ai/prediction/{table[key]}:latest"


@dataclass
class ServingPackage:
    """A staged model: its local directory and how Vertex should serve it."""

    directory: Path
    framework: str
    image: str
    container_route: bool
    files: list[Path] = field(default_factory=list)

    def container_spec(self, env: dict[str, str]) -> dict[str, Any]:
        """The ``ModelContainerSpec`` fields (routes and port only for the container route)."""
        spec: dict[str, Any] = {"image_uri": self.image}
        if self.container_route:
            spec.update(
                predict_route=PREDICT_ROUTE,
                health_route=HEALTH_ROUTE,
                ports=[{"container_port": PORT}],
                env=[{"name": k, "value": v} for k, v in sorted(env.items())],
            )
        return spec


def stage(model: ModelSpec, workdir: Path, *, location: str, runtime_image: str) -> ServingPackage:
    """Stage ``model``'s local artifact in ``workdir`` and choose its image."""
    from cloudserve.packaging import find_artifact, read_manifest, stage_model

    if model.artifact is None:
        raise InvalidRequest("a model without an artifact needs the container route (image=…)")
    directory = stage_model(
        model.artifact,
        workdir / "model",
        framework=model.framework,
        version=model.version,
        name=model.name,
    )
    manifest = read_manifest(directory)
    artifact = find_artifact(directory, manifest)
    suffixes = _PREBUILT_FILES.get(manifest.framework, ())
    prebuilt = model.image is None and artifact.suffix in suffixes
    if prebuilt:
        _rename_for_prebuilt(directory, artifact, manifest.framework)
        image = prebuilt_image(manifest.framework, model.framework_version, location)
    else:
        image = model.image or runtime_image
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return ServingPackage(directory, manifest.framework, image, not prebuilt, files)


def _rename_for_prebuilt(directory: Path, artifact: Path, framework: str) -> None:
    """Prebuilt containers load exactly ``model.<suffix>``; keep the manifest in step."""
    from cloudserve.packaging import read_manifest, write_manifest

    target = directory / f"model{artifact.suffix}"
    if artifact != target:
        artifact.rename(target)
        current = read_manifest(directory)
        fields = current.model_dump(
            exclude_none=True, exclude={"framework", "version", "signature", "artifact"}
        )
        write_manifest(
            directory,
            framework=framework,
            version=current.version,
            signature=current.signature,
            artifact=target.name,
            **fields,
        )


_TRIAL_MAIN = '''\
"""Run the user's training script, find the objective in its output, report it to Vertex.

Vertex AI reads trial metrics from the file cloudml-hypertune writes
($CLOUD_ML_HP_METRIC_FILE, default /tmp/hypertune/output.metrics); this writes the same
JSON lines, so no extra dependency is needed in the training image.
"""
import json, os, re, subprocess, sys, time
from pathlib import Path

here = Path(__file__).parent
cfg = json.loads((here / "config.json").read_text())
proc = subprocess.Popen(
    [sys.executable, str(here / "src" / cfg["entrypoint"]), *sys.argv[1:]],
    cwd=here / "src", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    env={**os.environ, **cfg["env"]},
)
value = None
for line in proc.stdout:
    sys.stdout.write(line)
    m = re.search(cfg["regex"], line)
    if m:
        value = float(m.group(1))
code = proc.wait()
if value is not None:
    path = Path(os.environ.get("CLOUD_ML_HP_METRIC_FILE", "/tmp/hypertune/output.metrics"))
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"timestamp": time.time(), "trial": os.environ.get("CLOUD_ML_TRIAL_ID", "0"),
              cfg["metric"]: str(value), "global_step": "0"}
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\\n")
sys.exit(code)
'''

_SETUP = """\
from setuptools import setup
setup(name="cloudserve_trainer", version="0.0.0", packages=["cloudserve_trainer"],
      package_data={"cloudserve_trainer": ["config.json", "src/*", "src/**/*"]},
      install_requires=%s)
"""

TRAINER_MODULE = "cloudserve_trainer"


def trainer_package(train: TrainSpec, metric: str, regex: str) -> bytes:
    """A source distribution (``.tar.gz``) running ``train``'s script as a trial.

    The script (and ``source_dir``, when given) sits in ``cloudserve_trainer/src/``; the
    package's ``__main__`` runs it with the trial's ``--name=value`` arguments and reports
    the objective found by ``regex``.
    """
    if train.entrypoint is None:
        raise InvalidRequest("Vertex tuning runs a script: give TrainSpec(entrypoint=…)")
    entry = Path(train.entrypoint)
    source = Path(train.source_dir) if train.source_dir else entry.parent
    if not (source / entry.name).exists() and not entry.exists():
        raise InvalidRequest(f"training script {entry} does not exist")
    root = "cloudserve_trainer-0.0.0"
    files: dict[str, bytes] = {
        f"{root}/setup.py": (_SETUP % "[]").encode(),
        f"{root}/{TRAINER_MODULE}/__init__.py": b"",
        f"{root}/{TRAINER_MODULE}/__main__.py": _TRIAL_MAIN.encode(),
        f"{root}/{TRAINER_MODULE}/config.json": orjson.dumps(
            {"entrypoint": entry.name, "metric": metric, "regex": regex, "env": train.env}
        ),
    }
    if train.source_dir:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(source).as_posix()
                files[f"{root}/{TRAINER_MODULE}/src/{rel}"] = path.read_bytes()
    files.setdefault(f"{root}/{TRAINER_MODULE}/src/{entry.name}", entry.read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def label_value(text: str) -> str:
    """``text`` as a valid GCP label value (lowercase, digits, ``_``, ``-``; 63 chars)."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def tempdir() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for staging."""
    return tempfile.TemporaryDirectory(prefix="cs-vertex-")
