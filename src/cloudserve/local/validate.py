"""Pure checks of a spec against what the local provider can honour (no state, no process)."""

from __future__ import annotations

from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.specs import ModelSpec

__all__ = ["check_spec"]


def check_spec(spec: Any) -> None:
    """Reject accelerators, cloud machine types, memory caps and remote or image-only models."""
    compute = getattr(spec, "compute", None)
    if compute is not None:
        from cloudserve.sizes import resolve_instance

        if compute.instance_type not in (None, "local"):
            raise InvalidRequest(
                f"instance_type '{compute.instance_type}' is a cloud machine; the local "
                "provider runs on this machine (use a size such as cpu.small)",
                provider="local",
            )
        if compute.serverless_memory_mb is not None:
            raise InvalidRequest(
                "serverless_memory_mb: local serverless workers run without a memory cap",
                provider="local",
            )
        if compute.accelerator or compute.accelerator_count:
            raise InvalidRequest(
                "the local provider does not attach accelerators", provider="local"
            )
        resolve_instance("local", compute.size or "cpu.small", compute.instance_type)
    model = getattr(spec, "model", None)
    if isinstance(model, ModelSpec) and not model.is_local:
        raise InvalidRequest(
            f"the local provider serves local artifacts; {model.artifact!r} is remote",
            provider="local",
        )
    if isinstance(model, ModelSpec) and model.artifact is None:
        raise InvalidRequest(
            "the local provider runs the cloudserve serving runtime on an artifact; "
            "a container image alone cannot be served",
            provider="local",
        )
