"""cloudserve: one provider-neutral way to deploy, serve, batch-predict, tune and monitor models.

>>> import cloudserve as cs
>>> client = cs.connect()          # CLOUDSERVE_TARGET, else the file's default, else local

This module imports no cloud SDK: a provider is imported when a target that names it is first
used. Every public name is resolved on first use (PEP 562), so ``import cloudserve`` costs
little more than the error tree; ``from cloudserve import X`` imports only what ``X`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from cloudserve.bench.compare import compare
    from cloudserve.client import Client, connect
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
    from cloudserve.rollout import Gates, RolloutReport
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


_LAZY = {
    "compare": "cloudserve.bench",
    "Client": "cloudserve.client",
    "connect": "cloudserve.client",
    "Capability": "cloudserve.provider",
    "Provider": "cloudserve.provider",
    "ProviderConfig": "cloudserve.provider",
    "register": "cloudserve.registry",
    "AsyncPrediction": "cloudserve.resources",
    "BatchJob": "cloudserve.resources",
    "CostEstimate": "cloudserve.resources",
    "DriftReport": "cloudserve.resources",
    "Endpoint": "cloudserve.resources",
    "EndpointStatus": "cloudserve.resources",
    "FeatureDrift": "cloudserve.resources",
    "JobStatus": "cloudserve.resources",
    "MetricsReport": "cloudserve.resources",
    "ModelVersion": "cloudserve.resources",
    "Plan": "cloudserve.resources",
    "PlannedCall": "cloudserve.resources",
    "Prediction": "cloudserve.resources",
    "Trial": "cloudserve.resources",
    "TuningJob": "cloudserve.resources",
    "Variant": "cloudserve.resources",
    "BatchSpec": "cloudserve.specs",
    "Choice": "cloudserve.specs",
    "Compute": "cloudserve.specs",
    "DataCapture": "cloudserve.specs",
    "DeploySpec": "cloudserve.specs",
    "IntRange": "cloudserve.specs",
    "LogUniform": "cloudserve.specs",
    "ModelSpec": "cloudserve.specs",
    "Objective": "cloudserve.specs",
    "TrainSpec": "cloudserve.specs",
    "TuningSpec": "cloudserve.specs",
    "Uniform": "cloudserve.specs",
    "Workload": "cloudserve.specs",
    "Progress": "cloudserve.waiting",
    "Gates": "cloudserve.rollout",
    "RolloutReport": "cloudserve.rollout",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudserve' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
