"""Metrics from Cloud Monitoring and captured inputs from the request-response log.

Metrics: ``prediction/online/response_count`` (ALIGN_SUM, per ``deployed_model_id`` and
``response_code``) and ``prediction/online/prediction_latencies`` with
``latency_type = "total"`` (the series also exist for ``model`` and ``overhead``), aligned with
ALIGN_PERCENTILE_50/95/99 over the whole window. Cloud Monitoring takes an ``alignmentPeriod``
of at least 60 s, so shorter windows are read over 60 s. Private endpoints publish the same
metrics under ``prediction/online/private/``. The Python client speaks gRPC only, so the REST
``timeSeries.list`` is called with the authorised session.

Captured inputs: Vertex logs requests into BigQuery — with ``bq://PROJECT`` into the dataset
``logging_<endpoint display name>_<endpoint id>``, with ``bq://PROJECT.DATASET`` into that
dataset, the table ``request_response_logging`` in both cases; ``request_payload`` holds each
instance as JSON text. The rows are read with ``tabledata.list``.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cloudserve.errors import InvalidRequest
from cloudserve.resources import MetricsReport, VariantMetrics
from cloudserve_vertex import _endpoints as endpoints
from cloudserve_vertex._api import VertexApi

__all__ = ["captured_inputs", "metrics"]

_PREFIX = "aiplatform.googleapis.com/prediction/online/"
_MIN_ALIGNMENT_S = 60
_PAGE = 1000


def _series(
    api: VertexApi,
    endpoint_id: str,
    metric: str,
    window_s: float,
    aligner: str,
    extra: str = "",
    *,
    now: float,
) -> list[dict[str, Any]]:
    end = datetime.fromtimestamp(now, timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    period = max(_MIN_ALIGNMENT_S, math.ceil(window_s))
    start = end - timedelta(seconds=period)
    params = {
        "filter": (
            f'metric.type = "{metric}" AND resource.labels.endpoint_id = "{endpoint_id}"{extra}'
        ),
        "interval.startTime": start.isoformat().replace("+00:00", "Z"),
        "interval.endTime": end.isoformat().replace("+00:00", "Z"),
        "aggregation.alignmentPeriod": f"{period}s",
        "aggregation.perSeriesAligner": aligner,
    }
    host = api.host("https://monitoring.googleapis.com")
    url = f"{host}/v3/projects/{api.config.project}/timeSeries"
    series: list[dict[str, Any]] = []
    token = None
    while True:
        page = {**params, **({"pageToken": token} if token else {})}
        doc = api.http("GET", url, params=page).json()
        series.extend(doc.get("timeSeries", []))
        token = doc.get("nextPageToken")
        if not token:
            return series


def metrics(
    api: VertexApi, endpoint: str, window_s: float, *, now: float | None = None
) -> MetricsReport:
    """Per-deployed-model figures over the ``window_s`` seconds before ``now``."""
    now = time.time() if now is None else now
    ep = endpoints.require(api, endpoint)
    names = {d.id: d.display_name for d in ep.deployed_models}
    prefix = _PREFIX + ("private/" if endpoints.is_private(ep) else "")
    endpoint_id = api.resource_id(endpoint)
    per: dict[str, VariantMetrics] = {}
    errors: dict[str, int] = {}
    total = 0
    for s in _series(api, endpoint_id, prefix + "response_count", window_s, "ALIGN_SUM", now=now):
        count = sum(int(p["value"].get("int64Value", 0)) for p in s.get("points", []))
        labels = s["metric"].get("labels", {})
        vm = per.setdefault(names.get(labels.get("deployed_model_id", ""), ""), VariantMetrics())
        code = labels.get("response_code", "200")
        vm.invocations += count
        total += count
        if code[:1] in ("4", "5"):
            cls = f"{code[0]}xx"
            errors[cls] = errors.get(cls, 0) + count
            vm.errors[cls] = vm.errors.get(cls, 0) + count
    percentiles: dict[str, float] = {}
    total_only = ' AND metric.labels.latency_type = "total"'
    for field, aligner in (
        ("p50_ms", "ALIGN_PERCENTILE_50"),
        ("p95_ms", "ALIGN_PERCENTILE_95"),
        ("p99_ms", "ALIGN_PERCENTILE_99"),
    ):
        latency = prefix + "prediction_latencies"
        for s in _series(api, endpoint_id, latency, window_s, aligner, total_only, now=now):
            labels = s["metric"].get("labels", {})
            if labels.get("latency_type", "total") != "total":
                continue
            variant = names.get(labels.get("deployed_model_id", ""), "")
            value = max(float(p["value"].get("doubleValue", 0.0)) for p in s["points"])
            setattr(per.setdefault(variant, VariantMetrics()), field, value)
            percentiles[field] = max(percentiles.get(field, 0.0), value)
    return MetricsReport(
        endpoint=endpoint,
        provider=api.name,
        window_s=window_s,
        invocations=total,
        errors=errors,
        per_variant={k: v for k, v in per.items() if k},
        source=f"Cloud Monitoring {prefix}* (latency_type=total)",
        **percentiles,
    )


def log_table(uri: str, display_name: str, endpoint_id: str) -> tuple[str, str, str]:
    """(project, dataset, table) Vertex writes the request-response log of an endpoint to."""
    project, _, rest = uri.removeprefix("bq://").partition(".")
    dataset, _, table = rest.partition(".")
    if not project:
        raise InvalidRequest(f"request-response log destination {uri!r} names no project")
    if not dataset:
        dataset = f"logging_{re.sub(r'[^A-Za-z0-9_]', '_', display_name)}_{endpoint_id}"
    return project, dataset, table or "request_response_logging"


def captured_inputs(
    api: VertexApi, endpoint: str, window_s: float, *, now: float | None = None
) -> list[list[float]]:
    """Feature rows of every request logged in the ``window_s`` seconds before ``now``."""
    ep = endpoints.require(api, endpoint)
    cfg = ep.predict_request_response_logging_config
    if not cfg.enabled:
        raise InvalidRequest(
            f"endpoint {endpoint} was deployed without data capture", provider=api.name
        )
    project, dataset, table = log_table(
        cfg.bigquery_destination.output_uri, ep.display_name, api.resource_id(endpoint)
    )
    host = api.host("https://bigquery.googleapis.com")
    url = f"{host}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}/data"
    since_us = ((time.time() if now is None else now) - window_s) * 1_000_000
    rows: list[list[float]] = []
    token = None
    while True:
        params = {
            "selectedFields": "logging_time,request_payload",
            "maxResults": str(_PAGE),
            "formatOptions.useInt64Timestamp": "true",
            **({"pageToken": token} if token else {}),
        }
        doc = api.http("GET", url, params=params).json()
        for r in doc.get("rows", []):
            logged, payload = r["f"][0]["v"], r["f"][1]["v"] or []
            if float(logged) >= since_us:
                rows.extend(_features(orjson.loads(cell["v"])) for cell in payload)
        token = doc.get("pageToken")
        if not token:
            return rows


def _features(instance: Any) -> list[float]:
    values = instance.values() if isinstance(instance, dict) else instance
    return [float("nan") if v is None else float(v) for v in values]
