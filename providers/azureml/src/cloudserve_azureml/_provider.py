"""The Azure ML provider: declarations, and one line of delegation per operation.

What each operation does lives in its concern module (``_endpoints``, ``_predict``, ``_batch``,
``_tuning``, ``_monitor``, ``_model_registry``, ``_pricing``), which take the :class:`AzureApi`
(lazy SDK clients, call / translate / wait) and the spec. No SDK is called here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from cloudserve.pricing.refresh import RefreshResult
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.resources import (
    BatchJob,
    Endpoint,
    MetricsReport,
    ModelVersion,
    Prediction,
    ShadowPair,
    TuningJob,
)
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback
from cloudserve_azureml import _endpoints, _model_registry, _predict, _validate
from cloudserve_azureml._api import AzureApi
from cloudserve_azureml._config import AzureMLConfig
from cloudserve_azureml._errors import ERROR_TABLE

__all__ = ["AzureMLProvider"]


class AzureMLProvider(Provider):
    """cloudserve on Azure ML (see ``docs/providers/azureml.md`` for the concept mapping)."""

    name = "azureml"
    config_cls = AzureMLConfig
    capabilities = frozenset(
        {
            Capability.DEPLOY,
            Capability.PREDICT,
            Capability.TRAFFIC_SPLIT,
            Capability.METRICS,
            Capability.DATA_CAPTURE,
            Capability.DRIFT,
            Capability.REGISTRY,
            Capability.BATCH,
            Capability.TUNE,
            Capability.PRICING_REFRESH,
            Capability.ROLLOUT,
            Capability.SHADOW,
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {
        Capability.AUTOSCALE: (
            "managed online deployments scale through a separate Azure Monitor autoscale "
            "setting, which cloudserve does not manage yet; give a fixed replica count"
        ),
        Capability.SERVERLESS: (
            "Azure ML serverless endpoints serve only model-catalog models, not your artifact"
        ),
        Capability.ASYNC_PREDICT: (
            "managed online endpoints have no queued mode; use batch_predict for large inputs"
        ),
    }
    error_table = ERROR_TABLE
    #: Azure Monitor's finest grain for online endpoint metrics is one minute (PT1M)
    min_metrics_window_s: ClassVar[float] = 60.0
    #: Azure Monitor's newest one-minute points can stay empty for about two minutes
    #: (docs/providers/azureml.md)
    metrics_delay_s = 120.0

    def __init__(
        self,
        config: ProviderConfig,
        *,
        target: str | None = None,
        credential: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        if not isinstance(config, AzureMLConfig):
            config = AzureMLConfig.model_validate(config.model_dump())
        super().__init__(config, target=target)
        self.cfg: AzureMLConfig = config
        self.api = AzureApi(
            config,
            call=self.call,
            wait=self.wait,
            translate=self.translate,
            credential=credential,
            clock=clock,
        )

    def close(self) -> None:
        """Drop the SDK clients and temporary files."""
        self.api.close()

    def region(self) -> str | None:
        """The workspace region (from the config; pricing uses it)."""
        return self.cfg.region

    def validate(self, spec: Any) -> None:
        """Reject what Azure ML cannot honour, before any request."""
        super().validate(spec)
        if isinstance(spec, DeploySpec):
            _validate.validate_deploy(self.cfg, spec, self.target)
        elif isinstance(spec, BatchSpec):
            _validate.validate_batch(self.cfg, spec)
        elif isinstance(spec, TuningSpec):
            _validate.validate_tuning(self.cfg, spec)

    def route(self, spec: DeploySpec) -> str:
        """``"container"`` for a model with its own image or one ``score.py`` cannot load (the
        target's ``serving_image`` serves it), else ``"framework"``."""
        from cloudserve_azureml._packaging import container_image

        return (
            "container"
            if container_image(spec.model, self.cfg.serving_image, self.target)
            else "framework"
        )

    # -- endpoints ---------------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create or update the endpoint (see ``_endpoints.deploy``)."""
        return _endpoints.deploy(self.api, spec, wait=wait, timeout=timeout, progress=progress)

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint, its deployments as variants and their traffic."""
        return _endpoints.get_endpoint(self.api, name)

    def list_endpoints(self) -> list[Endpoint]:
        """Every online endpoint of the workspace."""
        return _endpoints.list_endpoints(self.api)

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint with its deployments and the assets deploys made for it."""
        _endpoints.delete_endpoint(self.api, name, wait=wait)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Set the split across variants (names as cloudserve shows them)."""
        return _endpoints.set_traffic(self.api, endpoint, weights)

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Score through the endpoint's URI (see ``_predict``)."""
        return _predict.predict(
            self.api, endpoint, instances, variant=variant, parameters=parameters
        )

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Delete a deployment that takes no traffic (see ``_rollout``)."""
        from cloudserve_azureml import _rollout

        return _rollout.delete_variant(self.api, endpoint, variant)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout state kept in the endpoint's tags (see ``_rollout``)."""
        from cloudserve_azureml import _rollout

        return _rollout.get_state(self.api, endpoint)

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        """Record (or clear) the rollout state in the endpoint's tags (see ``_rollout``)."""
        from cloudserve_azureml import _rollout

        _rollout.put_state(self.api, endpoint, state)

    def shadow_pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """The shadow's request log joined with the live deployments' by request id (see
        ``_shadow``)."""
        from cloudserve_azureml import _shadow

        deployments = _endpoints.list_deployments(self.api, endpoint)
        return _shadow.shadow_pairs(self.api, endpoint, window_s, deployments)

    # -- jobs --------------------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """Score ``spec.input`` through a batch endpoint (see ``_batch``)."""
        from cloudserve_azureml import _batch

        return _batch.batch_predict(self.api, spec)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """A batch job's state; once it succeeded, its rows counted and a local output filled."""
        from cloudserve_azureml import _batch

        return _batch.get_batch_job(self.api, job_id)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """Run a sweep job over the search space (see ``_tuning``)."""
        from cloudserve_azureml import _tuning

        return _tuning.tune(self.api, spec)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """A sweep's state, its trials and the best trial so far."""
        from cloudserve_azureml import _tuning

        return _tuning.get_tuning_job(self.api, job_id)

    # -- monitoring, registry, pricing ---------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """Azure Monitor metrics of the endpoint over the window."""
        from cloudserve_azureml import _monitor

        deployments = _endpoints.list_deployments(self.api, endpoint)
        names = {n: _endpoints.variant(d, 0).name for n, d in deployments.items()}
        return _monitor.endpoint_metrics(self.api, endpoint, window_s, names)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Rows the deployments' data collectors wrote over the window."""
        from cloudserve_azureml import _monitor

        return _monitor.captured_rows(self.api, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """Register (or find) the model version, with lineage as tags."""
        return _model_registry.register_model(self.api, model, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions (every model's, or one model's)."""
        return _model_registry.list_models(self.api, name)

    def refresh_prices(self) -> RefreshResult:
        """Linux pay-as-you-go prices of the catalog's Azure ML instance types in the target's
        region (``eastus`` when the config names none), from the Azure Retail Prices API; each
        VM meter gives a ``hosting``, ``batch`` and ``training`` row, and instance types without
        a usable meter are in the result's ``missing`` and a ``MissingPricesWarning``."""
        from cloudserve_azureml import _pricing

        return _pricing.refresh_prices(self.cfg.region, self.call)
