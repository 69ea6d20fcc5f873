"""Asynchronous inference: input uploaded to S3, InvokeEndpointAsync, output polled in S3.

SageMaker names the output and failure objects itself and returns them with the invocation
(``OutputLocation``, ``FailureLocation``); cloudserve polls exactly those. So that any process
knowing the endpoint and the request id (the ``InferenceId`` cloudserve chooses) can poll, the
two locations are written beside the uploaded input as ``<id>.locations.json``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.resources import AsyncPrediction, JobStatus
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._endpoints import describe_current

__all__ = ["get_async_result", "predict_async"]


def _async_output(p: Api, endpoint: str) -> dict[str, str]:
    current = describe_current(p, endpoint, missing_ok=False)
    assert current is not None
    cfg = current["config"].get("AsyncInferenceConfig")
    if not cfg:
        raise InvalidRequest(
            f"endpoint {endpoint} is a real-time endpoint; deploy it from a target with "
            "async_inference set to queue predictions",
            provider=p.name,
        )
    return dict(cfg["OutputConfig"])


def predict_async(
    p: Api,
    endpoint: str,
    instances: list[Any],
    *,
    variant: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> AsyncPrediction:
    """Upload the input, queue it, and return a handle with the request id at once."""
    from cloudserve import codecs

    if variant is not None:
        raise InvalidRequest(
            "asynchronous endpoints serve one variant; drop variant=", provider=p.name
        )
    output = _async_output(p, endpoint)
    request_id = uuid.uuid4().hex
    source = p.cfg.s3_uri("async-input", endpoint, f"{request_id}.json")
    body = codecs.encode_instances(instances)
    if parameters:
        import orjson

        body = orjson.dumps({"instances": instances, "parameters": parameters})
    p.call(p.aws.put, source, body)
    answer = p.call(
        p.aws.runtime.invoke_endpoint_async,
        EndpointName=endpoint,
        InputLocation=source,
        ContentType=codecs.JSON,
        Accept=codecs.JSON,
        InferenceId=request_id,
    )
    locations = {
        "output": answer.get("OutputLocation") or f"{output['S3OutputPath']}/{request_id}.out",
        "failure": answer.get("FailureLocation"),
    }
    p.call(p.aws.put, _locations_uri(p, endpoint, request_id), json.dumps(locations).encode())
    return AsyncPrediction(
        request_id=request_id,
        endpoint=endpoint,
        status=JobStatus.RUNNING,
        output_location=locations["output"],
        raw=answer,
    )


def _locations_uri(p: Api, endpoint: str, request_id: str) -> str:
    return p.cfg.s3_uri("async-input", endpoint, f"{request_id}.locations.json")


def get_async_result(p: Api, endpoint: str, request_id: str) -> AsyncPrediction:
    """SUCCEEDED with outputs once the output object exists, FAILED once the failure object
    exists, RUNNING before either."""
    from cloudserve import codecs

    _async_output(p, endpoint)
    try:
        locations = json.loads(p.call(p.aws.get_bytes, _locations_uri(p, endpoint, request_id)))
    except NotFound as exc:
        raise NotFound(
            f"no asynchronous request {request_id} on endpoint {endpoint}", provider=p.name
        ) from exc
    out_uri = locations["output"]
    fail_uri = locations.get("failure") or ""
    if p.call(p.aws.exists, out_uri):
        body = p.call(p.aws.get_bytes, out_uri)
        return AsyncPrediction(
            request_id=request_id,
            endpoint=endpoint,
            status=JobStatus.SUCCEEDED,
            outputs=codecs.decode_predictions(body, codecs.JSON),
            output_location=out_uri,
        )
    if fail_uri and p.call(p.aws.exists, fail_uri):
        error = p.call(p.aws.get_bytes, fail_uri).decode(errors="replace")
        return AsyncPrediction(
            request_id=request_id,
            endpoint=endpoint,
            status=JobStatus.FAILED,
            error=error,
            output_location=fail_uri,
        )
    return AsyncPrediction(
        request_id=request_id, endpoint=endpoint, status=JobStatus.RUNNING, output_location=out_uri
    )
