"""Online prediction: shaping the request for the route that serves it, and the answer back.

Prebuilt containers receive rows: dict records are reordered into the model's feature order
(recorded when the model was staged) and NaN goes as ``null``; ``parameters`` are refused up
front because Google's predictor ignores them. Answers keep the model's types: the service
passes predictions through ``google.protobuf.Value``, where every number is a double, so a
classifier with integer classes gets its ``1.0`` back as ``1``. Private endpoints are called at
their deployed model's ``predictHttpUri``.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from cloudserve.codecs import split_for_limit
from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.resources import Prediction
from cloudserve_vertex import _endpoints as endpoints
from cloudserve_vertex import _model_registry as registry
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex._api import VertexApi

__all__ = ["predict", "raw_predict"]


def predict(
    api: VertexApi,
    endpoint: str,
    instances: list[Any],
    *,
    variant: str | None,
    parameters: dict[str, Any] | None,
) -> Prediction:
    ep = endpoints.require(api, endpoint)
    serving = _serving(api, ep, endpoint, variant)
    routes = {registry.version_facts(api, ref)["route"] for ref in serving.values()}
    if "prebuilt" in routes:
        pkg.check_parameters("prebuilt", parameters)
        ref = next(
            r for r in serving.values() if registry.version_facts(api, r)["route"] == "prebuilt"
        )
        rows = pkg.rows_for_prebuilt(instances, registry.feature_names(api, ref))
    else:
        rows = [_without_nan(r) for r in instances]
    limit = int(api.config.max_request_mb * 1024 * 1024)
    chunks = split_for_limit(rows, limit)
    send = _private_sender(api, ep) if endpoints.is_private(ep) else _public_sender(api, endpoint)
    start = time.perf_counter()
    if len(chunks) == 1:
        answers = [send(chunks[0], parameters)]
    else:
        with ThreadPoolExecutor(max_workers=api.config.predict_concurrency) as ex:
            answers = list(ex.map(lambda c: send(c, parameters), chunks))
    first = answers[0]
    ref = f"{first['model']}@{first['modelVersionId']}"
    facts = registry.version_facts(api, ref)
    outputs = [o for a in answers for o in a["predictions"]]
    if facts["integer_outputs"]:
        outputs = [_as_int(o) for o in outputs]
    names = {d.id: d.display_name for d in ep.deployed_models}
    return Prediction(
        outputs=outputs,
        model_version=facts["version"],
        variant=names.get(first.get("deployedModelId", "")),
        latency_ms=(time.perf_counter() - start) * 1000,
        raw=answers if len(answers) > 1 else first,
    )


def _serving(api: VertexApi, ep: Any, endpoint: str, variant: str | None) -> dict[str, str]:
    """Deployed model id → model version ref of the variants that can answer."""
    weights = {
        d.id: (100 if endpoints.is_private(ep) else int(ep.traffic_split.get(d.id, 0)))
        for d in ep.deployed_models
    }
    by_name = {d.display_name: d for d in ep.deployed_models}
    if variant is not None:
        if variant not in by_name:
            raise NotFound(f"no variant {variant} on {endpoint}", provider=api.name)
        if weights[by_name[variant].id] != 100:
            raise InvalidRequest(
                f"Vertex AI routes online requests by traffic split only; variant {variant} "
                f"gets {weights[by_name[variant].id]}%. Move its traffic to 100 (set_traffic) "
                "to address it alone.",
                provider=api.name,
            )
    return {
        d.id: f"{d.model}@{d.model_version_id}" for d in ep.deployed_models if weights[d.id] > 0
    }


def _public_sender(api: VertexApi, endpoint: str) -> Any:
    from google.protobuf import json_format

    path = api.endpoint_path(endpoint)

    def send(rows: list[Any], parameters: dict[str, Any] | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"endpoint": path, "instances": rows}
        if parameters:
            kwargs["parameters"] = parameters
        r = api.rpc("prediction", "predict", **kwargs)
        return json_format.MessageToDict(r._pb)

    return send


def _private_sender(api: VertexApi, ep: Any) -> Any:
    """POST to the deployed model's ``predictHttpUri`` (reachable inside the VPC only)."""
    if not ep.deployed_models:
        raise InvalidRequest(f"private endpoint {ep.display_name} has no deployed model")
    dm = ep.deployed_models[0]
    uri = dm.private_endpoints.predict_http_uri
    if not uri:
        raise InvalidRequest(
            f"private endpoint {ep.display_name} has no predictHttpUri yet", provider=api.name
        )

    def send(rows: list[Any], parameters: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"instances": rows}
        if parameters:
            body["parameters"] = parameters
        resp = api.http(
            "POST", uri, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
        )
        answer = orjson.loads(resp.content)
        answer.setdefault("deployedModelId", dm.id)
        answer.setdefault("model", dm.model)
        answer.setdefault("modelVersionId", dm.model_version_id)
        return answer

    return send


def _without_nan(row: Any) -> Any:
    if isinstance(row, dict):
        return {k: _clean(v) for k, v in row.items()}
    if isinstance(row, list | tuple):
        return [_clean(v) for v in row]
    return _clean(row)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def _as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_as_int(v) for v in value]
    return value


def raw_predict(api: VertexApi, endpoint: str, body: bytes, content_type: str) -> bytes:
    """Send ``body`` unchanged to the model container (``:rawPredict``); returns its answer."""
    host = api.config.api_endpoint or f"https://{api.config.location}-aiplatform.googleapis.com"
    url = f"{host}/v1/{api.endpoint_path(endpoint)}:rawPredict"
    resp = api.http("POST", url, data=body, headers={"Content-Type": content_type})
    return bytes(resp.content)
