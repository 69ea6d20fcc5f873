"""The SageMaker provider: endpoints, traffic, autoscaling and online prediction.

boto3 is imported only when a client is first needed (see ``_aws``). Batch transform, tuning,
monitoring and the registry live in their own modules and are reached through the methods
below. See ``docs/providers/sagemaker.md`` for the concept mapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from tenacity import retry_if_exception_type

from cloudserve.errors import (
    CloudServeError,
    InvalidRequest,
    NotFound,
    OperationFailed,
    Throttled,
)
from cloudserve.pricing.refresh import RefreshResult
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.resources import (
    AsyncPrediction,
    BatchJob,
    Endpoint,
    EndpointStatus,
    MetricsReport,
    ModelVersion,
    PlannedCall,
    Prediction,
    TuningJob,
    Variant,
)
from cloudserve.sizes import resolve_instance
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback
from cloudserve_sagemaker import _naming as names
from cloudserve_sagemaker import _packaging as pkg
from cloudserve_sagemaker import _scaling as scaling
from cloudserve_sagemaker._aws import Clients
from cloudserve_sagemaker._config import SageMakerConfig
from cloudserve_sagemaker._errors import ERROR_TABLE
from cloudserve_sagemaker._packaging import Route, StagedModel
from cloudserve_sagemaker._validate import (
    SERVERLESS_PAYLOAD_MB,
    check_deploy,
    check_model,
    has_local_storage,
)

__all__ = ["SageMakerProvider"]

STATES: dict[str, EndpointStatus] = {
    "Creating": EndpointStatus.CREATING,
    "Updating": EndpointStatus.UPDATING,
    "SystemUpdating": EndpointStatus.UPDATING,
    "RollingBack": EndpointStatus.UPDATING,
    "UpdateRollbackFailed": EndpointStatus.FAILED,
    "InService": EndpointStatus.READY,
    "Deleting": EndpointStatus.DELETING,
    "Failed": EndpointStatus.FAILED,
    "OutOfService": EndpointStatus.FAILED,
}
ENV_NAME, ENV_VERSION = "CLOUDSERVE_MODEL_NAME", "CLOUDSERVE_MODEL_VERSION"
PENDING_SCALING_TAG = "cloudserve:pending-scaling"
# JSON wrapper bytes and headroom below the 6 MB invoke limit.
PAYLOAD_MARGIN = 16 * 1024


@dataclass(frozen=True)
class Prepared:
    """A model ready to send: its route and, for a local artifact, the staged files."""

    route: Route
    staged: StagedModel | None


@dataclass
class _Desired:
    """What a deploy wants the endpoint to hold."""

    model: str
    container: dict[str, Any]
    rows: list[dict[str, Any]]
    capture: dict[str, Any] | None
    async_cfg: dict[str, Any] | None
    scaling: list[dict[str, Any]]
    config: str
    tags: list[dict[str, str]]


@dataclass
class _Created:
    """What one deploy created, so a failure half-way can remove exactly that."""

    models: list[str] = field(default_factory=list)
    config: str | None = None
    endpoint: str | None = None
    scaling: list[str] = field(default_factory=list)


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
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {
        Capability.SHADOW: (
            "not yet: SageMaker's ShadowProductionVariants (one production and one shadow"
            " variant) are not mapped yet"
        ),
        Capability.ROLLOUT: (
            "the rollout state is not yet recorded with SageMaker endpoints (AddTags) and a"
            " single production variant is not yet removed on its own; roll out on the local"
            " backend for now"
        ),
    }
    error_table = ERROR_TABLE

    def __init__(self, config: ProviderConfig, *, target: str | None = None):
        if not isinstance(config, SageMakerConfig):
            config = SageMakerConfig.model_validate(config.model_dump())
        super().__init__(config, target=target)
        self.cfg: SageMakerConfig = config
        self.aws = Clients(config)
        self._versions: dict[str, dict[str, str]] = {}
        self._serverless: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def sm(self, operation: str, *, retry: bool = True, **params: Any) -> Any:
        """Call a SageMaker control-plane operation, translated and (when safe) retried."""
        return self._send(getattr(self.aws.sm, operation), retry, params)

    def aws_call(self, service: str, operation: str, *, retry: bool = True, **params: Any) -> Any:
        """Call any AWS operation through the same error table and retry policy."""
        return self._send(getattr(self.aws.get(service), operation), retry, params)

    def _send(self, fn: Any, retry: bool, params: dict[str, Any]) -> Any:
        if retry:
            return self.call(fn, **params)
        # A create is not repeated after a 5xx (it may have happened), but a throttled request
        # was refused before it did anything, so that one alone is safe to send again.
        throttled_only = self.retry_policy.retrying().copy(retry=retry_if_exception_type(Throttled))
        return throttled_only(self.call, fn, retry=False, **params)

    def _quiet_delete(self, operation: str, **params: Any) -> None:
        # Deleting what is already gone is success: delete stays idempotent.
        with contextlib.suppress(NotFound):
            self.sm(operation, **params)

    def close(self) -> None:
        """Stop the prediction thread pool (the boto3 clients need no closing)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # -- validation -------------------------------------------------------------------------

    def validate(self, spec: Any) -> None:
        """Reject what SageMaker cannot honour, before any request (see the docs page)."""
        super().validate(spec)
        if isinstance(spec, DeploySpec):
            check_deploy(
                spec,
                vpc=self.cfg.vpc is not None,
                asynchronous=self.cfg.async_inference is not None,
            )
        elif isinstance(spec, BatchSpec):
            from cloudserve_sagemaker._batch import validate_batch

            check_model(spec.model)
            validate_batch(spec)
        elif isinstance(spec, TuningSpec):
            from cloudserve_sagemaker._tuning import validate_tuning

            validate_tuning(spec)

    # -- packaging and models ---------------------------------------------------------------

    def prepare(self, model: ModelSpec) -> Prepared:
        """Stage the model and choose its route (no request is sent); InvalidRequest naming the
        versions and the build/push command when no route can serve it."""
        if not model.is_local:
            # The framework route needs cloudserve's handler inside model.tar.gz, which is
            # only built from a local artifact; a packed remote tarball needs an image.
            image = model.image or self.cfg.serving_image
            if image is None:
                raise InvalidRequest(
                    f"{model.artifact} is already packed, so it needs the container route: "
                    f"`{pkg.build_command(model, self.target)}` (or ModelSpec(image=...)); "
                    "the framework route packs a local model directory",
                    provider=self.name,
                )
            return Prepared(Route("container", image, "a packed remote artifact"), None)
        staged = pkg.stage(model)
        route = pkg.choose_route(
            model,
            staged.libraries,
            region=self.cfg.region,
            serving_image=self.cfg.serving_image,
            target=self.target,
        )
        return Prepared(route, staged)

    def artifact_uri(self, model: ModelSpec, prepared: Prepared) -> str:
        """Where the model's ``model.tar.gz`` is: uploaded once per content hash."""
        assert model.artifact is not None
        if prepared.staged is None:
            return model.artifact
        data = pkg.build_model_tarball(prepared.staged, prepared.route)
        digest = hashlib.sha256(data).hexdigest()
        uri = self.cfg.s3_uri("models", model.name, model.version, digest[:16], "model.tar.gz")
        if not self.call(self.aws.exists, uri):
            self.call(self.aws.put, uri, data)
        return uri

    def container(self, model: ModelSpec, prepared: Prepared, data_url: str) -> dict[str, Any]:
        """The ``PrimaryContainer`` of a model: the route's image, the tarball, the env."""
        env = {**model.env, ENV_NAME: model.name, ENV_VERSION: model.version}
        return {
            "Image": prepared.route.image,
            "ModelDataUrl": data_url,
            "Environment": {**env, **prepared.route.env},
        }

    def _ensure_model(
        self, name: str, container: dict[str, Any], tags: list[dict[str, str]], created: _Created
    ) -> None:
        params: dict[str, Any] = {
            "ModelName": name,
            "ExecutionRoleArn": self.cfg.role_arn,
            "PrimaryContainer": container,
            "Tags": tags,
        }
        if self.cfg.vpc is not None:
            params["VpcConfig"] = {
                "Subnets": self.cfg.vpc.subnets,
                "SecurityGroupIds": self.cfg.vpc.security_group_ids,
            }
        try:
            self.sm("create_model", retry=False, **params)
        except CloudServeError as exc:
            if "already exist" not in str(exc):
                raise
            return
        created.models.append(name)

    # -- endpoint config --------------------------------------------------------------------

    def _variant_row(self, spec: DeploySpec, model_name: str, weight: int) -> dict[str, Any]:
        c = spec.compute
        row: dict[str, Any] = {
            "VariantName": spec.variant_name,
            "ModelName": model_name,
            "InitialVariantWeight": float(weight),
        }
        if c.serverless:
            row["ServerlessConfig"] = {
                "MemorySizeInMB": c.serverless_memory_mb or 2048,
                "MaxConcurrency": c.max_concurrency or 5,
            }
        else:
            choice = resolve_instance(self.name, c.size, c.instance_type)
            row["InstanceType"] = c.instance_type or (choice.instance_type if choice else "")
            row["InitialInstanceCount"] = c.replicas
        return row

    def _data_capture(self, spec: DeploySpec) -> dict[str, Any] | None:
        dc = spec.data_capture
        if dc is None or not dc.enabled:
            return None
        modes = [{"CaptureMode": "Input"}] + (
            [{"CaptureMode": "Output"}] if dc.capture_responses else []
        )
        out: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": max(1, round(dc.sampling_rate * 100)),
            "DestinationS3Uri": dc.destination
            or self.cfg.capture_path
            or self.cfg.s3_uri("capture"),
            "CaptureOptions": modes,
            "CaptureContentTypeHeader": {
                "JsonContentTypes": ["application/json"],
                "CsvContentTypes": ["text/csv"],
            },
        }
        if self.cfg.kms_key_id:
            out["KmsKeyId"] = self.cfg.kms_key_id
        return out

    def _async_config(self, endpoint: str) -> dict[str, Any] | None:
        a = self.cfg.async_inference
        if a is None:
            return None
        base = a.output_path or self.cfg.s3_uri("async-output")
        out: dict[str, Any] = {
            "OutputConfig": {
                "S3OutputPath": f"{base.rstrip('/')}/{endpoint}",
                "S3FailurePath": f"{base.rstrip('/')}/{endpoint}-failures",
            },
            "ClientConfig": {
                "MaxConcurrentInvocationsPerInstance": a.max_concurrent_invocations_per_instance
            },
        }
        if self.cfg.kms_key_id:
            out["OutputConfig"]["KmsKeyId"] = self.cfg.kms_key_id
        return out

    def _rows_beside(
        self, current: dict[str, Any] | None, new_variant: str, traffic: int
    ) -> list[dict[str, Any]]:
        """The variants kept beside a canary, re-weighted to share ``100 - traffic``."""
        if current is None or traffic >= 100:
            return []
        live = {
            v["VariantName"]: float(v.get("CurrentWeight", 0))
            for v in current["endpoint"].get("ProductionVariants", [])
        }
        keep = [
            dict(r)
            for r in current["config"]["ProductionVariants"]
            if r["VariantName"] != new_variant
        ]
        total = sum(live.get(r["VariantName"], 0.0) for r in keep)
        rest = 100 - traffic
        for r in keep:
            share = live.get(r["VariantName"], 0.0) / total if total else 1 / len(keep)
            r["InitialVariantWeight"] = float(round(rest * share))
        if keep:
            drift = rest - sum(r["InitialVariantWeight"] for r in keep)
            keep[0]["InitialVariantWeight"] += drift
        return keep

    # -- deploy -----------------------------------------------------------------------------

    def _current(self, endpoint: str, *, missing_ok: bool = True) -> dict[str, Any] | None:
        """The endpoint and its config; None (or NotFound) when it does not exist."""
        try:
            ep = self.sm("describe_endpoint", EndpointName=endpoint)
        except NotFound:
            if missing_ok:
                return None
            raise
        config = self.sm("describe_endpoint_config", EndpointConfigName=ep["EndpointConfigName"])
        return {"endpoint": ep, "config": config}

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create the endpoint or update it blue/green (new endpoint config + UpdateEndpoint).

        The same spec again is a no-op. A failure half-way deletes the models, endpoint config
        and endpoint this deploy created, unless ``spec.keep_on_failure``.
        """
        prepared = self.prepare(spec.model)
        current = self._settled(spec.endpoint, timeout, progress)
        if current is not None and current["endpoint"]["EndpointStatus"] == "Failed":
            self.delete_endpoint(spec.endpoint)
            current = None
        previous = scaling.plan_of(self, current) if current is not None else []
        want = self._desired(spec, prepared, current, previous)
        if current is not None and current["endpoint"]["EndpointConfigName"] == want.config:
            if not self._weights_match(current, want.rows):
                # Same variants, only the split moved (set_traffic): put the spec's split back.
                weights = {r["VariantName"]: round(r["InitialVariantWeight"]) for r in want.rows}
                return self.set_traffic(spec.endpoint, weights)
            return self.get_endpoint(spec.endpoint)
        created = _Created()
        try:
            self._apply(spec, want, current, created)
            if not wait:
                if want.scaling:
                    # Scaling is registered once the endpoint is in service, by whichever
                    # process next reads it (get_endpoint), from this tag.
                    self._mark_pending_scaling(spec.endpoint, want.scaling)
                return self.get_endpoint(spec.endpoint)
            self._await_config(spec.endpoint, want.config, timeout, progress)
            if current is not None:
                # The update took: the endpoint now runs on the new model and config, so a
                # failure from here on must not remove them (nor restore the old scaling).
                created, previous = _Created(), []
            scaling.register(self, spec.endpoint, want.scaling, created)
        except BaseException:
            if not spec.keep_on_failure:
                self._roll_back(created, restore=previous if current is not None else [])
            raise
        self._collect_garbage(spec.endpoint, keep=want.config)
        with self._lock:
            self._versions.pop(spec.endpoint, None)
            self._serverless.pop(spec.endpoint, None)
        return self.get_endpoint(spec.endpoint)

    def _desired(
        self,
        spec: DeploySpec,
        prepared: Prepared,
        current: dict[str, Any] | None,
        previous: list[dict[str, Any]],
    ) -> _Desired:
        """What the endpoint should hold after ``spec``; names are hashes of the content."""
        data_url = self.artifact_uri(spec.model, prepared)
        container = self.container(spec.model, prepared, data_url)
        model = names.model_name(
            spec.endpoint,
            spec.variant_name,
            pkg.content_hash(container, self.cfg.vpc, self.cfg.role_arn),
        )
        rows = [
            *self._rows_beside(current, spec.variant_name, spec.traffic),
            self._variant_row(spec, model, spec.traffic),
        ]
        capture, async_cfg = self._data_capture(spec), self._async_config(spec.endpoint)
        steps = scaling.plan(self, spec, previous)
        digest = pkg.content_hash(rows, capture, async_cfg, steps, self.cfg.kms_key_id)
        tags = names.tags({**self.cfg.tags, **spec.model.tags, **spec.tags}, spec.endpoint)
        return _Desired(
            model=model,
            container=container,
            rows=rows,
            capture=capture,
            async_cfg=async_cfg,
            scaling=steps,
            config=names.config_name(spec.endpoint, digest),
            tags=tags,
        )

    def _apply(
        self,
        spec: DeploySpec,
        want: _Desired,
        current: dict[str, Any] | None,
        created: _Created,
    ) -> None:
        """Create the model and endpoint config, then create or update the endpoint."""
        self._ensure_model(want.model, want.container, want.tags, created)
        self._create_config(want, created)
        if current is None:
            self.sm(
                "create_endpoint",
                retry=False,
                EndpointName=spec.endpoint,
                EndpointConfigName=want.config,
                Tags=want.tags,
            )
            created.endpoint = spec.endpoint
            return
        variants = [v["VariantName"] for v in current["config"]["ProductionVariants"]]
        scaling.deregister(self, spec.endpoint, variants)
        self.sm(
            "update_endpoint",
            retry=False,
            EndpointName=spec.endpoint,
            EndpointConfigName=want.config,
        )

    def _create_config(self, want: _Desired, created: _Created) -> None:
        params: dict[str, Any] = {
            "EndpointConfigName": want.config,
            "ProductionVariants": want.rows,
            "Tags": want.tags,
        }
        if want.capture is not None:
            params["DataCaptureConfig"] = want.capture
        if want.async_cfg is not None:
            params["AsyncInferenceConfig"] = want.async_cfg
        if self.cfg.kms_key_id and not any(
            has_local_storage(r.get("InstanceType")) for r in want.rows
        ):
            # Instances with local NVMe storage encrypt it in hardware; SageMaker refuses a
            # KmsKeyId for them (see _validate).
            params["KmsKeyId"] = self.cfg.kms_key_id
        try:
            self.sm("create_endpoint_config", retry=False, **params)
        except CloudServeError as exc:
            if "already exist" not in str(exc):
                raise
            return
        created.config = want.config

    def _weights_match(self, current: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
        live = {
            v["VariantName"]: float(v.get("CurrentWeight", 0))
            for v in current["endpoint"].get("ProductionVariants", [])
        }
        return all(
            abs(live.get(r["VariantName"], -1) - r["InitialVariantWeight"]) < 1e-6 for r in rows
        )

    def _settled(
        self, endpoint: str, timeout: float | None, progress: ProgressCallback | None
    ) -> dict[str, Any] | None:
        """The endpoint once no create/update is in flight (None when it does not exist)."""
        current = self._current(endpoint)
        if (
            current is None
            or STATES.get(
                current["endpoint"]["EndpointStatus"], EndpointStatus.UPDATING
            ).is_terminal
        ):
            return current
        self._wait_status(endpoint, timeout, progress)
        return self._current(endpoint)

    def _wait_status(
        self, endpoint: str, timeout: float | None, progress: ProgressCallback | None
    ) -> dict[str, Any]:
        return self.wait(
            lambda: self.sm("describe_endpoint", EndpointName=endpoint),
            is_done=lambda d: STATES.get(d["EndpointStatus"], EndpointStatus.UPDATING).is_terminal,
            description=f"endpoint {endpoint}",
            timeout=timeout,
            progress=progress,
            status_of=lambda d: str(d["EndpointStatus"]),
        )

    def _await_config(
        self, endpoint: str, config: str, timeout: float | None, progress: ProgressCallback | None
    ) -> None:
        final = self._wait_status(endpoint, timeout, progress)
        reason = final.get("FailureReason") or "no reason given"
        if final["EndpointStatus"] != "InService":
            raise OperationFailed(
                f"endpoint {endpoint} ended {final['EndpointStatus']}: {reason}",
                provider=self.name,
                code=final["EndpointStatus"],
            )
        if final["EndpointConfigName"] != config:
            raise OperationFailed(
                f"the update of endpoint {endpoint} was rolled back: {reason}",
                provider=self.name,
                code="UpdateRolledBack",
            )

    def _roll_back(self, created: _Created, restore: list[dict[str, Any]]) -> None:
        """Remove what a failed deploy created; put back the scaling a failed update removed."""
        with contextlib.suppress(CloudServeError):
            if created.endpoint:
                self._quiet_delete("delete_endpoint", EndpointName=created.endpoint)
                self._wait_gone(created.endpoint, None)
            if created.config:
                self._quiet_delete("delete_endpoint_config", EndpointConfigName=created.config)
            for model in created.models:
                self._quiet_delete("delete_model", ModelName=model)
            for resource in created.scaling:
                scaling.deregister_one(self, resource)
            if restore:
                scaling.register(self, restore[0]["endpoint"], restore, _Created())

    # -- reading endpoints -------------------------------------------------------------------

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint, its variants (model version, weight, instances, scaling range)."""
        current = self._current(name, missing_ok=False)
        assert current is not None
        return self._endpoint(current)

    def _mark_pending_scaling(self, endpoint: str, steps: list[dict[str, Any]]) -> None:
        arn = self.sm("describe_endpoint", EndpointName=endpoint)["EndpointArn"]
        value = " ".join(f"{s['variant']}:{s['min']}:{s['max']}:{s['target']}" for s in steps)
        self.sm("add_tags", ResourceArn=arn, Tags=[{"Key": PENDING_SCALING_TAG, "Value": value}])

    def _finish_pending_scaling(self, ep: dict[str, Any]) -> None:
        """Register the scaling a ``deploy(wait=False)`` left for when the endpoint is up."""
        if ep["EndpointStatus"] != "InService":
            return
        found = self.sm("list_tags", ResourceArn=ep["EndpointArn"]).get("Tags", [])
        value = next((t["Value"] for t in found if t["Key"] == PENDING_SCALING_TAG), None)
        if not value:
            return
        steps = []
        for item in value.split():
            variant, lo, hi, target = item.rsplit(":", 3)
            steps.append(
                {
                    "endpoint": ep["EndpointName"],
                    "variant": variant,
                    "min": int(lo),
                    "max": int(hi),
                    "target": float(target),
                }
            )
        scaling.register(self, ep["EndpointName"], steps, _Created())
        self.sm("delete_tags", ResourceArn=ep["EndpointArn"], TagKeys=[PENDING_SCALING_TAG])

    def _endpoint(self, current: dict[str, Any]) -> Endpoint:
        ep, config = current["endpoint"], current["config"]
        self._finish_pending_scaling(ep)
        rows = {r["VariantName"]: r for r in config["ProductionVariants"]}
        ranges = scaling.targets(self, ep["EndpointName"], list(rows))
        status = STATES.get(ep["EndpointStatus"], EndpointStatus.UPDATING)
        variants = []
        versions: dict[str, str] = {}
        for live in ep.get("ProductionVariants", []):
            row = rows.get(live["VariantName"], {})
            env = self._model_env(row.get("ModelName"))
            target = ranges.get(live["VariantName"])
            version = env.get(ENV_VERSION, "")
            versions[live["VariantName"]] = version
            variants.append(
                Variant(
                    name=live["VariantName"],
                    model_name=env.get(ENV_NAME, row.get("ModelName", "")),
                    model_version=version,
                    weight=round(
                        float(live.get("CurrentWeight", row.get("InitialVariantWeight", 0)))
                    ),
                    instance_type=row.get("InstanceType")
                    or ("serverless" if row.get("ServerlessConfig") else None),
                    replicas=int(
                        live.get("CurrentInstanceCount", row.get("InitialInstanceCount", 0)) or 0
                    ),
                    min_replicas=target["MinCapacity"] if target else None,
                    max_replicas=target["MaxCapacity"] if target else None,
                    status=status,
                    raw={"endpoint": live, "config": row},
                )
            )
        with self._lock:
            self._versions[ep["EndpointName"]] = versions
            self._serverless[ep["EndpointName"]] = any(
                "ServerlessConfig" in r for r in config["ProductionVariants"]
            )
        return Endpoint(
            name=ep["EndpointName"],
            provider=self.name,
            status=status,
            variants=variants,
            url=f"https://runtime.sagemaker.{self.cfg.region}.amazonaws.com/endpoints/{ep['EndpointName']}/invocations",
            created_at=ep.get("CreationTime"),
            updated_at=ep.get("LastModifiedTime"),
            message=ep.get("FailureReason"),
            raw=current,
        )

    def _model_env(self, model: str | None) -> dict[str, str]:
        if not model:
            return {}
        try:
            found = self.sm("describe_model", ModelName=model)
        except NotFound:
            return {}
        return dict(found.get("PrimaryContainer", {}).get("Environment", {}))

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint in the region, with status and times (variants: ``get_endpoint``)."""
        pages = self.call(lambda: list(self.aws.sm.get_paginator("list_endpoints").paginate()))
        return [
            Endpoint(
                name=e["EndpointName"],
                provider=self.name,
                status=STATES.get(e["EndpointStatus"], EndpointStatus.UPDATING),
                created_at=e.get("CreationTime"),
                updated_at=e.get("LastModifiedTime"),
                raw=e,
            )
            for page in pages
            for e in page.get("Endpoints", [])
        ]

    # -- delete -----------------------------------------------------------------------------

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint, its scaling, its endpoint configs and models (those tagged as
        cloudserve's for it). A missing endpoint is fine."""
        current = self._current(name)
        if current is not None:
            scaling.deregister(
                self, name, [v["VariantName"] for v in current["config"]["ProductionVariants"]]
            )
            self._quiet_delete("delete_endpoint", EndpointName=name)
            if wait:
                self._wait_gone(name, None)
        self._collect_garbage(name, keep=None)
        with self._lock:
            self._versions.pop(name, None)
            self._serverless.pop(name, None)

    def _wait_gone(self, name: str, timeout: float | None) -> None:
        def poll() -> str:
            try:
                return str(self.sm("describe_endpoint", EndpointName=name)["EndpointStatus"])
            except NotFound:
                return "Gone"

        self.wait(
            poll,
            is_done=lambda s: s in ("Gone", "Failed"),
            description=f"delete of endpoint {name}",
            timeout=timeout,
        )

    def _owned(self, arn: str, endpoint: str) -> bool:
        try:
            found = self.sm("list_tags", ResourceArn=arn)
        except NotFound:
            return False
        tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
        return tags.get(names.ENDPOINT_TAG) == endpoint

    def _collect_garbage(self, endpoint: str, keep: str | None) -> None:
        """Delete this endpoint's configs (but ``keep``) and the models no kept config uses."""
        used: set[str] = set()
        if keep is not None:
            kept = self.sm("describe_endpoint_config", EndpointConfigName=keep)
            used = {v["ModelName"] for v in kept["ProductionVariants"]}
        for c in self._listing("list_endpoint_configs", "EndpointConfigs", endpoint):
            if c["EndpointConfigName"] != keep and self._owned(c["EndpointConfigArn"], endpoint):
                self._quiet_delete(
                    "delete_endpoint_config", EndpointConfigName=c["EndpointConfigName"]
                )
        for m in self._listing("list_models", "Models", endpoint):
            if m["ModelName"] not in used and self._owned(m["ModelArn"], endpoint):
                self._quiet_delete("delete_model", ModelName=m["ModelName"])

    def _listing(self, operation: str, key: str, contains: str) -> list[dict[str, Any]]:
        pages = self.aws.sm.get_paginator(operation).paginate(NameContains=contains)
        return self.call(lambda: [item for page in pages for item in page.get(key, [])])

    # -- traffic ----------------------------------------------------------------------------

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Move traffic between variants with UpdateEndpointWeightsAndCapacities (no redeploy)."""
        current = self._current(endpoint, missing_ok=False)
        assert current is not None
        known = {v["VariantName"] for v in current["endpoint"].get("ProductionVariants", [])}
        unknown = sorted(set(weights) - known)
        if unknown:
            raise NotFound(
                f"endpoint {endpoint} has no variant {', '.join(unknown)} "
                f"(has {', '.join(sorted(known))})",
                provider=self.name,
            )
        if set(weights) != known:
            raise InvalidRequest(
                f"give a weight for every variant of {endpoint}: {', '.join(sorted(known))}",
                provider=self.name,
            )
        desired = [{"VariantName": v, "DesiredWeight": float(w)} for v, w in weights.items()]
        self.sm(
            "update_endpoint_weights_and_capacities",
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=desired,
        )
        self._wait_status(endpoint, None, None)
        return self.get_endpoint(endpoint)

    # -- online prediction -------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.cfg.predict_concurrency, thread_name_prefix="cloudserve-sm"
                )
            return self._pool

    def _invoke(
        self, endpoint: str, rows: list[Any], variant: str | None, parameters: dict[str, Any] | None
    ) -> tuple[list[Any], str | None]:
        from cloudserve import codecs

        body = codecs.encode_instances(rows)
        if parameters:
            body = orjson.dumps({"instances": rows, "parameters": parameters})
        params: dict[str, Any] = {
            "EndpointName": endpoint,
            "Body": body,
            "ContentType": codecs.JSON,
            "Accept": codecs.JSON,
        }
        if variant:
            params["TargetVariant"] = variant
        # Predictions change nothing, so a throttled or 5xx invocation is safe to repeat.
        answer = self.call(lambda: self._read_invoke(params))
        outputs = codecs.decode_predictions(
            answer["Body"], answer.get("ContentType") or codecs.JSON
        )
        if len(outputs) != len(rows):
            raise OperationFailed(
                f"endpoint {endpoint} returned {len(outputs)} outputs for {len(rows)} rows",
                provider=self.name,
            )
        return outputs, answer.get("InvokedProductionVariant")

    def _read_invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.aws.runtime.invoke_endpoint(**params)
        return {**answer, "Body": answer["Body"].read()}

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """InvokeEndpoint; inputs over the payload limit go as concurrent chunks, in order."""
        from cloudserve import codecs

        started = time.perf_counter()
        limit = int(self._payload_mb(endpoint) * 1024 * 1024) - PAYLOAD_MARGIN
        chunks = codecs.split_for_limit(instances, limit) if instances else [[]]
        if len(chunks) == 1:
            results = [self._invoke(endpoint, chunks[0], variant, parameters)]
        else:
            results = list(
                self._executor().map(
                    lambda rows: self._invoke(endpoint, rows, variant, parameters), chunks
                )
            )
        outputs = [o for chunk, _ in results for o in chunk]
        served = results[0][1]
        return Prediction(
            outputs=outputs,
            model_version=self._version_of(endpoint, served),
            variant=served,
            latency_ms=(time.perf_counter() - started) * 1000,
            raw={"invoked_variants": [v for _, v in results], "chunks": len(chunks)},
        )

    def _payload_mb(self, endpoint: str) -> float:
        """The request size limit of ``endpoint``: 4 MB serverless, else ``max_payload_mb``."""
        with self._lock:
            serverless = self._serverless.get(endpoint)
        if serverless is None:
            with contextlib.suppress(NotFound):
                self.get_endpoint(endpoint)
            with self._lock:
                serverless = self._serverless.get(endpoint, False)
        if serverless:
            return min(self.cfg.max_payload_mb, SERVERLESS_PAYLOAD_MB)
        return self.cfg.max_payload_mb

    def _version_of(self, endpoint: str, variant: str | None) -> str | None:
        if variant is None:
            return None
        with self._lock:
            version = self._versions.get(endpoint, {}).get(variant)
        if version is None:
            with contextlib.suppress(NotFound):
                self.get_endpoint(endpoint)
            with self._lock:
                version = self._versions.get(endpoint, {}).get(variant)
        return version

    # -- optional capabilities, in their own modules -------------------------------------------

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

        return predict_async(self, endpoint, instances, variant=variant, parameters=parameters)

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The queued prediction's state, read from its S3 output (or failure) object."""
        from cloudserve_sagemaker._async import get_async_result

        return get_async_result(self, endpoint, request_id)

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """A batch transform job (Line split, MultiRecord batches, outputs assembled by line)."""
        from cloudserve_sagemaker._batch import start_transform

        return start_transform(self, spec)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """The transform job; once it succeeds, outputs are downloaded to a local output path."""
        from cloudserve_sagemaker._batch import describe_transform

        return describe_transform(self, job_id)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """A hyperparameter tuning job running the script in SageMaker's framework container."""
        from cloudserve_sagemaker._tuning import start_tuning

        return start_tuning(self, spec)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """The tuning job, its trials (training jobs) and the best one."""
        from cloudserve_sagemaker._tuning import describe_tuning

        return describe_tuning(self, job_id)

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """CloudWatch ``AWS/SageMaker`` invocations, 4xx/5xx errors and latency percentiles."""
        from cloudserve_sagemaker._monitor import endpoint_metrics

        return endpoint_metrics(self, endpoint, window_s)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Input rows from the endpoint's data-capture JSON Lines files in S3."""
        from cloudserve_sagemaker._monitor import captured_rows

        return captured_rows(self, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """A model package in the model package group named after the model."""
        from cloudserve_sagemaker._registry import register_model

        check_model(model)
        return register_model(self, model, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model packages, of one group or of all groups."""
        from cloudserve_sagemaker._registry import list_models

        return list_models(self, name)

    def refresh_prices(self) -> RefreshResult:
        """On-demand hourly prices of the catalog's SageMaker instance types in the target's
        region — hosting, batch transform and training — from the AWS Price List API.

        What has no usable on-demand rate gets no row; it is reported in the result's ``missing``
        (``"ml.g5.xlarge training"`` → reason) and named in a ``MissingPricesWarning``.
        """
        from cloudserve.pricing.refresh import instance_shapes, warn_missing
        from cloudserve_sagemaker import _pricing as pricing

        reader = pricing.PriceList(pricing.pricing_client(self.cfg), self.call)
        result = reader.refresh(self.cfg.region, instance_shapes("sagemaker", pricing.KINDS))
        warn_missing(self.name, self.cfg.region, result.missing)
        return result

    def route(self, spec: DeploySpec) -> str:
        """``framework`` or ``container``, as ``prepare`` chooses; ``container`` when only the
        build/push step the plan lists can make the model servable."""
        try:
            return self.prepare(spec.model).route.kind
        except InvalidRequest:
            return "container"

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """The calls a first deploy of ``spec`` makes, in order; nothing is sent."""
        calls = []
        try:
            image = self.prepare(spec.model).route.image
        except InvalidRequest as refused:
            image = f"<serving_image of target {self.target}, once pushed>"
            calls.append(
                PlannedCall(
                    service="cloudserve",
                    operation="build-image --push",
                    params={
                        "command": pkg.build_command(spec.model, self.target),
                        "why": str(refused),
                    },
                    creates="the serving image in ECR (sets the target's serving_image)",
                )
            )
        if spec.model.is_local:
            calls.append(
                PlannedCall(
                    service="s3",
                    operation="PutObject",
                    params={"bucket": self.cfg.bucket},
                    creates="model.tar.gz",
                )
            )
        calls += [
            PlannedCall(
                service="sagemaker",
                operation="CreateModel",
                params={"image": image},
                creates=f"model for {spec.variant_name}",
            ),
            PlannedCall(
                service="sagemaker",
                operation="CreateEndpointConfig",
                params={"variant": spec.variant_name, "serverless": spec.compute.serverless},
                creates="endpoint config",
            ),
            PlannedCall(
                service="sagemaker",
                operation="CreateEndpoint",
                params={"endpoint": spec.endpoint},
                creates=f"endpoint {spec.endpoint}",
            ),
        ]
        if spec.compute.autoscaling:
            calls += [
                PlannedCall(
                    service="application-autoscaling",
                    operation="RegisterScalableTarget",
                    params={"range": list(spec.compute.replica_range)},
                    creates="scalable target",
                ),
                PlannedCall(
                    service="application-autoscaling",
                    operation="PutScalingPolicy",
                    params={"metric": "SageMakerVariantInvocationsPerInstance"},
                    creates="target-tracking policy",
                ),
            ]
        return calls
