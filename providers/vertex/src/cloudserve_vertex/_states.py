"""Every Vertex AI state → the shared status enums (one table each)."""

from __future__ import annotations

from typing import Any

from cloudserve.resources import EndpointStatus, JobStatus

__all__ = ["JOB_STATES", "TRIAL_STATES", "endpoint_status", "job_status", "trial_status"]

# google.cloud.aiplatform.v1.JobState
JOB_STATES = {
    0: JobStatus.PENDING,  # UNSPECIFIED
    1: JobStatus.PENDING,  # QUEUED
    2: JobStatus.PENDING,  # PENDING
    3: JobStatus.RUNNING,  # RUNNING
    4: JobStatus.SUCCEEDED,  # SUCCEEDED
    5: JobStatus.FAILED,  # FAILED
    6: JobStatus.RUNNING,  # CANCELLING
    7: JobStatus.CANCELLED,  # CANCELLED
    8: JobStatus.PENDING,  # PAUSED
    9: JobStatus.FAILED,  # EXPIRED
    10: JobStatus.RUNNING,  # UPDATING
    11: JobStatus.SUCCEEDED,  # PARTIALLY_SUCCEEDED
}
# google.cloud.aiplatform.v1.Trial.State
TRIAL_STATES = {
    0: JobStatus.PENDING,  # UNSPECIFIED
    1: JobStatus.PENDING,  # REQUESTED
    2: JobStatus.RUNNING,  # ACTIVE
    3: JobStatus.RUNNING,  # STOPPING
    4: JobStatus.SUCCEEDED,  # SUCCEEDED
    5: JobStatus.FAILED,  # INFEASIBLE
}


def job_status(state: Any) -> JobStatus:
    return JOB_STATES.get(int(state), JobStatus.PENDING)


def trial_status(state: Any) -> JobStatus:
    return TRIAL_STATES.get(int(state), JobStatus.PENDING)


def endpoint_status(weights: list[int]) -> EndpointStatus:
    """Vertex endpoints have no state field: READY once deployed models carry 100 % traffic
    (a private endpoint's one model carries all of it without a split)."""
    return EndpointStatus.READY if weights and sum(weights) == 100 else EndpointStatus.CREATING
