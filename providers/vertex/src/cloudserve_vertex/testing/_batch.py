"""Batch prediction in the fake: read the inputs, apply ``instanceConfig``, predict in
``batchSize`` chunks, write Vertex's output files.

Output: ``prediction.results-0000X-of-0000N`` (JSON Lines of ``{"instance", "prediction"}``)
and ``prediction.errors_stats-0000X-of-0000N`` in ``prediction-<model>-<time>/`` under the
output prefix, ``batch_shard_rows`` lines per file.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson

from cloudserve_vertex.testing._http import ApiError

if TYPE_CHECKING:
    from cloudserve_vertex.testing._service import FakeVertexService

__all__ = ["number", "read_instances", "run_batch", "shape"]


def run_batch(job: dict[str, Any], service: FakeVertexService) -> None:
    """Predict every input instance and write the job's output files (Vertex's names)."""
    version = service.model_version(job["model"], job.get("modelVersionId"))
    dm = {"id": None, "model": version["name"], "modelVersionId": version["versionId"]}
    fmt = job["inputConfig"]["instancesFormat"]
    rows: list[Any] = []
    for uri in job["inputConfig"]["gcsSource"]["uris"]:
        objects = service.gcs.read_uri(uri)
        if not objects:
            raise ApiError(400, f"no input objects at {uri}")
        for obj in objects:
            rows.extend(read_instances(obj.data, fmt))
    rows = shape(rows, fmt, job.get("instanceConfig") or {})
    size = int((job.get("manualBatchTuningParameters") or {}).get("batchSize") or 64)
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        try:
            preds = service.run_model(dm, chunk, job.get("modelParameters"))
            lines.extend(
                {"instance": i, "prediction": p} for i, p in zip(chunk, preds, strict=False)
            )
        except ApiError as exc:
            errors.extend({"instance": i, "error": {"message": exc.message}} for i in chunk)
    prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
    stamp = datetime.now(timezone.utc).strftime("%Y_%m_%dT%H_%M_%S_%fZ")
    out_dir = f"{prefix}/prediction-{version['displayName']}-{stamp}"
    bucket, _, path = out_dir.removeprefix("gs://").partition("/")
    # Vertex's file names: prediction.results-0000X-of-0000N (JSON Lines) and
    # prediction.errors_stats-0000X-of-0000N, sharded.
    for kind, items in (("results", lines), ("errors_stats", errors)):
        shards = [
            items[i : i + service.batch_shard_rows]
            for i in range(0, len(items), service.batch_shard_rows)
        ] or [[]]
        for i, shard in enumerate(shards):
            name = f"{path}/prediction.{kind}-{i:05d}-of-{len(shards):05d}"
            service.gcs.put(bucket, name, jsonl(shard), "application/jsonl")
    job["outputInfo"] = {"gcsOutputDirectory": out_dir}
    job["completionStats"] = {
        "successfulCount": str(len(lines)),
        "failedCount": str(len(errors)),
        "incompleteCount": "0",
    }
    if rows and not lines:
        raise ApiError(400, f"every instance failed: {errors[0]['error']['message']}")


def number(text: str) -> Any:
    """A CSV cell as a number when it reads as one, else the text."""
    try:
        return float(text)
    except ValueError:
        return text


def read_instances(data: bytes, fmt: str) -> list[Any]:
    """JSON Lines values, or CSV rows as arrays in the file's column order (header skipped)."""
    if fmt == "jsonl":
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    rows = list(csv.reader(io.StringIO(data.decode())))
    return [[number(c) for c in row] for row in rows[1:] if row]


def shape(rows: list[Any], fmt: str, config: dict[str, Any]) -> list[Any]:
    """Apply ``instanceConfig`` as Vertex does: for JSON Lines of objects, ``array`` sends the
    ``included_fields`` values in that order and ``object`` the objects (``included_fields``
    kept); it does not apply to CSV, whose rows are arrays in the file's column order."""
    kind = config.get("instanceType")
    fields = config.get("includedFields") or []
    if fmt != "jsonl" or not kind:
        return rows
    if kind == "array":
        if rows and isinstance(rows[0], dict) and not fields:
            raise ApiError(400, "instance_type 'array' over JSONL objects needs included_fields")
        return [[r.get(f) for f in fields] if isinstance(r, dict) else r for r in rows]
    if fields:
        return [{f: r.get(f) for f in fields} if isinstance(r, dict) else r for r in rows]
    return rows


def jsonl(items: list[Any]) -> bytes:
    return b"".join(orjson.dumps(i) + b"\n" for i in items)
