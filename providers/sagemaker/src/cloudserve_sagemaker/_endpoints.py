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
from cloudserve.specs import DataCapture, DeploySpec
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
    "SHADOW_TAG",
    "delete_endpoint",
    "deploy",
    "describe_current",
    "endpoint_of",
    "get_endpoint",
    "list_endpoints",
    "list_tags",
    "live_weights",
    "plan",
    "replace_config",
    "route_of",
    "set_traffic",
]

PENDING_SCALING_TAG = "cloudserve:pending-scaling"
#: on an endpoint config: the variant a shadow deploy mirrored to (copied when the config is
#: replaced, so the shadow report still knows which captures were the shadow's)
SHADOW_TAG = "cloudserve:shadow"


@dataclass
class _Desired:
    """What a deploy wants the endpoint to hold."""

    model: str
    container: dict[str, Any]
    rows: list[dict[str, Any]]
    shadows: list[dict[str, Any]]
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
    if spec.shadow:
        # the shadow report joins the captured answers of both variants (see _shadow)
        dc = (dc or DataCapture()).model_copy(update={"enabled": True, "capture_responses": True})
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


def live_weights(current: dict[str, Any]) -> dict[str, float]:
    """Production variant → its current weight (shadow variants take none)."""
    return {
        v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)) or 0.0)
        for v in current["endpoint"].get("ProductionVariants", [])
    }


def list_tags(api: Api, arn: str) -> dict[str, str]:
    """Every tag of a SageMaker resource (all pages of ``ListTags``)."""
    pages = api.aws.sm.get_paginator("list_tags").paginate(ResourceArn=arn)
    found = api.call(lambda: [t for page in pages for t in page.get("Tags", [])])
    return {t["Key"]: t["Value"] for t in found}


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a user set: not AWS's own (``aws:``) nor cloudserve's bookkeeping."""
    return {k: v for k, v in tags.items() if not k.startswith(("aws:", "cloudserve:"))}


def check_shadow(api: Api, spec: DeploySpec, current: dict[str, Any] | None) -> None:
    """SageMaker's shadow rules, checked against the endpoint as it is, before any write: a
    shadow needs an endpoint with exactly one production variant to mirror, and an endpoint
    with a shadow variant holds one production variant, so no canary beside it."""
    config = current["config"] if current is not None else {}
    rows = [r["VariantName"] for r in config.get("ProductionVariants", [])]
    shadows = [r["VariantName"] for r in config.get("ShadowProductionVariants") or []]
    if spec.shadow:
        if not rows:
            raise InvalidRequest(
                f"endpoint {spec.endpoint} does not exist: a shadow variant needs a production"
                " variant to mirror, and there is none to mirror",
                provider=api.name,
            )
        if spec.variant_name in rows:
            raise InvalidRequest(
                f"variant {spec.variant_name} is the production variant of {spec.endpoint};"
                " a shadow needs another variant name",
                provider=api.name,
            )
        if len(rows) != 1:
            raise InvalidRequest(
                f"endpoint {spec.endpoint} splits traffic across {', '.join(rows)}; SageMaker"
                " mirrors to a shadow from exactly one production variant (set_traffic one"
                " variant to 100 and delete the others first)",
                provider=api.name,
            )
        if any("ServerlessConfig" in r for r in config["ProductionVariants"]):
            raise InvalidRequest(
                f"endpoint {spec.endpoint} is serverless; cloudserve mirrors to a shadow from"
                " instance-backed variants only",
                provider=api.name,
            )
    elif shadows and spec.traffic < 100 and spec.variant_name not in shadows:
        raise InvalidRequest(
            f"endpoint {spec.endpoint} has the shadow variant {shadows[0]}; SageMaker holds one"
            " production variant beside a shadow, so a canary is refused (promote the shadow"
            " with set_traffic or delete it with delete_variant first)",
            provider=api.name,
        )


def replace_config(
    api: Api,
    current: dict[str, Any],
    rows: list[dict[str, Any]],
    shadows: list[dict[str, Any]],
) -> str:
    """Move the endpoint onto a copy of its config holding ``rows`` (and ``shadows``), wait
    for it, and delete the configs and models cloudserve made for it that nothing uses now.

    SageMaker changes an endpoint's variants only through a new endpoint config and
    ``UpdateEndpoint``; the scaling of the variants kept is carried over.
    """
    endpoint = current["endpoint"]["EndpointName"]
    old = current["config"]
    members = api.aws.sm.meta.service_model.shape_for("ProductionVariant").members

    def clean(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k in members and v is not None}

    rows, shadows = [clean(r) for r in rows], [clean(r) for r in shadows]
    # (an empty block in a description is an absent one)
    capture = (
        old.get("DataCaptureConfig")
        if (old.get("DataCaptureConfig") or {}).get("DestinationS3Uri")
        else None
    )
    async_cfg = old.get("AsyncInferenceConfig") or None
    kms = old.get("KmsKeyId")
    config = names.config_name(endpoint, pkg.content_hash(rows, shadows, capture, async_cfg, kms))
    tags = list_tags(api, old["EndpointConfigArn"])
    want = _Desired(
        model="",
        container={},
        rows=rows,
        shadows=shadows,
        capture=capture,
        async_cfg=async_cfg,
        scaling=[],
        config=config,
        tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items()) if not k.startswith("aws:")],
    )
    kept = {r["VariantName"] for r in rows}
    previous = scaling.plan_of(api, current)
    created = _Created()
    try:
        _create_config(api, want, created, kms_key_id=kms)
        scaling.deregister(api, endpoint, [r["VariantName"] for r in old["ProductionVariants"]])
        api.sm("update_endpoint", retry=False, EndpointName=endpoint, EndpointConfigName=config)
        _await_config(api, endpoint, config, None, None)
    except BaseException:
        _roll_back(api, created, restore=previous)
        raise
    scaling.register(api, endpoint, [s for s in previous if s["variant"] in kept], [])
    _collect_garbage(api, endpoint, keep=config)
    api.forget(endpoint)
    return config


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
    check_shadow(api, spec, current)
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
    shadows: list[dict[str, Any]] = []
    if spec.shadow:
        # The shadow's weight against the production variant's (100) is the share mirrored.
        rows = _rows_beside(api, current, spec.variant_name, 0)
        shadows = [_variant_row(api, spec, model, spec.shadow)]
    else:
        rows = [
            *_rows_beside(api, current, spec.variant_name, spec.traffic),
            _variant_row(api, spec, model, spec.traffic),
        ]
    capture, async_cfg = _data_capture(api, spec), _async_config(api, spec.endpoint)
    steps = scaling.plan(api, spec, previous)
    digest = pkg.content_hash(rows, capture, async_cfg, steps, api.cfg.kms_key_id)
    if shadows:
        digest = pkg.content_hash(digest, shadows)
    extra = {SHADOW_TAG: spec.variant_name} if spec.shadow else {}
    tags = names.tags({**api.cfg.tags, **spec.model.tags, **spec.tags, **extra}, spec.endpoint)
    return _Desired(
        model=model,
        container=container,
        rows=rows,
        shadows=shadows,
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


def _create_config(
    api: Api, want: _Desired, created: _Created, *, kms_key_id: str | None = None
) -> None:
    params: dict[str, Any] = {
        "EndpointConfigName": want.config,
        "ProductionVariants": want.rows,
        "Tags": want.tags,
    }
    if want.shadows:
        params["ShadowProductionVariants"] = want.shadows
    if want.capture is not None:
        params["DataCaptureConfig"] = want.capture
    if want.async_cfg is not None:
        params["AsyncInferenceConfig"] = want.async_cfg
    kms = kms_key_id or api.cfg.kms_key_id
    if kms and not any(has_local_storage(r.get("InstanceType")) for r in want.rows + want.shadows):
        # Instances with local NVMe storage encrypt it in hardware; SageMaker refuses a
        # KmsKeyId for them (see _validate).
        params["KmsKeyId"] = kms
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


def _finish_pending_scaling(api: Api, ep: dict[str, Any], tags: dict[str, str]) -> None:
    """Register the scaling a ``deploy(wait=False)`` left for when the endpoint is up."""
    if ep["EndpointStatus"] != "InService":
        return
    value = tags.get(PENDING_SCALING_TAG)
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
    tags = list_tags(api, ep["EndpointArn"])
    _finish_pending_scaling(api, ep, tags)
    rows = {r["VariantName"]: r for r in config["ProductionVariants"]}
    shadow_rows = {r["VariantName"]: r for r in config.get("ShadowProductionVariants") or []}
    production_weight = sum(live_weights(current).values())
    ranges = scaling.targets(api, ep["EndpointName"], list(rows))
    status = STATES.get(ep["EndpointStatus"], EndpointStatus.UPDATING)
    variants = []
    versions: dict[str, str] = {}
    lives = [(live, False) for live in ep.get("ProductionVariants", [])]
    lives += [(live, True) for live in ep.get("ShadowProductionVariants") or []]
    for live, is_shadow in lives:
        row = (shadow_rows if is_shadow else rows).get(live["VariantName"], {})
        weight = float(live.get("CurrentWeight", row.get("InitialVariantWeight", 0)))
        env = _model_env(api, row.get("ModelName"))
        target = ranges.get(live["VariantName"])
        version = env.get(ENV_VERSION, "")
        versions[live["VariantName"]] = version
        variants.append(
            Variant(
                name=live["VariantName"],
                model_name=env.get(ENV_NAME, row.get("ModelName", "")),
                model_version=version,
                weight=0 if is_shadow else round(weight),
                shadow=_mirrored(weight, production_weight) if is_shadow else 0,
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
        tags=_user_tags(tags),
        raw=current,
    )


def _mirrored(shadow_weight: float, production_weight: float) -> int:
    """The percentage of requests mirrored to a shadow: its weight against production's."""
    if production_weight <= 0:
        return 0
    return min(100, round(100 * shadow_weight / production_weight))


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
        rows = [*kept["ProductionVariants"], *(kept.get("ShadowProductionVariants") or [])]
        used = {v["ModelName"] for v in rows}
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
    shadows = [r["VariantName"] for r in current["config"].get("ShadowProductionVariants") or []]
    known = {v["VariantName"] for v in current["endpoint"].get("ProductionVariants", [])}
    unknown = sorted(set(weights) - known - set(shadows))
    if unknown:
        raise NotFound(
            f"endpoint {endpoint} has no variant {', '.join(unknown)} "
            f"(has {', '.join(sorted(known))})",
            provider=api.name,
        )
    if set(weights) - set(shadows) != known:
        raise InvalidRequest(
            f"give a weight for every variant of {endpoint}: {', '.join(sorted(known))}",
            provider=api.name,
        )
    if any(weights.get(s, 0) > 0 for s in shadows):
        return _promote_shadow(api, current, weights)
    weights = {k: v for k, v in weights.items() if k in known}
    desired = [{"VariantName": v, "DesiredWeight": float(w)} for v, w in weights.items()]
    api.sm(
        "update_endpoint_weights_and_capacities",
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=desired,
    )
    _wait_status(api, endpoint, None, None)
    return get_endpoint(api, endpoint)


def _promote_shadow(api: Api, current: dict[str, Any], weights: dict[str, int]) -> Endpoint:
    """Give the shadow variant traffic: it becomes a production variant (mirroring ends) in a
    new endpoint config, since shadow variants take no traffic of their own."""
    config = current["config"]
    rows = [
        {**r, "InitialVariantWeight": float(weights[r["VariantName"]])}
        for r in [*config["ProductionVariants"], *config["ShadowProductionVariants"]]
    ]
    replace_config(api, current, rows, [])
    return get_endpoint(api, current["endpoint"]["EndpointName"])


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
