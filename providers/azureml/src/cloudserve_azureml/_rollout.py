"""What a rollout needs from Azure ML: its state kept in the endpoint's tags, and one
deployment removed at a time.

Azure Resource Manager allows 50 tags a resource, a tag name up to 512 characters and a value up
to 256 (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations).
A rollout's state (its report: steps, gates, every bake's figures) is a few kilobytes of JSON, so
it is stored zlib-compressed, base64url-encoded and cut into 256-character values under the tags
``cloudserve-rollout-00``, ``-01``…, with ``cloudserve-rollout-n`` giving the count. A state that
would need more tags than the endpoint has left is refused with ``OperationFailed`` before any
request changes the endpoint.
"""

from __future__ import annotations

from typing import Any

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.resources import Endpoint
from cloudserve_azureml import _endpoints, _shadow
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = ["STATE", "delete_variant", "get_state", "put_state"]

STATE = _endpoints.ROLLOUT_STATE


def get_state(api: AzureApi, endpoint: str) -> dict[str, Any] | None:
    """The rollout state recorded in ``endpoint``'s tags (``NotFound`` without the endpoint)."""
    ep = api.sdk(api.ml.online_endpoints.get, endpoint)
    return STATE.read(dict(ep.tags or {}))


def put_state(api: AzureApi, endpoint: str, state: dict[str, Any] | None) -> None:
    """Replace the rollout state in ``endpoint``'s tags (``None`` removes it); one endpoint
    update, which leaves its traffic as it is."""
    ep = api.sdk(api.ml.online_endpoints.get, endpoint)
    kept = {k: v for k, v in (ep.tags or {}).items() if not STATE.owns(k)}
    kept |= STATE.tags_for(state, other_tags=len(kept), resource=endpoint)
    if kept == dict(ep.tags or {}):
        return
    ep.tags = kept
    api.lro(api.ml.online_endpoints.begin_create_or_update, ep)


def delete_variant(api: AzureApi, endpoint: str, variant: str) -> Endpoint:
    """Delete the deployment behind ``variant`` (it must take no live traffic; mirroring to a
    shadow ends first) with the assets cloudserve made for it alone."""
    ep = api.sdk(api.ml.online_endpoints.get, endpoint)
    deployments = _endpoints.list_deployments(api, endpoint)
    by_variant = {(d.tags or {}).get(_endpoints.TAG_VARIANT, n): d for n, d in deployments.items()}
    dep = by_variant.get(variant)
    if dep is None:
        raise NotFound(f"{endpoint} has no variant {variant!r}", provider=PROVIDER)
    traffic = {k.lower(): int(v) for k, v in (ep.traffic or {}).items()}
    share = traffic.get(dep.name.lower(), 0)
    if share:
        raise InvalidRequest(
            f"variant {variant} of {endpoint} still takes {share}% of the traffic;"
            " set_traffic it to 0 first",
            provider=PROVIDER,
        )
    mirror = _shadow.mirror_of(ep)
    if dep.name.lower() in mirror:  # a shadow: mirroring to it ends before it goes
        ep.mirror_traffic = {k: v for k, v in mirror.items() if k != dep.name.lower()}
        api.lro(api.ml.online_endpoints.begin_create_or_update, ep)
    _endpoints.delete_deployment(api, endpoint, dep)
    api.scoring_targets.pop(endpoint, None)
    return _endpoints.get_endpoint(api, endpoint)
