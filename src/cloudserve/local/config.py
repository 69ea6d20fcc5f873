"""Settings of the local provider (the ``local`` target in ``cloudserve.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from cloudserve.config import default_state_dir
from cloudserve.provider import ProviderConfig

__all__ = ["LocalConfig", "default_state_dir"]


class LocalConfig(ProviderConfig):
    """Where the local provider keeps its state and how it runs endpoints.

    ``state_dir`` holds the SQLite state, the model registry, staged artifacts, worker logs,
    batch and tuning work. ``port_range`` limits the loopback ports given to workers (any free
    port when unset). ``capture_sampling`` turns data capture on for every endpoint deployed
    without an explicit ``data_capture`` (0 = off). ``batch_chunk_rows`` is the unit of work of
    batch jobs (a resumed job keeps the size it started with). Each endpoint's agent checks its
    workers every ``supervise_interval_s`` and replaces dead ones.
    """

    provider: Literal["local"] = "local"
    state_dir: Path = Field(default_factory=default_state_dir)
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    port_range: tuple[int, int] | None = None
    capture_sampling: Annotated[float, Field(ge=0, le=1)] = 0.0
    ready_timeout_s: Annotated[float, Field(gt=0)] = 90.0
    drain_s: Annotated[float, Field(ge=0)] = 1.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    server_batch_size: Annotated[int, Field(ge=1)] | None = None
    server_batch_wait_ms: Annotated[float, Field(ge=0)] = 2.0
    batch_chunk_rows: Annotated[int, Field(ge=1)] = 50_000
    supervise_interval_s: Annotated[float, Field(gt=0)] = 1.0
    autoscale_interval_s: Annotated[float, Field(gt=0)] = 2.0
    autoscale_window_s: Annotated[float, Field(gt=0)] = 10.0
    scale_down_after_s: Annotated[float, Field(gt=0)] = 30.0
    metrics_retention_s: Annotated[float, Field(gt=0)] = 7 * 86400.0

    @model_validator(mode="after")
    def _ports(self) -> LocalConfig:
        if self.port_range is not None:
            lo, hi = self.port_range
            if not 1024 <= lo <= hi <= 65535:
                raise ValueError("port_range must be (low, high) within 1024–65535")
        return self
