"""Online endpoints: deploy (blue/green, canary), update, roll back, read, delete, traffic.

A variant is a ``ManagedOnlineDeployment`` named from it (``pkg.deployment_name``); its spec
hash, variant and model are kept in tags, so the same spec again is a no-op and a changed one an
in-place update. A deploy that fails removes only what *it* created.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from cloudserve.errors import CloudServeError, InvalidRequest, NotFound, OperationFailed, Timeout
from cloudserve.packed import TaggedState
from cloudserve.resources import Endpoint, EndpointStatus, Variant
from cloudserve.specs import DeploySpec
from cloudserve.waiting import ProgressCallback
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml import _shadow
from cloudserve_azureml._api import PROVIDER, AzureApi
from cloudserve_azureml._model_registry import delete_if_owned, register
from cloudserve_azureml._states import endpoint_status
from cloudserve_azureml._validate import instance_type

#: a rollout's state in the endpoint's tags (see _rollout); hidden from ``Endpoint.tags``
ROLLOUT_STATE = TaggedState(
    "cloudserve-rollout-", what="rollout state", provider=PROVIDER, cloud="Azure"
)

__all__ = [
    "TAG_VARIANT",
    "delete_endpoint",
    "deploy",
    "get_endpoint",
    "list_deployments",
    "list_endpoints",
    "set_traffic",
    "to_endpoint",
    "variant",
]

log = logging.getLogger("cloudserve.azureml")

TAG_VARIANT = "cloudserve-variant"
TAG_MODEL = "cloudserve-model"
TAG_VERSION = "cloudserve-model-version"
TAG_HASH = "cloudserve-spec-hash"


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


def deploy(
    api: AzureApi,
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
    image = pkg.container_image(spec.model, api.cfg.serving_image, None)
    if image and not spec.model.image:  # the target's serving_image serves this model
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"image": image})})
    if not spec.model.image:  # a pickle Azure cannot serve is refused before any request
        _serving_requirements(api, spec)
    deadline = time.monotonic() + (timeout or api.cfg.waits.deploy_timeout_s)
    steps = _Steps(wait=wait, deadline=deadline, progress=progress)
    existing = _find_endpoint(api, spec.endpoint)
    dep_name = pkg.deployment_name(spec.variant_name)
    digest = pkg.spec_hash(spec)
    current: dict[str, Any] = {}
    serving: list[Any] = []  # the live deployments a shadow mirrors (their request log must be on)
    if spec.shadow and existing is None:
        raise InvalidRequest(
            f"a shadow mirrors the requests {spec.endpoint}'s live deployments answer, and"
            f" {spec.endpoint} does not exist; deploy the live variant first",
            provider=PROVIDER,
        )
    if existing is not None:
        current = list_deployments(api, spec.endpoint)
        if spec.shadow:  # every rule is checked before anything changes
            serving = _shadow.check(existing, current, dep_name)
        same = current.get(dep_name)
        unchanged = same is not None and (same.tags or {}).get(TAG_HASH) == digest
        if spec.shadow:
            done = _shadow.mirror_of(existing) == {dep_name.lower(): spec.shadow} and all(
                _shadow.logs_requests(d) for d in serving
            )
        else:
            done = _traffic_after(existing, current, dep_name, spec.traffic) == dict(
                existing.traffic or {}
            )
        if unchanged and done:
            return get_endpoint(api, spec.endpoint)
    # while an endpoint mirrors, every deployment that may answer callers logs its requests
    request_log = bool(spec.shadow) or bool(existing and _shadow.mirror_of(existing))
    created: list[str] = []
    previous = current.get(dep_name)
    try:
        if existing is None:
            created.append(f"endpoint:{spec.endpoint}")  # before the call: it may half-fail
            _create_endpoint(api, spec, steps)
        for live in serving:
            _turn_on_request_log(api, spec.endpoint, live, steps)
        if previous is None or (previous.tags or {}).get(TAG_HASH) != digest:
            if previous is not None:  # a PUT while Azure still works on it is a 409
                _await_deployment(api, spec.endpoint, dep_name, steps, require_ready=False)
            model_id = register(api, spec.model, owner=spec.endpoint, created=created)
            if previous is None:  # an in-place update must never delete what it updates
                created.append(f"deployment:{dep_name}")
            _create_deployment(
                api, spec, dep_name, model_id, digest, created, steps, request_log=request_log
            )
            if not wait:
                return get_endpoint(api, spec.endpoint)
        else:
            _await_deployment(api, spec.endpoint, dep_name, steps)
        if spec.shadow:
            _mirror(api, spec, dep_name, steps)
        else:
            _shift_traffic(api, spec, dep_name, steps)
        if previous is not None and (previous.tags or {}).get(TAG_HASH) != digest:
            _delete_replaced_assets(api, spec.endpoint, previous)
    except Timeout:
        raise  # Azure is still working on it: nothing is rolled back under its feet
    except Exception as exc:
        err = api.translate(exc)
        if not spec.keep_on_failure:
            _roll_back(api, spec, dep_name, created)
        raise err from exc
    return get_endpoint(api, spec.endpoint)


def _find_endpoint(api: AzureApi, name: str) -> Any:
    try:
        return api.sdk(api.ml.online_endpoints.get, name)
    except NotFound:
        return None


def _create_endpoint(api: AzureApi, spec: DeploySpec, steps: _Steps) -> Any:
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    endpoint = ManagedOnlineEndpoint(
        name=spec.endpoint,
        auth_mode="key",
        tags={**api.cfg.tags, **spec.tags, "cloudserve": "true"},
    )
    # the deployment needs the endpoint: waited for even with wait=False
    return api.lro(
        api.ml.online_endpoints.begin_create_or_update,
        endpoint,
        **steps.lro(f"endpoint {spec.endpoint}", wait=True),
    )


def _await_deployment(
    api: AzureApi, endpoint: str, dep_name: str, steps: _Steps, *, require_ready: bool = True
) -> None:
    """Wait until a deployment a previous call started is no longer provisioning (and,
    with ``require_ready``, fail unless it succeeded)."""
    dep = api.wait(
        lambda: api.sdk(api.ml.online_deployments.get, dep_name, endpoint),
        is_done=lambda d: (
            endpoint_status(d.provisioning_state)
            not in (EndpointStatus.CREATING, EndpointStatus.UPDATING)
        ),
        description=f"deployment {dep_name}",
        timeout=steps.remaining(),
        progress=steps.progress,
        status_of=lambda d: str(d.provisioning_state),
    )
    if require_ready and endpoint_status(dep.provisioning_state) is not EndpointStatus.READY:
        raise OperationFailed(
            f"deployment {dep_name} is {dep.provisioning_state}; deploy again to replace it",
            provider=PROVIDER,
        )


def _environment(
    api: AzureApi, spec: DeploySpec, dep_name: str, created: list[str], request_log: bool
) -> Any:
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
        conda = pkg.conda_file(_serving_requirements(api, spec, request_log=request_log))
        env = Environment(
            name=name,
            version=pkg.content_version(conda, api.cfg.environment_image),
            image=api.cfg.environment_image,
            conda_file=conda,
        )
    return api.ensure_asset(api.ml.environments, env, created)


def _serving_requirements(
    api: AzureApi, spec: DeploySpec, *, request_log: bool = False
) -> list[str]:
    """The scoring environment's pip lines: the inference server and the model's pins, and
    the data collector's packages for data capture or the request log."""
    assert spec.model.artifact is not None  # validate() guarantees it
    pip = [
        pkg.INFERENCE_SERVER,
        *pkg.model_requirements(spec.model.artifact, spec.model.framework),
    ]
    if request_log or (spec.data_capture is not None and spec.data_capture.enabled):
        pip += pkg.capture_requirements()
    return [*pip, *api.cfg.extra_requirements]


def _create_deployment(
    api: AzureApi,
    spec: DeploySpec,
    dep_name: str,
    model_id: str,
    digest: str,
    created: list[str],
    steps: _Steps,
    *,
    request_log: bool = False,
) -> None:
    from azure.ai.ml.entities import (
        CodeConfiguration,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
        ProbeSettings,
    )

    env = _environment(api, spec, dep_name, created, request_log)
    code = None
    env_vars = dict(spec.model.env)
    if not spec.model.image:
        code_id = _upload_code(api, spec, dep_name, created)
        code = CodeConfiguration(code=code_id, scoring_script=pkg.SCORE_NAME)
        env_vars.update(pkg.scoring_env_vars(spec))
        if request_log:
            env_vars[_shadow.LOG_ENV] = "1"
    probe = ProbeSettings(initial_delay=10, period=10, timeout=2, failure_threshold=30)
    deployment = ManagedOnlineDeployment(
        name=dep_name,
        endpoint_name=spec.endpoint,
        model=model_id,
        environment=env.id,
        code_configuration=code,
        environment_variables=env_vars or None,
        instance_type=instance_type(spec.compute),
        instance_count=spec.compute.replicas,
        request_settings=OnlineRequestSettings(
            request_timeout_ms=api.cfg.request_timeout_ms,
            max_concurrent_requests_per_instance=spec.compute.max_concurrency or 1,
        ),
        liveness_probe=probe,
        readiness_probe=probe,
        data_collector=_data_collector(api, spec, request_log=request_log and not spec.model.image),
        tags={
            **api.cfg.tags,
            **spec.tags,
            TAG_VARIANT: spec.variant_name,
            TAG_MODEL: spec.model.name,
            TAG_VERSION: spec.model.version,
            TAG_HASH: digest,
            **({_shadow.TAG_SHADOW: "true"} if spec.shadow else {}),
        },
    )
    api.lro(
        api.ml.online_deployments.begin_create_or_update,
        deployment,
        **steps.lro(f"deployment {dep_name}"),
    )


def _upload_code(api: AzureApi, spec: DeploySpec, dep_name: str, created: list[str]) -> str:
    """Upload the generated scoring script as a named code asset; returns its ARM id.

    Uploading it ourselves (rather than letting the deployment upload a path) gives the
    asset a name we know, so a failed deploy and a delete can remove it. MLClient has no
    public accessor for its code operations, hence ``_code``.
    """
    from azure.ai.ml.entities._assets import Code

    code_dir = pkg.scoring_code(api.workdir / f"{spec.endpoint}-{dep_name}")
    asset = Code(
        name=pkg.asset_name("cs", spec.endpoint, dep_name, "score"),
        version=pkg.code_digest(code_dir),
        path=str(code_dir),
    )
    return str(api.ensure_asset(api.ml._code, asset, created).id)


def _data_collector(api: AzureApi, spec: DeploySpec, *, request_log: bool = False) -> Any:
    from azure.ai.ml.entities import DataCollector, DeploymentCollection

    collections = _shadow.request_log_collection() if request_log else {}
    capture = spec.data_capture
    if capture is not None and capture.enabled:
        collections["model_inputs"] = DeploymentCollection(enabled="true")
        if capture.capture_responses:
            collections["model_outputs"] = DeploymentCollection(enabled="true")
    if not collections:
        return None
    rate = capture.sampling_rate if capture is not None and capture.enabled else 1.0
    return DataCollector(collections=collections, sampling_rate=rate)


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


def _shift_traffic(api: AzureApi, spec: DeploySpec, dep_name: str, steps: _Steps) -> None:
    """Move traffic to the new deployment; at 100 % drain and delete the others."""
    endpoint = api.sdk(api.ml.online_endpoints.get, spec.endpoint)
    deployments = list_deployments(api, spec.endpoint)
    endpoint.traffic = _traffic_after(endpoint, deployments, dep_name, spec.traffic)
    # a deployment takes live or mirrored traffic, not both; one about to go takes neither
    gone = {n.lower() for n in deployments if n != dep_name} if spec.traffic == 100 else set()
    if spec.traffic:
        gone.add(dep_name.lower())
    endpoint.mirror_traffic = {
        k: v for k, v in _shadow.mirror_of(endpoint).items() if k not in gone
    }
    api.lro(
        api.ml.online_endpoints.begin_create_or_update,
        endpoint,
        **steps.lro(f"traffic of {spec.endpoint}", wait=True),
    )
    if spec.traffic == 100:
        for name, dep in deployments.items():
            if name != dep_name:
                delete_deployment(api, spec.endpoint, dep)
    api.scoring_targets.pop(spec.endpoint, None)


def _turn_on_request_log(api: AzureApi, endpoint: str, dep: Any, steps: _Steps) -> None:
    """A live deployment writes the request log after one in-place (rolling) update; the
    environment version it used before is removed, as after any in-place update."""
    before = SimpleNamespace(
        name=dep.name, environment=dep.environment, code_configuration=None, model=None
    )
    if not _shadow.add_request_log(api, dep):
        return
    api.lro(
        api.ml.online_deployments.begin_create_or_update,
        dep,
        **steps.lro(f"request log of deployment {dep.name}"),
    )
    _delete_replaced_assets(api, endpoint, before)


def _mirror(api: AzureApi, spec: DeploySpec, dep_name: str, steps: _Steps) -> None:
    """Mirror ``spec.shadow`` percent of the endpoint's requests to the new deployment (its
    live traffic stays 0; ``_shadow.check`` has held the rest to Azure's rules)."""
    endpoint = api.sdk(api.ml.online_endpoints.get, spec.endpoint)
    endpoint.traffic = {k: int(v) for k, v in (endpoint.traffic or {}).items()}
    endpoint.mirror_traffic = {dep_name: spec.shadow}
    api.lro(
        api.ml.online_endpoints.begin_create_or_update,
        endpoint,
        **steps.lro(f"mirrored traffic of {spec.endpoint}", wait=True),
    )
    api.scoring_targets.pop(spec.endpoint, None)


def delete_deployment(api: AzureApi, endpoint: str, dep: Any) -> None:
    """Delete a deployment and the assets cloudserve made for it alone."""
    api.lro(api.ml.online_deployments.begin_delete, name=dep.name, endpoint_name=endpoint)
    _delete_owned_assets(api, endpoint, [dep])


def _delete_replaced_assets(api: AzureApi, endpoint: str, previous: Any) -> None:
    """After an in-place update, drop the assets only the replaced revision used."""
    current = list_deployments(api, endpoint).get(previous.name)
    keep = set()
    if current is not None:
        keep = {
            str(current.model),
            str(current.environment),
            str(getattr(current.code_configuration, "code", "")),
        }
    for asset in (getattr(previous.code_configuration, "code", None), previous.environment):
        if isinstance(asset, str) and "/subscriptions/" in asset and asset not in keep:
            api.delete_asset(asset)
    if isinstance(previous.model, str) and previous.model not in keep:
        delete_if_owned(api, previous.model, endpoint)


def _delete_owned_assets(api: AzureApi, endpoint: str, deployments: list[Any]) -> None:
    for dep in deployments:
        code = getattr(getattr(dep, "code_configuration", None), "code", None)
        for asset in (code, getattr(dep, "environment", None), *_collector_data(dep)):
            if isinstance(asset, str) and "/subscriptions/" in asset:
                api.delete_asset(asset)
        model = getattr(dep, "model", None)
        if isinstance(model, str) and "/subscriptions/" in model:
            delete_if_owned(api, model, endpoint)


def _roll_back(api: AzureApi, spec: DeploySpec, dep_name: str, created: list[str]) -> None:
    """Remove what a failed deploy created (best effort, logged, never masking the error)."""
    for item in reversed(created):
        kind, _, ref = item.partition(":")
        try:
            if kind == "endpoint":
                delete_endpoint(api, ref)
            elif kind == "deployment":
                with contextlib.suppress(NotFound):
                    api.lro(
                        api.ml.online_deployments.begin_delete,
                        name=ref,
                        endpoint_name=spec.endpoint,
                    )
            else:
                api.delete_asset(ref)
        except CloudServeError as exc:
            log.warning("could not remove %s after a failed deploy: %s", item, exc)


def list_deployments(api: AzureApi, endpoint: str) -> dict[str, Any]:
    """The endpoint's deployments by name."""
    items = api.sdk(lambda: list(api.ml.online_deployments.list(endpoint_name=endpoint)))
    return {d.name: d for d in items}


def variant(dep: Any, weight: int, *, shadow: int = 0) -> Variant:
    """A deployment as the variant cloudserve shows (name and model from its tags), with its
    live share and its mirrored one."""
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
        status=endpoint_status(dep.provisioning_state),
        shadow=shadow,
    )


def to_endpoint(ep: Any, deployments: dict[str, Any]) -> Endpoint:
    """The typed endpoint of an Azure endpoint and its deployments."""
    traffic = {k.lower(): int(v) for k, v in (ep.traffic or {}).items()}
    mirror = _shadow.mirror_of(ep)
    variants = [
        variant(d, traffic.get(n.lower(), 0), shadow=mirror.get(n.lower(), 0))
        for n, d in deployments.items()
    ]
    return Endpoint(
        name=ep.name,
        provider=PROVIDER,
        status=endpoint_status(ep.provisioning_state),
        variants=variants,
        url=ep.scoring_uri,
        # the rollout state's tags are cloudserve's bookkeeping, not the user's tags
        tags={k: v for k, v in (ep.tags or {}).items() if not ROLLOUT_STATE.owns(k)},
        raw=ep._to_dict() if hasattr(ep, "_to_dict") else ep,
    )


def get_endpoint(api: AzureApi, name: str) -> Endpoint:
    """The endpoint, its deployments as variants and their traffic."""
    ep = api.sdk(api.ml.online_endpoints.get, name)
    return to_endpoint(ep, list_deployments(api, name))


def list_endpoints(api: AzureApi) -> list[Endpoint]:
    """Every online endpoint of the workspace."""
    eps = api.sdk(lambda: list(api.ml.online_endpoints.list()))
    return [to_endpoint(ep, list_deployments(api, ep.name)) for ep in eps]


def delete_endpoint(api: AzureApi, name: str, *, wait: bool = True) -> None:
    """Delete the endpoint with its deployments and the assets deploys made for it."""
    try:
        deployments = list(list_deployments(api, name).values())
    except NotFound:
        return
    with contextlib.suppress(NotFound):
        api.lro(api.ml.online_endpoints.begin_delete, name=name)
    _delete_owned_assets(api, name, deployments)
    api.scoring_targets.pop(name, None)


def set_traffic(api: AzureApi, endpoint: str, weights: dict[str, int]) -> Endpoint:
    """Set the split across variants (names as cloudserve shows them)."""
    if sum(weights.values()) != 100:
        raise InvalidRequest("traffic weights must sum to 100", provider=PROVIDER)
    ep = api.sdk(api.ml.online_endpoints.get, endpoint)
    deployments = list_deployments(api, endpoint)
    by_variant = {(d.tags or {}).get(TAG_VARIANT, n): n for n, d in deployments.items()}
    unknown = sorted(set(weights) - set(by_variant))
    if unknown:
        raise InvalidRequest(f"unknown variants: {unknown}", provider=PROVIDER)
    ep.traffic = {by_variant[v]: weights.get(v, 0) for v in by_variant}
    # a deployment given live traffic stops receiving mirrored traffic (Azure allows one of both)
    live = {n.lower() for n, w in ep.traffic.items() if w}
    ep.mirror_traffic = {k: v for k, v in _shadow.mirror_of(ep).items() if k not in live}
    api.lro(api.ml.online_endpoints.begin_create_or_update, ep)
    return get_endpoint(api, endpoint)
