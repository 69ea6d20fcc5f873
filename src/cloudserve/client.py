"""The ``Client`` facade: one API over every provider.

The client validates specs (the shared rules, then the provider's own), checks capabilities
before any request, runs the pre-deploy smoke test, converts between user-friendly arguments
and specs, and binds the results it returns so that ``endpoint.predict(...)`` and
``job.wait()`` work on them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cloudserve.config import Target, resolve_target
from cloudserve.errors import InvalidRequest, OperationFailed
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.registry import get_provider_class
from cloudserve.resources import (
    AsyncPrediction,
    BatchJob,
    CostEstimate,
    DriftReport,
    Endpoint,
    JobStatus,
    MetricsReport,
    ModelVersion,
    Plan,
    Prediction,
    ShadowReport,
    TuningJob,
)
from cloudserve.specs import BatchSpec, Compute, DataCapture, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback, wait_for

if TYPE_CHECKING:
    from cloudserve.rollout import Clock, Gates, RolloutReport

__all__ = ["Client", "connect", "parse_window"]

S = TypeVar("S", DeploySpec, BatchSpec)

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_window(window: str | float | int) -> float:
    """Seconds in a window such as ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` or a number."""
    if isinstance(window, int | float):
        seconds = float(window)
    else:
        m = _WINDOW.match(window)
        if not m:
            raise InvalidRequest(f"window '{window}' is not a duration such as 30m, 1h or 7d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise InvalidRequest("window must be positive")
    return seconds


def connect(
    target: str | ProviderConfig | None = None,
    *,
    config: str | Path | None = None,
) -> Client:
    """A client for a target from ``cloudserve.yaml`` (or the given config object).

    ``connect()`` alone picks ``CLOUDSERVE_TARGET``, else the file's ``default``, else ``local``.
    """
    if isinstance(target, ProviderConfig):
        tgt = Target(name=target.provider, config=target)
    else:
        tgt = resolve_target(target, path=config)
    cls = get_provider_class(tgt.provider)
    return Client(cls(tgt.config, target=tgt.name), target=tgt.name)


class Client:
    """Every cloudserve operation on one target. Use as a context manager to close it."""

    def __init__(self, provider: Provider, *, target: str | None = None):
        self.provider = provider
        self.target = target or provider.name

    def __repr__(self) -> str:
        return f"Client(target={self.target!r}, provider={self.provider.name!r})"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this target's provider can do."""
        return self.provider.capabilities

    def _bind(self, result: Any) -> Any:
        if isinstance(result, list):
            for r in result:
                r.bind(self)
            return result
        return result.bind(self)

    # -- endpoints ------------------------------------------------------------------------

    def deploy(
        self,
        model: ModelSpec | ModelVersion | DeploySpec,
        endpoint: str | None = None,
        compute: Compute | None = None,
        *,
        variant: str | None = None,
        traffic: int | None = None,
        shadow: int | None = None,
        data_capture: DataCapture | bool | None = None,
        sample_input: list[Any] | None = None,
        smoke_test: bool = True,
        keep_on_failure: bool | None = None,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Deploy a model version behind ``endpoint`` (default: the model's name).

        Same spec again: no-op. Changed spec: update. With ``sample_input`` (or the model's
        own ``sample_input``) the artifact is first run locally through the serving runtime; a
        broken artifact raises SmokeTestFailed before anything is created. A ``DeploySpec``
        carries everything: passing it together with ``endpoint``, ``compute``, ``variant``,
        ``traffic``, ``shadow``, ``data_capture`` or ``keep_on_failure`` is an
        ``InvalidRequest``. ``shadow=20`` deploys a shadow variant that receives a mirrored 20 %
        of the requests and answers nobody (see :meth:`shadow_report`).
        """
        spec = self._deploy_spec(
            model, endpoint, compute, variant, traffic, shadow, data_capture, keep_on_failure
        )
        self.provider.require(Capability.DEPLOY)
        if spec.shadow:  # checked here too: a provider's own validate() may not call the base
            self.provider.require(Capability.SHADOW)
        spec = with_detected_framework(spec)
        self.provider.validate(spec)
        sample = sample_input if sample_input is not None else spec.model.sample_input
        if smoke_test and sample is not None and spec.model.is_local:
            from cloudserve.smoke import smoke_test as run_smoke_test

            run_smoke_test(spec.model, sample)
        ep = self.provider.deploy(spec, wait=wait, timeout=timeout, progress=progress)
        return self._bind(ep)

    def _deploy_spec(
        self,
        model: ModelSpec | ModelVersion | DeploySpec,
        endpoint: str | None,
        compute: Compute | None,
        variant: str | None,
        traffic: int | None,
        shadow: int | None,
        data_capture: DataCapture | bool | None,
        keep_on_failure: bool | None,
    ) -> DeploySpec:
        if isinstance(model, DeploySpec):
            reject_overrides(
                "DeploySpec",
                endpoint=endpoint,
                compute=compute,
                variant=variant,
                traffic=traffic,
                shadow=shadow,
                data_capture=data_capture,
                keep_on_failure=keep_on_failure,
            )
            return model
        if isinstance(model, ModelVersion):
            model = model_spec_of(model)
        capture = DataCapture() if data_capture is True else (data_capture or None)
        return DeploySpec(
            model=model,
            endpoint=endpoint or model.name,
            compute=compute or Compute(),
            variant=variant,
            traffic=(0 if shadow else 100) if traffic is None else traffic,
            shadow=shadow or 0,
            data_capture=capture,
            keep_on_failure=bool(keep_on_failure),
        )

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint's current state; NotFound if missing."""
        return self._bind(self.provider.get_endpoint(name))

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint of this target."""
        return self._bind(self.provider.list_endpoints())

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint and what cloudserve created for it. Missing is fine."""
        self.provider.delete_endpoint(name, wait=wait)

    def set_traffic(self, endpoint: str, weights: Mapping[str, int]) -> Endpoint:
        """Split traffic across variants: whole percentages, each ≥ 0, summing to 100."""
        self.provider.require(Capability.TRAFFIC_SPLIT)
        clean = validate_weights(weights)
        return self._bind(self.provider.set_traffic(endpoint, clean))

    # -- progressive delivery ---------------------------------------------------------------

    def shadow_report(self, endpoint: str, window: str | float = "1h") -> ShadowReport:
        """How the shadow variant answered the requests mirrored to it over ``window``: the
        agreement rate of its outputs with production's, latencies and errors on each side."""
        from cloudserve.shadow import shadow_report

        self.provider.require(Capability.SHADOW)
        window_s = parse_window(window)
        pairs = self.provider.shadow_pairs(endpoint, window_s)
        production = 0
        if self.provider.supports(Capability.METRICS):
            metrics = self.provider.metrics(endpoint, window_s)
            production = metrics.invocations
            if metrics.per_variant:
                # a cloud may count the mirrored copies under the shadow variant (Azure Monitor
                # does): production is what the variants that are not shadows answered
                shadows = {v.name for v in self.provider.get_endpoint(endpoint).variants
                           if v.shadow}  # fmt: skip
                production = sum(
                    m.invocations for name, m in metrics.per_variant.items() if name not in shadows
                )
        report = shadow_report(
            pairs,
            endpoint=endpoint,
            provider=self.provider.name,
            window_s=window_s,
            production_invocations=production,
        )
        return self._bind(report)

    def rollout(
        self,
        model: ModelSpec | ModelVersion,
        endpoint: str,
        *,
        steps: Sequence[int] = (10, 50, 100),
        bake: str | float = "5m",
        gates: Gates | None = None,
        variant: str | None = None,
        on_fail: Literal["rollback", "hold"] = "rollback",
        clock: Clock | None = None,
        progress: Callable[[RolloutReport], None] | None = None,
    ) -> RolloutReport:
        """Move ``model`` behind ``endpoint`` step by step, gated by its metrics against the
        current variant; a failed gate rolls back (see :mod:`cloudserve.rollout`)."""
        from cloudserve.rollout import Gates, run_rollout, start_report

        if isinstance(model, ModelVersion):
            model = model_spec_of(model)
        report = start_report(
            self,
            model,
            endpoint,
            variant=variant,
            steps=steps,
            bake_s=parse_window(bake),
            gates=gates or Gates(),
            on_fail=on_fail,
        )
        return self._bind(run_rollout(self, report, clock=clock, progress=progress))

    def resume_rollout(
        self,
        endpoint: str,
        *,
        clock: Clock | None = None,
        progress: Callable[[RolloutReport], None] | None = None,
    ) -> RolloutReport:
        """Continue the rollout recorded on ``endpoint`` (from any process or machine)."""
        from cloudserve.rollout import load_report, run_rollout

        self.provider.require(Capability.ROLLOUT)
        report = load_report(self, endpoint)
        return self._bind(run_rollout(self, report, clock=clock, progress=progress))

    def abort_rollout(self, endpoint: str) -> RolloutReport:
        """Roll back the rollout in progress on ``endpoint``: all traffic to the current
        variant, the new variant removed."""
        from cloudserve.rollout import abort_rollout

        self.provider.require(Capability.ROLLOUT)
        return self._bind(abort_rollout(self, endpoint))

    def rollout_status(self, endpoint: str) -> RolloutReport | None:
        """The recorded state of the rollout in progress on ``endpoint``, or ``None``."""
        from cloudserve.rollout import RolloutReport

        self.provider.require(Capability.ROLLOUT)
        state = self.provider.get_rollout_state(endpoint)
        return None if state is None else self._bind(RolloutReport.model_validate(state))

    # -- predictions ----------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: Any,
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Online prediction; one output per row, in order, whatever the payload size."""
        self.provider.require(Capability.PREDICT)
        rows = as_rows(instances)
        start = time.perf_counter()
        pred = self.provider.predict(endpoint, rows, variant=variant, parameters=parameters)
        if pred.latency_ms is None:
            pred.latency_ms = (time.perf_counter() - start) * 1000
        return self._bind(pred)

    def predict_async(
        self,
        endpoint: str,
        instances: Any,
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        """Queue a prediction; returns a handle to ``refresh()`` or ``wait()`` on."""
        self.provider.require(Capability.ASYNC_PREDICT)
        rows = as_rows(instances)
        return self._bind(
            self.provider.predict_async(endpoint, rows, variant=variant, parameters=parameters)
        )

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The current state of a queued prediction."""
        self.provider.require(Capability.ASYNC_PREDICT)
        return self._bind(self.provider.get_async_result(endpoint, request_id))

    def wait_async(
        self,
        handle: AsyncPrediction,
        *,
        timeout: float = 300.0,
        progress: ProgressCallback | None = None,
    ) -> AsyncPrediction:
        """Block until a queued prediction finishes."""
        final = self._wait_job(
            lambda: self.get_async_result(handle.endpoint, handle.request_id),
            f"async prediction {handle.request_id}",
            timeout,
            progress,
        )
        return final

    # -- batch ------------------------------------------------------------------------------

    def batch_predict(
        self,
        model: ModelSpec | ModelVersion | BatchSpec,
        input: str | Path | None = None,
        output: str | Path | None = None,
        *,
        compute: Compute | None = None,
        wait: bool = False,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        **options: Any,
    ) -> BatchJob:
        """Predict every row of ``input`` into ``output``; returns a BatchJob (``.wait()``).

        With ``wait`` the call blocks until the job ends (``timeout`` defaults to the target's
        ``waits.job_timeout_s``, as ``BatchJob.wait()`` does). A ``BatchSpec`` carries
        everything: passing it with ``input``, ``output``, ``compute`` or options is an
        ``InvalidRequest``.
        """
        if isinstance(model, BatchSpec):
            reject_overrides("BatchSpec", input=input, output=output, compute=compute, **options)
            spec = model
        else:
            if input is None or output is None:
                raise InvalidRequest("batch_predict needs input and output")
            if isinstance(model, ModelVersion):
                model = model_spec_of(model)
            spec = BatchSpec(
                model=model,
                input=str(input),
                output=str(output),
                compute=compute or Compute(),
                **options,
            )
        self.provider.require(Capability.BATCH)
        spec = with_detected_framework(spec)
        self.provider.validate(spec)
        job = self._bind(self.provider.batch_predict(spec))
        return self.wait_batch(job, timeout=timeout, progress=progress) if wait else job

    def get_batch_job(self, job_id: str) -> BatchJob:
        """A batch job's current state."""
        self.provider.require(Capability.BATCH)
        return self._bind(self.provider.get_batch_job(job_id))

    def wait_batch(
        self,
        job: BatchJob,
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> BatchJob:
        """Block until the batch job ends; OperationFailed if it failed.

        ``timeout`` defaults to the target's ``waits.job_timeout_s``.
        """
        return self._wait_job(
            lambda: self.get_batch_job(job.id), f"batch job {job.id}", timeout, progress
        )

    # -- tuning -----------------------------------------------------------------------------

    def tune(
        self,
        spec: TuningSpec,
        *,
        wait: bool = False,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> TuningJob:
        """Start a hyperparameter search; returns a TuningJob (``.wait()``, ``.best_trial``).

        With ``wait`` the call blocks until the job ends (``timeout`` defaults to the target's
        ``waits.job_timeout_s``, as ``TuningJob.wait()`` does).
        """
        self.provider.require(Capability.TUNE)
        self.provider.validate(spec)
        job = self._bind(self.provider.tune(spec))
        return self.wait_tuning(job, timeout=timeout, progress=progress) if wait else job

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """A tuning job's current state, trials and best trial."""
        self.provider.require(Capability.TUNE)
        return self._bind(self.provider.get_tuning_job(job_id))

    def wait_tuning(
        self,
        job: TuningJob,
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> TuningJob:
        """Block until the tuning job ends; OperationFailed if it failed.

        ``timeout`` defaults to the target's ``waits.job_timeout_s``.
        """
        return self._wait_job(
            lambda: self.get_tuning_job(job.id), f"tuning job {job.id}", timeout, progress
        )

    def _wait_job(
        self,
        poll: Any,
        description: str,
        timeout: float | None,
        progress: ProgressCallback | None,
    ) -> Any:
        w = self.provider.config.waits
        final = wait_for(
            poll,
            is_done=lambda j: j.status.is_terminal,
            timeout=w.job_timeout_s if timeout is None else timeout,
            description=description,
            status_of=_job_status,
            fraction_of=_job_fraction,
            interval=w.poll_interval_s,
            max_interval=w.max_poll_interval_s,
            progress=progress,
        )
        if final.status is not JobStatus.SUCCEEDED:
            detail = getattr(final, "message", None) or getattr(final, "error", None) or ""
            raise OperationFailed(
                f"{description} ended {final.status.value}" + (f": {detail}" if detail else ""),
                provider=self.provider.name,
            )
        return final

    def list_jobs(self) -> list[BatchJob | TuningJob]:
        """This target's batch and tuning jobs, newest first."""
        return self._bind(self.provider.list_jobs())

    def get_job(self, job_id: str) -> BatchJob | TuningJob:
        """A batch or tuning job by its id, whichever it is."""
        from cloudserve.errors import NotFound

        for capability, get in (
            (Capability.BATCH, self.provider.get_batch_job),
            (Capability.TUNE, self.provider.get_tuning_job),
        ):
            if self.provider.supports(capability):
                try:
                    return self._bind(get(job_id))
                except NotFound:
                    continue
        raise NotFound(f"no batch or tuning job {job_id}", provider=self.provider.name)

    def cancel_job(self, job_id: str) -> BatchJob | TuningJob:
        """Stop a running batch or tuning job; returns its state afterwards."""
        self.provider.cancel_job(job_id)
        return self.get_job(job_id)

    def logs(self, endpoint: str, *, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the endpoint's server logs."""
        return self.provider.endpoint_logs(endpoint, tail=tail)

    # -- monitoring -------------------------------------------------------------------------

    def metrics(self, endpoint: str, window: str | float = "1h") -> MetricsReport:
        """Invocations, errors by class and p50/p95/p99 latency, overall and per variant."""
        self.provider.require(Capability.METRICS)
        return self._bind(self.provider.metrics(endpoint, parse_window(window)))

    def drift(
        self,
        endpoint: str,
        baseline: str | Path | Any,
        *,
        window: str | float = "24h",
        features: list[str] | None = None,
        psi_threshold: float = 0.2,
        ks_pvalue_threshold: float = 0.01,
    ) -> DriftReport:
        """Per-feature PSI and KS between ``baseline`` (CSV/Parquet path or array) and the
        requests the endpoint captured over ``window``; drifted features are flagged.

        Needs both ``DATA_CAPTURE`` (the captured rows) and ``DRIFT``."""
        self.provider.require(Capability.DATA_CAPTURE)
        self.provider.require(Capability.DRIFT)
        from cloudserve.monitoring import drift_report

        rows = self.provider.captured_inputs(endpoint, parse_window(window))
        report = drift_report(
            baseline,
            rows,
            endpoint=endpoint,
            provider=self.provider.name,
            features=features,
            psi_threshold=psi_threshold,
            ks_pvalue_threshold=ks_pvalue_threshold,
        )
        return self._bind(report)

    # -- registry ---------------------------------------------------------------------------

    def register_model(
        self, model: ModelSpec, *, lineage: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Add a model version to the registry, with lineage (data hash, params, metrics …)."""
        self.provider.require(Capability.REGISTRY)
        return self._bind(self.provider.register_model(model, dict(lineage or {})))

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions, all or of one model."""
        self.provider.require(Capability.REGISTRY)
        return self._bind(self.provider.list_models(name))

    # -- cost -------------------------------------------------------------------------------

    def estimate(self, spec: DeploySpec | BatchSpec | TuningSpec) -> CostEstimate:
        """What ``spec`` would cost on this target, from the price catalog; creates nothing."""
        from cloudserve.pricing import estimate

        return estimate(spec, provider=self.provider.name, region=self.provider.region())

    def plan(self, spec: DeploySpec) -> Plan:
        """The calls a deploy would make and what it would cost; creates nothing."""
        spec = with_detected_framework(spec)
        self.provider.validate(spec)
        calls = self.provider.plan(spec)
        return Plan(
            target=self.target,
            provider=self.provider.name,
            route=self.provider.route(spec),
            calls=calls,
            estimate=self.estimate(spec),
        )

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the provider's clients and connections."""
        self.provider.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reject_overrides(kind: str, **overrides: Any) -> None:
    """Refuse arguments given beside a complete spec (they would be silently dropped)."""
    given = sorted(name for name, value in overrides.items() if value is not None)
    if given:
        raise InvalidRequest(
            f"a {kind} already says everything; {', '.join(given)} given beside it would be "
            f"ignored. Put them in the {kind} (spec.model_copy(update=...)) or pass a model"
        )


def validate_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """Check a traffic split: non-empty, whole non-negative percentages summing to 100."""
    if not weights:
        raise InvalidRequest("traffic split is empty")
    clean: dict[str, int] = {}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise InvalidRequest(f"weight of '{name}' must be a whole percentage ≥ 0, got {w!r}")
        clean[name] = w
    total = sum(clean.values())
    if total != 100:
        raise InvalidRequest(f"traffic weights must sum to 100, got {total}")
    return clean


def as_rows(instances: Any) -> list[Any]:
    """Normalise user input to a list of rows (numpy arrays and DataFrames accepted)."""
    if hasattr(instances, "to_dict") and hasattr(instances, "columns"):
        return list(instances.to_dict(orient="records"))
    if hasattr(instances, "tolist"):
        instances = instances.tolist()
    if not isinstance(instances, list | tuple):
        raise InvalidRequest("instances must be a list of rows, an array or a DataFrame")
    if not instances:
        raise InvalidRequest("instances is empty")
    return list(instances)


def _rows_done(job: Any) -> int | None:
    if not isinstance(job, BatchJob) or not job.rows_total:
        return None
    return (job.rows_succeeded or 0) + (job.rows_failed or 0)


def _job_status(job: BatchJob | TuningJob) -> str:
    """A job's status for progress lines; a batch job's with its row count."""
    done = _rows_done(job)
    if done is None:
        return job.status.value
    assert isinstance(job, BatchJob)
    return f"{job.status.value} · {done:,}/{job.rows_total:,} rows"


def _job_fraction(job: BatchJob | TuningJob) -> float | None:
    done = _rows_done(job)
    if done is None or not isinstance(job, BatchJob) or not job.rows_total:
        return None
    return done / job.rows_total


def with_detected_framework(spec: S) -> S:
    """``spec`` with its model's framework filled in from a local artifact when not given.

    Detection (``cloudserve.json``, an MLflow ``MLmodel``, else the model file's type) happens
    once here, so every provider sees the same framework the local backend would detect.
    """
    model = spec.model
    if model.framework is not None or model.image is not None or not model.is_local:
        return spec
    from cloudserve.packaging import detect_framework

    assert model.artifact is not None  # is_local
    if not Path(model.artifact).exists():
        return spec  # the provider names the missing artifact in its own words
    framework = detect_framework(model.artifact)
    return spec.model_copy(update={"model": model.model_copy(update={"framework": framework})})


def model_spec_of(version: ModelVersion) -> ModelSpec:
    """The ModelSpec that deploys a registered version."""
    if not version.uri:
        raise InvalidRequest(f"model version {version.name}:{version.version} has no artifact uri")
    return ModelSpec(
        name=version.name,
        version=version.version,
        artifact=version.uri,
        framework=version.framework,
    )
