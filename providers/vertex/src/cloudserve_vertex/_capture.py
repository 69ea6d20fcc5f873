"""Reading captured requests back from Vertex AI request-response logging (BigQuery).

Vertex writes one row per logged request to the BigQuery table named in the endpoint's
``predict_request_response_logging_config``; ``request_payload`` holds each instance as a
JSON string. The rows are read with BigQuery's REST ``tabledata.list`` (no extra client
library), keeping those whose ``logging_time`` falls in the window; the core computes drift
from them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from cloudserve.errors import InvalidRequest

if TYPE_CHECKING:
    from cloudserve_vertex._provider import VertexProvider

__all__ = ["read_captured"]

_PAGE = 1000


def _table(uri: str) -> tuple[str, str, str]:
    project, _, rest = uri.removeprefix("bq://").partition(".")
    dataset, _, table = rest.partition(".")
    if not project or not dataset:
        raise InvalidRequest(f"request-response log destination {uri!r} is not bq://P.D[.T]")
    return project, dataset, table or "request_response_logging"


def read_captured(provider: VertexProvider, uri: str, window_s: float) -> list[list[float]]:
    """Feature rows of every logged request in the last ``window_s`` seconds."""
    from google.api_core import exceptions as gexc

    project, dataset, table = _table(uri)
    host = (
        provider.config.api_endpoint
        if provider._local_fake()
        else "https://bigquery.googleapis.com"
    )
    url = f"{host}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}/data"
    since_us = (time.time() - window_s) * 1_000_000

    def page(token: str | None) -> dict[str, Any]:
        params = {
            "selectedFields": "logging_time,request_payload",
            "maxResults": str(_PAGE),
            "formatOptions.useInt64Timestamp": "true",
            **({"pageToken": token} if token else {}),
        }
        resp = provider._session().get(url, params=params)
        if resp.status_code >= 400:
            raise gexc.from_http_response(resp)
        return resp.json()

    rows: list[list[float]] = []
    token = None
    while True:
        doc = provider.call(page, token)
        for r in doc.get("rows", []):
            logged, payload = r["f"][0]["v"], r["f"][1]["v"] or []
            if float(logged) >= since_us:
                rows.extend(_features(orjson.loads(cell["v"])) for cell in payload)
        token = doc.get("pageToken")
        if not token:
            return rows


def _features(instance: Any) -> list[float]:
    if isinstance(instance, dict):
        return [float(v) for v in instance.values()]
    return [float(v) for v in instance]
