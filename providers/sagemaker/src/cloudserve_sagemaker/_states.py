"""Every native SageMaker state mapped onto the shared status enums, in one place."""

from __future__ import annotations

from cloudserve.resources import EndpointStatus, JobStatus

__all__ = ["ENDPOINT_STATES", "JOB_STATES", "endpoint_status"]

ENDPOINT_STATES: dict[str, EndpointStatus] = {
    "Creating": EndpointStatus.CREATING,
    "Updating": EndpointStatus.UPDATING,
    "SystemUpdating": EndpointStatus.UPDATING,
    "RollingBack": EndpointStatus.UPDATING,
    "UpdateRollbackFailed": EndpointStatus.FAILED,
    "InService": EndpointStatus.READY,
    "Deleting": EndpointStatus.DELETING,
    "Failed": EndpointStatus.FAILED,
    "OutOfService": EndpointStatus.FAILED,
}

# Transform jobs, tuning jobs and their training jobs share these.
JOB_STATES: dict[str, JobStatus] = {
    "InProgress": JobStatus.RUNNING,
    "Completed": JobStatus.SUCCEEDED,
    "Failed": JobStatus.FAILED,
    "Stopping": JobStatus.CANCELLED,
    "Stopped": JobStatus.CANCELLED,
}


def endpoint_status(native: str) -> EndpointStatus:
    """The shared status of a native endpoint state (an unknown one is UPDATING)."""
    return ENDPOINT_STATES.get(native, EndpointStatus.UPDATING)
