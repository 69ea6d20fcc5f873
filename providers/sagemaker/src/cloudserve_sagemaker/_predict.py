"""Online prediction: ``InvokeEndpoint`` with JSON ``{"instances": …}`` (plus ``parameters``).

Inputs over the endpoint's payload limit (``max_payload_mb``; 4 MB for serverless endpoints) are
split into chunks, sent ``predict_concurrency`` at a time and reassembled in order. Asynchronous
prediction is in ``_async``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import orjson

from cloudserve.errors import NotFound, OperationFailed
from cloudserve.resources import Prediction
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._endpoints import get_endpoint
from cloudserve_sagemaker._validate import SERVERLESS_PAYLOAD_MB

__all__ = ["payload_mb", "predict", "version_of"]

# JSON wrapper bytes and headroom below the invoke limit.
PAYLOAD_MARGIN = 16 * 1024


def _invoke(
    api: Api, endpoint: str, rows: list[Any], variant: str | None, parameters: dict[str, Any] | None
) -> tuple[list[Any], str | None]:
    from cloudserve import codecs

    body = codecs.encode_instances(rows)
    if parameters:
        body = orjson.dumps({"instances": rows, "parameters": parameters})
    params: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": body,
        "ContentType": codecs.JSON,
        "Accept": codecs.JSON,
    }
    if variant:
        params["TargetVariant"] = variant
    # Data capture records it with the request (on every variant a request reaches), which is
    # how the shadow report joins a mirrored request's two answers (see _shadow).
    params["InferenceId"] = uuid.uuid4().hex
    # Predictions change nothing, so a throttled or 5xx invocation is safe to repeat.
    answer = api.call(lambda: _read_invoke(api, params))
    outputs = codecs.decode_predictions(answer["Body"], answer.get("ContentType") or codecs.JSON)
    if len(outputs) != len(rows):
        raise OperationFailed(
            f"endpoint {endpoint} returned {len(outputs)} outputs for {len(rows)} rows",
            provider=api.name,
        )
    return outputs, answer.get("InvokedProductionVariant")


def _read_invoke(api: Api, params: dict[str, Any]) -> dict[str, Any]:
    answer = api.aws.runtime.invoke_endpoint(**params)
    return {**answer, "Body": answer["Body"].read()}


def predict(
    api: Api,
    endpoint: str,
    instances: list[Any],
    *,
    variant: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Prediction:
    """InvokeEndpoint; inputs over the payload limit go as concurrent chunks, in order."""
    from cloudserve import codecs

    started = time.perf_counter()
    limit = int(payload_mb(api, endpoint) * 1024 * 1024) - PAYLOAD_MARGIN
    chunks = codecs.split_for_limit(instances, limit) if instances else [[]]
    if len(chunks) == 1:
        results = [_invoke(api, endpoint, chunks[0], variant, parameters)]
    else:
        results = list(
            api.executor().map(
                lambda rows: _invoke(api, endpoint, rows, variant, parameters), chunks
            )
        )
    outputs = [o for chunk, _ in results for o in chunk]
    served = results[0][1]
    return Prediction(
        outputs=outputs,
        model_version=version_of(api, endpoint, served),
        variant=served,
        latency_ms=(time.perf_counter() - started) * 1000,
        raw={"invoked_variants": [v for _, v in results], "chunks": len(chunks)},
    )


def payload_mb(api: Api, endpoint: str) -> float:
    """The request size limit of ``endpoint``: 4 MB serverless, else ``max_payload_mb``."""
    with api.lock:
        serverless = api.serverless.get(endpoint)
    if serverless is None:
        with contextlib.suppress(NotFound):
            get_endpoint(api, endpoint)
        with api.lock:
            serverless = api.serverless.get(endpoint, False)
    if serverless:
        return min(api.cfg.max_payload_mb, SERVERLESS_PAYLOAD_MB)
    return api.cfg.max_payload_mb


def version_of(api: Api, endpoint: str, variant: str | None) -> str | None:
    """The model version ``variant`` of ``endpoint`` serves (read once, then remembered)."""
    if variant is None:
        return None
    with api.lock:
        version = api.versions.get(endpoint, {}).get(variant)
    if version is None:
        with contextlib.suppress(NotFound):
            get_endpoint(api, endpoint)
        with api.lock:
            version = api.versions.get(endpoint, {}).get(variant)
    return version
