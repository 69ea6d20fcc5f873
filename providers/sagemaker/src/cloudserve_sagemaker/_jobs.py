"""The batch and tuning jobs cloudserve started on SageMaker: list them, stop one.

An account holds transform and tuning jobs other tools started too. cloudserve's carry the
``cloudserve:managed`` tag (``_naming.tags``); its transform jobs are also named
``cs-batch-…`` (``NameContains`` narrows the listing before the tags are read), while a tuning
job may carry the user's own name, so each tuning job's tags are read. The listings are read
with boto3's paginators (``ListTransformJobs``, ``ListHyperParameterTuningJobs``, newest first)
and every job of cloudserve is described as ``get_batch_job`` / ``get_tuning_job`` describe it —
except that listing downloads no batch outputs (``jobs status`` / ``get_batch_job`` does).

Stopping: ``StopTransformJob`` / ``StopHyperParameterTuningJob`` move a running job to
``Stopping`` and then ``Stopped`` (both CANCELLED). A job that has ended is left as it is (its
state is read first: SageMaker refuses to stop an ended job), and an id that is neither job is
``NotFound``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.resources import BatchJob, JobStatus, TuningJob
from cloudserve_sagemaker import _naming as names
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._batch import describe_transform
from cloudserve_sagemaker._states import JOB_STATES
from cloudserve_sagemaker._tuning import describe_tuning

__all__ = ["cancel_job", "list_jobs"]

#: every transform job cloudserve starts is named ``cs-batch-…`` (``_batch.start_transform``)
BATCH_PREFIX = "cs-batch-"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _managed(p: Api, arn: str) -> bool:
    tags = p.sm("list_tags", ResourceArn=arn).get("Tags", [])
    return any(t["Key"] == names.MANAGED_TAG and t["Value"] == "true" for t in tags)


def _newest_first(
    p: Api, operation: str, key: str, arn_key: str, **params: Any
) -> Iterator[tuple[datetime, str]]:
    """(creation time, name) of cloudserve's jobs in one listing."""
    name_key = key.replace("Summaries", "Name")
    for summary in p.pages(
        "sagemaker", operation, key, SortBy="CreationTime", SortOrder="Descending", **params
    ):
        if _managed(p, summary[arn_key]):
            yield summary.get("CreationTime") or _EPOCH, summary[name_key]


def list_jobs(p: Api) -> list[BatchJob | TuningJob]:
    """cloudserve's transform and tuning jobs in this account and region, newest first."""
    found: list[tuple[datetime, BatchJob | TuningJob]] = []
    for created, name in _newest_first(
        p,
        "list_transform_jobs",
        "TransformJobSummaries",
        "TransformJobArn",
        NameContains=BATCH_PREFIX,
    ):
        found.append((created, describe_transform(p, name, fetch_output=False)))
    for created, name in _newest_first(
        p,
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobArn",
    ):
        found.append((created, describe_tuning(p, name)))
    found.sort(key=lambda pair: pair[0], reverse=True)
    return [job for _, job in found]


def _describe(p: Api, job_id: str) -> tuple[str, dict[str, Any]]:
    """Which kind of job ``job_id`` is (``transform`` / ``tuning``) and its description."""
    try:
        return "transform", p.sm("describe_transform_job", TransformJobName=job_id)
    except NotFound:
        pass
    try:
        return "tuning", p.sm(
            "describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=job_id
        )
    except NotFound:
        raise NotFound(
            f"no transform or tuning job {job_id}", provider=p.name, code="ResourceNotFound"
        ) from None


def _status(kind: str, description: dict[str, Any]) -> JobStatus:
    native = description[
        "TransformJobStatus" if kind == "transform" else "HyperParameterTuningJobStatus"
    ]
    return JOB_STATES.get(native, JobStatus.RUNNING)


def cancel_job(p: Api, job_id: str) -> None:
    """Stop a running transform or tuning job; an ended one is left as it is."""
    kind, description = _describe(p, job_id)
    if _status(kind, description).is_terminal:
        return
    try:
        if kind == "transform":
            p.sm("stop_transform_job", TransformJobName=job_id)
        else:
            p.sm("stop_hyper_parameter_tuning_job", HyperParameterTuningJobName=job_id)
    except InvalidRequest:
        # it ended between the describe and the stop: left as it is
        if not _status(*_describe(p, job_id)).is_terminal:
            raise
