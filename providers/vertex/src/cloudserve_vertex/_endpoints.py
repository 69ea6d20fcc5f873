"""Endpoints: deploy / update / rollback / get / list / delete / traffic / plan.

A cloudserve endpoint is a Vertex ``Endpoint`` whose id is the endpoint name; a variant is a
``DeployedModel`` whose display name is the variant name. A target with ``network`` creates
private (PSA) endpoints: one deployed model each, no traffic split, predictions through the
deployed model's ``privateEndpoints.predictHttpUri`` inside the VPC.
"""

from __future__ import annotations

from typing import Any

from cloudserve.errors import CloudServeError, InvalidRequest, NotFound, Timeout
from cloudserve.resources import Endpoint, EndpointStatus, PlannedCall, Variant
from cloudserve.specs import DeploySpec
from cloudserve.waiting import ProgressCallback
from cloudserve_vertex import _model_registry as registry
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex._api import MANAGED, VertexApi
from cloudserve_vertex._states import endpoint_status

ROLLOUT_LABEL = "cloudserve-rollout"  # set while a rollout is in progress (see _rollout)

__all__ = ["delete", "deploy", "get", "list_all", "plan", "set_traffic"]

_CPU_METRIC = "aiplatform.googleapis.com/prediction/online/cpu/utilization"


def find(api: VertexApi, name: str) -> Any | None:
    return api.get_or_none("endpoint", "get_endpoint", name=api.endpoint_path(name))


def require(api: VertexApi, name: str) -> Any:
    """The endpoint; ``NotFound`` (chaining the service's 404) when it does not exist."""
    return api.rpc("endpoint", "get_endpoint", name=api.endpoint_path(name))


def is_private(ep: Any) -> bool:
    return bool(ep.network)


def to_endpoint(api: VertexApi, ep: Any, status: EndpointStatus | None = None) -> Endpoint:
    private = is_private(ep)
    variants = []
    for dm in ep.deployed_models:
        info = registry.version_facts(api, f"{dm.model}@{dm.model_version_id}")
        res = dm.dedicated_resources
        weight = 100 if private else int(ep.traffic_split.get(dm.id, 0))
        variants.append(
            Variant(
                name=dm.display_name,
                model_name=info["name"],
                model_version=info["version"],
                weight=weight,
                instance_type=res.machine_spec.machine_type or None,
                replicas=res.min_replica_count,
                min_replicas=res.min_replica_count,
                max_replicas=res.max_replica_count or res.min_replica_count,
                status=EndpointStatus.READY,
                raw=dm,
            )
        )
    if status is None:
        status = endpoint_status([v.weight for v in variants])
    url = f"https://{api.config.location}-aiplatform.googleapis.com/v1/{ep.name}:predict"
    if private and ep.deployed_models:
        url = ep.deployed_models[0].private_endpoints.predict_http_uri or url
    return Endpoint(
        name=ep.display_name,
        provider=api.name,
        status=status,
        variants=variants,
        url=url,
        created_at=ep.create_time or None,
        updated_at=ep.update_time or None,
        tags={k: v for k, v in ep.labels.items() if k not in (MANAGED, ROLLOUT_LABEL)},
        raw=ep,
    )


def get(api: VertexApi, name: str) -> Endpoint:
    return to_endpoint(api, require(api, name))


def list_all(api: VertexApi) -> list[Endpoint]:
    pager = api.rpc(
        "endpoint",
        "list_endpoints",
        request={"parent": api.parent, "filter": api.managed_filter()},
    )
    return [to_endpoint(api, ep) for ep in pager]


def capture_destination(api: VertexApi, spec: DeploySpec) -> str:
    """Where request-response logs go: the spec's, else ``bq://PROJECT`` — Vertex then creates
    the dataset ``logging_<endpoint>_<id>`` and the table ``request_response_logging``."""
    capture = spec.data_capture
    return (capture.destination if capture else None) or f"bq://{api.config.project}"


def _create(api: VertexApi, spec: DeploySpec, progress: ProgressCallback | None) -> Any:
    from google.cloud import aiplatform_v1 as v1

    extra: dict[str, Any] = {}
    capture = spec.data_capture
    if capture is not None and capture.enabled:
        extra["predict_request_response_logging_config"] = {
            "enabled": True,
            "sampling_rate": capture.sampling_rate,
            "bigquery_destination": {"output_uri": capture_destination(api, spec)},
        }
    if api.config.network:
        extra["network"] = api.config.network
    body = v1.Endpoint(
        display_name=spec.endpoint,
        labels=api.labels(spec.tags),
        **extra,
        **api.encryption(),
    )
    op = api.rpc(
        "endpoint",
        "create_endpoint",
        parent=api.parent,
        endpoint=body,
        endpoint_id=api.resource_id(spec.endpoint),
        retry=False,
    )
    return api.wait_op(op, f"creation of endpoint {spec.endpoint}", progress=progress)


def _same(api: VertexApi, ep: Any, spec: DeploySpec) -> bool:
    current = to_endpoint(api, ep)
    try:
        v = current.variant(spec.variant_name)
    except KeyError:
        return False
    lo, hi = spec.compute.replica_range
    machine = api.machine(spec.compute)
    target = 100 if len(current.variants) == 1 else spec.traffic
    return (
        v.model_name == spec.model.name
        and v.model_version == spec.model.version
        and v.instance_type == machine["machine_type"]
        and (v.min_replicas, v.max_replicas) == (lo, hi)
        and v.weight == target
        and (spec.traffic < 100 or len(current.variants) == 1)
    )


def _check_private(api: VertexApi, ep: Any, spec: DeploySpec) -> None:
    """A private endpoint holds one deployed model: a second variant cannot be added."""
    others = [d.display_name for d in ep.deployed_models if d.display_name != spec.variant_name]
    if is_private(ep) and others:
        raise InvalidRequest(
            f"endpoint {spec.endpoint} is a private endpoint serving {others[0]}; Vertex private "
            "endpoints hold one deployed model, so blue/green and canary updates are not "
            "possible there: deploy to a new endpoint, or delete this one first",
            provider=api.name,
        )


def deploy(
    api: VertexApi,
    spec: DeploySpec,
    *,
    wait: bool,
    timeout: float | None,
    progress: ProgressCallback | None,
    target: str,
) -> Endpoint:
    registry.plan_route(api, spec.model, target)  # a refused route fails before any request
    ep = find(api, spec.endpoint)
    if ep is not None and _same(api, ep, spec):
        return to_endpoint(api, ep)
    if ep is not None:
        _check_private(api, ep, spec)
    created: list[tuple[str, str]] = []
    try:
        ref = registry.upload(
            api,
            spec.model,
            origin="deploy",
            endpoint=spec.endpoint,
            created=created,
            progress=progress,
            target=target,
        )
        if ep is None:
            ep = _create(api, spec, progress)
            created.append(("endpoint", spec.endpoint))
        ep = _deploy_variant(api, ep, spec, ref, wait, timeout, progress)
    except Timeout as exc:
        operation = getattr(exc, "operation", None)
        if operation is None:
            raise
        # DeployModel still runs: deleting what it deploys into would fail (or race it).
        raise Timeout(
            f"{exc}. The operation {operation} is still running on Vertex AI; nothing was "
            f"rolled back. Wait for it, then check with get_endpoint('{spec.endpoint}'), or "
            f"remove everything with delete_endpoint('{spec.endpoint}') once it has finished",
            provider=api.name,
        ) from exc
    except CloudServeError:
        if not spec.keep_on_failure:
            _rollback(api, created)
        raise
    return to_endpoint(api, ep, None if wait else EndpointStatus.UPDATING)


def _split(ep: Any, spec: DeploySpec) -> tuple[dict[str, int], list[str]]:
    """The traffic split for deploying ``spec`` (new model as "0") and what to undeploy."""
    replaced = [d.id for d in ep.deployed_models if d.display_name == spec.variant_name]
    others = {
        d.id: int(ep.traffic_split.get(d.id, 0)) for d in ep.deployed_models if d.id not in replaced
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
    api: VertexApi,
    ep: Any,
    spec: DeploySpec,
    ref: str,
    wait: bool,
    timeout: float | None,
    progress: ProgressCallback | None,
) -> Any:
    from google.cloud import aiplatform_v1 as v1

    split, retire = _split(ep, spec)
    lo, hi = spec.compute.replica_range
    resources: dict[str, Any] = {
        "machine_spec": api.machine(spec.compute),
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
        **({"service_account": api.config.service_account} if api.config.service_account else {}),
    )
    # private endpoints take no traffic split: their one model gets every request
    traffic = {} if is_private(ep) else {"traffic_split": split}
    op = api.rpc(
        "endpoint",
        "deploy_model",
        endpoint=ep.name,
        deployed_model=deployed,
        **traffic,
        retry=False,
    )
    if not wait:
        return ep
    api.wait_op(op, f"deploy of {spec.variant_name} to {spec.endpoint}", timeout, progress)
    for dm_id in retire:
        undeploy(api, ep.name, dm_id, progress)
    return api.rpc("endpoint", "get_endpoint", name=ep.name)


def undeploy(api: VertexApi, endpoint: str, dm_id: str, progress: ProgressCallback | None) -> None:
    op = api.rpc(
        "endpoint", "undeploy_model", endpoint=endpoint, deployed_model_id=dm_id, retry=False
    )
    api.wait_op(op, f"undeploy of {dm_id}", progress=progress)


def _rollback(api: VertexApi, created: list[tuple[str, str]]) -> None:
    """Remove what a failed deploy created, newest first; errors here are secondary."""
    for kind, what in reversed(created):
        try:
            if kind == "endpoint":
                delete(api, what)
            elif kind == "model":
                registry.delete_version(api, what)
            else:
                registry.delete_prefix(api, what)
        except CloudServeError:
            continue


def delete(api: VertexApi, name: str, *, wait: bool = True) -> None:
    from google.cloud import aiplatform_v1 as v1

    ep = find(api, name)
    if ep is None:
        return
    if ep.traffic_split and not is_private(ep):
        api.rpc(
            "endpoint",
            "update_endpoint",
            endpoint=v1.Endpoint(name=ep.name, traffic_split={}),
            update_mask={"paths": ["traffic_split"]},
        )
    refs = [f"{d.model}@{d.model_version_id}" for d in ep.deployed_models]
    for dm in ep.deployed_models:
        undeploy(api, ep.name, dm.id, None)
    op = api.rpc("endpoint", "delete_endpoint", name=ep.name, retry=False)
    if wait:
        api.wait_op(op, f"deletion of endpoint {name}")
    for ref in dict.fromkeys(refs + registry.uploaded_for(api, name)):
        registry.delete_if_deployed_by_us(api, ref)


def delete_variant(api: VertexApi, endpoint: str, variant: str) -> Endpoint:
    """Undeploy a variant that takes no traffic, and delete the version a deploy uploaded."""
    ep = require(api, endpoint)
    dm = next((d for d in ep.deployed_models if d.display_name == variant), None)
    if dm is None:
        raise NotFound(f"no variant {variant} on {endpoint}", provider=api.name)
    if int(ep.traffic_split.get(dm.id, 0)) > 0:
        raise InvalidRequest(
            f"variant {variant} still takes {ep.traffic_split[dm.id]}% of {endpoint}'s traffic; "
            "move it to 0 first (set_traffic)",
            provider=api.name,
        )
    undeploy(api, ep.name, dm.id, None)
    registry.delete_if_deployed_by_us(api, f"{dm.model}@{dm.model_version_id}")
    return get(api, endpoint)


def set_traffic(api: VertexApi, endpoint: str, weights: dict[str, int]) -> Endpoint:
    from google.cloud import aiplatform_v1 as v1

    ep = require(api, endpoint)
    ids = {d.display_name: d.id for d in ep.deployed_models}
    unknown = sorted(set(weights) - set(ids))
    if unknown:
        raise InvalidRequest(
            f"no variants {unknown} on {endpoint}; it has {sorted(ids)}", provider=api.name
        )
    if sum(weights.values()) != 100:
        raise InvalidRequest("traffic weights must sum to 100", provider=api.name)
    split = {ids[n]: w for n, w in weights.items()}
    updated = api.rpc(
        "endpoint",
        "update_endpoint",
        endpoint=v1.Endpoint(name=ep.name, traffic_split=split),
        update_mask={"paths": ["traffic_split"]},
    )
    return to_endpoint(api, updated)


def plan(
    api: VertexApi, spec: DeploySpec, route: pkg.Route, build: str | None = None
) -> list[PlannedCall]:
    """The calls ``deploy(spec)`` makes against an empty project, in order (nothing sent)."""
    calls = []
    if build:
        calls.append(
            PlannedCall(
                service="local",
                operation="build-image --push",
                params={"command": build},
                creates="serving_image",
            )
        )
    model_id = api.resource_id(spec.model.name)
    calls += [
        PlannedCall(
            service="storage",
            operation="objects.insert",
            params={
                "prefix": f"gs://{api.config.bucket}/{api.config.staging_prefix}/models/"
                f"{model_id}/{spec.model.version}/"
            },
            creates="staged artifact",
        ),
        PlannedCall(
            service="aiplatform",
            operation="ModelService.UploadModel",
            params={
                "model_id": model_id,
                "route": route.kind,
                "image_uri": route.image,
                "why": route.reason,
            },
            creates=f"model {model_id} version",
        ),
        PlannedCall(
            service="aiplatform",
            operation="EndpointService.CreateEndpoint",
            params={
                "endpoint_id": api.resource_id(spec.endpoint),
                **({"network": api.config.network} if api.config.network else {}),
            },
            creates=f"endpoint {spec.endpoint}",
        ),
        PlannedCall(
            service="aiplatform",
            operation="EndpointService.DeployModel",
            params={
                "display_name": spec.variant_name,
                "machine_type": api.machine(spec.compute)["machine_type"],
            },
            creates=f"deployed model {spec.variant_name}",
        ),
    ]
    return calls
