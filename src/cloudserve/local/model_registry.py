"""The local model registry: versions copied under the state directory with a content hash.

``register`` copies the artifact to ``<state>/models/<name>/<version>/``, writes the manifest
when the artifact has none, hashes the content, and keeps lineage: training data hash and a
baseline sample for drift (when ``lineage["training_data"]`` names a file), hyperparameters,
metrics and the tuning trial it came from. Registering the same content again is a no-op;
different content under an existing version is refused.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from cloudserve.errors import AlreadyExists, InvalidRequest, NotFound
from cloudserve.local.store import StateDB, dumps, loads, now, to_datetime
from cloudserve.resources import ModelVersion
from cloudserve.specs import ModelSpec

__all__ = ["BASELINE_ROWS", "content_hash", "file_hash", "list_versions", "register", "stage"]

BASELINE_ROWS = 10_000
MANIFEST = "cloudserve.json"


def file_hash(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hash(path: Path) -> str:
    """sha256 over a file or a directory tree (relative names and bytes, in sorted order).

    The manifest is left out so that the same model files hash the same whatever version
    label the manifest carries.
    """
    if path.is_file():
        return "sha256:" + file_hash(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        h.update(file_hash(f).encode())
    return "sha256:" + h.hexdigest()


def stage(model: ModelSpec, dest: Path) -> Path:
    """Copy the model's artifact into ``dest`` (a directory) with a manifest; returns ``dest``."""
    if not model.is_local or model.artifact is None:
        raise InvalidRequest(
            f"the local provider needs a local artifact path, got {model.artifact!r}",
            provider="local",
        )
    src = Path(model.artifact).expanduser()
    if not src.exists():
        raise InvalidRequest(f"artifact not found: {src}", provider="local")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        tmp.mkdir(parents=True)
        shutil.copy2(src, tmp / src.name)
    from cloudserve.packaging import FRAMEWORKS, write_manifest

    if not (tmp / MANIFEST).exists() and model.framework in FRAMEWORKS:
        # without a framework (or for MLflow directories) the serving runtime detects it
        write_manifest(tmp, framework=str(model.framework), version=model.version)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _baseline_sample(data: Path, dest: Path) -> Path | None:
    """A sample of at most BASELINE_ROWS numeric rows of the training data, for drift."""
    import pandas as pd

    if data.suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(data)
    elif data.suffix in (".csv", ".txt"):
        frame = pd.read_csv(data)
    else:
        return None
    numeric = frame.select_dtypes("number")
    if numeric.empty:
        return None
    if len(numeric) > BASELINE_ROWS:
        numeric = numeric.sample(BASELINE_ROWS, random_state=0)
    numeric.to_csv(dest, index=False)
    return dest


def _lineage(lineage: dict[str, Any], home: Path) -> dict[str, Any]:
    out = dict(lineage)
    data = out.get("training_data")
    if isinstance(data, str | Path) and Path(data).is_file():
        out["training_data"] = str(data)
        out["training_data_hash"] = "sha256:" + file_hash(Path(data))
        sample = _baseline_sample(Path(data), home / "baseline.csv")
        if sample is not None:
            if out.get("target"):
                _drop_column(sample, str(out["target"]))
            out["baseline"] = str(sample)
    return out


def _drop_column(csv_path: Path, column: str) -> None:
    import pandas as pd

    frame = pd.read_csv(csv_path)
    if column in frame.columns:
        frame.drop(columns=[column]).to_csv(csv_path, index=False)


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        provider="local",
        uri=row["uri"],
        framework=row["framework"],
        content_hash=row["content_hash"],
        created_at=to_datetime(row["created_at"]),
        stage=row["stage"],
        lineage=loads(row["lineage"]) or {},
        tags=loads(row["tags"]) or {},
        raw=dict(row),
    )


def register(db: StateDB, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
    """Add ``model`` to the registry (see the module docstring)."""
    if model.artifact is None or not model.is_local:
        raise InvalidRequest("the local registry needs a local artifact", provider="local")
    digest = content_hash(Path(model.artifact).expanduser())
    existing = db.one(
        "SELECT * FROM models WHERE name = ? AND version = ?", (model.name, model.version)
    )
    if existing is not None:
        if existing["content_hash"] == digest:
            return _version(existing)
        raise AlreadyExists(
            f"model {model.name} version {model.version} is registered with other content "
            f"({existing['content_hash'][:19]}…); register a new version",
            provider="local",
        )
    home = db.state_dir / "models" / model.name / model.version
    home.mkdir(parents=True, exist_ok=True)
    artifact = stage(model, home / "artifact")
    full = _lineage(lineage, home)
    with db.tx() as tx:
        tx.execute(
            "INSERT INTO models(name, version, uri, framework, content_hash, created_at, stage,"
            " lineage, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model.name,
                model.version,
                str(artifact.resolve()),
                model.framework,
                digest,
                now(),
                None,
                dumps(full),
                dumps(model.tags),
            ),
        )
    return get_version(db, model.name, model.version)


def get_version(db: StateDB, name: str, version: str) -> ModelVersion:
    """One registered version; NotFound when it does not exist."""
    row = db.one("SELECT * FROM models WHERE name = ? AND version = ?", (name, version))
    if row is None:
        raise NotFound(f"model {name} version {version} is not registered", provider="local")
    return _version(row)


def list_versions(db: StateDB, name: str | None = None) -> list[ModelVersion]:
    """Registered versions (of one model when ``name`` is given), oldest first."""
    rows = db.all(
        "SELECT * FROM models WHERE ? IS NULL OR name = ? ORDER BY name, created_at",
        (name, name),
    )
    return [_version(r) for r in rows]
