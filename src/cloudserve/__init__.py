"""cloudserve: one provider-neutral way to deploy, serve, batch-predict, tune and monitor models.

>>> import cloudserve as cs
>>> client = cs.connect()          # CLOUDSERVE_TARGET, else the file's default, else local

This module imports no cloud SDK: a provider is imported when a target that names it is first
used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudserve.client import Client, connect
from cloudserve.errors import (
    AlreadyExists,
    AuthError,
    CloudServeError,
    ConfigError,
    InvalidRequest,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    ProviderNotFound,
    ServiceUnavailable,
    SmokeTestFailed,
    Throttled,
    Timeout,
    UnsupportedOperation,
)
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.registry import register
from cloudserve.resources import (
    AsyncPrediction,
    BatchJob,
    CostEstimate,
    DriftReport,
    Endpoint,
    EndpointStatus,
    FeatureDrift,
    JobStatus,
    MetricsReport,
    ModelVersion,
    Plan,
    PlannedCall,
    Prediction,
    Trial,
    TuningJob,
    Variant,
)
from cloudserve.specs import (
    BatchSpec,
    Choice,
    Compute,
    DataCapture,
    DeploySpec,
    IntRange,
    LogUniform,
    ModelSpec,
    Objective,
    TrainSpec,
    TuningSpec,
    Uniform,
    Workload,
)
from cloudserve.waiting import Progress

if TYPE_CHECKING:
    from cloudserve.bench import compare
    from cloudserve.rollout import Gates, RolloutReport

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncPrediction",
    "AuthError",
    "BatchJob",
    "BatchSpec",
    "Capability",
    "Choice",
    "Client",
    "CloudServeError",
    "Compute",
    "ConfigError",
    "CostEstimate",
    "DataCapture",
    "DeploySpec",
    "DriftReport",
    "Endpoint",
    "EndpointStatus",
    "FeatureDrift",
    "Gates",
    "IntRange",
    "InvalidRequest",
    "JobStatus",
    "LogUniform",
    "MetricsReport",
    "ModelSpec",
    "ModelVersion",
    "NotFound",
    "Objective",
    "OperationFailed",
    "PayloadTooLarge",
    "Plan",
    "PlannedCall",
    "Prediction",
    "Progress",
    "Provider",
    "ProviderConfig",
    "ProviderNotFound",
    "RolloutReport",
    "ServiceUnavailable",
    "SmokeTestFailed",
    "Throttled",
    "Timeout",
    "TrainSpec",
    "Trial",
    "TuningJob",
    "TuningSpec",
    "Uniform",
    "UnsupportedOperation",
    "Variant",
    "Workload",
    "__version__",
    "compare",
    "connect",
    "register",
]


# progressive delivery is imported on first use, like compare
_ROLLOUT = frozenset({"Gates", "RolloutReport"})


def __getattr__(name: str) -> Any:
    # compare pulls in the load generator and report code: import it only when used.
    if name == "compare":
        from cloudserve.bench import compare

        return compare
    if name in _ROLLOUT:
        from cloudserve import rollout

        return getattr(rollout, name)
    raise AttributeError(f"module 'cloudserve' has no attribute {name!r}")
