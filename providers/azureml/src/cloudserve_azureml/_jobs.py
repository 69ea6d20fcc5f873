"""The batch and sweep jobs cloudserve started in the workspace: list them, cancel one.

A workspace holds other jobs too. cloudserve's sweeps carry the tag ``cloudserve: true``
(``_tuning.tune``); its batch jobs are pipeline jobs it names ``csb-<hex>`` when it invokes
one of its batch endpoints (``_batch.batch_predict``), and jobs of those endpoints (tagged
``cloudserve: true`` by ``_batch._ensure_endpoint``) started another way count too — the fake
runs a batch endpoint's jobs under the experiment named after the endpoint. ``jobs.list()``
(``GET …/jobs``, the active ones; azure-core's pager follows ``nextLink``) gives both; each
is turned into a :class:`BatchJob` / :class:`TuningJob` as ``get_batch_job`` /
``get_tuning_job`` do (a listing downloads no ``predictions.csv``), newest first by the job's
creation time.

Cancelling: ``jobs.begin_cancel`` (``POST …/jobs/{name}/cancel``, a long-running operation) moves
a job to ``CancelRequested`` and then ``Canceled`` (CANCELLED). A job that has ended is left as
it is (its state is read first), and an unknown name is ``NotFound``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from cloudserve.resources import BatchJob, TuningJob
from cloudserve_azureml._api import AzureApi
from cloudserve_azureml._batch import JOB_PREFIX, batch_job
from cloudserve_azureml._states import job_status
from cloudserve_azureml._tuning import tuning_job

__all__ = ["cancel_job", "list_jobs"]

TAG = "cloudserve"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _created(job: Any) -> datetime:
    when = getattr(job.creation_context, "created_at", None)
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return _EPOCH


def _batch_endpoints(api: AzureApi) -> set[str]:
    """The batch endpoints cloudserve made (their jobs are its batch jobs)."""
    endpoints = api.sdk(lambda: list(api.ml.batch_endpoints.list()))
    return {e.name for e in endpoints if (e.tags or {}).get(TAG) == "true"}


def list_jobs(api: AzureApi) -> list[BatchJob | TuningJob]:
    """cloudserve's batch and sweep jobs in the workspace, newest first."""
    endpoints = _batch_endpoints(api)
    jobs = [j for j in api.sdk(lambda: list(api.ml.jobs.list())) if j is not None]
    found: list[tuple[datetime, BatchJob | TuningJob]] = []
    for job in jobs:
        if job.type == "sweep" and (job.tags or {}).get(TAG) == "true":
            found.append((_created(job), tuning_job(api, job)))
        elif job.type == "pipeline" and (
            job.name.startswith(JOB_PREFIX) or job.experiment_name in endpoints
        ):
            found.append((_created(job), batch_job(api, job, fetch_output=False)))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [job for _, job in found]


def cancel_job(api: AzureApi, job_id: str) -> None:
    """Cancel a running batch or sweep job; an ended one is left as it is."""
    job = api.sdk(api.ml.jobs.get, job_id)  # NotFound for an unknown name
    if job_status(job.status).is_terminal:
        return
    api.lro(api.ml.jobs.begin_cancel, job_id, what=f"cancelling job {job_id}")
