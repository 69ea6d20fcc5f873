"""What cloudserve returns: typed results and the shared status enums.

Every result keeps the provider's own response in ``raw`` for users who need a field cloudserve
does not model. Results returned by a :class:`~cloudserve.client.Client` are bound to it, so
``endpoint.predict(...)``, ``job.wait()`` and ``job.refresh()`` work on them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    from cloudserve.client import Client
    from cloudserve.waiting import Progress

__all__ = [
    "AsyncPrediction",
    "BatchJob",
    "CostEstimate",
    "CostLine",
    "DriftReport",
    "Endpoint",
    "EndpointStatus",
    "FeatureDrift",
    "JobStatus",
    "MetricsReport",
    "ModelVersion",
    "Plan",
    "PlannedCall",
    "Prediction",
    "ShadowPair",
    "ShadowReport",
    "Trial",
    "TuningJob",
    "Variant",
    "VariantMetrics",
]


class EndpointStatus(str, Enum):
    """The state of an endpoint, the same on every provider."""

    CREATING = "CREATING"
    UPDATING = "UPDATING"
    READY = "READY"
    FAILED = "FAILED"
    DELETING = "DELETING"

    @property
    def is_terminal(self) -> bool:
        """True for READY and FAILED: no change will come without a new request."""
        return self in (EndpointStatus.READY, EndpointStatus.FAILED)


class JobStatus(str, Enum):
    """The state of a batch or tuning job, the same on every provider."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """True once the job will not change state again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    raw: Any = Field(default=None, repr=False, exclude=True)
    _client: Client | None = PrivateAttr(default=None)

    def bind(self, client: Client) -> Any:
        """Attach the client this result came from (done by the client; returns self)."""
        self._client = client
        return self

    def _bound(self) -> Client:
        if self._client is None:
            raise RuntimeError(f"this {type(self).__name__} is not bound to a client")
        return self._client

    def _repr_html_(self) -> str:
        """A table of the fields, for notebooks (Jupyter calls this to display a result)."""
        from html import escape

        rows = []
        for name, value in self.model_dump(mode="json").items():
            shown = value if isinstance(value, str) else orjson.dumps(value).decode()
            if len(shown) > 300:
                shown = shown[:300] + "…"
            rows.append(
                f"<tr><th style='text-align:left'>{escape(name)}</th>"
                f"<td style='text-align:left'>{escape(shown)}</td></tr>"
            )
        return (
            f"<table><caption style='text-align:left'><b>{type(self).__name__}</b></caption>"
            + "".join(rows)
            + "</table>"
        )


class Variant(_Result):
    """One model version deployed behind an endpoint, with its share of traffic (0–100)."""

    name: str
    model_name: str
    model_version: str
    weight: int = 100
    instance_type: str | None = None
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    status: EndpointStatus = EndpointStatus.READY
    url: str | None = None
    shadow: int = 0  # percent of the endpoint's requests mirrored to this variant


class Endpoint(_Result):
    """A deployed endpoint and its variants."""

    name: str
    provider: str
    status: EndpointStatus
    variants: list[Variant] = Field(default_factory=list)
    url: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    message: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def traffic(self) -> dict[str, int]:
        """Variant name → traffic share in percent."""
        return {v.name: v.weight for v in self.variants}

    def variant(self, name: str) -> Variant:
        """The variant called ``name`` (KeyError if none)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def predict(self, instances: Any, **kwargs: Any) -> Prediction:
        """Predict through the client this endpoint came from."""
        return self._bound().predict(self.name, instances, **kwargs)

    def predict_proba(self, instances: Any, **kwargs: Any) -> Prediction:
        """Class probabilities: the model's ``predict_proba`` (one list per row)."""
        parameters = {**(kwargs.pop("parameters", None) or {}), "method": "predict_proba"}
        return self._bound().predict(self.name, instances, parameters=parameters, **kwargs)

    def refresh(self) -> Endpoint:
        """A fresh copy of this endpoint's state."""
        return self._bound().get_endpoint(self.name)

    def delete(self) -> None:
        """Delete this endpoint and what cloudserve created for it (idempotent)."""
        self._bound().delete_endpoint(self.name)


class ModelVersion(_Result):
    """A registered model version and its lineage."""

    name: str
    version: str
    provider: str
    uri: str | None = None
    framework: str | None = None
    content_hash: str | None = None
    created_at: datetime | None = None
    stage: str | None = None
    lineage: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class Prediction(_Result):
    """The outputs for one request, in input order, and where they came from."""

    outputs: list[Any]
    model_version: str | None = None
    variant: str | None = None
    latency_ms: float | None = None


class AsyncPrediction(_Result):
    """A queued prediction: poll with ``refresh()`` or block with ``wait()``."""

    request_id: str
    endpoint: str
    status: JobStatus
    outputs: list[Any] | None = None
    error: str | None = None
    output_location: str | None = None

    def refresh(self) -> AsyncPrediction:
        """The request's current state."""
        return self._bound().get_async_result(self.endpoint, self.request_id)

    def wait(
        self, timeout: float = 300.0, progress: Callable[[Progress], None] | None = None
    ) -> AsyncPrediction:
        """Block until the request finishes; raises OperationFailed if it failed."""
        return self._bound().wait_async(self, timeout=timeout, progress=progress)


class BatchJob(_Result):
    """A batch prediction job. ``rows_failed`` rows are listed in ``error_file`` with reasons."""

    id: str
    provider: str
    status: JobStatus
    input: str
    output: str
    rows_total: int | None = None
    rows_succeeded: int | None = None
    rows_failed: int | None = None
    error_file: str | None = None
    message: str | None = None
    created_at: datetime | None = None
    ended_at: datetime | None = None

    def refresh(self) -> BatchJob:
        """The job's current state."""
        return self._bound().get_batch_job(self.id)

    def wait(
        self, timeout: float | None = None, progress: Callable[[Progress], None] | None = None
    ) -> BatchJob:
        """Block until the job ends; raises OperationFailed if it failed.

        ``timeout`` defaults to the target's ``waits.job_timeout_s`` (as
        ``Client.batch_predict(wait=True)`` does)."""
        return self._bound().wait_batch(self, timeout=timeout, progress=progress)


class Trial(_Result):
    """One trial of a tuning job."""

    id: str
    params: dict[str, Any]
    status: JobStatus
    value: float | None = None
    intermediate: list[float] = Field(default_factory=list)
    artifact: str | None = None
    log: str | None = None
    message: str | None = None


class TuningJob(_Result):
    """A hyperparameter tuning job, its trials and the best one so far."""

    id: str
    provider: str
    status: JobStatus
    objective: str
    goal: Literal["maximize", "minimize"]
    trials: list[Trial] = Field(default_factory=list)
    best_trial: Trial | None = None
    message: str | None = None

    def refresh(self) -> TuningJob:
        """The job's current state."""
        return self._bound().get_tuning_job(self.id)

    def wait(
        self, timeout: float | None = None, progress: Callable[[Progress], None] | None = None
    ) -> TuningJob:
        """Block until the job ends; raises OperationFailed if it failed.

        ``timeout`` defaults to the target's ``waits.job_timeout_s`` (as
        ``Client.tune(wait=True)`` does)."""
        return self._bound().wait_tuning(self, timeout=timeout, progress=progress)


class VariantMetrics(BaseModel):
    """Serving metrics of one variant over a window."""

    model_config = ConfigDict(extra="forbid")

    invocations: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_count(self) -> int:
        """All errors, whatever their class."""
        return sum(self.errors.values())


class MetricsReport(_Result):
    """Invocations, errors by class (``4xx``, ``5xx`` …) and latency percentiles over a window."""

    endpoint: str
    provider: str
    window_s: float
    invocations: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    per_variant: dict[str, VariantMetrics] = Field(default_factory=dict)
    source: str | None = None

    @property
    def error_count(self) -> int:
        """All errors, whatever their class."""
        return sum(self.errors.values())


class ShadowPair(BaseModel):
    """One mirrored request: the production variant's answer beside the shadow variant's."""

    request_id: str
    ts: float
    production_variant: str | None = None
    shadow_variant: str
    production_outputs: list[Any] | None = None
    shadow_outputs: list[Any] | None = None
    production_latency_ms: float | None = None
    shadow_latency_ms: float | None = None
    production_error: str | None = None
    shadow_error: str | None = None


class ShadowReport(_Result):
    """How a shadow variant answered the requests mirrored to it, against production."""

    endpoint: str
    provider: str
    window_s: float
    shadow_variant: str | None = None
    mirrored: int = 0
    production_invocations: int = 0
    both_answered: int = 0
    agreement_rate: float | None = None
    production_p50_ms: float | None = None
    production_p99_ms: float | None = None
    shadow_p50_ms: float | None = None
    shadow_p99_ms: float | None = None
    production_errors: int = 0
    shadow_errors: int = 0
    disagreements: list[ShadowPair] = Field(default_factory=list)

    @property
    def share(self) -> float | None:
        """The fraction of production requests that were mirrored."""
        if not self.production_invocations:
            return None
        return self.mirrored / self.production_invocations


class FeatureDrift(BaseModel):
    """Drift of one feature between the baseline and what the endpoint has seen."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    flagged: bool
    baseline_mean: float | None = None
    current_mean: float | None = None


class DriftReport(_Result):
    """Per-feature PSI and Kolmogorov–Smirnov results, with the flagged features listed."""

    endpoint: str
    provider: str
    baseline: str
    sample_size: int
    baseline_size: int
    features: list[FeatureDrift]
    psi_threshold: float
    ks_pvalue_threshold: float

    @property
    def flagged(self) -> list[str]:
        """Names of the features whose drift passed a threshold."""
        return [f.feature for f in self.features if f.flagged]

    @property
    def drifted(self) -> bool:
        """True when any feature is flagged."""
        return any(f.flagged for f in self.features)


class CostLine(BaseModel):
    """One priced item of an estimate (an instance, an accelerator add-on, storage …)."""

    model_config = ConfigDict(extra="forbid")

    item: str
    quantity: float
    unit: str
    unit_price: float | None
    total: float | None
    source: str | None = None
    as_of: str | None = None


class CostEstimate(_Result):
    """What a spec would cost. ``hourly`` is None when a price is unknown — never a silent 0."""

    provider: str
    region: str | None
    kind: Literal["hosting", "batch", "training"]
    instance_type: str | None
    currency: str = "USD"
    hourly: float | None = None
    hourly_max: float | None = None
    monthly: float | None = None
    monthly_max: float | None = None
    total: float | None = None
    lines: list[CostLine] = Field(default_factory=list)
    unknown_reason: str | None = None
    assumptions: list[str] = Field(default_factory=list)
    as_of: str | None = None

    @property
    def known(self) -> bool:
        """False when any price the estimate needs is missing from the catalog."""
        return self.unknown_reason is None


class PlannedCall(BaseModel):
    """A request a deploy would send, in order, without sending it."""

    model_config = ConfigDict(extra="forbid")

    service: str
    operation: str
    params: dict[str, Any] = Field(default_factory=dict)
    creates: str | None = None


class Plan(_Result):
    """The calls an operation would make, and what it would cost; nothing is created."""

    target: str
    provider: str
    route: str | None = None
    calls: list[PlannedCall]
    estimate: CostEstimate | None = None
    warnings: list[str] = Field(default_factory=list)
