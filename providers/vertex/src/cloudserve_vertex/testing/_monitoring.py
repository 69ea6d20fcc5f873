"""Cloud Monitoring ``timeSeries.list`` for the online-prediction metrics Vertex AI publishes.

Answers from the predictions the fake served: ``response_count`` (INT64 per deployed model and
response code, aligned with ALIGN_SUM) and ``prediction_latencies`` (ms; aligned with
ALIGN_PERCENTILE_50/95/99, or ALIGN_MEAN) with one series per ``latency_type`` — ``overhead``,
``model`` and ``total`` (the sum), ``total`` listed first — unless the filter selects one.
Private endpoints' metrics are under ``prediction/online/private/``. An ``alignmentPeriod``
under 60 s is refused as Cloud Monitoring refuses it. One point covers the whole interval.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudserve_vertex.testing._http import ApiError

if TYPE_CHECKING:
    from cloudserve_vertex.testing._service import FakeVertexService, PredictRecord

PREFIX = "aiplatform.googleapis.com/prediction/online/"
_ALIGN_MEAN = 12
_PERCENTILES = {18: 99, 19: 95, 20: 50}
# The REST API takes aligners by name; gRPC-transcoded clients send the numbers.
_ALIGNERS = {
    "ALIGN_SUM": 14,
    "ALIGN_MEAN": 12,
    "ALIGN_PERCENTILE_99": 18,
    "ALIGN_PERCENTILE_95": 19,
    "ALIGN_PERCENTILE_50": 20,
}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _filter(expr: str) -> dict[str, str]:
    pairs = re.findall(r'([\w.]+)\s*=\s*"([^"]*)"', expr)
    return dict(pairs)


def time_series(
    records: list[PredictRecord], query: dict[str, str], service: FakeVertexService
) -> list[dict[str, Any]]:
    """The series a ``timeSeries.list`` query selects."""
    wanted = _filter(query.get("filter", ""))
    metric = wanted.get("metric.type", "")
    if not metric.startswith(PREFIX):
        raise ApiError(400, f"the fake publishes only {PREFIX}* metrics, not {metric!r}")
    endpoint_id = wanted.get("resource.labels.endpoint_id")
    period = query.get("aggregation.alignmentPeriod", "")
    if period and float(period.rstrip("s")) < 60:
        raise ApiError(400, f"The alignment period must be at least 60 seconds, got {period}")
    start = _ts(query["interval.startTime"]) if "interval.startTime" in query else 0.0
    end = _ts(query["interval.endTime"])
    chosen = [
        r
        for r in records
        if start <= r.time <= end and (endpoint_id is None or r.endpoint_id == endpoint_id)
    ]
    raw = query.get("aggregation.perSeriesAligner", "0") or "0"
    aligner = int(raw) if raw.isdigit() else _ALIGNERS.get(raw, 0)
    kind = metric.removeprefix(PREFIX)
    private = kind.startswith("private/")
    kind = kind.removeprefix("private/")
    chosen = [r for r in chosen if service.is_private(r.endpoint_id) == private]
    if kind == "response_count":
        return _counts(chosen, metric, query, service)
    if kind == "prediction_latencies":
        return _latencies(
            chosen, metric, aligner, query, service, wanted.get("metric.labels.latency_type")
        )
    raise ApiError(400, f"the fake does not publish {metric}")


def _series(
    metric: str,
    labels: dict[str, str],
    endpoint_id: str,
    service: FakeVertexService,
    value: dict[str, Any],
    kind: int,
    value_type: int,
    query: dict[str, str],
) -> dict[str, Any]:
    return {
        "metric": {"type": metric, "labels": labels},
        "resource": {
            "type": "aiplatform.googleapis.com/Endpoint",
            "labels": {
                "resource_container": service.project,
                "location": service.location,
                "endpoint_id": endpoint_id,
            },
        },
        "metricKind": kind,
        "valueType": value_type,
        "points": [
            {
                "interval": {
                    "startTime": query.get("interval.startTime", query["interval.endTime"]),
                    "endTime": query["interval.endTime"],
                },
                "value": value,
            }
        ],
    }


def _counts(
    records: list[PredictRecord], metric: str, query: dict[str, str], service: FakeVertexService
) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in records:
        groups[(r.endpoint_id, r.deployed_model_id or "", str(r.status))] += 1
    return [
        _series(
            metric,
            {"deployed_model_id": dm, "response_code": code},
            ep,
            service,
            {"int64Value": str(n)},
            2,
            2,
            query,  # DELTA, INT64
        )
        for (ep, dm, code), n in sorted(groups.items())
    ]


def _latencies(
    records: list[PredictRecord],
    metric: str,
    aligner: int,
    query: dict[str, str],
    service: FakeVertexService,
    latency_type: str | None,
) -> list[dict[str, Any]]:
    if aligner not in _PERCENTILES and aligner != _ALIGN_MEAN:
        raise ApiError(400, "latencies need ALIGN_PERCENTILE_50/95/99 or ALIGN_MEAN")
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        groups[(r.endpoint_id, r.deployed_model_id or "")].append(r.latency_ms)
    out = []
    # The fake splits each request's time: a fixed 80 % "model", the rest "overhead".
    shares = {"total": 1.0, "overhead": 0.2, "model": 0.8}
    for (ep, dm), values in sorted(groups.items()):
        arr = np.asarray(values)
        v = np.percentile(arr, _PERCENTILES[aligner]) if aligner in _PERCENTILES else arr.mean()
        for kind, share in shares.items():
            if latency_type not in (None, kind):
                continue
            out.append(
                _series(
                    metric,
                    {"deployed_model_id": dm, "latency_type": kind},
                    ep,
                    service,
                    {"doubleValue": float(v) * share},
                    2,
                    3,
                    query,  # DELTA, DOUBLE
                )
            )
    return out
