"""The pre-deploy smoke test: run the artifact through the serving runtime before any cloud call.

A broken artifact (will not load, crashes on the sample, returns NaN or the wrong number of
outputs) fails here in seconds with :class:`~cloudserve.errors.SmokeTestFailed`, instead of
after a long cloud deploy.
"""

from __future__ import annotations

import math
from typing import Any

from cloudserve.errors import CloudServeError, SmokeTestFailed
from cloudserve.specs import ModelSpec

__all__ = ["smoke_test"]


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value) or math.isinf(value)
    if isinstance(value, list | tuple):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False


def smoke_test(model: ModelSpec, sample_input: list[Any]) -> list[Any]:
    """Load ``model`` locally, predict ``sample_input`` and check the outputs; returns them."""
    if not model.is_local or model.artifact is None:
        raise SmokeTestFailed(f"model {model.name}: only a local artifact can be smoke-tested")
    if not sample_input:
        raise SmokeTestFailed(f"model {model.name}: the sample input is empty")
    from cloudserve.serving import load_model

    try:
        loaded = load_model(model.artifact)
        outputs = loaded.predict(sample_input)
    except CloudServeError as exc:
        raise SmokeTestFailed(
            f"model {model.name}:{model.version} rejected the sample: {exc}"
        ) from exc
    except Exception as exc:
        raise SmokeTestFailed(
            f"model {model.name}:{model.version} failed its smoke test: {type(exc).__name__}: {exc}"
        ) from exc
    if len(outputs) != len(sample_input):
        raise SmokeTestFailed(
            f"model {model.name}:{model.version} returned {len(outputs)} outputs "
            f"for {len(sample_input)} sample rows"
        )
    if _has_nan(outputs):
        raise SmokeTestFailed(f"model {model.name}:{model.version} returned NaN or infinity")
    return outputs
