"""The Vertex AI provider: GAPIC v1 clients (REST by default), imported on first use.

Mapping (see ``docs/providers/vertex.md``): a cloudserve endpoint is a Vertex ``Endpoint``
whose id is the endpoint name; a variant is a ``DeployedModel`` whose display name is the
variant name; a model version is a Vertex Model Registry version of the model whose id is
the model name (an upload with ``parent_model`` adds a version). Long-running operations are
polled by cloudserve's own bounded waits, so the poll interval and timeout come from the
target's ``waits`` settings, not the SDK's defaults.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from cloudserve.errors import (
    CloudServeError,
    InvalidRequest,
    NotFound,
    OperationFailed,
)
from cloudserve.pricing.refresh import RefreshResult
from cloudserve.provider import Capability, Provider
from cloudserve.resources import (
    BatchJob,
    Endpoint,
    EndpointStatus,
    JobStatus,
    MetricsReport,
    ModelVersion,
    Prediction,
    Trial,
    TuningJob,
    Variant,
    VariantMetrics,
)
from cloudserve.sizes import resolve_instance
from cloudserve.specs import (
    BatchSpec,
    Choice,
    DeploySpec,
    IntRange,
    LogUniform,
    ModelSpec,
    TuningSpec,
    Uniform,
)
from cloudserve.waiting import ProgressCallback
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex._config import VertexConfig
from cloudserve_vertex._errors import ERROR_TABLE

__all__ = ["VertexProvider"]

MANAGED = "managed-by"
_JOB_STATES = {
    0: JobStatus.PENDING,
    1: JobStatus.PENDING,
    2: JobStatus.PENDING,
    3: JobStatus.RUNNING,
    4: JobStatus.SUCCEEDED,
    5: JobStatus.FAILED,
    6: JobStatus.RUNNING,
    7: JobStatus.CANCELLED,
    8: JobStatus.PENDING,
    9: JobStatus.FAILED,
    10: JobStatus.RUNNING,
    11: JobStatus.SUCCEEDED,
}
_TRIAL_STATES = {
    0: JobStatus.PENDING,
    1: JobStatus.PENDING,
    2: JobStatus.RUNNING,
    3: JobStatus.RUNNING,
    4: JobStatus.SUCCEEDED,
    5: JobStatus.FAILED,
}
_STRATEGIES = {"bayesian": 0, "grid": 2, "random": 3}
_CPU_METRIC = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
_METRIC_PREFIX = "aiplatform.googleapis.com/prediction/online/"


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
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {
        Capability.SHADOW: (
            "Vertex AI endpoints cannot mirror requests: traffic_split only divides them"
            " between deployed models"
        ),
        Capability.ROLLOUT: (
            "the rollout state is not yet recorded with Vertex AI endpoints (labels hold 63"
            " characters) and a deployed model is not yet undeployed on its own; roll out on the"
            " local backend for now"
        ),
        Capability.SERVERLESS: "Vertex AI online endpoints always run at least one dedicated "
        "replica; the v1 API has no scale-to-zero serverless inference",
        Capability.ASYNC_PREDICT: "Vertex AI has no queued online prediction; use batch "
        "prediction for large or slow inputs",
    }
    error_table = ERROR_TABLE

    config: VertexConfig

    def __init__(self, config: VertexConfig, *, target: str | None = None):
        super().__init__(config, target=target)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._version_cache: dict[str, dict[str, Any]] = {}
        # Local output paths of batch jobs started by this instance (job id → path).
        self._batch_outputs: dict[str, str] = {}

    # -- clients (lazy: import cloudserve_vertex does not import google.*) ----------------------

    @property
    def parent(self) -> str:
        return f"projects/{self.config.project}/locations/{self.config.location}"

    def _credentials(self) -> Any:
        if self.config.credentials == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        if self.config.credentials == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_file(
                self.config.service_account_file, scopes=scopes
            )
        import google.auth

        creds, _ = google.auth.default(scopes=scopes)
        return creds

    def _local_fake(self) -> bool:
        return bool(self.config.api_endpoint and self.config.api_endpoint.startswith("http://"))

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                self._clients[kind] = self._make_client(kind)
            return self._clients[kind]

    def _make_client(self, kind: str) -> Any:
        creds = self._credentials()
        if kind == "storage":
            from google.cloud import storage  # type: ignore[attr-defined]

            opts = {"api_endpoint": self.config.api_endpoint} if self._local_fake() else None
            return storage.Client(
                project=self.config.project, credentials=creds, client_options=opts
            )
        from google.cloud import aiplatform_v1

        host = self.config.api_endpoint or f"{self.config.location}-aiplatform.googleapis.com"
        cls = {
            "endpoint": aiplatform_v1.EndpointServiceClient,
            "model": aiplatform_v1.ModelServiceClient,
            "prediction": aiplatform_v1.PredictionServiceClient,
            "job": aiplatform_v1.JobServiceClient,
        }[kind]
        return cls(
            transport=self.config.transport,
            credentials=creds,
            client_options={"api_endpoint": host},
        )

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for c in clients.values():
            transport = getattr(c, "transport", None)
            if transport is not None:
                transport.close()
            elif hasattr(c, "close"):
                c.close()

    # -- helpers ------------------------------------------------------------------------------

    def _labels(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {MANAGED: "cloudserve", **self.config.labels}
        for k, v in {**self.config.tags, **(extra or {})}.items():
            out[pkg.label_value(k)] = pkg.label_value(v)
        return out

    def _encryption(self) -> dict[str, Any]:
        key = self.config.encryption_key
        return {"encryption_spec": {"kms_key_name": key}} if key else {}

    def _wait_op(
        self,
        op: Any,
        description: str,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Poll an LRO with the target's wait settings; OperationFailed if it ends in error."""
        self.wait(
            lambda: self.call(op.done),
            is_done=bool,
            description=description,
            timeout=timeout,
            progress=progress,
            status_of=lambda d: "DONE" if d else "RUNNING",
        )
        error = op.operation.error
        if error.code:
            raise OperationFailed(
                f"{description} failed: {error.message}", provider=self.name, code=str(error.code)
            )
        return op.result(timeout=0) if op.operation.HasField("response") else None

    @staticmethod
    def _endpoint_id(name: str) -> str:
        return name.lower()

    @staticmethod
    def _model_id(name: str) -> str:
        return name.lower()

    def _endpoint_path(self, name: str) -> str:
        return f"{self.parent}/endpoints/{self._endpoint_id(name)}"

    def _model_path(self, name: str) -> str:
        return f"{self.parent}/models/{self._model_id(name)}"

    # -- validation ---------------------------------------------------------------------------

    def validate(self, spec: Any) -> None:
        super().validate(spec)
        if isinstance(spec, DeploySpec):
            if spec.endpoint.endswith("-"):
                raise InvalidRequest("a Vertex endpoint id cannot end with '-'", provider=self.name)
            self._machine(spec.compute)
            if spec.compute.max_concurrency is not None:
                raise InvalidRequest(
                    "compute.max_concurrency: Vertex AI sets per-replica concurrency itself",
                    provider=self.name,
                )
            if (
                spec.data_capture
                and spec.data_capture.destination
                and not (spec.data_capture.destination.startswith("bq://"))
            ):
                raise InvalidRequest(
                    "data_capture.destination: Vertex logs requests to BigQuery (bq://…)",
                    provider=self.name,
                )
        if isinstance(spec, BatchSpec):
            if spec.resolved_format == "parquet":
                raise InvalidRequest(
                    "Vertex batch prediction reads JSON Lines or CSV, not Parquet",
                    provider=self.name,
                )
            if spec.compute.autoscaling:
                raise InvalidRequest(
                    "batch compute: Vertex batch jobs run a fixed starting replica count",
                    provider=self.name,
                )
        if isinstance(spec, TuningSpec):
            if spec.strategy == "hyperband":
                raise InvalidRequest(
                    "strategy 'hyperband': Vertex AI Vizier offers bayesian, grid and random",
                    provider=self.name,
                )
            if spec.train.entrypoint is None:
                raise InvalidRequest(
                    "Vertex tuning runs a Python script: give TrainSpec(entrypoint=…)",
                    provider=self.name,
                )

    def _machine(self, compute: Any) -> dict[str, Any]:
        choice = resolve_instance(self.name, compute.size, compute.instance_type)
        spec: dict[str, Any] = {
            "machine_type": compute.instance_type or (choice.instance_type if choice else "")
        }
        accelerator = compute.accelerator or (choice.accelerator if choice else None)
        count = compute.accelerator_count or (choice.accelerator_count if choice else 0)
        if accelerator:
            spec.update(accelerator_type=accelerator, accelerator_count=max(count, 1))
        return spec

    # -- model registry ------------------------------------------------------------------------

    def _versions(self, model: ModelSpec) -> list[Any]:
        from google.api_core import exceptions as gexc

        try:
            pager = self.call(
                self._client("model").list_model_versions, name=self._model_path(model.name)
            )
        except NotFound as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return []
            raise
        return list(pager)

    def _find_version(self, model: ModelSpec) -> Any | None:
        wanted = pkg.label_value(model.version)
        for v in self._versions(model):
            if v.labels.get("cloudserve-version") == wanted and v.version_description == (
                model.version
            ):
                return v
        return None

    def _upload(
        self,
        model: ModelSpec,
        origin: str,
        endpoint: str | None,
        created: list[tuple[str, str]],
        progress: ProgressCallback | None,
    ) -> str:
        """Upload ``model`` as a new Model Registry version; returns ``models/ID@VERSION``."""
        existing = self._find_version(model)
        if existing is not None:
            return f"{existing.name}@{existing.version_id}"
        from google.cloud import aiplatform_v1 as v1

        prefix = f"{self.config.staging_prefix}/models/{self._model_id(model.name)}/{model.version}"
        artifact_uri = None
        with pkg.tempdir() as tmp:
            if model.artifact and model.is_local:
                package = pkg.stage(
                    model,
                    Path(tmp),
                    location=self.config.location,
                    runtime_image=self.config.serving_image,
                )
                created.append(("artifacts", prefix))
                self._upload_files(package.directory, package.files, prefix)
                artifact_uri = f"gs://{self.config.bucket}/{prefix}/"
                container = package.container_spec(dict(model.env))
            else:
                artifact_uri = model.artifact
                container = {
                    "image_uri": model.image or self.config.serving_image,
                    "predict_route": pkg.PREDICT_ROUTE,
                    "health_route": pkg.HEALTH_ROUTE,
                    "ports": [{"container_port": pkg.PORT}],
                    "env": [{"name": k, "value": v} for k, v in model.env.items()],
                }
        labels = self._labels(
            {**model.tags, "cloudserve-version": model.version, "cloudserve-origin": origin}
        )
        if endpoint:
            labels["cloudserve-endpoint"] = self._endpoint_id(endpoint)
        alias = pkg.label_value(model.variant_name).replace("_", "-").rstrip("-")
        body = v1.Model(
            display_name=model.name,
            artifact_uri=artifact_uri or "",
            container_spec=v1.ModelContainerSpec(**container),
            labels=labels,
            version_aliases=[alias] if alias else [],
            version_description=model.version,
            **self._encryption(),
        )
        exists = bool(self._versions(model))
        request = v1.UploadModelRequest(
            parent=self.parent,
            model=body,
            **(
                {"parent_model": self._model_path(model.name)}
                if exists
                else {"model_id": self._model_id(model.name)}
            ),
        )
        op = self.call(self._client("model").upload_model, request=request, retry=False)
        result = self._wait_op(
            op, f"upload of model {model.name} v{model.version}", progress=progress
        )
        ref = f"{result.model}@{result.model_version_id}"
        created.append(("model", ref))
        return ref

    def _upload_files(self, root: Path, files: list[Path], prefix: str) -> None:
        bucket = self._client("storage").bucket(self.config.bucket)
        for f in files:
            blob = bucket.blob(f"{prefix}/{f.relative_to(root).as_posix()}")
            self.call(blob.upload_from_filename, str(f))

    def _version(self, ref: str) -> dict[str, Any]:
        """A model version's registry facts (cached: versions are immutable)."""
        if ref not in self._version_cache:
            m = self.call(self._client("model").get_model, name=ref)
            self._version_cache[ref] = {
                "name": m.display_name,
                "version": m.version_description or m.version_id,
                "labels": dict(m.labels),
                "artifact_uri": m.artifact_uri,
                "raw": m,
            }
        return self._version_cache[ref]

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        ref = self._upload(model, "registry", None, [], None)
        return self._model_version(ref, lineage)

    def _model_version(self, ref: str, lineage: dict[str, Any] | None = None) -> ModelVersion:
        info = self._version(ref)
        m = info["raw"]
        return ModelVersion(
            name=info["name"],
            version=info["version"],
            provider=self.name,
            uri=info["artifact_uri"] or None,
            framework=None,
            created_at=m.version_create_time or None,
            stage=",".join(a for a in m.version_aliases) or None,
            lineage=lineage or {},
            tags={k: v for k, v in info["labels"].items() if not k.startswith("cloudserve-")},
            raw=m,
        )

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        if name is not None:
            spec = ModelSpec(name=name, image="-")
            return [self._model_version(f"{v.name}@{v.version_id}") for v in self._versions(spec)]
        models = self.call(
            self._client("model").list_models,
            request={"parent": self.parent, "filter": f"labels.{MANAGED}=cloudserve"},
        )
        out = []
        for m in models:
            out.extend(self.list_models(m.display_name))
        return out

    # -- endpoints -----------------------------------------------------------------------------

    def _get(self, name: str) -> Any | None:
        from google.api_core import exceptions as gexc

        try:
            return self.call(self._client("endpoint").get_endpoint, name=self._endpoint_path(name))
        except NotFound as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return None
            raise

    def _to_endpoint(self, ep: Any, status: EndpointStatus | None = None) -> Endpoint:
        variants = []
        for dm in ep.deployed_models:
            info = self._version(f"{dm.model}@{dm.model_version_id}")
            res = dm.dedicated_resources
            variants.append(
                Variant(
                    name=dm.display_name,
                    model_name=info["name"],
                    model_version=info["version"],
                    weight=int(ep.traffic_split.get(dm.id, 0)),
                    instance_type=res.machine_spec.machine_type or None,
                    replicas=res.min_replica_count,
                    min_replicas=res.min_replica_count,
                    max_replicas=res.max_replica_count or res.min_replica_count,
                    status=EndpointStatus.READY,
                    raw=dm,
                )
            )
        if status is None:
            ready = variants and sum(v.weight for v in variants) == 100
            status = EndpointStatus.READY if ready else EndpointStatus.CREATING
        return Endpoint(
            name=ep.display_name,
            provider=self.name,
            status=status,
            variants=variants,
            url=f"https://{self.config.location}-aiplatform.googleapis.com/v1/{ep.name}:predict",
            created_at=ep.create_time or None,
            updated_at=ep.update_time or None,
            tags={k: v for k, v in ep.labels.items() if k != MANAGED},
            raw=ep,
        )

    def get_endpoint(self, name: str) -> Endpoint:
        ep = self._get(name)
        if ep is None:
            from google.api_core import exceptions as gexc

            err = gexc.NotFound(f"endpoint {name} not found")
            raise NotFound(
                f"endpoint {name} does not exist", provider=self.name, code="404"
            ) from err
        return self._to_endpoint(ep)

    def list_endpoints(self) -> list[Endpoint]:
        pager = self.call(
            self._client("endpoint").list_endpoints,
            request={"parent": self.parent, "filter": f"labels.{MANAGED}=cloudserve"},
        )
        return [self._to_endpoint(ep) for ep in pager]

    def _create_endpoint(self, spec: DeploySpec, progress: ProgressCallback | None) -> Any:
        from google.cloud import aiplatform_v1 as v1

        extra: dict[str, Any] = {}
        capture = spec.data_capture
        if capture is not None and capture.enabled:
            extra["predict_request_response_logging_config"] = {
                "enabled": True,
                "sampling_rate": capture.sampling_rate,
                "bigquery_destination": {
                    "output_uri": capture.destination or self._capture_table(spec.endpoint)
                },
            }
        if self.config.network:
            extra["network"] = self.config.network
        body = v1.Endpoint(
            display_name=spec.endpoint,
            labels=self._labels(spec.tags),
            **extra,
            **self._encryption(),
        )
        op = self.call(
            self._client("endpoint").create_endpoint,
            parent=self.parent,
            endpoint=body,
            endpoint_id=self._endpoint_id(spec.endpoint),
            retry=False,
        )
        return self._wait_op(op, f"creation of endpoint {spec.endpoint}", progress=progress)

    def _capture_table(self, endpoint: str) -> str:
        return (
            f"bq://{self.config.project}.cloudserve_capture."
            f"req_resp_{self._endpoint_id(endpoint).replace('-', '_')}"
        )

    def _same(self, ep: Any, spec: DeploySpec) -> bool:
        current = self._to_endpoint(ep)
        try:
            v = current.variant(spec.variant_name)
        except KeyError:
            return False
        lo, hi = spec.compute.replica_range
        machine = self._machine(spec.compute)
        target = 100 if len(current.variants) == 1 else spec.traffic
        return (
            v.model_name == spec.model.name
            and v.model_version == spec.model.version
            and v.instance_type == machine["machine_type"]
            and (v.min_replicas, v.max_replicas) == (lo, hi)
            and v.weight == target
            and (spec.traffic < 100 or len(current.variants) == 1)
        )

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        ep = self._get(spec.endpoint)
        if ep is not None and self._same(ep, spec):
            return self._to_endpoint(ep)
        created: list[tuple[str, str]] = []
        try:
            ref = self._upload(spec.model, "deploy", spec.endpoint, created, progress)
            if ep is None:
                ep = self._create_endpoint(spec, progress)
                created.append(("endpoint", spec.endpoint))
            ep = self._deploy_variant(ep, spec, ref, wait, timeout, progress)
        except CloudServeError:
            if not spec.keep_on_failure:
                self._rollback(created)
            raise
        return self._to_endpoint(ep, None if wait else EndpointStatus.UPDATING)

    def _split(self, ep: Any, spec: DeploySpec) -> tuple[dict[str, int], list[str]]:
        """The traffic split for deploying ``spec`` (new model as "0") and what to undeploy."""
        replaced = [d.id for d in ep.deployed_models if d.display_name == spec.variant_name]
        others = {
            d.id: int(ep.traffic_split.get(d.id, 0))
            for d in ep.deployed_models
            if d.id not in replaced
        }
        if spec.traffic == 100 or not others:
            return {"0": 100}, [d.id for d in ep.deployed_models]
        rest = 100 - spec.traffic
        total = sum(others.values())
        shares = {k: (w * rest / total if total else rest / len(others)) for k, w in others.items()}
        split = {k: int(s) for k, s in shares.items()}
        by_remainder = sorted(shares, key=lambda k: shares[k] - split[k], reverse=True)
        for k in by_remainder[: rest - sum(split.values())]:
            split[k] += 1
        return {"0": spec.traffic, **split}, replaced

    def _deploy_variant(
        self,
        ep: Any,
        spec: DeploySpec,
        ref: str,
        wait: bool,
        timeout: float | None,
        progress: ProgressCallback | None,
    ) -> Any:
        from google.cloud import aiplatform_v1 as v1

        split, retire = self._split(ep, spec)
        lo, hi = spec.compute.replica_range
        resources: dict[str, Any] = {
            "machine_spec": self._machine(spec.compute),
            "min_replica_count": lo,
            "max_replica_count": hi,
        }
        if spec.compute.autoscaling and spec.compute.autoscale_target:
            resources["autoscaling_metric_specs"] = [
                {"metric_name": _CPU_METRIC, "target": int(spec.compute.autoscale_target)}
            ]
        deployed = v1.DeployedModel(
            model=ref,
            display_name=spec.variant_name,
            dedicated_resources=v1.DedicatedResources(**resources),
            **(
                {"service_account": self.config.service_account}
                if self.config.service_account
                else {}
            ),
        )
        op = self.call(
            self._client("endpoint").deploy_model,
            endpoint=ep.name,
            deployed_model=deployed,
            traffic_split=split,
            retry=False,
        )
        if not wait:
            return ep
        self._wait_op(op, f"deploy of {spec.variant_name} to {spec.endpoint}", timeout, progress)
        for dm_id in retire:
            self._undeploy(ep.name, dm_id, progress)
        return self.call(self._client("endpoint").get_endpoint, name=ep.name)

    def _undeploy(self, endpoint: str, dm_id: str, progress: ProgressCallback | None) -> None:
        op = self.call(
            self._client("endpoint").undeploy_model,
            endpoint=endpoint,
            deployed_model_id=dm_id,
            retry=False,
        )
        self._wait_op(op, f"undeploy of {dm_id}", progress=progress)

    def _rollback(self, created: list[tuple[str, str]]) -> None:
        """Remove what a failed deploy created, newest first; errors here are secondary."""
        for kind, what in reversed(created):
            try:
                if kind == "endpoint":
                    self.delete_endpoint(what)
                elif kind == "model":
                    self._delete_version(what)
                else:
                    self._delete_prefix(what)
            except CloudServeError:
                continue

    def _delete_prefix(self, prefix: str) -> None:
        client = self._client("storage")
        for blob in self.call(client.list_blobs, self.config.bucket, prefix=prefix + "/"):
            self.call(blob.delete)

    def _delete_version(self, ref: str) -> None:
        """Delete one model version (the whole model when it is the last), and its artifacts."""
        from google.api_core import exceptions as gexc

        model = ref.split("@", 1)[0]
        try:
            versions = list(self.call(self._client("model").list_model_versions, name=model))
        except NotFound as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return
            raise
        target = next((v for v in versions if f"{v.name}@{v.version_id}" == ref), None)
        if target is None or target.deployed_models:
            return
        client = self._client("model")
        if len(versions) == 1:
            op = self.call(client.delete_model, name=model, retry=False)
        else:
            op = self.call(client.delete_model_version, name=ref, retry=False)
        self._wait_op(op, f"deletion of model {ref}")
        self._version_cache.pop(ref, None)
        uri = target.artifact_uri
        bucket_prefix = f"gs://{self.config.bucket}/{self.config.staging_prefix}/models/"
        if uri.startswith(bucket_prefix):
            self._delete_prefix(uri.removeprefix(f"gs://{self.config.bucket}/").rstrip("/"))

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        ep = self._get(name)
        if ep is None:
            return
        client = self._client("endpoint")
        if ep.traffic_split:
            from google.cloud import aiplatform_v1 as v1

            self.call(
                client.update_endpoint,
                endpoint=v1.Endpoint(name=ep.name, traffic_split={}),
                update_mask={"paths": ["traffic_split"]},
            )
        refs = [f"{d.model}@{d.model_version_id}" for d in ep.deployed_models]
        for dm in ep.deployed_models:
            self._undeploy(ep.name, dm.id, None)
        op = self.call(client.delete_endpoint, name=ep.name, retry=False)
        if wait:
            self._wait_op(op, f"deletion of endpoint {name}")
        for ref in dict.fromkeys(refs + self._uploaded_for(name)):
            self._delete_if_deployed_by_us(ref)

    def _delete_if_deployed_by_us(self, ref: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            origin = self._version(ref)["labels"].get("cloudserve-origin")
        except NotFound as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return
            raise
        if origin == "deploy":
            self._delete_version(ref)

    def _uploaded_for(self, endpoint: str) -> list[str]:
        """Versions a deploy to ``endpoint`` uploaded (retired variants included)."""
        label = f"labels.cloudserve-endpoint={self._endpoint_id(endpoint)}"
        models = self.call(
            self._client("model").list_models,
            request={"parent": self.parent, "filter": f"labels.{MANAGED}=cloudserve"},
        )
        out: list[str] = []
        for m in models:
            versions = self.call(
                self._client("model").list_model_versions,
                request={"name": m.name, "filter": label},
            )
            out.extend(f"{v.name}@{v.version_id}" for v in versions)
        return out

    # -- traffic -------------------------------------------------------------------------------

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        from google.cloud import aiplatform_v1 as v1

        ep = self._get(endpoint)
        if ep is None:
            raise NotFound(f"endpoint {endpoint} does not exist", provider=self.name)
        ids = {d.display_name: d.id for d in ep.deployed_models}
        unknown = sorted(set(weights) - set(ids))
        if unknown:
            raise InvalidRequest(
                f"no variants {unknown} on {endpoint}; it has {sorted(ids)}", provider=self.name
            )
        if sum(weights.values()) != 100:
            raise InvalidRequest("traffic weights must sum to 100", provider=self.name)
        split = {ids[n]: w for n, w in weights.items()}
        updated = self.call(
            self._client("endpoint").update_endpoint,
            endpoint=v1.Endpoint(name=ep.name, traffic_split=split),
            update_mask={"paths": ["traffic_split"]},
        )
        return self._to_endpoint(updated)

    # -- prediction ----------------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        from cloudserve.codecs import split_for_limit

        if variant is not None:
            self._check_variant(endpoint, variant)
        limit = int(self.config.max_request_mb * 1024 * 1024)
        chunks = split_for_limit(instances, limit)
        start = time.perf_counter()
        if len(chunks) == 1:
            answers = [self._predict_chunk(endpoint, chunks[0], parameters)]
        else:
            with ThreadPoolExecutor(max_workers=self.config.predict_concurrency) as ex:
                answers = list(
                    ex.map(lambda c: self._predict_chunk(endpoint, c, parameters), chunks)
                )
        outputs = [o for a in answers for o in a["predictions"]]
        first = answers[0]
        return Prediction(
            outputs=outputs,
            model_version=self._version(f"{first['model']}@{first['modelVersionId']}")["version"],
            variant=self._variant_name(endpoint, first["deployedModelId"]),
            latency_ms=(time.perf_counter() - start) * 1000,
            raw=answers if len(answers) > 1 else first,
        )

    def _predict_chunk(
        self, endpoint: str, rows: list[Any], parameters: dict[str, Any] | None
    ) -> dict[str, Any]:
        from google.protobuf import json_format

        kwargs: dict[str, Any] = {"endpoint": self._endpoint_path(endpoint), "instances": rows}
        if parameters:
            kwargs["parameters"] = parameters
        r = self.call(self._client("prediction").predict, **kwargs)
        return json_format.MessageToDict(r._pb)

    def _variant_name(self, endpoint: str, dm_id: str) -> str | None:
        ep = self._get(endpoint)
        names = {d.id: d.display_name for d in ep.deployed_models} if ep else {}
        return names.get(dm_id)

    def _check_variant(self, endpoint: str, variant: str) -> None:
        current = self.get_endpoint(endpoint)
        try:
            v = current.variant(variant)
        except KeyError:
            raise NotFound(f"no variant {variant} on {endpoint}", provider=self.name) from None
        if v.weight != 100:
            raise InvalidRequest(
                f"Vertex AI routes online requests by traffic split only; variant {variant} "
                f"gets {v.weight}%. Move its traffic to 100 (set_traffic) to address it alone.",
                provider=self.name,
            )

    def raw_predict(self, endpoint: str, body: bytes, content_type: str) -> bytes:
        """Send ``body`` unchanged to the model container (``:rawPredict``); returns its answer.

        Use it for payloads that are not ``{"instances": …}`` JSON (CSV, images, …).
        """
        from google.auth.transport.requests import AuthorizedSession

        host = (
            self.config.api_endpoint or f"https://{self.config.location}-aiplatform.googleapis.com"
        )
        url = f"{host}/v1/{self._endpoint_path(endpoint)}:rawPredict"
        session = AuthorizedSession(self._credentials())

        def send() -> bytes:
            from google.api_core import exceptions as gexc

            resp = session.post(url, data=body, headers={"Content-Type": content_type})
            if resp.status_code >= 400:
                raise gexc.from_http_response(resp)
            return resp.content

        try:
            return self.call(send)
        finally:
            session.close()

    # -- batch ---------------------------------------------------------------------------------

    def _stage_input(self, spec: BatchSpec) -> str:
        if spec.input.startswith("gs://"):
            return spec.input
        path = Path(spec.input)
        if not path.is_file():
            raise InvalidRequest(f"batch input {path} does not exist", provider=self.name)
        name = f"{self.config.staging_prefix}/batch-inputs/{int(time.time() * 1000)}-{path.name}"
        blob = self._client("storage").bucket(self.config.bucket).blob(name)
        self.call(blob.upload_from_filename, str(path))
        return f"gs://{self.config.bucket}/{name}"

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        from google.cloud import aiplatform_v1 as v1

        ref = self._upload(spec.model, "batch", None, [], None)
        source = self._stage_input(spec)
        local_out = not spec.output.startswith("gs://")
        out_prefix = (
            f"gs://{self.config.bucket}/{self.config.staging_prefix}/batch-outputs"
            if local_out
            else spec.output
        )
        lo, _ = spec.compute.replica_range
        job = v1.BatchPredictionJob(
            display_name=f"cs-{spec.model.name}-{int(time.time())}",
            model=ref,
            input_config={
                "instances_format": spec.resolved_format,
                "gcs_source": {"uris": [source]},
            },
            output_config={
                "predictions_format": "jsonl",
                "gcs_destination": {"output_uri_prefix": out_prefix},
            },
            dedicated_resources={
                "machine_spec": self._machine(spec.compute),
                "starting_replica_count": max(lo, 1),
                "max_replica_count": max(lo, 1),
            },
            manual_batch_tuning_parameters={"batch_size": spec.batch_size},
            labels=self._labels({"cloudserve-output": "local" if local_out else "gcs"}),
            **self._encryption(),
        )
        created = self.call(
            self._client("job").create_batch_prediction_job,
            parent=self.parent,
            batch_prediction_job=job,
            retry=False,
        )
        self._batch_outputs[created.name.rsplit("/", 1)[-1]] = spec.output
        return self._to_batch(created, spec.output)

    def get_batch_job(self, job_id: str) -> BatchJob:
        job = self.call(
            self._client("job").get_batch_prediction_job,
            name=f"{self.parent}/batchPredictionJobs/{job_id}",
        )
        output = self._batch_outputs.get(job_id, job.output_info.gcs_output_directory)
        return self._to_batch(job, output)

    def _to_batch(self, job: Any, output: str) -> BatchJob:
        status = _JOB_STATES.get(int(job.state), JobStatus.PENDING)
        stats = job.completion_stats
        ok, failed = int(stats.successful_count), int(stats.failed_count)
        if status is JobStatus.SUCCEEDED and not output.startswith("gs://"):
            self._download(job.output_info.gcs_output_directory, Path(output))
        return BatchJob(
            id=job.name.rsplit("/", 1)[-1],
            provider=self.name,
            status=status,
            input=job.input_config.gcs_source.uris[0] if job.input_config.gcs_source.uris else "",
            output=output,
            rows_total=ok + failed if status.is_terminal else None,
            rows_succeeded=ok if status.is_terminal else None,
            rows_failed=failed if status.is_terminal else None,
            message=job.error.message or None,
            created_at=job.create_time or None,
            ended_at=job.end_time or None,
            raw=job,
        )

    def _download(self, gcs_dir: str, dest: Path) -> None:
        """Copy a job's output files into ``dest`` (predictions_*.jsonl, errors_*.jsonl)."""
        if not gcs_dir:
            return
        bucket, _, prefix = gcs_dir.removeprefix("gs://").partition("/")
        dest.mkdir(parents=True, exist_ok=True)
        for blob in self.call(self._client("storage").list_blobs, bucket, prefix=prefix + "/"):
            self.call(blob.download_to_filename, str(dest / blob.name.rsplit("/", 1)[-1]))

    # -- tuning --------------------------------------------------------------------------------

    def _study_spec(self, spec: TuningSpec) -> dict[str, Any]:
        params = []
        for name, p in spec.search_space.items():
            entry: dict[str, Any] = {"parameter_id": name}
            if isinstance(p, Uniform):
                entry.update(
                    double_value_spec={"min_value": p.low, "max_value": p.high}, scale_type=1
                )
            elif isinstance(p, LogUniform):
                entry.update(
                    double_value_spec={"min_value": p.low, "max_value": p.high}, scale_type=2
                )
            elif isinstance(p, IntRange):
                if p.step == 1:
                    entry.update(
                        integer_value_spec={"min_value": p.low, "max_value": p.high},
                        scale_type=2 if p.log else 1,
                    )
                else:
                    values = [float(v) for v in range(p.low, p.high + 1, p.step)]
                    entry.update(discrete_value_spec={"values": values})
            elif isinstance(p, Choice):
                entry.update(categorical_value_spec={"values": [str(v) for v in p.values]})
            params.append(entry)
        return {
            "metrics": [
                {
                    "metric_id": spec.objective.metric,
                    "goal": 1 if spec.objective.goal == "maximize" else 2,
                }
            ],
            "parameters": params,
            "algorithm": _STRATEGIES[spec.strategy],
        }

    def tune(self, spec: TuningSpec) -> TuningJob:
        from google.cloud import aiplatform_v1 as v1

        package = pkg.trainer_package(spec.train, spec.objective.metric, spec.objective.pattern)
        name = f"{self.config.staging_prefix}/training/{int(time.time() * 1000)}/trainer.tar.gz"
        blob = self._client("storage").bucket(self.config.bucket).blob(name)
        self.call(blob.upload_from_string, package, content_type="application/gzip")
        args = [f"--{k}={v}" for k, v in spec.train.hyperparameters.items()]
        pool = {
            "machine_spec": self._machine(spec.train.compute),
            "replica_count": 1,
            "python_package_spec": {
                "executor_image_uri": spec.train.image or self.config.training_image,
                "package_uris": [f"gs://{self.config.bucket}/{name}"],
                "python_module": pkg.TRAINER_MODULE,
                "args": args,
            },
        }
        job = v1.HyperparameterTuningJob(
            display_name=spec.name or f"cs-tune-{int(time.time())}",
            study_spec=self._study_spec(spec),
            max_trial_count=spec.max_trials,
            parallel_trial_count=spec.parallel_trials,
            trial_job_spec={
                "worker_pool_specs": [pool],
                **({"network": self.config.network} if self.config.network else {}),
                **(
                    {"service_account": self.config.service_account}
                    if self.config.service_account
                    else {}
                ),
            },
            labels=self._labels(),
            **self._encryption(),
        )
        created = self.call(
            self._client("job").create_hyperparameter_tuning_job,
            parent=self.parent,
            hyperparameter_tuning_job=job,
            retry=False,
        )
        return self._to_tuning(created)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        job = self.call(
            self._client("job").get_hyperparameter_tuning_job,
            name=f"{self.parent}/hyperparameterTuningJobs/{job_id}",
        )
        return self._to_tuning(job)

    def _to_tuning(self, job: Any) -> TuningJob:
        metric = job.study_spec.metrics[0]
        goal = "maximize" if int(metric.goal) == 1 else "minimize"
        integers = {p.parameter_id for p in job.study_spec.parameters if "integer_value_spec" in p}
        trials = [self._to_trial(t, integers) for t in job.trials]
        scored = [t for t in trials if t.value is not None]
        pick = max if goal == "maximize" else min
        best = pick(scored, key=lambda t: t.value or 0.0) if scored else None
        return TuningJob(
            id=job.name.rsplit("/", 1)[-1],
            provider=self.name,
            status=_JOB_STATES.get(int(job.state), JobStatus.PENDING),
            objective=metric.metric_id,
            goal=goal,
            trials=trials,
            best_trial=best,
            message=job.error.message or None,
            raw=job,
        )

    @staticmethod
    def _to_trial(t: Any, integers: set[str]) -> Trial:
        from google.protobuf import json_format

        params = {}
        for p in t.parameters:
            value = json_format.MessageToDict(p._pb).get("value")
            # protobuf Values carry every number as a double; integer parameters come back whole.
            params[p.parameter_id] = int(value) if p.parameter_id in integers else value
        values = [m.value for m in t.final_measurement.metrics]
        return Trial(
            id=t.id,
            params=params,
            status=_TRIAL_STATES.get(int(t.state), JobStatus.PENDING),
            value=values[0] if values else None,
            message=t.infeasible_reason or None,
            raw=t,
        )

    # -- monitoring ----------------------------------------------------------------------------

    def _series(
        self, endpoint: str, metric: str, window_s: float, aligner: str
    ) -> list[dict[str, Any]]:
        """Cloud Monitoring ``timeSeries.list`` over REST (the Python client speaks gRPC only)."""
        from datetime import datetime, timedelta, timezone

        from google.api_core import exceptions as gexc

        end = datetime.now(timezone.utc) + timedelta(seconds=1)
        start = end - timedelta(seconds=window_s + 1)
        host = (
            self.config.api_endpoint if self._local_fake() else "https://monitoring.googleapis.com"
        )
        params = {
            "filter": (
                f'metric.type = "{_METRIC_PREFIX}{metric}" AND '
                f'resource.labels.endpoint_id = "{self._endpoint_id(endpoint)}"'
            ),
            "interval.startTime": start.isoformat().replace("+00:00", "Z"),
            "interval.endTime": end.isoformat().replace("+00:00", "Z"),
            "aggregation.alignmentPeriod": f"{int(window_s) + 1}s",
            "aggregation.perSeriesAligner": aligner,
        }
        url = f"{host}/v3/projects/{self.config.project}/timeSeries"
        series: list[dict[str, Any]] = []

        def page(token: str | None) -> dict[str, Any]:
            resp = self._session().get(
                url, params={**params, **({"pageToken": token} if token else {})}
            )
            if resp.status_code >= 400:
                raise gexc.from_http_response(resp)
            return resp.json()

        token = None
        while True:
            doc = self.call(page, token)
            series.extend(doc.get("timeSeries", []))
            token = doc.get("nextPageToken")
            if not token:
                return series

    def _session(self) -> Any:
        """An authorised ``requests`` session for the REST calls the GAPIC clients lack."""
        with self._lock:
            if "session" not in self._clients:
                from google.auth.transport.requests import AuthorizedSession

                self._clients["session"] = AuthorizedSession(self._credentials())
            return self._clients["session"]

    # -- pricing -------------------------------------------------------------------------------

    def refresh_prices(self) -> RefreshResult:
        """On-demand prices in the target's location from the Cloud Billing Catalog API:
        machine types (vCPU and RAM SKUs combined, see ``_pricing``) for hosting, batch and
        training, and GPU add-ons as their own ``accelerator`` rows.

        What has no usable SKU gets no row; it is reported in the result's ``missing``
        (``"n1-standard-4 training"`` → reason) and named in a ``MissingPricesWarning``.
        """
        from cloudserve.pricing.refresh import instance_shapes, warn_missing
        from cloudserve_vertex import _pricing as pricing

        local = self.config.api_endpoint if self._local_fake() else None
        host = local or pricing.BILLING_HOST
        catalog = pricing.BillingCatalog(pricing.authorised_get(self._session, self.call), host)
        shapes = instance_shapes("vertex", pricing.KINDS)
        result = catalog.refresh(self.config.location, shapes, pricing.addon_accelerators())
        warn_missing(self.name, self.config.location, result.missing)
        return result

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        ep = self.get_endpoint(endpoint)
        names = {v.raw.id: v.name for v in ep.variants}
        per: dict[str, VariantMetrics] = {}
        errors: dict[str, int] = {}
        total = 0
        for s in self._series(endpoint, "response_count", window_s, "ALIGN_SUM"):
            count = sum(int(p["value"].get("int64Value", 0)) for p in s.get("points", []))
            labels = s["metric"].get("labels", {})
            variant = names.get(labels.get("deployed_model_id", ""), "")
            vm = per.setdefault(variant, VariantMetrics())
            code = labels.get("response_code", "200")
            vm.invocations += count
            total += count
            if code[:1] in ("4", "5"):
                cls = f"{code[0]}xx"
                errors[cls] = errors.get(cls, 0) + count
                vm.errors[cls] = vm.errors.get(cls, 0) + count
        percentiles: dict[str, float] = {}
        for field, aligner in (
            ("p50_ms", "ALIGN_PERCENTILE_50"),
            ("p95_ms", "ALIGN_PERCENTILE_95"),
            ("p99_ms", "ALIGN_PERCENTILE_99"),
        ):
            for s in self._series(endpoint, "prediction_latencies", window_s, aligner):
                labels = s["metric"].get("labels", {})
                variant = names.get(labels.get("deployed_model_id", ""), "")
                value = max(float(p["value"].get("doubleValue", 0.0)) for p in s["points"])
                setattr(per.setdefault(variant, VariantMetrics()), field, value)
                percentiles[field] = max(percentiles.get(field, 0.0), value)
        return MetricsReport(
            endpoint=endpoint,
            provider=self.name,
            window_s=window_s,
            invocations=total,
            errors=errors,
            per_variant={k: v for k, v in per.items() if k},
            source="Cloud Monitoring aiplatform.googleapis.com/prediction/online/*",
            **percentiles,
        )

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Rows from the endpoint's request-response log within the window.

        Vertex writes the log to BigQuery; cloudserve reads it with the BigQuery client.
        """
        from cloudserve_vertex._capture import read_captured

        ep = self.get_endpoint(endpoint)
        cfg = ep.raw.predict_request_response_logging_config
        if not cfg.enabled:
            raise InvalidRequest(
                f"endpoint {endpoint} was deployed without data capture", provider=self.name
            )
        return read_captured(self, cfg.bigquery_destination.output_uri, window_s)
