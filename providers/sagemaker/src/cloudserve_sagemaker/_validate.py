"""Pure checks of specs against SageMaker's limits; no SDK, no request.

Facts used here, with their sources (also in ``docs/providers/sagemaker.md``):

- ``KmsKeyId`` (CreateEndpointConfig) and ``VolumeKmsKeyId`` (transform, training): "Certain
  Nitro-based instances include local storage … encrypted using a hardware module on the
  instance. You can't request a KmsKeyId when using an instance type with local storage … the
  call to CreateEndpointConfig fails" (SageMaker API reference, CreateEndpointConfig.KmsKeyId;
  TransformResources.VolumeKmsKeyId). Families with NVMe instance storage: g4dn, g4ad, g5, g6,
  g6e, p3dn, p4d, p4de, p5…, trn1/trn2, and the ``d`` variants (m5d, c5d, r5d, m6id …).
- Serverless invocations carry at most 4 MB (real-time: 6 MB); ``MaxConcurrency`` is 1–200 and
  ``MemorySizeInMB`` one of 1024…6144 (the service model); Serverless Inference does not support
  VPC configuration, data capture or several production variants (SageMaker developer guide,
  "Serverless Inference", feature exclusions).
- Names of endpoints, variants, models and configs: ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*``, matched
  whole, up to 63 characters (the service model) — so no name may end in ``-``.
"""

from __future__ import annotations

import re

from cloudserve.errors import InvalidRequest
from cloudserve.sizes import resolve_instance
from cloudserve.specs import DeploySpec, ModelSpec

__all__ = [
    "SERVERLESS_MEMORY",
    "SERVERLESS_PAYLOAD_MB",
    "check_deploy",
    "check_model",
    "check_name",
    "has_local_storage",
]

SERVERLESS_PAYLOAD_MB = 4.0
SERVERLESS_MEMORY = (1024, 2048, 3072, 4096, 5120, 6144)
MAX_SERVERLESS_CONCURRENCY = 200
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")

_LOCAL_STORAGE = re.compile(
    r"^ml\.(g4dn|g4ad|g5|g6|g6e|gr6|p3dn|p4d|p4de|p5[a-z]*|p6[a-z0-9-]*|trn1n?|trn2|"
    r"[cmr]\d+[a-z]*d[a-z]*)\."
)


def has_local_storage(instance_type: str | None) -> bool:
    """True for instance types with local NVMe storage (no KMS key may be requested)."""
    return bool(instance_type and _LOCAL_STORAGE.match(instance_type))


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, provider="sagemaker")


def check_name(field: str, value: str) -> None:
    """SageMaker's name rule (letters, digits, inner hyphens, at most 63 characters)."""
    if len(value) > 63 or not _NAME.match(value):
        raise _refuse(
            f"{field} '{value}' is not a SageMaker name: letters, digits and hyphens, starting "
            "and ending with a letter or digit, at most 63 characters"
        )


def check_model(model: ModelSpec) -> None:
    """What SageMaker needs of a model spec."""
    if model.artifact is None:
        raise _refuse(
            "SageMaker needs a model artifact (model.tar.gz or a local directory); an image "
            "alone has nothing to serve"
        )
    if not model.is_local and not model.artifact.startswith("s3://"):
        raise _refuse(f"artifact {model.artifact} must be a local path or an s3:// URI")


def _check_shadow(spec: DeploySpec, *, asynchronous: bool) -> None:
    """What a shadow variant cannot be on SageMaker, known without reading the endpoint."""
    if spec.compute.serverless:
        raise _refuse(
            "shadow: cloudserve mirrors to instance-backed variants only; deploy the shadow"
            " without compute.serverless"
        )
    if asynchronous:
        raise _refuse(
            "shadow: this target's endpoints are asynchronous (async_inference), whose"
            " requests are queued, not mirrored; shadow a real-time endpoint"
        )


def check_deploy(spec: DeploySpec, *, vpc: bool, asynchronous: bool) -> None:
    """Refuse what a SageMaker endpoint cannot be: wrong names, serverless limits, GPUs asked
    for as accelerators."""
    check_model(spec.model)
    check_name("endpoint", spec.endpoint)
    check_name("variant", spec.variant_name)
    if spec.shadow:
        _check_shadow(spec, asynchronous=asynchronous)
    c = spec.compute
    if c.accelerator or c.accelerator_count:
        raise _refuse(
            "SageMaker instance types carry their GPUs: use a gpu.* size or an ml.g* "
            "instance_type instead of accelerator"
        )
    if not c.serverless:
        resolve_instance("sagemaker", c.size, c.instance_type)
        return
    if c.autoscaling:
        raise _refuse("serverless endpoints scale by themselves; drop min/max_replicas")
    if c.serverless_memory_mb is not None and c.serverless_memory_mb not in SERVERLESS_MEMORY:
        raise _refuse(f"serverless memory must be one of {SERVERLESS_MEMORY} MB")
    if c.max_concurrency is not None and c.max_concurrency > MAX_SERVERLESS_CONCURRENCY:
        raise _refuse(
            f"compute.max_concurrency: a serverless endpoint takes at most "
            f"{MAX_SERVERLESS_CONCURRENCY} concurrent invocations ({c.max_concurrency} asked)"
        )
    if spec.data_capture is not None and spec.data_capture.enabled:
        raise _refuse("SageMaker serverless endpoints do not support data capture")
    if asynchronous:
        raise _refuse("asynchronous endpoints cannot be serverless")
    if vpc:
        raise _refuse(
            "SageMaker serverless endpoints do not run in a VPC; deploy this target's models "
            "on instances (drop serverless) or use a target without vpc"
        )
    if spec.traffic < 100:
        raise _refuse(
            "a serverless endpoint holds one production variant: deploy it with traffic=100 "
            "(blue/green), not as a canary"
        )
