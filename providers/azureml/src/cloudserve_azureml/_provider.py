"""The Azure ML provider: managed online endpoints, traffic, scoring, monitoring, registry.

azure-ai-ml and azure-identity are imported inside methods only. Every SDK call runs through
``self._sdk(...)`` (stdout noise → logging, native errors → the cloudserve tree, retry-safe
calls retried by cloudserve's policy — the SDK's own retries are turned off so that one policy
decides).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from cloudserve.errors import (
    CloudServeError,
    InvalidRequest,
    NotFound,
    OperationFailed,
    Timeout,
)
from cloudserve.pricing.refresh import RefreshResult
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.resources import (
    BatchJob,
    Endpoint,
    EndpointStatus,
    MetricsReport,
    ModelVersion,
    Prediction,
    TuningJob,
    Variant,
)
from cloudserve.sizes import resolve_instance
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml._config import AzureMLConfig
from cloudserve_azureml._errors import ERROR_TABLE, ScoringError

__all__ = ["AzureMLProvider"]

log = logging.getLogger("cloudserve.azureml")
T = TypeVar("T")

ARM = "https://management.azure.com"
TAG_VARIANT = "cloudserve-variant"
TAG_MODEL = "cloudserve-model"
TAG_VERSION = "cloudserve-model-version"
TAG_HASH = "cloudserve-spec-hash"
TAG_OWNER = "cloudserve-endpoint"

STATES = {
    "creating": EndpointStatus.CREATING,
    "updating": EndpointStatus.UPDATING,
    "succeeded": EndpointStatus.READY,
    "failed": EndpointStatus.FAILED,
    "canceled": EndpointStatus.FAILED,
    "deleting": EndpointStatus.DELETING,
}


def _status(state: Any) -> EndpointStatus:
    """The shared status of an Azure provisioning state (an enum member or a string)."""
    value = str(getattr(state, "value", state) or "").lower()
    return STATES.get(value, EndpointStatus.UPDATING)


class _LogWriter(io.TextIOBase):
    """A stdout stand-in that sends the SDK's prints to logging, line by line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("azure-ai-ml: %s", line.strip())
        return len(text)


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
        }
    )
    unsupported: ClassVar[dict[Capability, str]] = {
        Capability.SHADOW: (
            "not yet: managed online endpoints mirror traffic (mirror_traffic, at most 50 % in"
            " total), which cloudserve does not map yet"
        ),
        Capability.ROLLOUT: (
            "the rollout state is not yet recorded with Azure ML endpoints (endpoint tags) and"
            " deployments are not yet removed one by one; roll out on the local backend for now"
        ),
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

    def __init__(
        self,
        config: ProviderConfig,
        *,
        target: str | None = None,
        credential: Any = None,
    ):
        if not isinstance(config, AzureMLConfig):
            config = AzureMLConfig.model_validate(config.model_dump())
        super().__init__(config, target=target)
        self.cfg: AzureMLConfig = config
        self._credential = credential
        self._ml: Any = None
        self._arm: Any = None
        self._scoring: dict[str, _ScoringTarget] = {}
        self._batch_outputs: dict[str, str] = {}  # batch job → the local output it fills
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudserve-azureml-")

    # -- SDK plumbing ------------------------------------------------------------------------

    @property
    def credential(self) -> Any:
        """The Azure credential (built once from the config unless one was passed in)."""
        if self._credential is None:
            from azure import identity

            if self.cfg.credential == "service_principal":
                # the config's validator guarantees all three for a service principal
                assert self.cfg.tenant_id and self.cfg.client_id and self.cfg.client_secret
                self._credential = identity.ClientSecretCredential(
                    self.cfg.tenant_id,
                    self.cfg.client_id,
                    self.cfg.client_secret.get_secret_value(),
                )
            else:
                self._credential = identity.DefaultAzureCredential()
        return self._credential

    def _sdk_retry(self) -> dict[str, Any]:
        """azure-core ``RetryPolicy`` settings from the target's retry settings.

        azure-core retries what is safe to repeat — GET, PUT and DELETE (every long-running
        operation's polls among them) on 408/429/5xx and dropped connections, honouring
        ``Retry-After`` — and never a POST.
        """
        r = self.cfg.retry
        return {
            "retry_total": r.max_attempts - 1,
            "retry_backoff_factor": r.initial_backoff_s,
            "retry_backoff_max": r.max_backoff_s,
        }

    @property
    def ml(self) -> Any:
        """The ``MLClient`` for the workspace, with azure-core's retries on (see _sdk_retry)."""
        if self._ml is None:
            with self._quiet():
                from azure.ai.ml import MLClient

                kwargs: dict[str, Any] = {}
                if self.cfg.sdk_polling_interval_s is not None:
                    kwargs["polling_interval"] = self.cfg.sdk_polling_interval_s
                self._ml = MLClient(
                    self.credential,
                    self.cfg.subscription_id,
                    self.cfg.resource_group,
                    self.cfg.workspace,
                    show_progress=False,
                    enable_telemetry=False,
                    **self._sdk_retry(),
                    **kwargs,
                )
            _route_sdk_loggers_to_logging()
        return self._ml

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        # The SDK prints progress and colour resets; they belong in logging, not the terminal.
        writer = _LogWriter()
        with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
            yield

    def _sdk(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the SDK quietly, translating errors (the SDK's pipeline does the retrying)."""

        def quiet() -> T:
            with self._quiet():
                return fn(*args, **kwargs)

        return self.call(quiet, retry=False)

    def _lro(
        self,
        begin: Callable[..., Any],
        *args: Any,
        wait: bool = True,
        deadline: float | None = None,
        progress: ProgressCallback | None = None,
        what: str = "operation",
        **kwargs: Any,
    ) -> Any:
        """Start an ARM long-running operation and, with ``wait``, see it to its end.

        The SDK's poller polls (its requests retried by the pipeline); this waits on it with the
        target's wait settings, reports ``progress`` and gives up at ``deadline`` (a
        ``time.monotonic()`` value) with ``Timeout``. A failed operation is ``OperationFailed``.
        """
        from azure.core.exceptions import HttpResponseError

        poller = self._sdk(begin, *args, **kwargs)
        if not wait:
            return poller
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        self.wait(
            lambda: poller,
            is_done=lambda p: p.done(),
            description=what,
            timeout=remaining,
            progress=progress,
            status_of=lambda p: str(p.status()),
        )
        try:
            return self._sdk(poller.result)
        except CloudServeError as exc:  # a failed operation's final poll answers 200
            cause = exc.__cause__
            if isinstance(cause, HttpResponseError) and (cause.status_code or 500) < 300:
                raise OperationFailed(
                    f"{what} failed: {cause.message or cause}", provider=self.name
                ) from cause
            raise

    def _arm_client(self) -> Any:
        if self._arm is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import (
                BearerTokenCredentialPolicy,
                HeadersPolicy,
                RetryPolicy,
            )

            self._arm = PipelineClient(
                base_url=ARM,
                policies=[
                    HeadersPolicy(),
                    RetryPolicy(**self._sdk_retry()),
                    BearerTokenCredentialPolicy(
                        self.credential, "https://management.azure.com/.default"
                    ),
                ],
            )
        return self._arm

    def _arm_request(self, method: str, resource_id: str, **params: str) -> Any:
        """One raw ARM REST call (for routes the SDK does not wrap); JSON body or None."""
        from azure.core.rest import HttpRequest

        def send() -> Any:
            req = HttpRequest(method, f"{ARM}{resource_id}", params=params)
            resp = self._arm_client().send_request(req)
            resp.raise_for_status()
            return resp.json() if resp.text() else None

        return self.call(send, retry=False)  # the pipeline's RetryPolicy retries

    def _workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.cfg.subscription_id}/resourceGroups/{self.cfg.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.cfg.workspace}"
        )

    def _datastore_container(self, name: str | None = None) -> Any:
        """A blob ``ContainerClient`` for a datastore (the workspace default when ``name`` is
        None): with its account key when it has one; with the caller's Microsoft Entra
        credential when the workspace's storage has shared-key access disabled (the datastore
        then holds no key, and asking for its secrets fails)."""
        from azure.storage.blob import ContainerClient

        get = self.ml.datastores.get_default if name is None else self.ml.datastores.get
        args = () if name is None else (name,)
        store = self._sdk(get, *args)
        credential: Any = self.credential
        if type(store.credentials).__name__ == "AccountKeyConfiguration":
            credential = self._sdk(get, *args, include_secrets=True).credentials.account_key
        return ContainerClient(
            account_url=f"https://{store.account_name}.blob.{store.endpoint}",
            container_name=store.container_name,
            credential=credential,
        )

    def _delete_asset(self, asset_id: str) -> None:
        """Delete a model / environment / code version by ARM id (missing is fine)."""
        path = asset_id[asset_id.index("/subscriptions/") :]
        with contextlib.suppress(NotFound):
            self._arm_request("DELETE", path, **{"api-version": "2024-10-01"})

    def close(self) -> None:
        """Drop the SDK clients and temporary files."""
        self._ml = None
        self._arm = None
        self._tmp.cleanup()

    # -- validation --------------------------------------------------------------------------

    def validate(self, spec: Any) -> None:
        """Reject what Azure ML cannot honour, before any request."""
        super().validate(spec)
        if isinstance(spec, DeploySpec):
            self._validate_deploy(spec)
        elif isinstance(spec, BatchSpec):
            from cloudserve_azureml._batch import validate_batch

            validate_batch(self, spec)
        elif isinstance(spec, TuningSpec):
            from cloudserve_azureml._tuning import validate_tuning

            validate_tuning(self, spec)

    def _validate_deploy(self, spec: DeploySpec) -> None:
        if not pkg.valid_name(spec.endpoint):
            raise InvalidRequest(
                f"endpoint: Azure endpoint names are 3–32 characters, a letter first, then "
                f"letters, digits and '-', not ending in '-': '{spec.endpoint}'",
                provider=self.name,
            )
        if spec.compute.accelerator and not spec.compute.instance_type:
            raise InvalidRequest(
                "Azure instance types include their GPU: pick a gpu.* size or an instance_type",
                provider=self.name,
            )
        if spec.model.artifact is None:
            raise InvalidRequest(
                "Azure ML needs a model artifact to register, also on the container route",
                provider=self.name,
            )
        self._instance_type(spec)

    def _instance_type(self, spec: DeploySpec | BatchSpec) -> str:
        choice = resolve_instance(self.name, spec.compute.size, spec.compute.instance_type)
        return spec.compute.instance_type if choice is None else choice.instance_type  # type: ignore[return-value]

    # -- deploy ------------------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create or update the endpoint; blue/green at ``traffic=100``, canary below.

        ``timeout`` bounds the whole deploy (the target's ``deploy_timeout_s`` by default);
        ``progress`` sees every poll. With ``wait=False`` the deployment is started and the
        endpoint returned at once; traffic moves once it is ready, when ``deploy`` is called
        again with the same spec (which then only waits for it and moves traffic).
        """
        deadline = time.monotonic() + (timeout or self.cfg.waits.deploy_timeout_s)
        steps = _Steps(wait=wait, deadline=deadline, progress=progress)
        existing = self._find_endpoint(spec.endpoint)
        dep_name = pkg.deployment_name(spec.variant_name)
        digest = pkg.spec_hash(spec)
        current: dict[str, Any] = {}
        if existing is not None:
            current = self._deployments(spec.endpoint)
            same = current.get(dep_name)
            unchanged = same is not None and (same.tags or {}).get(TAG_HASH) == digest
            wanted = self._traffic_after(existing, current, dep_name, spec.traffic)
            if unchanged and wanted == dict(existing.traffic or {}):
                return self.get_endpoint(spec.endpoint)
        created: list[str] = []
        previous = current.get(dep_name)
        try:
            if existing is None:
                created.append(f"endpoint:{spec.endpoint}")  # before the call: it may half-fail
                self._create_endpoint(spec, steps)
            if previous is None or (previous.tags or {}).get(TAG_HASH) != digest:
                if previous is not None:  # a PUT while Azure still works on it is a 409
                    self._await_deployment(spec.endpoint, dep_name, steps, require_ready=False)
                model_id = self._register(spec.model, owner=spec.endpoint, created=created)
                if previous is None:  # an in-place update must never delete what it updates
                    created.append(f"deployment:{dep_name}")
                self._create_deployment(spec, dep_name, model_id, digest, created, steps)
                if not wait:
                    return self.get_endpoint(spec.endpoint)
            else:
                self._await_deployment(spec.endpoint, dep_name, steps)
            self._shift_traffic(spec, dep_name, steps)
            if previous is not None and (previous.tags or {}).get(TAG_HASH) != digest:
                self._delete_replaced_assets(spec.endpoint, previous)
        except Timeout:
            raise  # Azure is still working on it: nothing is rolled back under its feet
        except Exception as exc:
            err = self.translate(exc)
            if not spec.keep_on_failure:
                self._roll_back(spec, dep_name, created)
            raise err from exc
        return self.get_endpoint(spec.endpoint)

    def _find_endpoint(self, name: str) -> Any:
        try:
            return self._sdk(self.ml.online_endpoints.get, name)
        except NotFound:
            return None

    def _create_endpoint(self, spec: DeploySpec, steps: _Steps) -> Any:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(
            name=spec.endpoint,
            auth_mode="key",
            tags={**self.cfg.tags, **spec.tags, "cloudserve": "true"},
        )
        # the deployment needs the endpoint: waited for even with wait=False
        return self._lro(
            self.ml.online_endpoints.begin_create_or_update,
            endpoint,
            **steps.lro(f"endpoint {spec.endpoint}", wait=True),
        )

    def _await_deployment(
        self, endpoint: str, dep_name: str, steps: _Steps, *, require_ready: bool = True
    ) -> None:
        """Wait until a deployment a previous call started is no longer provisioning (and,
        with ``require_ready``, fail unless it succeeded)."""
        dep = self.wait(
            lambda: self._sdk(self.ml.online_deployments.get, dep_name, endpoint),
            is_done=lambda d: (
                _status(d.provisioning_state)
                not in (EndpointStatus.CREATING, EndpointStatus.UPDATING)
            ),
            description=f"deployment {dep_name}",
            timeout=steps.remaining(),
            progress=steps.progress,
            status_of=lambda d: str(d.provisioning_state),
        )
        if require_ready and _status(dep.provisioning_state) is not EndpointStatus.READY:
            raise OperationFailed(
                f"deployment {dep_name} is {dep.provisioning_state}; deploy again to replace it",
                provider=self.name,
            )

    def _register(self, model: ModelSpec, *, owner: str | None, created: list[str]) -> str:
        """The ARM id of the model version, registering it when it is new."""
        from azure.ai.ml.entities import Model

        try:
            found = self._sdk(self.ml.models.get, model.name, model.version)
            return str(found.id)
        except NotFound:
            pass
        tags = {**self.cfg.tags, **model.tags}
        if model.framework:
            tags["cloudserve-framework"] = model.framework
        if owner:
            tags[TAG_OWNER] = owner
        asset = Model(
            name=model.name,
            version=model.version,
            path=model.artifact,
            type="mlflow_model" if model.framework == "mlflow" else "custom_model",
            tags=tags,
        )
        registered = self._sdk(self.ml.models.create_or_update, asset)
        created.append(f"asset:{registered.id}")
        return str(registered.id)

    def _environment(self, spec: DeploySpec, dep_name: str, created: list[str]) -> Any:
        from azure.ai.ml.entities import Environment

        name = pkg.asset_name("cs", spec.endpoint, dep_name)
        if spec.model.image:
            env = Environment(
                name=name,
                version=pkg.content_version(spec.model.image, pkg.inference_config()),
                image=spec.model.image,
                inference_config=pkg.inference_config(),
            )
        else:
            conda = pkg.conda_file(self._serving_requirements(spec))
            env = Environment(
                name=name,
                version=pkg.content_version(conda, self.cfg.environment_image),
                image=self.cfg.environment_image,
                conda_file=conda,
            )
        return self._ensure_asset(self.ml.environments, env, created)

    def _ensure_asset(self, operations: Any, asset: Any, created: list[str]) -> Any:
        """The asset version, created when it does not exist yet (and only then recorded in
        ``created``: a rollback must not delete a version another deployment uses)."""
        try:
            return self._sdk(operations.get, asset.name, asset.version)
        except NotFound:
            pass
        made = self._sdk(operations.create_or_update, asset)
        created.append(f"asset:{made.id}")
        return made

    def _serving_requirements(self, spec: DeploySpec) -> list[str]:
        """The scoring environment's pip lines: the inference server and the model's pins."""
        assert spec.model.artifact is not None  # validate() guarantees it
        pip = [
            pkg.INFERENCE_SERVER,
            *pkg.model_requirements(spec.model.artifact, spec.model.framework),
        ]
        if spec.data_capture is not None and spec.data_capture.enabled:
            pip += pkg.capture_requirements()
        return [*pip, *self.cfg.extra_requirements]

    def _create_deployment(
        self,
        spec: DeploySpec,
        dep_name: str,
        model_id: str,
        digest: str,
        created: list[str],
        steps: _Steps,
    ) -> None:
        from azure.ai.ml.entities import (
            CodeConfiguration,
            ManagedOnlineDeployment,
            OnlineRequestSettings,
            ProbeSettings,
        )

        env = self._environment(spec, dep_name, created)
        code = None
        env_vars = dict(spec.model.env)
        if not spec.model.image:
            code_id = self._upload_code(spec, dep_name, created)
            code = CodeConfiguration(code=code_id, scoring_script=pkg.SCORE_NAME)
            env_vars.update(pkg.scoring_env_vars(spec))
        probe = ProbeSettings(initial_delay=10, period=10, timeout=2, failure_threshold=30)
        deployment = ManagedOnlineDeployment(
            name=dep_name,
            endpoint_name=spec.endpoint,
            model=model_id,
            environment=env.id,
            code_configuration=code,
            environment_variables=env_vars or None,
            instance_type=self._instance_type(spec),
            instance_count=spec.compute.replicas,
            request_settings=OnlineRequestSettings(
                request_timeout_ms=self.cfg.request_timeout_ms,
                max_concurrent_requests_per_instance=spec.compute.max_concurrency or 1,
            ),
            liveness_probe=probe,
            readiness_probe=probe,
            data_collector=self._data_collector(spec),
            tags={
                **self.cfg.tags,
                **spec.tags,
                TAG_VARIANT: spec.variant_name,
                TAG_MODEL: spec.model.name,
                TAG_VERSION: spec.model.version,
                TAG_HASH: digest,
            },
        )
        self._lro(
            self.ml.online_deployments.begin_create_or_update,
            deployment,
            **steps.lro(f"deployment {dep_name}"),
        )

    def _upload_code(self, spec: DeploySpec, dep_name: str, created: list[str]) -> str:
        """Upload the generated scoring script as a named code asset; returns its ARM id.

        Uploading it ourselves (rather than letting the deployment upload a path) gives the
        asset a name we know, so a failed deploy and a delete can remove it. MLClient has no
        public accessor for its code operations, hence ``_code``.
        """
        from azure.ai.ml.entities._assets import Code

        code_dir = pkg.scoring_code(Path(self._tmp.name) / f"{spec.endpoint}-{dep_name}")
        asset = Code(
            name=pkg.asset_name("cs", spec.endpoint, dep_name, "score"),
            version=pkg.code_digest(code_dir),
            path=str(code_dir),
        )
        return str(self._ensure_asset(self.ml._code, asset, created).id)

    def _data_collector(self, spec: DeploySpec) -> Any:
        if spec.data_capture is None or not spec.data_capture.enabled:
            return None
        from azure.ai.ml.entities import DataCollector, DeploymentCollection

        collections = {"model_inputs": DeploymentCollection(enabled="true")}
        if spec.data_capture.capture_responses:
            collections["model_outputs"] = DeploymentCollection(enabled="true")
        return DataCollector(collections=collections, sampling_rate=spec.data_capture.sampling_rate)

    @staticmethod
    def _traffic_after(
        endpoint: Any, deployments: dict[str, Any], dep_name: str, share: int
    ) -> dict[str, int]:
        """The split once ``dep_name`` has ``share`` percent (others keep their proportions).

        With no other deployment to take the rest, the new one takes all of it: Azure's split
        must sum to 100 (or be empty).
        """
        if share == 100 or not any(n != dep_name for n in deployments):
            return {dep_name: 100}
        others = {k: int(v) for k, v in (endpoint.traffic or {}).items() if k != dep_name}
        rest = 100 - share
        total = sum(others.values())
        if total == 0:
            names = [n for n in deployments if n != dep_name]
            others = dict.fromkeys(names, 1)
            total = len(names) or 1
        split = {k: rest * v // total for k, v in others.items()}
        if split:
            biggest = max(split, key=lambda k: others[k])
            split[biggest] += rest - sum(split.values())
        split[dep_name] = share
        return split

    def _shift_traffic(self, spec: DeploySpec, dep_name: str, steps: _Steps) -> None:
        """Move traffic to the new deployment; at 100 % drain and delete the others."""
        endpoint = self._sdk(self.ml.online_endpoints.get, spec.endpoint)
        deployments = self._deployments(spec.endpoint)
        endpoint.traffic = self._traffic_after(endpoint, deployments, dep_name, spec.traffic)
        self._lro(
            self.ml.online_endpoints.begin_create_or_update,
            endpoint,
            **steps.lro(f"traffic of {spec.endpoint}", wait=True),
        )
        if spec.traffic == 100:
            for name, dep in deployments.items():
                if name != dep_name:
                    self._delete_deployment(spec.endpoint, dep)
        self._scoring.pop(spec.endpoint, None)

    def _delete_deployment(self, endpoint: str, dep: Any) -> None:
        """Delete a deployment and the assets cloudserve made for it alone."""
        self._lro(self.ml.online_deployments.begin_delete, name=dep.name, endpoint_name=endpoint)
        self._delete_owned_assets(endpoint, [dep])

    def _delete_replaced_assets(self, endpoint: str, previous: Any) -> None:
        """After an in-place update, drop the assets only the replaced revision used."""
        current = self._deployments(endpoint).get(previous.name)
        keep = set()
        if current is not None:
            keep = {
                str(current.model),
                str(current.environment),
                str(getattr(current.code_configuration, "code", "")),
            }
        for asset in (getattr(previous.code_configuration, "code", None), previous.environment):
            if isinstance(asset, str) and "/subscriptions/" in asset and asset not in keep:
                self._delete_asset(asset)
        if isinstance(previous.model, str) and previous.model not in keep:
            self._delete_model_if_owned(previous.model, endpoint)

    def _delete_owned_assets(self, endpoint: str, deployments: list[Any]) -> None:
        for dep in deployments:
            code = getattr(getattr(dep, "code_configuration", None), "code", None)
            for asset in (code, getattr(dep, "environment", None), *_collector_data(dep)):
                if isinstance(asset, str) and "/subscriptions/" in asset:
                    self._delete_asset(asset)
            model = getattr(dep, "model", None)
            if isinstance(model, str) and "/subscriptions/" in model:
                self._delete_model_if_owned(model, endpoint)

    def _delete_model_if_owned(self, model_id: str, endpoint: str) -> None:
        """Models a deploy registered for this endpoint go with it; registered ones stay."""
        parts = model_id.rstrip("/").split("/")
        try:
            model = self._sdk(self.ml.models.get, parts[-3], parts[-1])
        except NotFound:
            return
        if (model.tags or {}).get(TAG_OWNER) == endpoint:
            self._delete_asset(model_id)

    def _roll_back(self, spec: DeploySpec, dep_name: str, created: list[str]) -> None:
        """Remove what a failed deploy created (best effort, logged, never masking the error)."""
        for item in reversed(created):
            kind, _, ref = item.partition(":")
            try:
                if kind == "endpoint":
                    self.delete_endpoint(ref)
                elif kind == "deployment":
                    with contextlib.suppress(NotFound):
                        self._lro(
                            self.ml.online_deployments.begin_delete,
                            name=ref,
                            endpoint_name=spec.endpoint,
                        )
                else:
                    self._delete_asset(ref)
            except CloudServeError as exc:
                log.warning("could not remove %s after a failed deploy: %s", item, exc)

    # -- read ----------------------------------------------------------------------------------

    def _deployments(self, endpoint: str) -> dict[str, Any]:
        items = self._sdk(lambda: list(self.ml.online_deployments.list(endpoint_name=endpoint)))
        return {d.name: d for d in items}

    def _variant(self, dep: Any, weight: int) -> Variant:
        tags = dep.tags or {}
        model_ref = str(dep.model or "")
        parts = model_ref.rstrip("/").split("/")
        return Variant(
            name=tags.get(TAG_VARIANT, dep.name),
            model_name=tags.get(TAG_MODEL, parts[-3] if len(parts) >= 3 else model_ref),
            model_version=tags.get(TAG_VERSION, parts[-1] if parts else ""),
            weight=weight,
            instance_type=dep.instance_type,
            replicas=dep.instance_count or 1,
            status=_status(dep.provisioning_state),
        )

    def _to_endpoint(self, ep: Any, deployments: dict[str, Any]) -> Endpoint:
        traffic = {k.lower(): int(v) for k, v in (ep.traffic or {}).items()}
        variants = [self._variant(d, traffic.get(n.lower(), 0)) for n, d in deployments.items()]
        return Endpoint(
            name=ep.name,
            provider=self.name,
            status=_status(ep.provisioning_state),
            variants=variants,
            url=ep.scoring_uri,
            tags=dict(ep.tags or {}),
            raw=ep._to_dict() if hasattr(ep, "_to_dict") else ep,
        )

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint, its deployments as variants and their traffic."""
        ep = self._sdk(self.ml.online_endpoints.get, name)
        return self._to_endpoint(ep, self._deployments(name))

    def list_endpoints(self) -> list[Endpoint]:
        """Every online endpoint of the workspace."""
        eps = self._sdk(lambda: list(self.ml.online_endpoints.list()))
        return [self._to_endpoint(ep, self._deployments(ep.name)) for ep in eps]

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Delete the endpoint with its deployments and the assets deploys made for it."""
        try:
            deployments = list(self._deployments(name).values())
        except NotFound:
            return
        with contextlib.suppress(NotFound):
            self._lro(self.ml.online_endpoints.begin_delete, name=name)
        self._delete_owned_assets(name, deployments)
        self._scoring.pop(name, None)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Set the split across variants (names as cloudserve shows them)."""
        if sum(weights.values()) != 100:
            raise InvalidRequest("traffic weights must sum to 100", provider=self.name)
        ep = self._sdk(self.ml.online_endpoints.get, endpoint)
        deployments = self._deployments(endpoint)
        by_variant = {(d.tags or {}).get(TAG_VARIANT, n): n for n, d in deployments.items()}
        unknown = sorted(set(weights) - set(by_variant))
        if unknown:
            raise InvalidRequest(f"unknown variants: {unknown}", provider=self.name)
        ep.traffic = {by_variant[v]: weights.get(v, 0) for v in by_variant}
        self._lro(self.ml.online_endpoints.begin_create_or_update, ep)
        return self.get_endpoint(endpoint)

    # -- predict -------------------------------------------------------------------------------

    def _scoring_target(self, endpoint: str, *, refresh: bool = False) -> _ScoringTarget:
        """The endpoint's scoring URI, key and deployments: fetched once (3 ARM calls), then
        kept, so predictions make no ARM call; refetched after a 401 (keys rotated) or a 404
        (deployments changed), or when a deployment this process does not know answers."""
        if refresh or endpoint not in self._scoring:
            ep = self._sdk(self.ml.online_endpoints.get, endpoint)
            keys = self._sdk(self.ml.online_endpoints.get_keys, endpoint)
            self._scoring[endpoint] = _ScoringTarget(
                ep.scoring_uri, keys.primary_key, self._deployments(endpoint)
            )
        return self._scoring[endpoint]

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Score through the endpoint's URI; large inputs go as concurrent chunks, in order."""
        from cloudserve.codecs import split_for_limit

        header = None
        if variant is not None:
            header = self._scoring_target(endpoint).deployment_of(variant)
            if header is None:
                header = self._scoring_target(endpoint, refresh=True).deployment_of(variant)
            if header is None:
                raise NotFound(f"variant {variant} not found on {endpoint}", provider=self.name)
        chunks = split_for_limit(instances, int(self.cfg.max_request_mb * 1024 * 1024))
        start = time.perf_counter()
        if len(chunks) == 1:
            results = [self._score_chunk(endpoint, chunks[0], header, parameters)]
        else:
            with ThreadPoolExecutor(min(self.cfg.predict_concurrency, len(chunks))) as pool:
                results = list(
                    pool.map(lambda c: self._score_chunk(endpoint, c, header, parameters), chunks)
                )
        outputs = [o for r in results for o in r[0]]
        served = results[0][1]
        target = self._scoring_target(endpoint)
        if served and served not in target.deployments:
            target = self._scoring_target(endpoint, refresh=True)
        dep = target.deployments.get(served or "")
        var = self._variant(dep, 0) if dep is not None else None
        return Prediction(
            outputs=outputs,
            model_version=var.model_version if var else None,
            variant=var.name if var else served,
            latency_ms=(time.perf_counter() - start) * 1000,
        )

    def _score_chunk(
        self,
        endpoint: str,
        rows: list[Any],
        deployment: str | None,
        parameters: dict[str, Any] | None,
    ) -> tuple[list[Any], str | None]:
        body = _request_body(rows, parameters)

        def attempt() -> tuple[list[Any], str | None]:
            try:
                return self._post_score(endpoint, body, deployment)
            except ScoringError as exc:
                if exc.status not in (401, 404):
                    raise
                # keys rotated or deployments changed since they were cached: fetch once more
                self._scoring_target(endpoint, refresh=True)
                return self._post_score(endpoint, body, deployment)

        return self.call(attempt)

    def _post_score(
        self, endpoint: str, body: bytes, deployment: str | None
    ) -> tuple[list[Any], str | None]:
        import requests

        from cloudserve.codecs import JSON, decode_predictions

        target = self._scoring_target(endpoint)
        headers = {"Authorization": f"Bearer {target.key}", "Content-Type": JSON}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        timeout = self.cfg.request_timeout_ms / 1000 + 5
        resp = requests.post(target.uri, data=body, headers=headers, timeout=timeout)
        if resp.status_code >= 300:
            raise ScoringError.from_response(resp.status_code, resp.headers, resp.text)
        outputs = decode_predictions(resp.content, resp.headers.get("Content-Type", JSON))
        return outputs, resp.headers.get("azureml-model-deployment")

    # -- batch, tuning ----------------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """Score ``spec.input`` through a batch endpoint (see ``_batch``)."""
        from cloudserve_azureml import _batch

        return _batch.batch_predict(self, spec)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """A batch job's state; once it succeeded, its rows counted and a local output filled."""
        from cloudserve_azureml._batch import get_batch_job

        return get_batch_job(self, job_id)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """Run a sweep job over the search space (see ``_tuning``)."""
        from cloudserve_azureml import _tuning

        return _tuning.tune(self, spec)

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """A sweep's state, its trials and the best trial so far."""
        from cloudserve_azureml._tuning import get_tuning_job

        return get_tuning_job(self, job_id)

    # -- monitoring, registry ------------------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """Azure Monitor metrics of the endpoint over the window."""
        from cloudserve_azureml._monitor import endpoint_metrics

        return endpoint_metrics(self, endpoint, window_s)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Rows the deployments' data collectors wrote over the window."""
        from cloudserve_azureml._monitor import captured_rows

        return captured_rows(self, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """Register (or find) the model version, with lineage as tags."""
        from azure.ai.ml.entities import Model

        try:
            found = self._sdk(self.ml.models.get, model.name, model.version)
        except NotFound:
            tags = {**self.cfg.tags, **model.tags}
            tags.update({f"lineage.{k}": json.dumps(v, default=str) for k, v in lineage.items()})
            if model.framework:
                tags["cloudserve-framework"] = model.framework
            asset = Model(
                name=model.name,
                version=model.version,
                path=model.artifact,
                type="mlflow_model" if model.framework == "mlflow" else "custom_model",
                tags=tags,
            )
            found = self._sdk(self.ml.models.create_or_update, asset)
        return self._model_version(found)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions (every model's, or one model's)."""
        if name is not None:
            try:
                items = self._sdk(lambda: list(self.ml.models.list(name=name)))
            except NotFound:
                return []
            return [self._model_version(m) for m in items]
        names = [m.name for m in self._sdk(lambda: list(self.ml.models.list()))]
        return [mv for n in names for mv in self.list_models(n)]

    def _model_version(self, model: Any) -> ModelVersion:
        tags = dict(model.tags or {})
        lineage = {
            k[len("lineage.") :]: json.loads(v) for k, v in tags.items() if k.startswith("lineage.")
        }
        return ModelVersion(
            name=model.name,
            version=str(model.version),
            provider=self.name,
            uri=model.path,
            framework=tags.get("cloudserve-framework"),
            created_at=getattr(model.creation_context, "created_at", None),
            lineage=lineage,
            tags={k: v for k, v in tags.items() if not k.startswith("lineage.")},
            raw=model,
        )

    def region(self) -> str | None:
        """The workspace region (from the config; pricing uses it)."""
        return self.cfg.region

    # -- pricing -------------------------------------------------------------------------------

    def refresh_prices(self) -> RefreshResult:
        """Linux pay-as-you-go prices of the catalog's Azure ML instance types in the target's
        region (``eastus`` when the config names none), from the Azure Retail Prices API.

        Each VM meter gives a ``hosting``, ``batch`` and ``training`` row (Azure ML bills the
        VM price for all three). Instance types without a usable meter get no row; they are
        reported in the result's ``missing`` (type → reason) and named in a
        ``MissingPricesWarning``.
        """
        from cloudserve.pricing import DEFAULT_REGIONS
        from cloudserve.pricing.refresh import instance_shapes, warn_missing
        from cloudserve_azureml import _pricing

        region = self.cfg.region or DEFAULT_REGIONS[self.name]
        shapes = instance_shapes("azureml", _pricing.KINDS)
        result = _pricing.RetailPrices(self.call).refresh(region, shapes)
        warn_missing(self.name, region, result.missing)
        return result


@dataclass(frozen=True)
class _ScoringTarget:
    """What predictions need from ARM, cached per endpoint."""

    uri: str
    key: str
    deployments: dict[str, Any]

    def deployment_of(self, variant: str) -> str | None:
        """The deployment serving a variant (by its ``cloudserve-variant`` tag, else its name)."""
        for name, dep in self.deployments.items():
            if (dep.tags or {}).get(TAG_VARIANT, name) == variant:
                return name
        return None


@dataclass(frozen=True)
class _Steps:
    """How one deploy waits: whether, until when (``time.monotonic()``), with what progress."""

    wait: bool
    deadline: float
    progress: ProgressCallback | None

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001)

    def lro(self, what: str, *, wait: bool | None = None) -> dict[str, Any]:
        """Keyword arguments of ``_lro`` for one step of the deploy."""
        return {
            "wait": self.wait if wait is None else wait,
            "deadline": self.deadline,
            "progress": self.progress,
            "what": what,
        }


def _collector_data(dep: Any) -> list[str]:
    """ARM ids of the data assets a deployment's data collector writes to."""
    collector = getattr(dep, "data_collector", None)
    ids = []
    for collection in (getattr(collector, "collections", None) or {}).values():
        data = getattr(collection, "data", None)
        ref = getattr(data, "id", data)
        if isinstance(ref, str):
            ids.append(ref)
    return ids


def _route_sdk_loggers_to_logging() -> None:
    """Let the SDK's loggers propagate instead of writing to the terminal themselves.

    azure-ai-ml gives some module loggers their own stream handler and ``propagate=False``
    ("Check: endpoint … exists"); removing those handlers leaves the messages to the
    application's logging configuration.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not name.startswith("azure.ai.ml") or not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def _request_body(rows: list[Any], parameters: dict[str, Any] | None) -> bytes:
    """The scoring request: cloudserve's JSON instances body, with ``parameters`` when given."""
    from cloudserve.codecs import encode_instances

    if not parameters:
        return encode_instances(rows)
    import orjson

    return orjson.dumps({"instances": rows, "parameters": parameters})
