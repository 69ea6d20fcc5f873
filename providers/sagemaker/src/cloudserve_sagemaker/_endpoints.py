"""Endpoints on SageMaker: deploy (create, blue/green update, canary), roll back, read, list,
delete, move traffic, and plan.

A deploy creates a ``Model`` per variant and an ``EndpointConfig`` whose names are hashes of
their content (so the same spec again is a no-op), then ``CreateEndpoint`` or ``UpdateEndpoint``.
A deploy that fails half-way removes what it created (``_Created``), and a failed update leaves
the endpoint on its old config with its old scaling. See ``docs/providers/sagemaker.md``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from cloudserve.errors import CloudServeError, InvalidRequest, NotFound, OperationFailed
from cloudserve.resources import Endpoint, EndpointStatus, PlannedCall, Variant
from cloudserve.sizes import resolve_instance
from cloudserve.specs import DeploySpec
from cloudserve.waiting import ProgressCallback
from cloudserve_sagemaker import _naming as names
from cloudserve_sagemaker import _packaging as pkg
from cloudserve_sagemaker import _scaling as scaling
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._models import (
    ENV_NAME,
    ENV_VERSION,
    Prepared,
    model_container,
    prepare_model,
    upload_artifact,
)
from cloudserve_sagemaker._states import ENDPOINT_STATES as STATES
from cloudserve_sagemaker._validate import has_local_storage

__all__ = [
    "PENDING_SCALING_TAG",
    "delete_endpoint",
    "deploy",
    "describe_current",
    "endpoint_of",
    "get_endpoint",
    "list_endpoints",
    "plan",
    "route_of",
    "set_traffic",
]

PENDING_SCALING_TAG = "cloudserve:pending-scaling"


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


def _variant_row(api: Api, spec: DeploySpec, model_name: str, weight: int) -> dict[str, Any]:
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
        choice = resolve_instance(api.name, c.size, c.instance_type)
        row["InstanceType"] = c.instance_type or (choice.instance_type if choice else "")
        row["InitialInstanceCount"] = c.replicas
    return row


def _data_capture(api: Api, spec: DeploySpec) -> dict[str, Any] | None:
    dc = spec.data_capture
    if dc is None or not dc.enabled:
        return None
    modes = [{"CaptureMode": "Input"}] + (
        [{"CaptureMode": "Output"}] if dc.capture_responses else []
    )
    out: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": max(1, round(dc.sampling_rate * 100)),
        "DestinationS3Uri": dc.destination or api.cfg.capture_path or api.cfg.s3_uri("capture"),
        "CaptureOptions": modes,
        "CaptureContentTypeHeader": {
            "JsonContentTypes": ["application/json"],
            "CsvContentTypes": ["text/csv"],
        },
    }
    if api.cfg.kms_key_id:
        out["KmsKeyId"] = api.cfg.kms_key_id
    return out


def _async_config(api: Api, endpoint: str) -> dict[str, Any] | None:
    a = api.cfg.async_inference
    if a is None:
        return None
    base = a.output_path or api.cfg.s3_uri("async-output")
    out: dict[str, Any] = {
        "OutputConfig": {
            "S3OutputPath": f"{base.rstrip('/')}/{endpoint}",
            "S3FailurePath": f"{base.rstrip('/')}/{endpoint}-failures",
        },
        "ClientConfig": {
            "MaxConcurrentInvocationsPerInstance": a.max_concurrent_invocations_per_instance
        },
    }
    if api.cfg.kms_key_id:
        out["OutputConfig"]["KmsKeyId"] = api.cfg.kms_key_id
    return out


def _rows_beside(
    api: Api, current: dict[str, Any] | None, new_variant: str, traffic: int
) -> list[dict[str, Any]]:
    """The variants kept beside a canary, re-weighted to share ``100 - traffic``."""
    if current is None or traffic >= 100:
        return []
    live = {
        v["VariantName"]: float(v.get("CurrentWeight", 0))
        for v in current["endpoint"].get("ProductionVariants", [])
    }
    keep = [
        dict(r) for r in current["config"]["ProductionVariants"] if r["VariantName"] != new_variant
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


def describe_current(api: Api, endpoint: str, *, missing_ok: bool = True) -> dict[str, Any] | None:
    """The endpoint and its config; None (or NotFound) when it does not exist."""
    try:
        ep = api.sm("describe_endpoint", EndpointName=endpoint)
    except NotFound:
        if missing_ok:
            return None
        raise
    config = api.sm("describe_endpoint_config", EndpointConfigName=ep["EndpointConfigName"])
    return {"endpoint": ep, "config": config}


def deploy(
    api: Api,
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
    prepared = prepare_model(api, spec.model)
    current = _settled(api, spec.endpoint, timeout, progress)
    if current is not None and current["endpoint"]["EndpointStatus"] == "Failed":
        delete_endpoint(api, spec.endpoint)
        current = None
    previous = scaling.plan_of(api, current) if current is not None else []
    want = _desired(api, spec, prepared, current, previous)
    if current is not None and current["endpoint"]["EndpointConfigName"] == want.config:
        if not _weights_match(api, current, want.rows):
            # Same variants, only the split moved (set_traffic): put the spec's split back.
            weights = {r["VariantName"]: round(r["InitialVariantWeight"]) for r in want.rows}
            return set_traffic(api, spec.endpoint, weights)
        return get_endpoint(api, spec.endpoint)
    created = _Created()
    try:
        _apply(api, spec, want, current, created)
        if not wait:
            if want.scaling:
                # Scaling is registered once the endpoint is in service, by whichever
                # process next reads it (get_endpoint), from this tag.
                _mark_pending_scaling(api, spec.endpoint, want.scaling)
            return get_endpoint(api, spec.endpoint)
        _await_config(api, spec.endpoint, want.config, timeout, progress)
        if current is not None:
            # The update took: the endpoint now runs on the new model and config, so a
            # failure from here on must not remove them (nor restore the old scaling).
            created, previous = _Created(), []
        scaling.register(api, spec.endpoint, want.scaling, created.scaling)
    except BaseException:
        if not spec.keep_on_failure:
            _roll_back(api, created, restore=previous if current is not None else [])
        raise
    _collect_garbage(api, spec.endpoint, keep=want.config)
    api.forget(spec.endpoint)
    return get_endpoint(api, spec.endpoint)


def _desired(
    api: Api,
    spec: DeploySpec,
    prepared: Prepared,
    current: dict[str, Any] | None,
    previous: list[dict[str, Any]],
) -> _Desired:
    """What the endpoint should hold after ``spec``; names are hashes of the content."""
    data_url = upload_artifact(api, spec.model, prepared)
    container = model_container(spec.model, prepared, data_url)
    model = names.model_name(
        spec.endpoint,
        spec.variant_name,
        pkg.content_hash(container, api.cfg.vpc, api.cfg.role_arn),
    )
    rows = [
        *_rows_beside(api, current, spec.variant_name, spec.traffic),
        _variant_row(api, spec, model, spec.traffic),
    ]
    capture, async_cfg = _data_capture(api, spec), _async_config(api, spec.endpoint)
    steps = scaling.plan(api, spec, previous)
    digest = pkg.content_hash(rows, capture, async_cfg, steps, api.cfg.kms_key_id)
    tags = names.tags({**api.cfg.tags, **spec.model.tags, **spec.tags}, spec.endpoint)
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
    api: Api,
    spec: DeploySpec,
    want: _Desired,
    current: dict[str, Any] | None,
    created: _Created,
) -> None:
    """Create the model and endpoint config, then create or update the endpoint."""
    _ensure_model(api, want.model, want.container, want.tags, created)
    _create_config(api, want, created)
    if current is None:
        api.sm(
            "create_endpoint",
            retry=False,
            EndpointName=spec.endpoint,
            EndpointConfigName=want.config,
            Tags=want.tags,
        )
        created.endpoint = spec.endpoint
        return
    variants = [v["VariantName"] for v in current["config"]["ProductionVariants"]]
    scaling.deregister(api, spec.endpoint, variants)
    api.sm(
        "update_endpoint",
        retry=False,
        EndpointName=spec.endpoint,
        EndpointConfigName=want.config,
    )


def _create_config(api: Api, want: _Desired, created: _Created) -> None:
    params: dict[str, Any] = {
        "EndpointConfigName": want.config,
        "ProductionVariants": want.rows,
        "Tags": want.tags,
    }
    if want.capture is not None:
        params["DataCaptureConfig"] = want.capture
    if want.async_cfg is not None:
        params["AsyncInferenceConfig"] = want.async_cfg
    if api.cfg.kms_key_id and not any(has_local_storage(r.get("InstanceType")) for r in want.rows):
        # Instances with local NVMe storage encrypt it in hardware; SageMaker refuses a
        # KmsKeyId for them (see _validate).
        params["KmsKeyId"] = api.cfg.kms_key_id
    try:
        api.sm("create_endpoint_config", retry=False, **params)
    except CloudServeError as exc:
        if "already exist" not in str(exc):
            raise
        return
    created.config = want.config


def _weights_match(api: Api, current: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    live = {
        v["VariantName"]: float(v.get("CurrentWeight", 0))
        for v in current["endpoint"].get("ProductionVariants", [])
    }
    return all(abs(live.get(r["VariantName"], -1) - r["InitialVariantWeight"]) < 1e-6 for r in rows)


def _settled(
    api: Api, endpoint: str, timeout: float | None, progress: ProgressCallback | None
) -> dict[str, Any] | None:
    """The endpoint once no create/update is in flight (None when it does not exist)."""
    current = describe_current(api, endpoint)
    if (
        current is None
        or STATES.get(current["endpoint"]["EndpointStatus"], EndpointStatus.UPDATING).is_terminal
    ):
        return current
    _wait_status(api, endpoint, timeout, progress)
    return describe_current(api, endpoint)


def _wait_status(
    api: Api, endpoint: str, timeout: float | None, progress: ProgressCallback | None
) -> dict[str, Any]:
    return api.wait(
        lambda: api.sm("describe_endpoint", EndpointName=endpoint),
        is_done=lambda d: STATES.get(d["EndpointStatus"], EndpointStatus.UPDATING).is_terminal,
        description=f"endpoint {endpoint}",
        timeout=timeout,
        progress=progress,
        status_of=lambda d: str(d["EndpointStatus"]),
    )


def _await_config(
    api: Api, endpoint: str, config: str, timeout: float | None, progress: ProgressCallback | None
) -> None:
    final = _wait_status(api, endpoint, timeout, progress)
    reason = final.get("FailureReason") or "no reason given"
    if final["EndpointStatus"] != "InService":
        raise OperationFailed(
            f"endpoint {endpoint} ended {final['EndpointStatus']}: {reason}",
            provider=api.name,
            code=final["EndpointStatus"],
        )
    if final["EndpointConfigName"] != config:
        raise OperationFailed(
            f"the update of endpoint {endpoint} was rolled back: {reason}",
            provider=api.name,
            code="UpdateRolledBack",
        )


def _roll_back(api: Api, created: _Created, restore: list[dict[str, Any]]) -> None:
    """Remove what a failed deploy created; put back the scaling a failed update removed."""
    with contextlib.suppress(CloudServeError):
        if created.endpoint:
            api.quiet_delete("delete_endpoint", EndpointName=created.endpoint)
            _wait_gone(api, created.endpoint, None)
        if created.config:
            api.quiet_delete("delete_endpoint_config", EndpointConfigName=created.config)
        for model in created.models:
            api.quiet_delete("delete_model", ModelName=model)
        for resource in created.scaling:
            scaling.deregister_one(api, resource)
        if restore:
            scaling.register(api, restore[0]["endpoint"], restore, [])


def get_endpoint(api: Api, name: str) -> Endpoint:
    """The endpoint, its variants (model version, weight, instances, scaling range)."""
    current = describe_current(api, name, missing_ok=False)
    assert current is not None
    return endpoint_of(api, current)


def _mark_pending_scaling(api: Api, endpoint: str, steps: list[dict[str, Any]]) -> None:
    arn = api.sm("describe_endpoint", EndpointName=endpoint)["EndpointArn"]
    value = " ".join(f"{s['variant']}:{s['min']}:{s['max']}:{s['target']}" for s in steps)
    api.sm("add_tags", ResourceArn=arn, Tags=[{"Key": PENDING_SCALING_TAG, "Value": value}])


def _finish_pending_scaling(api: Api, ep: dict[str, Any]) -> None:
    """Register the scaling a ``deploy(wait=False)`` left for when the endpoint is up."""
    if ep["EndpointStatus"] != "InService":
        return
    found = api.sm("list_tags", ResourceArn=ep["EndpointArn"]).get("Tags", [])
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
    scaling.register(api, ep["EndpointName"], steps, [])
    api.sm("delete_tags", ResourceArn=ep["EndpointArn"], TagKeys=[PENDING_SCALING_TAG])


def endpoint_of(api: Api, current: dict[str, Any]) -> Endpoint:
    ep, config = current["endpoint"], current["config"]
    _finish_pending_scaling(api, ep)
    rows = {r["VariantName"]: r for r in config["ProductionVariants"]}
    ranges = scaling.targets(api, ep["EndpointName"], list(rows))
    status = STATES.get(ep["EndpointStatus"], EndpointStatus.UPDATING)
    variants = []
    versions: dict[str, str] = {}
    for live in ep.get("ProductionVariants", []):
        row = rows.get(live["VariantName"], {})
        env = _model_env(api, row.get("ModelName"))
        target = ranges.get(live["VariantName"])
        version = env.get(ENV_VERSION, "")
        versions[live["VariantName"]] = version
        variants.append(
            Variant(
                name=live["VariantName"],
                model_name=env.get(ENV_NAME, row.get("ModelName", "")),
                model_version=version,
                weight=round(float(live.get("CurrentWeight", row.get("InitialVariantWeight", 0)))),
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
    with api.lock:
        api.versions[ep["EndpointName"]] = versions
        api.serverless[ep["EndpointName"]] = any(
            "ServerlessConfig" in r for r in config["ProductionVariants"]
        )
    return Endpoint(
        name=ep["EndpointName"],
        provider=api.name,
        status=status,
        variants=variants,
        url=f"https://runtime.sagemaker.{api.cfg.region}.amazonaws.com/endpoints/{ep['EndpointName']}/invocations",
        created_at=ep.get("CreationTime"),
        updated_at=ep.get("LastModifiedTime"),
        message=ep.get("FailureReason"),
        raw=current,
    )


def _model_env(api: Api, model: str | None) -> dict[str, str]:
    if not model:
        return {}
    try:
        found = api.sm("describe_model", ModelName=model)
    except NotFound:
        return {}
    return dict(found.get("PrimaryContainer", {}).get("Environment", {}))


def list_endpoints(api: Api) -> list[Endpoint]:
    """Every endpoint in the region, with status and times (variants: ``get_endpoint``)."""
    pages = api.call(lambda: list(api.aws.sm.get_paginator("list_endpoints").paginate()))
    return [
        Endpoint(
            name=e["EndpointName"],
            provider=api.name,
            status=STATES.get(e["EndpointStatus"], EndpointStatus.UPDATING),
            created_at=e.get("CreationTime"),
            updated_at=e.get("LastModifiedTime"),
            raw=e,
        )
        for page in pages
        for e in page.get("Endpoints", [])
    ]


def delete_endpoint(api: Api, name: str, *, wait: bool = True) -> None:
    """Delete the endpoint, its scaling, its endpoint configs and models (those tagged as
    cloudserve's for it). A missing endpoint is fine."""
    current = describe_current(api, name)
    if current is not None:
        scaling.deregister(
            api, name, [v["VariantName"] for v in current["config"]["ProductionVariants"]]
        )
        api.quiet_delete("delete_endpoint", EndpointName=name)
        if wait:
            _wait_gone(api, name, None)
    _collect_garbage(api, name, keep=None)
    api.forget(name)


def _wait_gone(api: Api, name: str, timeout: float | None) -> None:
    def poll() -> str:
        try:
            return str(api.sm("describe_endpoint", EndpointName=name)["EndpointStatus"])
        except NotFound:
            return "Gone"

    api.wait(
        poll,
        is_done=lambda s: s in ("Gone", "Failed"),
        description=f"delete of endpoint {name}",
        timeout=timeout,
    )


def _owned(api: Api, arn: str, endpoint: str) -> bool:
    try:
        found = api.sm("list_tags", ResourceArn=arn)
    except NotFound:
        return False
    tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    return tags.get(names.ENDPOINT_TAG) == endpoint


def _collect_garbage(api: Api, endpoint: str, keep: str | None) -> None:
    """Delete this endpoint's configs (but ``keep``) and the models no kept config uses."""
    used: set[str] = set()
    if keep is not None:
        kept = api.sm("describe_endpoint_config", EndpointConfigName=keep)
        used = {v["ModelName"] for v in kept["ProductionVariants"]}
    for c in _listing(api, "list_endpoint_configs", "EndpointConfigs", endpoint):
        if c["EndpointConfigName"] != keep and _owned(api, c["EndpointConfigArn"], endpoint):
            api.quiet_delete("delete_endpoint_config", EndpointConfigName=c["EndpointConfigName"])
    for m in _listing(api, "list_models", "Models", endpoint):
        if m["ModelName"] not in used and _owned(api, m["ModelArn"], endpoint):
            api.quiet_delete("delete_model", ModelName=m["ModelName"])


def _listing(api: Api, operation: str, key: str, contains: str) -> list[dict[str, Any]]:
    pages = api.aws.sm.get_paginator(operation).paginate(NameContains=contains)
    return api.call(lambda: [item for page in pages for item in page.get(key, [])])


def set_traffic(api: Api, endpoint: str, weights: dict[str, int]) -> Endpoint:
    """Move traffic between variants with UpdateEndpointWeightsAndCapacities (no redeploy)."""
    current = describe_current(api, endpoint, missing_ok=False)
    assert current is not None
    known = {v["VariantName"] for v in current["endpoint"].get("ProductionVariants", [])}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise NotFound(
            f"endpoint {endpoint} has no variant {', '.join(unknown)} "
            f"(has {', '.join(sorted(known))})",
            provider=api.name,
        )
    if set(weights) != known:
        raise InvalidRequest(
            f"give a weight for every variant of {endpoint}: {', '.join(sorted(known))}",
            provider=api.name,
        )
    desired = [{"VariantName": v, "DesiredWeight": float(w)} for v, w in weights.items()]
    api.sm(
        "update_endpoint_weights_and_capacities",
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=desired,
    )
    _wait_status(api, endpoint, None, None)
    return get_endpoint(api, endpoint)


def route_of(api: Api, spec: DeploySpec) -> str:
    """The route a deploy of ``spec`` takes (``container`` when only the build/push step the
    plan lists can make the model servable)."""
    try:
        return prepare_model(api, spec.model).route.kind
    except InvalidRequest:
        return "container"


def plan(api: Api, spec: DeploySpec) -> list[PlannedCall]:
    """The calls a first deploy of ``spec`` makes, in order; nothing is sent."""
    calls = []
    try:
        image = prepare_model(api, spec.model).route.image
    except InvalidRequest as refused:
        image = f"<serving_image of target {api.target}, once pushed>"
        calls.append(
            PlannedCall(
                service="cloudserve",
                operation="build-image --push",
                params={
                    "command": pkg.build_command(spec.model, api.target),
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
                params={"bucket": api.cfg.bucket},
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


def _ensure_model(
    api: Api, name: str, container: dict[str, Any], tags: list[dict[str, str]], created: _Created
) -> None:
    params: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": api.cfg.role_arn,
        "PrimaryContainer": container,
        "Tags": tags,
    }
    if api.cfg.vpc is not None:
        params["VpcConfig"] = {
            "Subnets": api.cfg.vpc.subnets,
            "SecurityGroupIds": api.cfg.vpc.security_group_ids,
        }
    try:
        api.sm("create_model", retry=False, **params)
    except CloudServeError as exc:
        if "already exist" not in str(exc):
            raise
        return
    created.models.append(name)
