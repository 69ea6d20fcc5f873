from __future__ import annotations

import subprocess
import sys

import cloudserve

PINNED = [
    "AlreadyExists", "AsyncPrediction", "AuthError", "BatchJob", "BatchSpec", "Capability", "Choice",
    "Client", "CloudServeError", "Compute", "ConfigError", "CostEstimate", "DataCapture", "DeploySpec",
    "DriftReport", "Endpoint", "EndpointStatus", "FeatureDrift", "Gates", "IntRange", "InvalidRequest",
    "JobStatus", "LogUniform", "MetricsReport", "ModelSpec", "ModelVersion", "NotFound", "Objective",
    "OperationFailed", "PayloadTooLarge", "Plan", "PlannedCall", "Prediction", "Progress", "Provider",
    "ProviderConfig", "ProviderNotFound", "RolloutReport", "ServiceUnavailable", "SmokeTestFailed", "Throttled",
    "Timeout", "TrainSpec", "Trial", "TuningJob", "TuningSpec", "Uniform", "UnsupportedOperation",
    "Variant", "Workload", "__version__", "compare", "connect", "register",
]  # fmt: skip


def test_all_is_pinned():
    assert sorted(cloudserve.__all__) == sorted(PINNED)


def test_every_exported_name_resolves():
    for name in cloudserve.__all__:
        if name != "compare":  # resolved lazily; checked once cloudserve.bench exists
            assert getattr(cloudserve, name) is not None


def test_import_is_light():
    # Namespace packages set up by .pth files at interpreter start (e.g. a bare ``google``)
    # are there before any import: only what ``import cloudserve`` adds counts.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import cloudserve\n"
        "heavy = ('boto3', 'botocore', 'google', 'azure', 'pytest', 'sklearn', 'uvicorn', 'pandas')\n"
        "bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in heavy)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import cloudserve pulled in: {out.stdout}"
