"""Pure checks of a spec against Vertex AI's limits — no SDK, no request."""

from __future__ import annotations

import re
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.specs import BatchSpec, DeploySpec, TuningSpec
from cloudserve_vertex._config import VertexConfig

__all__ = ["CAPTURE_DESTINATION", "validate"]

# Request-response logging: Vertex creates the dataset (logging_<endpoint>_<id>) and the table
# (request_response_logging) when only the project, or the project and dataset, are given; a
# full table reference needs an existing dataset and a table that does not exist yet, so it
# fails on a fresh project and again on every redeploy (PredictRequestResponseLoggingConfig).
CAPTURE_DESTINATION = re.compile(r"^bq://[a-z][a-z0-9-]{4,28}[a-z0-9](\.[A-Za-z0-9_]{1,1024})?$")


def _err(message: str) -> InvalidRequest:
    return InvalidRequest(message, provider="vertex")


def validate(spec: Any, config: VertexConfig) -> None:
    """Raise ``InvalidRequest`` naming the field Vertex AI cannot honour."""
    if isinstance(spec, DeploySpec):
        _deploy(spec, config)
    elif isinstance(spec, BatchSpec):
        if spec.resolved_format == "parquet":
            raise _err("format: Vertex batch prediction reads JSON Lines or CSV, not Parquet")
        if spec.compute.autoscaling:
            raise _err("compute: Vertex batch jobs run a fixed starting replica count")
    elif isinstance(spec, TuningSpec):
        if spec.strategy == "hyperband":
            raise _err("strategy 'hyperband': Vertex AI Vizier offers bayesian, grid and random")
        if spec.train.entrypoint is None:
            raise _err("train.entrypoint: Vertex tuning runs a Python script")
        if not (spec.train.image or config.training_image):
            raise _err(
                "train.image: give TrainSpec(image=…) or the target's training_image — one of "
                "Vertex's prebuilt training containers that is still available "
                "(https://cloud.google.com/vertex-ai/docs/training/pre-built-containers) or "
                "your own; cloudserve sets no default because each version reaches end of "
                "availability"
            )


def _deploy(spec: DeploySpec, config: VertexConfig) -> None:
    if spec.endpoint.endswith("-"):
        raise _err("endpoint: a Vertex endpoint id cannot end with '-'")
    if spec.compute.max_concurrency is not None:
        raise _err("compute.max_concurrency: Vertex AI sets per-replica concurrency itself")
    capture = spec.data_capture
    destination = capture.destination if capture and capture.enabled else None
    if destination and not CAPTURE_DESTINATION.match(destination):
        raise _err(
            f"data_capture.destination {destination!r}: give bq://PROJECT or "
            "bq://PROJECT.DATASET; Vertex then creates the table itself (a full table "
            "reference must not exist yet, so it fails on every redeploy)"
        )
