"""Monitoring on Azure ML: Azure Monitor metrics and the data collector's captured inputs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from cloudserve.resources import MetricsReport, VariantMetrics
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = ["captured_rows", "endpoint_metrics"]

METRICS_API = "2023-10-01"
LATENCY = {
    "p50_ms": "RequestLatency_P50",
    "p95_ms": "RequestLatency_P95",
    "p99_ms": "RequestLatency_P99",
}


def _timespan(now: float, window_s: float) -> str:
    end = datetime.fromtimestamp(now, timezone.utc)
    start = end - timedelta(seconds=window_s)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def _series(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {m["name"]["value"]: m.get("timeseries") or [] for m in body.get("value") or []}


def _dims(ts: dict[str, Any]) -> dict[str, str]:
    return {d["name"]["value"]: d["value"] for d in ts.get("metadatavalues") or []}


def _mean(points: list[float]) -> float | None:
    return sum(points) / len(points) if points else None


def endpoint_metrics(
    api: AzureApi, endpoint: str, window_s: float, variants: dict[str, str]
) -> MetricsReport:
    """Requests by status class and latency percentiles from Azure Monitor, per deployment.

    Requests come from ``RequestsPerMinute`` split by ``deployment`` and ``statusCodeClass``: at
    a one-minute grain each point's ``Average`` is that minute's request count (Azure ML's own
    examples query it with ``--aggregation Average --interval PT1M``), so the window's count is
    their sum. Latencies come from ``RequestLatency_P50/P95/P99`` split by ``deployment`` (the
    mean of the per-minute values). ``variants`` maps deployment names to the variant names
    cloudserve shows; the window ends at ``api.clock()``.
    """
    resource = f"{api.workspace_id}/onlineEndpoints/{endpoint}/providers/Microsoft.Insights/metrics"
    common = {
        "api-version": METRICS_API,
        "timespan": _timespan(api.clock(), window_s),
        "interval": "PT1M",
    }
    counts = _series(
        api.arm(
            "GET",
            resource,
            metricnames="RequestsPerMinute",
            aggregation="Average",
            **{"$filter": "deployment eq '*' and statusCodeClass eq '*'"},
            **common,
        )
    )
    latency = _series(
        api.arm(
            "GET",
            resource,
            metricnames=",".join(LATENCY.values()),
            aggregation="Average",
            **{"$filter": "deployment eq '*'"},
            **common,
        )
    )
    lower = {k.lower(): v for k, v in variants.items()}
    name_of = lambda dims: lower.get(dims.get("deployment", "").lower(), dims.get("deployment", ""))  # noqa: E731
    by_class: dict[str, dict[str, int]] = {}
    for ts in counts.get("RequestsPerMinute", []):
        dims = _dims(ts)
        cls = dims.get("statusCodeClass", "2xx")
        count = round(sum(pt.get("average") or 0 for pt in ts["data"]))
        per = by_class.setdefault(name_of(dims), {})
        per[cls] = per.get(cls, 0) + count
    points: dict[str, dict[str, list[float]]] = {}
    for field, metric in LATENCY.items():
        for ts in latency.get(metric, []):
            values = [pt["average"] for pt in ts["data"] if pt.get("average") is not None]
            points.setdefault(name_of(_dims(ts)), {}).setdefault(field, []).extend(values)
    per_variant = {
        name: VariantMetrics(
            invocations=sum(by_class.get(name, {}).values()),
            errors={k: v for k, v in by_class.get(name, {}).items() if not k.startswith("2") and v},
            **{f: _mean(points.get(name, {}).get(f, [])) for f in LATENCY},
        )
        for name in sorted(set(by_class) | set(points))
        if name
    }
    errors: dict[str, int] = {}
    for per in by_class.values():
        for cls, n in per.items():
            if not cls.startswith("2") and n:
                errors[cls] = errors.get(cls, 0) + n
    overall = {f: _mean([p for v in points.values() for p in v.get(f, [])]) for f in LATENCY}
    return MetricsReport(
        endpoint=endpoint,
        provider=PROVIDER,
        window_s=window_s,
        invocations=sum(sum(v.values()) for v in by_class.values()),
        errors=errors,
        per_variant=per_variant,
        source="Azure Monitor (Microsoft.MachineLearningServices/workspaces/onlineEndpoints)",
        raw={"requests": counts, "latency": latency},
        **overall,
    )


def _row(record: Any) -> list[float]:
    """One captured row: the collector writes a DataFrame's records (column → value, in the
    frame's column order) under ``"data"``."""
    values = record.values() if isinstance(record, dict) else record
    return [float(v) for v in values]


def captured_rows(api: AzureApi, endpoint: str, window_s: float) -> list[list[float]]:
    """Feature rows the data collector wrote (``model_inputs``) over the window, oldest first."""
    container = api.datastore_container()
    since = datetime.fromtimestamp(api.clock(), timezone.utc) - timedelta(seconds=window_s)
    prefix = f"modelDataCollector/{endpoint}/"

    def read() -> list[list[float]]:
        rows: list[list[float]] = []
        blobs = sorted(container.list_blobs(name_starts_with=prefix), key=lambda b: b.last_modified)
        for blob in blobs:
            if "/model_inputs/" not in blob.name or blob.last_modified < since:
                continue
            text = container.download_blob(blob.name).readall().decode()
            for line in text.splitlines():
                if line.strip():
                    rows.extend(_row(record) for record in json.loads(line)["data"])
        return rows

    return api.call(read)
