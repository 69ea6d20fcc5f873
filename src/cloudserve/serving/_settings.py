"""Server settings, from arguments and the clouds' environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PARAMETERS_ENV", "ServerSettings", "default_port", "env_parameters"]

#: a JSON object of ``parameters`` for requests that carry none: the job-level default of a
#: batch job whose requests cannot carry any (a SageMaker transform job sets it in the job's
#: environment, as the generated handler on the framework route reads it)
PARAMETERS_ENV = "CLOUDSERVE_BATCH_PARAMETERS"


def env_parameters() -> dict[str, Any]:
    """``CLOUDSERVE_BATCH_PARAMETERS`` as a dict (``{}`` when unset)."""
    text = os.environ.get(PARAMETERS_ENV)
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise ValueError(f"{PARAMETERS_ENV} must hold a JSON object, got {text!r}")
    return value


# Vertex AI names the port; SageMaker names one only for containers that must share a host
# (multi-container endpoints, inference pipelines); 8080 is every other contract's default.
_PORT_VARIABLES = ("AIP_HTTP_PORT", "SAGEMAKER_BIND_TO_PORT")


def default_port() -> int:
    """``AIP_HTTP_PORT`` (Vertex AI), ``SAGEMAKER_BIND_TO_PORT`` (SageMaker), else 8080."""
    for var in _PORT_VARIABLES:
        if os.environ.get(var):
            return int(os.environ[var])
    return 8080


class ServerSettings(BaseModel):
    """Everything the server can be told. Defaults are safe for a laptop.

    Batching is on by default and adaptive: a batch closes when it holds ``max_batch_size`` rows,
    when ``max_wait_ms`` passed since its first request, or at once when no other request is
    arriving — so a lone request never waits. ``max_batch_size=1`` turns batching off.
    """

    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = Field(
        default=None, description="None: the model a cloud handed over (serving._location)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default_factory=default_port, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=64, ge=1)
    max_wait_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=1024, ge=1, description="requests waiting beyond → 503")
    max_queue_ms: float = Field(
        default=20.0,
        gt=0,
        description="a new request's wait behind full batches over this → 503",
    )
    idle_timeout_s: float = Field(
        default=75.0, gt=0, description="close a connection with no request in progress"
    )
    header_timeout_s: float = Field(default=10.0, gt=0, description="first byte → end of headers")
    body_timeout_s: float = Field(default=30.0, gt=0, description="end of headers → end of body")
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, description="larger → 431")
    token: str | None = Field(default=None, repr=False)
    max_body_bytes: int = Field(default=6 * 1024 * 1024, ge=1)
    cache_size: int = Field(default=0, ge=0, description="in-process LRU entries; 0 = off")
    cache_url: str | None = Field(default=None, description="redis://… shared cache")
    cache_ttl_s: int = Field(default=3600, ge=1)
    model_name: str | None = None
    predict_route: str | None = Field(default_factory=lambda: os.environ.get("AIP_PREDICT_ROUTE"))
    health_route: str | None = Field(default_factory=lambda: os.environ.get("AIP_HEALTH_ROUTE"))
    default_parameters: dict[str, Any] = Field(
        default_factory=env_parameters, description="for requests without parameters"
    )
    drain_timeout_s: float = Field(default=25.0, ge=0)
    log_level: str = "info"

    @property
    def batching(self) -> bool:
        """Whether requests are coalesced."""
        return self.max_batch_size > 1
