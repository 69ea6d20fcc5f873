"""Monitoring on SageMaker: CloudWatch ``AWS/SageMaker`` metrics and S3 data capture.

Metrics are read per variant with one ``GetMetricData`` call: ``Invocations``,
``Invocation4XXErrors``, ``Invocation5XXErrors``, and ``ModelLatency`` / ``OverheadLatency``
percentiles (microseconds; reported in milliseconds as their sum, the latency SageMaker adds
to a request). Across variants the percentiles are the invocation-weighted mean of the
variants' own — exact for one variant, an approximation for several.

Captured requests are the JSON Lines files SageMaker writes under
``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``; their ``endpointInput`` is decoded
with the shared codecs into feature rows, from which the core computes drift.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from cloudserve.errors import InvalidRequest
from cloudserve.resources import MetricsReport, VariantMetrics
from cloudserve_sagemaker._api import Api, page_token, split_s3
from cloudserve_sagemaker._endpoints import describe_current

__all__ = ["capture_events", "captured_rows", "decode_part", "endpoint_metrics"]

COUNTS = {"inv": "Invocations", "e4": "Invocation4XXErrors", "e5": "Invocation5XXErrors"}
PERCENTILES = ("p50", "p95", "p99")
LATENCIES = {"ml": "ModelLatency", "ol": "OverheadLatency"}


def _queries(endpoint: str, variants: list[str], period: int) -> list[dict[str, Any]]:
    queries = []
    for i, variant in enumerate(variants):
        dims = [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": variant},
        ]

        def stat(
            qid: str, metric: str, statistic: str, dims: list[dict[str, str]] = dims
        ) -> dict[str, Any]:
            return {
                "Id": qid,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": metric,
                        "Dimensions": dims,
                    },
                    "Period": period,
                    "Stat": statistic,
                },
                "ReturnData": True,
            }

        queries += [stat(f"{k}{i}", m, "Sum") for k, m in COUNTS.items()]
        queries += [stat(f"{k}{p}{i}", m, p) for k, m in LATENCIES.items() for p in PERCENTILES]
    return queries


def endpoint_metrics(p: Api, endpoint: str, window_s: float) -> MetricsReport:
    """The endpoint's CloudWatch metrics over the last ``window_s`` seconds."""
    current = describe_current(p, endpoint, missing_ok=False)
    assert current is not None
    variants = [v["VariantName"] for v in current["config"]["ProductionVariants"]]
    period = max(60, int(-(-window_s // 60)) * 60)
    end = datetime.fromtimestamp(p.clock(), timezone.utc) + timedelta(minutes=1)
    start = end - timedelta(seconds=period) - timedelta(minutes=1)
    results: dict[str, list[float]] = {}
    token: str | None = None
    while True:
        page = p.aws_call(
            "cloudwatch",
            "get_metric_data",
            MetricDataQueries=_queries(endpoint, variants, period + 120),
            StartTime=start,
            EndTime=end,
            **page_token(token),
        )
        for r in page.get("MetricDataResults", []):
            results.setdefault(r["Id"], []).extend(v for v in r.get("Values", []) if v is not None)
        token = page.get("NextToken")
        if not token:
            break
    per_variant = {v: _variant(results, i) for i, v in enumerate(variants)}
    total = sum(m.invocations for m in per_variant.values())
    errors = {
        "4xx": sum(m.errors.get("4xx", 0) for m in per_variant.values()),
        "5xx": sum(m.errors.get("5xx", 0) for m in per_variant.values()),
    }
    overall = {q: _weighted(per_variant, q) for q in ("p50_ms", "p95_ms", "p99_ms")}
    return MetricsReport(
        endpoint=endpoint,
        provider=p.name,
        window_s=window_s,
        invocations=total,
        errors=errors,
        per_variant=per_variant,
        source="cloudwatch:AWS/SageMaker",
        raw=results,
        **overall,
    )


def _variant(results: dict[str, list[float]], i: int) -> VariantMetrics:
    count = {k: int(sum(results.get(f"{k}{i}", []))) for k in COUNTS}
    lat: dict[str, float | None] = {}
    for p in PERCENTILES:
        parts = [max(results.get(f"{k}{p}{i}", []), default=None) for k in LATENCIES]
        lat[f"{p}_ms"] = None if parts[0] is None else (parts[0] + (parts[1] or 0.0)) / 1000.0
    return VariantMetrics(
        invocations=count["inv"], errors={"4xx": count["e4"], "5xx": count["e5"]}, **lat
    )


def _weighted(per_variant: dict[str, VariantMetrics], field: str) -> float | None:
    pairs = [
        (m.invocations, getattr(m, field))
        for m in per_variant.values()
        if getattr(m, field) is not None
    ]
    weight = sum(n for n, _ in pairs)
    if not pairs:
        return None
    if weight == 0:
        return max(v for _, v in pairs)
    return sum(n * v for n, v in pairs) / weight


def decode_part(part: dict[str, Any]) -> tuple[bytes, str]:
    """The bytes and content type of a captured ``endpointInput`` / ``endpointOutput``."""
    from cloudserve import codecs

    encoding = part.get("encoding", "JSON")
    data = part.get("data", "")
    body = base64.b64decode(data) if encoding == "BASE64" else data.encode()
    content_type = part.get("observedContentType") or (
        "text/csv" if encoding == "CSV" else codecs.JSON
    )
    return body, content_type


def _rows_of(part: dict[str, Any]) -> list[Any]:
    from cloudserve import codecs

    instances, _ = codecs.decode_request(*decode_part(part))
    return [list(r.values()) if isinstance(r, dict) else list(r) for r in instances]


def capture_events(
    p: Api, endpoint: str, window_s: float, *, why: str = "data_capture"
) -> list[tuple[str, dict[str, Any]]]:
    """(variant, event) of every request captured over the window, oldest first.

    SageMaker writes captures under ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``
    (one folder per variant, shadow variants included); objects of hours before the window are
    skipped by their path, events by their ``eventMetadata.inferenceTime``.
    """
    current = describe_current(p, endpoint, missing_ok=False)
    assert current is not None
    capture = current["config"].get("DataCaptureConfig") or {}
    if not capture.get("EnableCapture"):
        raise InvalidRequest(
            f"endpoint {endpoint} does not capture data; deploy it with {why}", provider=p.name
        )
    since = datetime.fromtimestamp(p.clock() - window_s, timezone.utc).replace(microsecond=0)
    hour = since.strftime("%Y/%m/%d/%H")
    prefix = f"{capture['DestinationS3Uri'].rstrip('/')}/{endpoint}/"
    bucket = prefix.removeprefix("s3://").split("/", 1)[0]
    _, key_prefix = split_s3(prefix)
    found: list[tuple[datetime, str, dict[str, Any]]] = []
    for obj in p.call(p.aws.list_objects, prefix):
        parts = obj["Key"][len(key_prefix) :].split("/")
        if len(parts) < 6 or "/".join(parts[1:5]) < hour:
            continue
        for line in p.call(p.aws.get_bytes, f"s3://{bucket}/{obj['Key']}").splitlines():
            if not line.strip():
                continue
            event = orjson.loads(line)
            when = _event_time(event)
            if when is not None and when >= since:
                found.append((when, parts[0], event))
    found.sort(key=lambda f: f[0])
    return [(variant, event) for _, variant, event in found]


def _event_time(event: dict[str, Any]) -> datetime | None:
    text = (event.get("eventMetadata") or {}).get("inferenceTime")
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def captured_rows(p: Api, endpoint: str, window_s: float) -> list[list[float]]:
    """Feature rows of the requests captured over the window, oldest first."""
    rows: list[list[float]] = []
    for _, event in capture_events(p, endpoint, window_s):
        part = event.get("captureData", {}).get("endpointInput")
        if part:
            rows.extend(_rows_of(part))
    return rows
