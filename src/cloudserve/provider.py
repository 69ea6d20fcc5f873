"""The provider contract: a small required core, everything else declared and capability-gated.

A provider declares ``capabilities`` and, for each capability it lacks, may give a reason in
``unsupported``. Calling an operation whose capability is missing raises
:class:`~cloudserve.errors.UnsupportedOperation` with that reason before any request is sent.
See ``docs/architecture.md`` for the full contract.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cloudserve.errors import CloudServeError, ErrorTable, InvalidRequest, UnsupportedOperation
from cloudserve.retry import RetryPolicy
from cloudserve.waiting import ProgressCallback, wait_for

if TYPE_CHECKING:
    from cloudserve.pricing.refresh import RefreshResult
    from cloudserve.resources import (
        AsyncPrediction,
        BatchJob,
        Endpoint,
        MetricsReport,
        ModelVersion,
        PlannedCall,
        Prediction,
        ShadowPair,
        TuningJob,
    )
    from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec

__all__ = ["Capability", "Provider", "ProviderConfig", "RetrySettings", "WaitSettings"]

T = TypeVar("T")


class Capability(str, Enum):
    """What a provider can do beyond the required core."""

    DEPLOY = "deploy"
    PREDICT = "predict"
    TRAFFIC_SPLIT = "traffic_split"
    AUTOSCALE = "autoscale"
    SERVERLESS = "serverless"
    BATCH = "batch"
    TUNE = "tune"
    METRICS = "metrics"
    DATA_CAPTURE = "data_capture"
    DRIFT = "drift"
    REGISTRY = "registry"
    ASYNC_PREDICT = "async_predict"
    PRICING_REFRESH = "pricing_refresh"
    ROLLOUT = "rollout"  # metric-gated progressive delivery (needs TRAFFIC_SPLIT and METRICS)
    SHADOW = "shadow"  # a share of requests mirrored to a variant whose answers are discarded


REQUIRED = frozenset({Capability.DEPLOY, Capability.PREDICT})


class RetrySettings(BaseModel):
    """How retry-safe calls are retried (see :class:`cloudserve.retry.RetryPolicy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(5, ge=1, le=20)
    initial_backoff_s: float = Field(0.5, ge=0)
    max_backoff_s: float = Field(20.0, ge=0)
    max_elapsed_s: float = Field(120.0, gt=0)


class WaitSettings(BaseModel):
    """How long-running operations are polled and how long they may take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poll_interval_s: float = Field(2.0, gt=0)
    max_poll_interval_s: float = Field(30.0, gt=0)
    deploy_timeout_s: float = Field(1800.0, gt=0)
    job_timeout_s: float = Field(24 * 3600.0, gt=0)


class ProviderConfig(BaseModel):
    """Base of every provider's config block. Unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    retry: RetrySettings = RetrySettings()
    waits: WaitSettings = WaitSettings()
    tags: dict[str, str] = Field(default_factory=dict)
    #: seconds a rollout waits after each bake for the target's metrics to show it (None: the
    #: provider's default, its ``metrics_delay_s``)
    metrics_delay_s: float | None = Field(None, ge=0, le=3600)


class Provider(abc.ABC):
    """Base class of every provider.

    Subclasses set ``name``, ``config_cls``, ``capabilities`` and ``error_table``, implement the
    five required methods, and override the optional ones their capabilities declare.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[ProviderConfig]] = ProviderConfig
    capabilities: ClassVar[frozenset[Capability]] = REQUIRED
    unsupported: ClassVar[Mapping[Capability, str]] = {}
    error_table: ClassVar[ErrorTable | None] = None
    #: the shortest metrics window that holds data (a cloud's metric period and delay); a
    #: rollout's bake time below it is refused, since every decision would see nothing
    min_metrics_window_s: ClassVar[float] = 60.0
    #: how long after a request the provider's metrics may still not show it (the monitoring
    #: service's ingestion delay); a rollout keeps each step at its weight this much longer
    #: than the bake before it reads the step's window, so the decision sees the whole bake
    metrics_delay_s: float = 0.0

    def __init__(self, config: ProviderConfig, *, target: str | None = None):
        self.config = config
        self.target = target or self.name
        self.retry_policy = RetryPolicy.from_settings(config.retry)
        if config.metrics_delay_s is not None:
            self.metrics_delay_s = config.metrics_delay_s

    # -- capabilities -------------------------------------------------------------------------

    @classmethod
    def supports(cls, capability: Capability) -> bool:
        """True when the provider declares ``capability``."""
        return capability in cls.capabilities

    @classmethod
    def reason(cls, capability: Capability) -> str:
        """Why ``capability`` is missing (a generic reason when the provider gave none)."""
        return cls.unsupported.get(
            capability, f"the {cls.name} provider does not declare {capability.value}"
        )

    def require(self, capability: Capability) -> None:
        """Raise UnsupportedOperation unless the provider declares ``capability``."""
        if not self.supports(capability):
            raise UnsupportedOperation(capability, self.reason(capability), provider=self.name)

    # -- errors, retries, waits ---------------------------------------------------------------

    def translate(self, exc: BaseException) -> CloudServeError:
        """The cloudserve error for a native exception, with ``__cause__`` set."""
        if isinstance(exc, CloudServeError):
            return exc
        if self.error_table is None:
            err = CloudServeError(f"{type(exc).__name__}: {exc}", provider=self.name)
            err.__cause__ = exc
            return err
        return self.error_table.translate(exc, provider=self.name)

    def call(self, fn: Callable[..., T], *args: Any, retry: bool = True, **kwargs: Any) -> T:
        """Call a native SDK function, translating its errors; retried when ``retry``.

        Pass ``retry=False`` for creates that are not idempotent.
        """

        def attempt() -> T:
            try:
                return fn(*args, **kwargs)
            except CloudServeError:
                raise
            except Exception as exc:
                raise self.translate(exc) from exc

        if not retry:
            return attempt()
        return self.retry_policy.call(attempt)

    def wait(
        self,
        poll: Callable[[], T],
        *,
        is_done: Callable[[T], bool],
        description: str,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        status_of: Callable[[T], str] = str,
        job: bool = False,
    ) -> T:
        """Poll with this provider's wait settings (see :func:`cloudserve.waiting.wait_for`)."""
        w = self.config.waits
        return wait_for(
            poll,
            is_done=is_done,
            timeout=timeout or (w.job_timeout_s if job else w.deploy_timeout_s),
            description=description,
            status_of=status_of,
            interval=w.poll_interval_s,
            max_interval=w.max_poll_interval_s,
            progress=progress,
        )

    # -- validation ---------------------------------------------------------------------------

    def validate(self, spec: Any) -> None:
        """Reject spec fields this provider cannot honour, before any request.

        The base checks capability-backed fields; providers extend it for their own limits.
        The Client calls it once per operation, before ``deploy``, ``batch_predict``, ``tune``
        and ``plan``; those methods receive a validated spec and do not validate it again.
        """
        from cloudserve.specs import DeploySpec

        if isinstance(spec, DeploySpec):
            if spec.compute.autoscaling:
                self._require_for(Capability.AUTOSCALE, "compute.min_replicas/max_replicas")
            if spec.compute.serverless:
                self._require_for(Capability.SERVERLESS, "compute.serverless")
            if spec.data_capture is not None and spec.data_capture.enabled:
                self._require_for(Capability.DATA_CAPTURE, "data_capture")
            if spec.shadow:
                self._require_for(Capability.SHADOW, "shadow")

    def _require_for(self, capability: Capability, field: str) -> None:
        if not self.supports(capability):
            raise InvalidRequest(
                f"{field} needs {capability.value}, which {self.name} lacks: "
                f"{self.reason(capability)}",
                provider=self.name,
            )

    # -- required core ------------------------------------------------------------------------

    @abc.abstractmethod
    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create or update the endpoint so that it serves ``spec``.

        The same spec again is a no-op; a changed spec is an update (blue/green where the
        cloud allows). A deploy failing half-way removes what it created unless
        ``spec.keep_on_failure``.
        """

    @abc.abstractmethod
    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint's current state; NotFound if it does not exist."""

    @abc.abstractmethod
    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint this provider can see in its configured scope."""

    @abc.abstractmethod
    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint and what cloudserve created for it; a missing one is fine."""

    @abc.abstractmethod
    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Online prediction: one output per input row, in order."""

    # -- optional, capability-gated -----------------------------------------------------------

    def _missing(self, capability: Capability) -> UnsupportedOperation:
        if self.supports(capability):
            return UnsupportedOperation(
                capability,
                f"{self.name} declares {capability.value} but does not implement it",
                provider=self.name,
            )
        return UnsupportedOperation(capability, self.reason(capability), provider=self.name)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Split traffic across variants (percentages summing to 100)."""
        raise self._missing(Capability.TRAFFIC_SPLIT)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Remove one variant that takes no traffic (weight 0) from the endpoint."""
        raise self._missing(Capability.TRAFFIC_SPLIT)

    def shadow_pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """Mirrored requests of the window: each production answer beside its shadow's."""
        raise self._missing(Capability.SHADOW)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The state a rollout recorded with ``endpoint`` (``None``: no rollout in progress)."""
        raise self._missing(Capability.ROLLOUT)

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        """Record (or, with ``None``, clear) the rollout state with the endpoint itself, so
        another process or machine can resume it."""
        raise self._missing(Capability.ROLLOUT)

    def predict_async(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        """Queue a prediction and return a handle at once."""
        raise self._missing(Capability.ASYNC_PREDICT)

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The state (and, once done, the outputs) of a queued prediction."""
        raise self._missing(Capability.ASYNC_PREDICT)

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """Start a batch prediction job and return at once (the Client and ``BatchJob.wait()``
        wait through :meth:`get_batch_job`). ``spec`` is already validated."""
        raise self._missing(Capability.BATCH)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """A batch job's current state."""
        raise self._missing(Capability.BATCH)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """Start a hyperparameter tuning job and return at once (the Client and
        ``TuningJob.wait()`` wait through :meth:`get_tuning_job`). ``spec`` is already
        validated."""
        raise self._missing(Capability.TUNE)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """A tuning job's current state, trials and best trial."""
        raise self._missing(Capability.TUNE)

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """Invocations, errors and latency percentiles over the last ``window_s`` seconds."""
        raise self._missing(Capability.METRICS)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Feature rows captured from requests over the window (drift is computed from them)."""
        raise self._missing(Capability.DATA_CAPTURE)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """Add a model version to the provider's registry."""
        raise self._missing(Capability.REGISTRY)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions, all or of one model."""
        raise self._missing(Capability.REGISTRY)

    def refresh_prices(self) -> RefreshResult:
        """Current on-demand prices from the cloud's pricing API: catalog rows, and what had
        no usable price (item → reason)."""
        raise self._missing(Capability.PRICING_REFRESH)

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """The calls ``deploy(spec)`` would make against an empty account, sending none."""
        from cloudserve.resources import PlannedCall

        return [
            PlannedCall(
                service=self.name,
                operation="deploy",
                params={"endpoint": spec.endpoint, "variant": spec.variant_name},
                creates=f"endpoint {spec.endpoint}",
            )
        ]

    # -- jobs and logs: optional, without a capability of their own -----------------------------

    def list_jobs(self) -> list[BatchJob | TuningJob]:
        """This target's batch and tuning jobs, newest first."""
        raise UnsupportedOperation(
            "listing jobs", f"the {self.name} provider does not list jobs", provider=self.name
        )

    def cancel_job(self, job_id: str) -> None:
        """Stop a running batch or tuning job; one that already ended is left as it is."""
        raise UnsupportedOperation(
            "cancelling jobs", f"the {self.name} provider cannot cancel jobs", provider=self.name
        )

    def endpoint_logs(self, name: str, *, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the endpoint's server logs, oldest first."""
        raise UnsupportedOperation(
            "endpoint logs", f"the {self.name} provider does not fetch logs", provider=self.name
        )

    def route(self, spec: DeploySpec) -> str:
        """The packaging route a deploy of ``spec`` takes, as ``plan`` shows it: ``"framework"``
        (the cloud's prebuilt serving container) or ``"container"`` (the cloudserve runtime
        image). Providers that choose the route themselves override this."""
        return "container" if spec.model.image else "framework"

    def region(self) -> str | None:
        """The region prices are looked up in (``None`` for providers without one)."""
        return getattr(self.config, "region", None) or getattr(self.config, "location", None)

    def close(self) -> None:
        """Release clients, threads and connections (idempotent)."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
