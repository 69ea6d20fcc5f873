"""Batch prediction: ``BatchPredictionJob`` from a local or ``gs://`` input.

Vertex turns each CSV row into an array in the file's column order (``instanceConfig`` does not
apply to CSV), so a local CSV with a header is uploaded with its columns in the model's feature
order when the model's feature names are known. JSON Lines of objects go to a prebuilt
container as arrays in feature order (``instance_type="array"`` with ``included_fields``); the
container route receives the objects themselves. ``BatchSpec.parameters`` go as the job's
``model_parameters`` (refused for a prebuilt container, which ignores them).

Vertex writes ``prediction.results-0000X-of-0000N`` files (JSON Lines of
``{"instance": …, "prediction": …}``) and ``prediction.errors_stats-0000X-of-0000N`` into a
``prediction-<model>-<time>`` directory under the output prefix; a local ``output`` gets copies
of those files when the job has succeeded.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.specs import BatchSpec
from cloudserve_vertex import _model_registry as registry
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex._api import VertexApi
from cloudserve_vertex._states import job_status

__all__ = ["RESULTS_GLOB", "get", "start"]

RESULTS_GLOB = "prediction.results-*"


def _stage_input(api: VertexApi, spec: BatchSpec, feature_names: list[str] | None) -> str:
    if spec.input.startswith("gs://"):
        return spec.input
    path = Path(spec.input)
    if not path.is_file():
        raise InvalidRequest(f"batch input {path} does not exist", provider=api.name)
    cfg = api.config
    name = f"{cfg.staging_prefix}/batch-inputs/{int(time.time() * 1000)}-{path.name}"
    blob = api.client("storage").bucket(cfg.bucket).blob(name)
    data = path.read_bytes()
    if spec.resolved_format == "csv" and feature_names:
        data = reorder_csv(data, feature_names)
    api.call(blob.upload_from_string, data, content_type="application/octet-stream")
    return f"gs://{cfg.bucket}/{name}"


def reorder_csv(data: bytes, feature_names: list[str]) -> bytes:
    """The CSV with its columns in ``feature_names`` order, when its header names them all
    (a header of other names, or none, is left as it is: the columns go by position)."""
    rows = list(csv.reader(io.StringIO(data.decode())))
    if not rows or set(feature_names) - set(rows[0]):
        return data
    index = [rows[0].index(n) for n in feature_names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(feature_names)
    writer.writerows([row[i] for i in index] for row in rows[1:] if row)
    return out.getvalue().encode()


def start(api: VertexApi, spec: BatchSpec, outputs: dict[str, str], target: str) -> BatchJob:
    from google.cloud import aiplatform_v1 as v1

    route = registry.plan_route(api, spec.model, target)  # refused before any request
    pkg.check_parameters(route.kind, spec.parameters)
    ref = registry.upload(
        api, spec.model, origin="batch", endpoint=None, created=[], progress=None, target=target
    )
    names = route.facts.feature_names if route.facts else None
    source = _stage_input(api, spec, names)
    instances: dict[str, Any] = {}
    if spec.resolved_format == "jsonl" and names and route.prebuilt:
        instances = {"instance_config": {"instance_type": "array", "included_fields": names}}
    cfg = api.config
    local_out = not spec.output.startswith("gs://")
    out_prefix = (
        f"gs://{cfg.bucket}/{cfg.staging_prefix}/batch-outputs" if local_out else spec.output
    )
    lo, _ = spec.compute.replica_range
    job = v1.BatchPredictionJob(
        display_name=f"cs-{spec.model.name}-{int(time.time())}",
        model=ref,
        input_config={
            "instances_format": spec.resolved_format,
            "gcs_source": {"uris": [source]},
        },
        output_config={
            "predictions_format": "jsonl",
            "gcs_destination": {"output_uri_prefix": out_prefix},
        },
        dedicated_resources={
            "machine_spec": api.machine(spec.compute),
            "starting_replica_count": max(lo, 1),
            "max_replica_count": max(lo, 1),
        },
        manual_batch_tuning_parameters={"batch_size": spec.batch_size},
        **instances,
        **({"model_parameters": spec.parameters} if spec.parameters else {}),
        labels=api.labels({"cloudserve-output": "local" if local_out else "gcs"}),
        **api.encryption(),
    )
    created = api.rpc(
        "job",
        "create_batch_prediction_job",
        parent=api.parent,
        batch_prediction_job=job,
        retry=False,
    )
    outputs[created.name.rsplit("/", 1)[-1]] = spec.output
    return to_batch(api, created, spec.output)


def get(api: VertexApi, job_id: str, outputs: dict[str, str]) -> BatchJob:
    job = api.rpc(
        "job", "get_batch_prediction_job", name=f"{api.parent}/batchPredictionJobs/{job_id}"
    )
    output = outputs.get(job_id, job.output_info.gcs_output_directory)
    return to_batch(api, job, output)


def to_batch(api: VertexApi, job: Any, output: str, *, fetch_output: bool = True) -> BatchJob:
    """The job as a :class:`BatchJob`; once it succeeded, a local ``output`` is filled (unless
    ``fetch_output`` is off: a listing reads states only)."""
    status = job_status(job.state)
    stats = job.completion_stats
    ok, failed = int(stats.successful_count), int(stats.failed_count)
    if fetch_output and status is JobStatus.SUCCEEDED and not output.startswith("gs://"):
        _download(api, job.output_info.gcs_output_directory, Path(output))
    return BatchJob(
        id=job.name.rsplit("/", 1)[-1],
        provider=api.name,
        status=status,
        input=job.input_config.gcs_source.uris[0] if job.input_config.gcs_source.uris else "",
        output=output,
        rows_total=ok + failed if status.is_terminal else None,
        rows_succeeded=ok if status.is_terminal else None,
        rows_failed=failed if status.is_terminal else None,
        message=job.error.message or None,
        created_at=job.create_time or None,
        ended_at=job.end_time or None,
        raw=job,
    )


def _download(api: VertexApi, gcs_dir: str, dest: Path) -> None:
    """Copy a job's output files (``prediction.results-*``, ``prediction.errors_stats-*``)."""
    if not gcs_dir:
        return
    bucket, _, prefix = gcs_dir.removeprefix("gs://").partition("/")
    dest.mkdir(parents=True, exist_ok=True)
    for blob in api.call(api.client("storage").list_blobs, bucket, prefix=prefix + "/"):
        api.call(blob.download_to_filename, str(dest / blob.name.rsplit("/", 1)[-1]))
