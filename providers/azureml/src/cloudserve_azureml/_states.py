"""Every Azure ML state onto cloudserve's shared enums: one table each.

Online endpoints and deployments report a ``provisioning_state``; batch jobs, sweeps and
trials a job ``status``. An unknown endpoint state reads as UPDATING, an unknown job state as
PENDING (both keep a caller waiting rather than declaring an end).
"""

from __future__ import annotations

from typing import Any

from cloudserve.resources import EndpointStatus, JobStatus

__all__ = ["ENDPOINT_STATES", "JOB_STATES", "endpoint_status", "job_status"]

ENDPOINT_STATES = {
    "creating": EndpointStatus.CREATING,
    "updating": EndpointStatus.UPDATING,
    "succeeded": EndpointStatus.READY,
    "failed": EndpointStatus.FAILED,
    "canceled": EndpointStatus.FAILED,
    "deleting": EndpointStatus.DELETING,
}

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


def _key(state: Any) -> str:
    return str(getattr(state, "value", state) or "").lower()


def endpoint_status(state: Any) -> EndpointStatus:
    """The shared status of a provisioning state (an enum member or a string)."""
    return ENDPOINT_STATES.get(_key(state), EndpointStatus.UPDATING)


def job_status(state: Any) -> JobStatus:
    """The shared status of a job state (an enum member or a string; unknown → PENDING)."""
    return JOB_STATES.get(_key(state), JobStatus.PENDING)
