"""The local provider: every cloudserve operation, for real, on this machine.

The façade: declarations and one-line delegations to ``store`` (the shared SQLite state),
``endpoints``, ``workers``, ``predict``, ``queue``, ``agent`` (supervision, autoscaling),
``batch``, ``tuning``, ``monitor`` and ``model_registry`` (see ``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cloudserve.local import agent, batch, jobs, model_registry, monitor, queue, tuning, workers
from cloudserve.local.config import LocalConfig
from cloudserve.local.endpoints import Endpoints
from cloudserve.local.faults import NO_FAULTS, FaultHooks
from cloudserve.local.predict import ERROR_TABLE, Router
from cloudserve.local.router import ROUTING_KEY
from cloudserve.local.store import StateDB
from cloudserve.local.validate import check_spec
from cloudserve.provider import Capability, Provider, ProviderConfig
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
from cloudserve.waiting import ProgressCallback

__all__ = ["LocalProvider"]

T = TypeVar("T")


class LocalProvider(Provider):
    """Endpoints, batch, tuning, monitoring and a registry on this machine.

    State is kept in ``config.state_dir`` (default ``.cloudserve/``, or
    ``$CLOUDSERVE_STATE_DIR``); endpoints keep running after the deploying process exits and
    are stopped by ``delete_endpoint``. ``fault_hooks=True`` (tests only) makes the provider
    consume faults armed with :func:`cloudserve.local.faults.arm`.
    """

    name = "local"
    config_cls = LocalConfig
    error_table = ERROR_TABLE
    capabilities = frozenset(Capability) - {Capability.PRICING_REFRESH}
    min_metrics_window_s = 1.0  # every request is recorded at once in the state store
    unsupported = {
        Capability.PRICING_REFRESH: (
            "the local provider runs on a machine you already have; it has no price list to refresh"
        ),
    }

    def __init__(
        self, config: ProviderConfig, *, target: str | None = None, fault_hooks: bool = False
    ):
        if not isinstance(config, LocalConfig):
            config = LocalConfig.model_validate(config.model_dump())
        # runners and agents get the absolute state directory, whatever their working directory
        config = config.model_copy(update={"state_dir": config.state_dir.expanduser().resolve()})
        super().__init__(config, target=target)
        self.config: LocalConfig = config
        self.state_dir = config.state_dir
        self.db = StateDB(self.state_dir)
        self.faults = FaultHooks(self.db) if fault_hooks else NO_FAULTS
        self.recorder = monitor.Recorder(self.db, retention_s=config.metrics_retention_s)
        self.endpoints = Endpoints(self.db, config, self.faults)
        self.router = Router(self.db, config, self.recorder)

    def _service(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` as a retry-safe request (test faults, when armed, first)."""

        def attempt() -> T:
            self.faults.check()
            return fn(*args, **kwargs)

        return self.call(attempt)

    def validate(self, spec: Any) -> None:
        """Reject what the local provider cannot honour (accelerators, cloud-only sizes …)."""
        super().validate(spec)
        check_spec(spec)

    # -- endpoints ----------------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create or update ``spec.endpoint`` (blue/green at ``traffic=100``, else a canary).

        With ``wait=False`` the deploy continues in a background thread of this process and
        the endpoint is returned in CREATING/UPDATING state.
        """
        self.call(self.faults.check)
        return self.endpoints.deploy(spec, wait=wait, timeout=timeout)

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint with its variants and health."""
        return self._service(self.endpoints.get, name)

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint in the state directory, with its health."""
        return self._service(self.endpoints.list)

    def restart_endpoint(self, name: str, *, variants: list[str] | None = None) -> Endpoint:
        """Replace the dead workers of an endpoint now (its agent does it within seconds)."""
        return self.endpoints.restart(name, variants)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Set the split; every variant not named gets 0."""
        return self._service(self.endpoints.set_traffic, endpoint, weights)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Stop a variant that takes no traffic and remove it from the endpoint."""
        return self.endpoints.delete_variant(endpoint, variant)

    def shadow_pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """Mirrored requests of the window, each production answer beside its shadow's."""
        self.endpoints.get(endpoint)
        return self.router.mirror.pairs(endpoint, window_s)

    def endpoint_logs(self, name: str, *, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the endpoint's worker and agent logs."""
        return self.endpoints.logs(name, tail=tail)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout recorded in the state store with ``endpoint``."""
        return self.endpoints.get_rollout_state(endpoint)

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        """Record the rollout with the endpoint (``None`` clears it)."""
        self.endpoints.put_rollout_state(endpoint, state)

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Stop the endpoint's processes and remove its state; a missing endpoint is fine."""
        self.call(self.faults.check)
        self.endpoints.delete(name, wait=wait)

    def sweep_orphans(self) -> list[int]:
        """Stop serving workers no endpoint owns; the pids stopped."""
        return workers.sweep(self.db)

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """What ``deploy(spec)`` would do on this machine, doing none of it."""
        return self.endpoints.plan(spec)

    # -- predictions --------------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Route the rows to a variant (by weight, or sticky by ``parameters['routing_key']``)."""
        params = dict(parameters or {})
        key = params.pop(ROUTING_KEY, None)
        return self._service(self.router.predict, endpoint, instances, variant, params, key)

    def predict_async(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        """Queue the rows in the endpoint's persistent queue; its agent works it."""
        handle = self.call(
            queue.enqueue, self.db, endpoint, instances, variant, parameters, retry=False
        )
        agent.ensure_agent(self.db, self.config, endpoint)
        return handle

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The queued request's state and, once done, its outputs."""
        return self._service(queue.result, self.db, endpoint, request_id)

    # -- batch and tuning -------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """Start (or resume) a streamed batch job in a runner process (see ``local.batch``)."""
        self.call(self.faults.check)
        return self.get_batch_job(batch.submit(self.db, self.config, spec))

    def resume_batch(self, job_id: str) -> BatchJob:
        """Restart a batch job whose runner died; it follows its stored plan."""
        batch.resume(self.db, self.config, job_id)
        return self.get_batch_job(job_id)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """The job's state; a runner that died makes it FAILED (resumable)."""
        return self._service(batch.read_job, self.db, job_id)

    def route(self, spec: DeploySpec) -> str:
        """Every local model runs in cloudserve's serving runtime, in local processes."""
        return "local runtime"

    def list_jobs(self) -> list[BatchJob | TuningJob]:
        """Every batch and tuning job in the state, newest first."""
        return jobs.list_all(self.db)

    def cancel_job(self, job_id: str) -> None:
        """Stop a batch or tuning job and mark it CANCELLED (an ended job is left alone)."""
        jobs.cancel(self.db, job_id)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """Start an Optuna search in a runner process; trials run the training subprocess."""
        self.call(self.faults.check)
        return self.get_tuning_job(tuning.submit(self.db, self.config, spec))

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """The search's state, its trials and the best one so far."""
        return self._service(tuning.read_job, self.db, job_id)

    def promote_best(
        self,
        job_id: str,
        *,
        name: str,
        version: str | None = None,
        endpoint: str | None = None,
        framework: str | None = None,
    ) -> tuple[ModelVersion, Endpoint | None]:
        """Register the best trial's model (with its lineage) and, given ``endpoint``, deploy it."""
        from cloudserve.client import model_spec_of

        job = self.get_tuning_job(job_id)
        model, lineage = tuning.best_model(job, name=name, version=version, framework=framework)
        mv = self.register_model(model, lineage)
        if endpoint is None:
            return mv, None
        return mv, self.deploy(DeploySpec(model=model_spec_of(mv), endpoint=endpoint))

    # -- monitoring and registry -------------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """Invocations, errors by class and p50/p95/p99, overall and per variant."""
        self.recorder.flush()
        self.endpoints.get(endpoint)
        return self._service(monitor.metrics_report, self.db, endpoint, window_s)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Feature rows of the captured requests over the window."""
        self.recorder.flush()
        self.endpoints.get(endpoint)
        return self._service(monitor.captured_rows, self.db, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """Copy the artifact into the registry with its content hash and lineage."""
        return model_registry.register(self.db, model, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered versions, all or of one model."""
        return self._service(model_registry.list_versions, self.db, name)

    def close(self) -> None:
        """Flush monitoring records and close connections; endpoints keep running."""
        for thread in self.endpoints.bg:
            thread.join()
        self.endpoints.bg.clear()
        self.recorder.close()
        self.router.close()
