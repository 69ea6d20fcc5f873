"""The batch prediction and hyperparameter tuning jobs cloudserve started: list them, cancel one.

Every job cloudserve creates carries its label ``managed-by=cloudserve`` (``VertexApi.labels``),
so both listings — ``JobService.ListBatchPredictionJobs`` and
``ListHyperparameterTuningJobs`` — ask for that label as their ``filter``; the GAPIC pagers
follow ``nextPageToken``. Each job is turned into a :class:`BatchJob` / :class:`TuningJob` as
``get_batch_job`` / ``get_tuning_job`` do (a listing downloads no batch outputs), newest first by
``create_time``.

Cancelling: ``CancelBatchPredictionJob`` / ``CancelHyperparameterTuningJob`` start an
asynchronous cancellation — the job goes ``JOB_STATE_CANCELLING`` (still RUNNING here) and then
``JOB_STATE_CANCELLED`` (CANCELLED). A job that has ended is left as it is (its state is read
first: Vertex refuses to cancel an ended job), an id that is neither job is ``NotFound``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.resources import BatchJob, TuningJob
from cloudserve_vertex import _batch, _tuning
from cloudserve_vertex._api import VertexApi
from cloudserve_vertex._states import job_status

__all__ = ["cancel_job", "list_jobs"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _listed(api: VertexApi, method: str) -> list[Any]:
    """Every job of one listing with cloudserve's label (all pages; retried as a whole)."""
    request = {"parent": api.parent, "filter": api.managed_filter()}
    return api.call(lambda: list(api.rpc("job", method, request=request)))


def _created(job: Any) -> datetime:
    return job.create_time or _EPOCH


def list_jobs(api: VertexApi, outputs: dict[str, str]) -> list[BatchJob | TuningJob]:
    """cloudserve's batch and tuning jobs in the project and location, newest first."""
    found: list[tuple[datetime, BatchJob | TuningJob]] = []
    for job in _listed(api, "list_batch_prediction_jobs"):
        job_id = job.name.rsplit("/", 1)[-1]
        output = outputs.get(job_id, job.output_info.gcs_output_directory)
        found.append((_created(job), _batch.to_batch(api, job, output, fetch_output=False)))
    for job in _listed(api, "list_hyperparameter_tuning_jobs"):
        found.append((_created(job), _tuning.to_tuning(api, job)))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [job for _, job in found]


def _find(api: VertexApi, job_id: str) -> tuple[str, Any]:
    """(``batch`` / ``tuning``, the job) for an id of either kind."""
    for kind, collection, method in (
        ("batch", "batchPredictionJobs", "get_batch_prediction_job"),
        ("tuning", "hyperparameterTuningJobs", "get_hyperparameter_tuning_job"),
    ):
        job = api.get_or_none("job", method, name=f"{api.parent}/{collection}/{job_id}")
        if job is not None:
            return kind, job
    raise NotFound(f"no batch prediction or tuning job {job_id}", provider=api.name)


def cancel_job(api: VertexApi, job_id: str) -> None:
    """Cancel a running batch prediction or tuning job; an ended one is left as it is."""
    kind, job = _find(api, job_id)
    if job_status(job.state).is_terminal:
        return
    method = (
        "cancel_batch_prediction_job" if kind == "batch" else "cancel_hyperparameter_tuning_job"
    )
    api.rpc("job", method, name=job.name)
