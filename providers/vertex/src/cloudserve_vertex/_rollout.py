"""A rollout's state, recorded with the Vertex AI endpoint so another process can resume it.

An endpoint label holds at most 63 lowercase characters (keys and values: lowercase letters,
digits, ``_`` and ``-``; see ``docs/providers/vertex.md``), and a rollout's state is a few
kilobytes of JSON (its steps, gates and every decision's figures). So the state is split:

* the full JSON is the object ``<staging_prefix>/rollouts/<endpoint id>.json`` in the target's
  staging bucket, written whole on every change;
* the endpoint's label ``cloudserve-rollout`` says a rollout is in progress and names the new
  variant (visible in the console and in ``gcloud ai endpoints describe``).

The label is what makes a rollout "in progress": the object is written first and the label set
after it, and on the end the label is removed first and the object deleted after. A process
killed between the two leaves either a stale object and no label (read as no rollout, and
overwritten by the next one) or a label whose object is the newest state. A label whose object
is missing is reported, not silently treated as "no rollout".
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

from cloudserve.errors import NotFound, OperationFailed
from cloudserve_vertex import _endpoints as endpoints
from cloudserve_vertex._api import VertexApi
from cloudserve_vertex._packaging import label_value

__all__ = ["LABEL", "get_state", "object_name", "put_state"]

LABEL = endpoints.ROLLOUT_LABEL


def object_name(api: VertexApi, endpoint: str) -> str:
    """The staging-bucket object that holds ``endpoint``'s rollout state."""
    return f"{api.config.staging_prefix}/rollouts/{api.resource_id(endpoint)}.json"


def _blob(api: VertexApi, endpoint: str) -> Any:
    return api.client("storage").bucket(api.config.bucket).blob(object_name(api, endpoint))


def get_state(api: VertexApi, endpoint: str) -> dict[str, Any] | None:
    ep = endpoints.require(api, endpoint)
    if LABEL not in ep.labels:
        return None
    try:
        data = api.call(_blob(api, endpoint).download_as_bytes)
    except NotFound:
        raise OperationFailed(
            f"endpoint {endpoint} is labelled {LABEL}={ep.labels[LABEL]} but its state object "
            f"gs://{api.config.bucket}/{object_name(api, endpoint)} is missing; remove the "
            "label to start over",
            provider=api.name,
        ) from None
    state = orjson.loads(data)
    if not isinstance(state, dict):
        raise OperationFailed(
            f"the rollout state object of {endpoint} is not a JSON object", provider=api.name
        )
    return state


def put_state(api: VertexApi, endpoint: str, state: dict[str, Any] | None) -> None:
    ep = endpoints.require(api, endpoint)
    blob = _blob(api, endpoint)
    if state is not None:
        api.call(blob.upload_from_string, orjson.dumps(state), content_type="application/json")
        _set_label(api, ep, label_value(str(state.get("new_variant") or "in-progress")))
        return
    if LABEL in ep.labels:
        _set_label(api, ep, None)
    with contextlib.suppress(NotFound):  # nothing recorded, or an earlier clear got this far
        api.call(blob.delete)


def _set_label(api: VertexApi, ep: Any, value: str | None) -> None:
    from google.cloud import aiplatform_v1 as v1

    labels = dict(ep.labels)
    if value is None:
        labels.pop(LABEL, None)
    else:
        if labels.get(LABEL) == value:
            return
        labels[LABEL] = value
    api.rpc(
        "endpoint",
        "update_endpoint",
        endpoint=v1.Endpoint(name=ep.name, labels=labels),
        update_mask={"paths": ["labels"]},
    )
