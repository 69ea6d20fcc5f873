"""Azure ML job states (batch jobs, sweeps, trials) onto cloudserve's ``JobStatus``: one table."""

from __future__ import annotations

from typing import Any

from cloudserve.resources import JobStatus

__all__ = ["JOB_STATES", "job_status"]

JOB_STATES = {
    "notstarted": JobStatus.PENDING,
    "starting": JobStatus.PENDING,
    "provisioning": JobStatus.PENDING,
    "preparing": JobStatus.PENDING,
    "queued": JobStatus.PENDING,
    "paused": JobStatus.PENDING,
    "running": JobStatus.RUNNING,
    "finalizing": JobStatus.RUNNING,
    "cancelrequested": JobStatus.RUNNING,
    "notresponding": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELLED,
}


def job_status(state: Any) -> JobStatus:
    """The shared status of an Azure job state (an enum member or a string; unknown → PENDING)."""
    value = str(getattr(state, "value", state) or "").lower()
    return JOB_STATES.get(value, JobStatus.PENDING)
