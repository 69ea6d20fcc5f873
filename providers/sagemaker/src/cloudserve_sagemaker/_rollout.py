"""What a rollout needs from SageMaker: its state kept in the endpoint's tags, and one
production variant removed at a time.

SageMaker tags (``AddTags`` / ``ListTags`` / ``DeleteTags`` on the endpoint ARN): at most 50
user tags a resource, a key of 1–128 and a value of 0–256 characters, both matching
``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` (botocore's ``sagemaker`` service model, shapes ``TagKey`` /
``TagValue`` / ``TagList``; "Tagging your AWS resources", tag restrictions:
https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html). Keys beginning with
``aws:`` are AWS's own and do not count.

A rollout's state (its report: steps, gates, every bake's figures) is a few kilobytes of JSON,
so it is stored zlib-compressed, base64url-encoded (letters, digits, ``-``, ``_``, ``=``: all in
the tag pattern) and cut into 256-character values under ``cloudserve:rollout:00``, ``:01`` …,
with ``cloudserve:rollout:n`` giving the count. The chunks and the count are written by one
``AddTags`` call, so a reader never sees a count without its chunks; chunks left over from a
longer earlier state are deleted after. A state that would need more tags than the endpoint
has left is refused with ``OperationFailed`` before any write.

SageMaker cannot remove a production variant from a live endpoint: ``delete_variant`` creates
an endpoint config without it, moves the endpoint onto it (``UpdateEndpoint``), waits, and then
deletes only what cloudserve made for this endpoint and no longer uses (the old config, the
variant's model) — resources tagged ``cloudserve:endpoint`` with this endpoint's name.
"""

from __future__ import annotations

from typing import Any

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.packed import TaggedState
from cloudserve.resources import Endpoint
from cloudserve_sagemaker import _endpoints as endpoints
from cloudserve_sagemaker._api import Api

__all__ = ["STATE", "delete_variant", "get_state", "put_state"]

#: the rollout state in the endpoint's tags (hidden from ``Endpoint.tags``)
STATE = TaggedState(
    "cloudserve:rollout:", what="rollout state", provider="sagemaker", cloud="SageMaker"
)


def _arn_and_tags(api: Api, endpoint: str) -> tuple[str, dict[str, str]]:
    arn = api.sm("describe_endpoint", EndpointName=endpoint)["EndpointArn"]
    return arn, endpoints.list_tags(api, arn)


def get_state(api: Api, endpoint: str) -> dict[str, Any] | None:
    """The rollout state recorded in ``endpoint``'s tags (``NotFound`` without the endpoint)."""
    return STATE.read(_arn_and_tags(api, endpoint)[1])


def put_state(api: Api, endpoint: str, state: dict[str, Any] | None) -> None:
    """Replace the rollout state in ``endpoint``'s tags (``None`` removes it); the endpoint
    itself (config, traffic) is not touched."""
    arn, tags = _arn_and_tags(api, endpoint)
    old = {k for k in tags if STATE.owns(k)}
    user = [k for k in tags if not STATE.owns(k) and not k.startswith("aws:")]
    new = STATE.tags_for(state, other_tags=len(user), resource=endpoint)
    changed = [{"Key": k, "Value": v} for k, v in new.items() if tags.get(k) != v]
    if changed:
        api.sm("add_tags", ResourceArn=arn, Tags=changed)
    old -= set(new)
    if old:
        api.sm("delete_tags", ResourceArn=arn, TagKeys=sorted(old))


def delete_variant(api: Api, endpoint: str, variant: str) -> Endpoint:
    """Remove ``variant`` (a production variant at weight 0, or the shadow variant) from
    ``endpoint`` with a new endpoint config, then delete what cloudserve made for it alone."""
    current = endpoints.describe_current(api, endpoint, missing_ok=False)
    assert current is not None
    config = current["config"]
    rows = list(config["ProductionVariants"])
    shadows = list(config.get("ShadowProductionVariants") or [])
    names = [r["VariantName"] for r in rows + shadows]
    if variant not in names:
        raise NotFound(
            f"{endpoint} has no variant {variant!r} (has {', '.join(names)})", provider=api.name
        )
    weights = endpoints.live_weights(current)
    if any(r["VariantName"] == variant for r in rows):
        if len(rows) == 1:
            raise InvalidRequest(
                f"variant {variant} is the only production variant of {endpoint};"
                " delete the endpoint instead",
                provider=api.name,
            )
        total = sum(weights.values())
        share = round(100 * weights.get(variant, 0.0) / total) if total else 0
        if share:
            raise InvalidRequest(
                f"variant {variant} of {endpoint} still takes {share}% of the traffic;"
                " set_traffic it to 0 first",
                provider=api.name,
            )
    # the kept variants at the weights they have now (set_traffic changes them in place)
    rows = [
        {**r, "InitialVariantWeight": weights.get(r["VariantName"], r.get("InitialVariantWeight"))}
        for r in rows
        if r["VariantName"] != variant
    ]
    shadows = [s for s in shadows if s["VariantName"] != variant]
    endpoints.replace_config(api, current, rows, shadows)
    return endpoints.get_endpoint(api, endpoint)
