"""Normalised compute sizes and the instance types they stand for on each cloud.

A size names comparable capacity (vCPUs, memory, accelerator) so that one spec can be priced
and deployed on every provider. ``Compute(instance_type=...)`` overrides the table. The price
catalog (``cloudserve.pricing``) carries a row for every instance type named here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudserve.errors import InvalidRequest

__all__ = ["SIZES", "InstanceChoice", "resolve_instance", "sizes_for"]


@dataclass(frozen=True)
class InstanceChoice:
    """A cloud's machine for a size: instance type, and the accelerator when it is separate."""

    instance_type: str
    vcpus: int
    memory_gib: float
    accelerator: str | None = None
    accelerator_count: int = 0
    # True when the accelerator is priced and attached separately (Vertex), False when the
    # instance type includes it (SageMaker, Azure).
    accelerator_separate: bool = False


_T4 = "NVIDIA_TESLA_T4"
_L4 = "NVIDIA_L4"

SIZES: dict[str, dict[str, InstanceChoice | str]] = {
    "cpu.small": {
        "sagemaker": InstanceChoice("ml.m5.large", 2, 8),
        "vertex": InstanceChoice("n1-standard-2", 2, 7.5),
        "azureml": InstanceChoice("Standard_DS2_v2", 2, 7),
        "local": InstanceChoice("local", 1, 0),
    },
    "cpu.medium": {
        "sagemaker": InstanceChoice("ml.m5.xlarge", 4, 16),
        "vertex": InstanceChoice("n1-standard-4", 4, 15),
        "azureml": InstanceChoice("Standard_DS3_v2", 4, 14),
        "local": InstanceChoice("local", 2, 0),
    },
    "cpu.large": {
        "sagemaker": InstanceChoice("ml.m5.2xlarge", 8, 32),
        "vertex": InstanceChoice("n1-standard-8", 8, 30),
        "azureml": InstanceChoice("Standard_DS4_v2", 8, 28),
        "local": InstanceChoice("local", 4, 0),
    },
    "gpu.t4": {
        "sagemaker": InstanceChoice("ml.g4dn.xlarge", 4, 16, "T4", 1),
        "vertex": InstanceChoice("n1-standard-4", 4, 15, _T4, 1, accelerator_separate=True),
        "azureml": InstanceChoice("Standard_NC4as_T4_v3", 4, 28, "T4", 1),
        "local": "no accelerator is available to the local provider",
    },
    "gpu.a10": {
        "sagemaker": InstanceChoice("ml.g5.xlarge", 4, 16, "A10G", 1),
        "vertex": "Vertex AI offers no A10 accelerator; use gpu.l4 (the closest class)",
        "azureml": InstanceChoice("Standard_NV36ads_A10_v5", 36, 440, "A10", 1),
        "local": "no accelerator is available to the local provider",
    },
    "gpu.l4": {
        "sagemaker": InstanceChoice("ml.g6.xlarge", 4, 16, "L4", 1),
        "vertex": InstanceChoice("g2-standard-4", 4, 16, _L4, 1),
        "azureml": "Azure ML managed endpoints offer no L4 instance; use gpu.a10 or gpu.t4",
        "local": "no accelerator is available to the local provider",
    },
}


def sizes_for(provider: str) -> dict[str, InstanceChoice]:
    """Every size the provider can serve, with its instance choice."""
    out: dict[str, InstanceChoice] = {}
    for size, row in SIZES.items():
        choice = row.get(provider)
        if isinstance(choice, InstanceChoice):
            out[size] = choice
    return out


def resolve_instance(
    provider: str, size: str | None, instance_type: str | None = None
) -> InstanceChoice | None:
    """The instance for a normalised size on ``provider``.

    An explicit ``instance_type`` wins and returns None (the caller uses it as given; its
    shape is unknown to the table). Unknown sizes and sizes the cloud lacks raise
    InvalidRequest with the reason.
    """
    if instance_type:
        return None
    if size is None:
        raise InvalidRequest("compute needs a size or an instance_type", provider=provider)
    row = SIZES.get(size)
    if row is None:
        known = ", ".join(SIZES)
        raise InvalidRequest(f"unknown size '{size}' (known sizes: {known})", provider=provider)
    choice = row.get(provider)
    if choice is None:
        raise InvalidRequest(
            f"size '{size}' has no mapping for provider {provider}", provider=provider
        )
    if isinstance(choice, str):
        raise InvalidRequest(f"size '{size}' is not available: {choice}", provider=provider)
    return choice
