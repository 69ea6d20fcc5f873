"""Autoscaling with Application Auto Scaling: a scalable target per variant
(``sagemaker:variant:DesiredInstanceCount``, min/max replicas) and a target-tracking policy on
``SageMakerVariantInvocationsPerInstance``.

A plan is a list of ``{"endpoint", "variant", "min", "max", "target"}``; it is read back from
AWS before an update (SageMaker refuses to update a variant that is registered for scaling, so
targets are deregistered first and registered again once the update is in service).
"""

from __future__ import annotations

import contextlib
from typing import Any

from cloudserve.errors import CloudServeError
from cloudserve.specs import DeploySpec
from cloudserve_sagemaker._api import Api

__all__ = ["DIMENSION", "deregister", "plan", "plan_of", "register", "resource_id", "targets"]

DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def resource_id(endpoint: str, variant: str) -> str:
    """The Application Auto Scaling resource id of a variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def plan(p: Api, spec: DeploySpec, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scaling of every variant the new config keeps: carried over, plus the new one."""
    kept = previous if spec.traffic < 100 else []
    steps = [s for s in kept if s["variant"] != spec.variant_name]
    c = spec.compute
    if c.autoscaling:
        lo, hi = c.replica_range
        steps.append(
            {
                "endpoint": spec.endpoint,
                "variant": spec.variant_name,
                "min": max(lo, 1),
                "max": hi,
                "target": c.autoscale_target or p.cfg.autoscale_target,
            }
        )
    return steps


def plan_of(p: Api, current: dict[str, Any]) -> list[dict[str, Any]]:
    """The scaling registered now for the variants of ``current`` (endpoint + config)."""
    endpoint = current["endpoint"]["EndpointName"]
    variants = [v["VariantName"] for v in current["config"]["ProductionVariants"]]
    return [
        {
            "endpoint": endpoint,
            "variant": variant,
            "min": t["MinCapacity"],
            "max": t["MaxCapacity"],
            "target": _policy_target(p, endpoint, variant),
        }
        for variant, t in targets(p, endpoint, variants).items()
    ]


def _policies(p: Api, resource: str) -> list[dict[str, Any]]:
    found = p.aws_call(
        "application-autoscaling",
        "describe_scaling_policies",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
    )
    return list(found.get("ScalingPolicies", []))


def _policy_target(p: Api, endpoint: str, variant: str) -> float:
    for policy in _policies(p, resource_id(endpoint, variant)):
        tracking = policy.get("TargetTrackingScalingPolicyConfiguration")
        if tracking:
            return float(tracking["TargetValue"])
    return p.cfg.autoscale_target


def targets(p: Api, endpoint: str, variants: list[str]) -> dict[str, dict[str, Any]]:
    """Variant name → its registered scalable target (variants without one are absent)."""
    if not variants:
        return {}
    ids = {resource_id(endpoint, v): v for v in variants}
    found = p.aws_call(
        "application-autoscaling",
        "describe_scalable_targets",
        ServiceNamespace="sagemaker",
        ResourceIds=list(ids),
        ScalableDimension=DIMENSION,
    )
    return {
        ids[t["ResourceId"]]: t for t in found.get("ScalableTargets", []) if t["ResourceId"] in ids
    }


def register(p: Api, endpoint: str, steps: list[dict[str, Any]], created: list[str]) -> None:
    """Register each planned target and its target-tracking policy; each target registered is
    appended to ``created`` (so a failed deploy can remove it)."""
    for step in steps:
        resource = resource_id(endpoint, step["variant"])
        p.aws_call(
            "application-autoscaling",
            "register_scalable_target",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            MinCapacity=step["min"],
            MaxCapacity=step["max"],
        )
        created.append(resource)
        p.aws_call(
            "application-autoscaling",
            "put_scaling_policy",
            PolicyName=f"cloudserve-{endpoint}-{step['variant']}",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(step["target"]),
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        )


def deregister_one(p: Api, resource: str) -> None:
    """Delete a target's policies and the target; what is already gone is fine."""
    for policy in _policies(p, resource):
        with contextlib.suppress(CloudServeError):
            p.aws_call(
                "application-autoscaling",
                "delete_scaling_policy",
                PolicyName=policy["PolicyName"],
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension=DIMENSION,
            )
    with contextlib.suppress(CloudServeError):
        p.aws_call(
            "application-autoscaling",
            "deregister_scalable_target",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension=DIMENSION,
        )


def deregister(p: Api, endpoint: str, variants: list[str]) -> None:
    """Deregister the scaling of the given variants of ``endpoint``."""
    for variant in targets(p, endpoint, variants):
        deregister_one(p, resource_id(endpoint, variant))
