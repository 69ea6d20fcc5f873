"""Online prediction through an endpoint's scoring URI.

The URI, the key and the deployments are fetched once per endpoint and kept (predictions make no
ARM call), refetched after a 401 or a 404 or when an unknown deployment answers. Large inputs go
as concurrent chunks below ``max_request_mb``, outputs kept in order. Azure's answers are read by
:class:`ScoringError` (a 424 carries the scoring container's own status).

Every scoring request carries a fresh request id, in the body (``"request_id"``, which the
handler's decoding ignores) and in the ``x-ms-client-request-id`` header that Azure's inference
server reads and echoes back: the id a shadow report joins the live and the mirrored answers by
(see ``_shadow``).
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.resources import Prediction
from cloudserve_azureml import _endpoints
from cloudserve_azureml._api import PROVIDER, AzureApi
from cloudserve_azureml._endpoints import TAG_VARIANT, list_deployments
from cloudserve_azureml._errors import ScoringError

__all__ = ["ScoringTarget", "predict", "scoring_target"]


@dataclass(frozen=True)
class ScoringTarget:
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


def scoring_target(api: AzureApi, endpoint: str, *, refresh: bool = False) -> ScoringTarget:
    """The endpoint's scoring URI, key and deployments: fetched once (3 ARM calls), then
    kept, so predictions make no ARM call; refetched after a 401 (keys rotated) or a 404
    (deployments changed), or when a deployment this process does not know answers."""
    if refresh or endpoint not in api.scoring_targets:
        ep = api.sdk(api.ml.online_endpoints.get, endpoint)
        keys = api.sdk(api.ml.online_endpoints.get_keys, endpoint)
        api.scoring_targets[endpoint] = ScoringTarget(
            ep.scoring_uri, keys.primary_key, list_deployments(api, endpoint)
        )
    return api.scoring_targets[endpoint]


def predict(
    api: AzureApi,
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
        header = scoring_target(api, endpoint).deployment_of(variant)
        if header is None:
            header = scoring_target(api, endpoint, refresh=True).deployment_of(variant)
        if header is None:
            raise NotFound(f"variant {variant} not found on {endpoint}", provider=PROVIDER)
    # what the body holds besides the rows (parameters, the request id) counts against the limit
    extra = len(_request_body([], parameters, uuid.uuid4().hex)) - len(b'{"instances":[]}')
    chunks = split_for_limit(instances, int(api.cfg.max_request_mb * 1024 * 1024) - extra)
    start = time.perf_counter()
    if len(chunks) == 1:
        results = [_score_chunk(api, endpoint, chunks[0], header, parameters)]
    else:
        with ThreadPoolExecutor(min(api.cfg.predict_concurrency, len(chunks))) as pool:
            results = list(
                pool.map(lambda c: _score_chunk(api, endpoint, c, header, parameters), chunks)
            )
    outputs = [o for r in results for o in r[0]]
    served = results[0][1]
    target = scoring_target(api, endpoint)
    if served and served not in target.deployments:
        target = scoring_target(api, endpoint, refresh=True)
    dep = target.deployments.get(served or "")
    var = _endpoints.variant(dep, 0) if dep is not None else None
    return Prediction(
        outputs=outputs,
        model_version=var.model_version if var else None,
        variant=var.name if var else served,
        latency_ms=(time.perf_counter() - start) * 1000,
    )


def _score_chunk(
    api: AzureApi,
    endpoint: str,
    rows: list[Any],
    deployment: str | None,
    parameters: dict[str, Any] | None,
) -> tuple[list[Any], str | None]:
    rid = uuid.uuid4().hex
    body = _request_body(rows, parameters, rid)

    def attempt() -> tuple[list[Any], str | None]:
        try:
            return _post_score(api, endpoint, body, deployment, rid)
        except ScoringError as exc:
            if exc.status not in (401, 404):
                raise
            # keys rotated or deployments changed since they were cached: fetch once more
            scoring_target(api, endpoint, refresh=True)
            return _post_score(api, endpoint, body, deployment, rid)

    return api.call(attempt)


def _post_score(
    api: AzureApi, endpoint: str, body: bytes, deployment: str | None, request_id: str
) -> tuple[list[Any], str | None]:
    import requests

    from cloudserve.codecs import JSON, decode_predictions

    target = scoring_target(api, endpoint)
    headers = {
        "Authorization": f"Bearer {target.key}",
        "Content-Type": JSON,
        "x-ms-client-request-id": request_id,
    }
    if deployment:
        headers["azureml-model-deployment"] = deployment
    timeout = api.cfg.request_timeout_ms / 1000 + 5
    resp = requests.post(target.uri, data=body, headers=headers, timeout=timeout)
    if resp.status_code >= 300:
        raise ScoringError.from_response(resp.status_code, resp.headers, resp.text)
    outputs = decode_predictions(resp.content, resp.headers.get("Content-Type", JSON))
    return outputs, resp.headers.get("azureml-model-deployment")


def _request_body(rows: list[Any], parameters: dict[str, Any] | None, request_id: str) -> bytes:
    """The scoring request: cloudserve's JSON instances body, with ``parameters`` when given,
    and the request id."""
    import orjson

    doc: dict[str, Any] = {"instances": rows}
    if parameters:
        doc["parameters"] = parameters
    doc["request_id"] = request_id
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
