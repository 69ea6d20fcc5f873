"""The Vertex AI provider: declarations and one-line delegation to the concern modules.

Mapping (see ``docs/providers/vertex.md``): a cloudserve endpoint is a Vertex ``Endpoint``
whose id is the endpoint name; a variant is a ``DeployedModel``; a model version is a Model
Registry version of the model whose id is the model name. The GAPIC v1 clients (REST by
default) are created on first use by :class:`~cloudserve_vertex._api.VertexApi`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar

from cloudserve.pricing.refresh import RefreshResult
from cloudserve.provider import Capability, Provider
from cloudserve.resources import (
    BatchJob,
    Endpoint,
    MetricsReport,
    ModelVersion,
    PlannedCall,
    Prediction,
    TuningJob,
)
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback
from cloudserve_vertex import (
    _batch,
    _endpoints,
    _model_registry,
    _monitor,
    _predict,
    _rollout,
    _tuning,
)
from cloudserve_vertex._api import VertexApi
from cloudserve_vertex._config import VertexConfig
from cloudserve_vertex._errors import ERROR_TABLE
from cloudserve_vertex._packaging import Route
from cloudserve_vertex._validate import validate

__all__ = ["VertexProvider"]

_PRIVATE = (
    "a target with `network` creates private (Private Service Access) endpoints, which hold one "
    "deployed model and no traffic split: traffic splits, canaries, shadows and blue/green "
    "rollouts need a public endpoint (a target without `network`)"
)


class _ClassOrInstance:
    """A method that reads the instance's declarations when called on one, else the class's
    (a private-endpoint target declares fewer capabilities than the provider class)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.fn, obj if obj is not None else cls)


class VertexProvider(Provider):
    """cloudserve on Google Vertex AI."""

    name: ClassVar[str] = "vertex"
    config_cls: ClassVar[type[VertexConfig]] = VertexConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.DEPLOY,
            Capability.PREDICT,
            Capability.TRAFFIC_SPLIT,
            Capability.AUTOSCALE,
            Capability.BATCH,
            Capability.TUNE,
            Capability.METRICS,
            Capability.DATA_CAPTURE,
            Capability.DRIFT,
            Capability.REGISTRY,
            Capability.PRICING_REFRESH,
            Capability.ROLLOUT,
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {
        Capability.SHADOW: (
            "Vertex AI endpoints cannot mirror requests: traffic_split only divides them"
            " between deployed models"
        ),
        Capability.SERVERLESS: "Vertex AI online endpoints always run at least one dedicated "
        "replica; the v1 API has no scale-to-zero serverless inference",
        Capability.ASYNC_PREDICT: "Vertex AI has no queued online prediction; use batch "
        "prediction for large or slow inputs",
    }
    error_table = ERROR_TABLE
    #: Cloud Monitoring aligns series over periods of at least 60 s
    min_metrics_window_s: ClassVar[float] = 60.0
    #: Cloud Monitoring shows a sample only after a per-metric delay (docs/providers/vertex.md)
    metrics_delay_s = 180.0

    config: VertexConfig

    def __init__(self, config: VertexConfig, *, target: str | None = None):
        super().__init__(config, target=target)
        self.api = VertexApi(
            config, name=self.name, call=self.call, wait=self.wait, translate=self.translate
        )
        if config.network:
            self.capabilities = type(self).capabilities - {  # type: ignore[misc]
                Capability.TRAFFIC_SPLIT,
                Capability.ROLLOUT,
            }
            self.unsupported = {  # type: ignore[misc]
                **type(self).unsupported,
                Capability.TRAFFIC_SPLIT: _PRIVATE,
                Capability.ROLLOUT: _PRIVATE,
            }
        self._batch_outputs: dict[str, str] = {}  # job id → local output path
        #: where a metrics window ends (seconds since the epoch); tests share one clock with
        #: the fake's time series so a rollout's bakes run without sleeping
        self.clock: Callable[[], float] = time.time

    @_ClassOrInstance
    def supports(self_or_cls: Any, capability: Capability) -> bool:  # type: ignore[override]
        return capability in self_or_cls.capabilities

    @_ClassOrInstance
    def reason(self_or_cls: Any, capability: Capability) -> str:  # type: ignore[override]
        return self_or_cls.unsupported.get(
            capability, f"the vertex provider does not declare {capability.value}"
        )

    def close(self) -> None:
        self.api.close()

    def validate(self, spec: Any) -> None:
        super().validate(spec)
        if isinstance(spec, DeploySpec) and spec.traffic < 100:
            self._require_for(Capability.TRAFFIC_SPLIT, "traffic (a canary)")
        validate(spec, self.config)

    # -- endpoints -----------------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        return _endpoints.deploy(
            self.api, spec, wait=wait, timeout=timeout, progress=progress, target=self.target
        )

    def get_endpoint(self, name: str) -> Endpoint:
        return _endpoints.get(self.api, name)

    def list_endpoints(self) -> list[Endpoint]:
        return _endpoints.list_all(self.api)

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        _endpoints.delete(self.api, name, wait=wait)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        self.require(Capability.TRAFFIC_SPLIT)
        return _endpoints.set_traffic(self.api, endpoint, weights)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        return _endpoints.delete_variant(self.api, endpoint, variant)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout recorded with ``endpoint`` (a label on it, the JSON in the staging
        bucket; see ``_rollout``)."""
        self.require(Capability.ROLLOUT)
        return _rollout.get_state(self.api, endpoint)

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        self.require(Capability.ROLLOUT)
        _rollout.put_state(self.api, endpoint, state)

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """The calls ``deploy(spec)`` makes, sending none; the build/push step first when
        only the container route fits and the target has no ``serving_image``."""
        from cloudserve.errors import InvalidRequest

        try:
            return _endpoints.plan(
                self.api, spec, _model_registry.plan_route(self.api, spec.model, self.target)
            )
        except InvalidRequest as exc:
            if exc.code != "needs_container_route":
                raise
            build = f"cloudserve build-image --push {self.target}"
            route = Route("container", "<serving_image>", None, str(exc))
            return _endpoints.plan(self.api, spec, route, build)

    # -- prediction ----------------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        return _predict.predict(
            self.api, endpoint, instances, variant=variant, parameters=parameters
        )

    def raw_predict(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        """Send ``body`` unchanged to the model container (``:rawPredict``); returns its
        answer. For payloads that are not ``{"instances": …}`` JSON (CSV, images, …)."""
        return _predict.raw_predict(self.api, endpoint, body, content_type)

    # -- model registry ------------------------------------------------------------------------

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        ref = _model_registry.upload(
            self.api,
            model,
            origin="registry",
            endpoint=None,
            created=[],
            progress=None,
            target=self.target,
        )
        return _model_registry.to_model_version(self.api, ref, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        return _model_registry.list_models(self.api, name)

    # -- batch, tuning -------------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        return _batch.start(self.api, spec, self._batch_outputs, self.target)

    def get_batch_job(self, job_id: str) -> BatchJob:
        return _batch.get(self.api, job_id, self._batch_outputs)

    def tune(self, spec: TuningSpec) -> TuningJob:
        return _tuning.start(self.api, spec)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        return _tuning.get(self.api, job_id)

    # -- monitoring, pricing -------------------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        return _monitor.metrics(self.api, endpoint, window_s, now=self.clock())

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Rows from the endpoint's request-response log (BigQuery) within the window."""
        return _monitor.captured_inputs(self.api, endpoint, window_s, now=self.clock())

    def refresh_prices(self) -> RefreshResult:
        """On-demand prices in the target's location from the Cloud Billing Catalog API
        (see ``_pricing``); what has no usable SKU is in the result's ``missing`` and named in
        a ``MissingPricesWarning``, never priced $0."""
        from cloudserve.pricing.refresh import instance_shapes, warn_missing
        from cloudserve_vertex import _pricing as pricing

        def get(url: str, params: dict[str, str]) -> dict[str, Any]:
            return dict(self.api.http("GET", url, params=params).json())

        catalog = pricing.BillingCatalog(get, self.api.host(pricing.BILLING_HOST))
        shapes = instance_shapes("vertex", pricing.KINDS)
        result = catalog.refresh(self.config.location, shapes, pricing.addon_accelerators())
        warn_missing(self.name, self.config.location, result.missing)
        return result
