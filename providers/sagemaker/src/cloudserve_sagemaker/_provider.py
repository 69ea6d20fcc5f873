"""The SageMaker provider: what it can do, and one-line delegation to the concern modules.

No SDK call happens here. ``_api`` talks to AWS (boto3, imported lazily), ``_endpoints``
deploys and reads endpoints, ``_predict`` / ``_async`` predict, ``_batch``, ``_tuning``,
``_monitor``, ``_model_registry`` and ``_pricing`` hold the optional capabilities, ``_validate``
the spec checks and ``_packaging`` what is sent. See ``docs/providers/sagemaker.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from cloudserve.pricing.refresh import RefreshResult
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
from cloudserve_sagemaker import _endpoints as endpoints
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._config import SageMakerConfig
from cloudserve_sagemaker._errors import ERROR_TABLE
from cloudserve_sagemaker._models import Prepared, prepare_model
from cloudserve_sagemaker._validate import check_deploy, check_model

__all__ = ["SageMakerProvider"]


class SageMakerProvider(Provider):
    """cloudserve on Amazon SageMaker (real-time, serverless and asynchronous endpoints)."""

    name = "sagemaker"
    config_cls = SageMakerConfig
    capabilities = frozenset(
        {
            Capability.DEPLOY,
            Capability.PREDICT,
            Capability.TRAFFIC_SPLIT,
            Capability.AUTOSCALE,
            Capability.SERVERLESS,
            Capability.BATCH,
            Capability.TUNE,
            Capability.METRICS,
            Capability.DATA_CAPTURE,
            Capability.DRIFT,
            Capability.REGISTRY,
            Capability.ASYNC_PREDICT,
            Capability.PRICING_REFRESH,
            Capability.ROLLOUT,
            Capability.SHADOW,
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {}
    error_table = ERROR_TABLE
    #: CloudWatch publishes SageMaker's invocation metrics in one-minute periods
    min_metrics_window_s: ClassVar[float] = 60.0
    #: how soon CloudWatch shows a minute's datapoints is not documented for SageMaker; a
    #: minute is assumed (settable: metrics_delay_s in the target's config block)
    metrics_delay_s = 60.0

    def __init__(
        self,
        config: ProviderConfig,
        *,
        target: str | None = None,
        clock: Callable[[], float] | None = None,
    ):
        """``clock`` (seconds since the epoch) is where metric and capture windows end; tests
        pass the simulated clock their fake stamps requests with."""
        if not isinstance(config, SageMakerConfig):
            config = SageMakerConfig.model_validate(config.model_dump())
        super().__init__(config, target=target)
        self.cfg: SageMakerConfig = config
        self.api = Api(
            config,
            target=self.target,
            call=self.call,
            wait=self.wait,
            translate=self.translate,
            retry_policy=self.retry_policy,
            clock=clock,
        )

    def close(self) -> None:
        """Stop the prediction thread pool (the boto3 clients need no closing)."""
        self.api.close()

    def validate(self, spec: Any) -> None:
        """Reject what SageMaker cannot honour, before any request (see ``_validate``)."""
        super().validate(spec)
        if isinstance(spec, DeploySpec):
            vpc, asynchronous = self.cfg.vpc is not None, self.cfg.async_inference is not None
            check_deploy(spec, vpc=vpc, asynchronous=asynchronous)
        elif isinstance(spec, BatchSpec):
            from cloudserve_sagemaker._batch import validate_batch

            check_model(spec.model)
            validate_batch(spec)
        elif isinstance(spec, TuningSpec):
            from cloudserve_sagemaker._tuning import validate_tuning

            validate_tuning(spec)

    def prepare(self, model: ModelSpec) -> Prepared:
        """Stage ``model`` and choose its route; nothing is sent (see ``_packaging``)."""
        return prepare_model(self.api, model)

    # -- endpoints --------------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create the endpoint or update it blue/green; see ``_endpoints.deploy``."""
        return endpoints.deploy(self.api, spec, wait=wait, timeout=timeout, progress=progress)

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint, its variants (model version, weight, instances, scaling range)."""
        return endpoints.get_endpoint(self.api, name)

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint in the region, with status and times (variants: ``get_endpoint``)."""
        return endpoints.list_endpoints(self.api)

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint, its scaling, configs and models; a missing endpoint is fine."""
        endpoints.delete_endpoint(self.api, name, wait=wait)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Move traffic between variants with UpdateEndpointWeightsAndCapacities."""
        return endpoints.set_traffic(self.api, endpoint, weights)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Remove a variant that takes no traffic (or the shadow) with a new endpoint config;
        see ``_rollout``."""
        from cloudserve_sagemaker._rollout import delete_variant

        return delete_variant(self.api, endpoint, variant)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout state recorded in the endpoint's ``cloudserve:rollout:*`` tags."""
        from cloudserve_sagemaker._rollout import get_state

        return get_state(self.api, endpoint)

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        """Record (``None``: clear) the rollout state in the endpoint's tags."""
        from cloudserve_sagemaker._rollout import put_state

        put_state(self.api, endpoint, state)

    def shadow_pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """Mirrored requests of the window, joined from both variants' data capture."""
        from cloudserve_sagemaker._shadow import shadow_pairs

        return shadow_pairs(self.api, endpoint, window_s)

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """The calls a first deploy of ``spec`` makes, in order; nothing is sent."""
        return endpoints.plan(self.api, spec)

    def route(self, spec: DeploySpec) -> str:
        """``framework`` or ``container``, as ``prepare`` chooses; ``container`` when only the
        build/push step the plan lists can make the model servable."""
        return endpoints.route_of(self.api, spec)

    # -- prediction -------------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """InvokeEndpoint; inputs over the payload limit go as concurrent chunks, in order."""
        from cloudserve_sagemaker._predict import predict

        return predict(self.api, endpoint, instances, variant=variant, parameters=parameters)

    def predict_async(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        """InvokeEndpointAsync: the input goes to S3 first; poll with ``get_async_result``."""
        from cloudserve_sagemaker._async import predict_async

        return predict_async(self.api, endpoint, instances, variant=variant, parameters=parameters)

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The queued prediction's state, read from the output (or failure) object."""
        from cloudserve_sagemaker._async import get_async_result

        return get_async_result(self.api, endpoint, request_id)

    # -- optional capabilities --------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """A batch transform job (Line split, MultiRecord batches, outputs assembled by line)."""
        from cloudserve_sagemaker._batch import start_transform

        return start_transform(self.api, spec)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """The transform job; once it succeeds, outputs are downloaded to a local output path."""
        from cloudserve_sagemaker._batch import describe_transform

        return describe_transform(self.api, job_id)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """A hyperparameter tuning job running the script in the framework's training image."""
        from cloudserve_sagemaker._tuning import start_tuning

        return start_tuning(self.api, spec)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """The tuning job, its trials (training jobs) and the best one."""
        from cloudserve_sagemaker._tuning import describe_tuning

        return describe_tuning(self.api, job_id)

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """CloudWatch ``AWS/SageMaker`` invocations, 4xx/5xx errors and latency percentiles."""
        from cloudserve_sagemaker._monitor import endpoint_metrics

        return endpoint_metrics(self.api, endpoint, window_s)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Input rows from the endpoint's data-capture JSON Lines files in S3."""
        from cloudserve_sagemaker._monitor import captured_rows

        return captured_rows(self.api, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """A model package in the model package group named after the model."""
        from cloudserve_sagemaker._model_registry import register_model

        check_model(model)
        return register_model(self.api, model, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model packages, of one group or of all groups."""
        from cloudserve_sagemaker._model_registry import list_models

        return list_models(self.api, name)

    def refresh_prices(self) -> RefreshResult:
        """On-demand hourly prices (hosting, batch transform, training) of the catalog's
        SageMaker instance types in the target's region, from the AWS Price List API; what
        has no usable rate is in the result's ``missing`` and a ``MissingPricesWarning``."""
        from cloudserve_sagemaker._pricing import refresh_prices

        return refresh_prices(self.api)
