"""Monitoring on Azure ML: Azure Monitor metrics and the data collector's captured inputs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from cloudserve.resources import MetricsReport
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = ["captured_rows", "endpoint_metrics"]

METRICS_API = "2023-10-01"
LATENCY = {
    "p50_ms": "RequestLatency_P50",
    "p95_ms": "RequestLatency_P95",
    "p99_ms": "RequestLatency_P99",
}


def _timespan(window_s: float) -> str:
    end = datetime.now(timezone.utc)
    start = end - timedelta(seconds=window_s)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def _series(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {m["name"]["value"]: m.get("timeseries") or [] for m in body.get("value") or []}


def endpoint_metrics(api: AzureApi, endpoint: str, window_s: float) -> MetricsReport:
    """Requests by status class and latency percentiles from Azure Monitor.

    Requests come from ``RequestsPerMinute`` split by ``statusCodeClass``: at a one-minute
    grain each point's ``Average`` is that minute's request count (Azure ML's own examples query
    it with ``--aggregation Average --interval PT1M``), so the window's count is their sum.
    Latencies come from ``RequestLatency_P50/P95/P99`` (the mean of the per-minute values).
    """
    resource = f"{api.workspace_id}/onlineEndpoints/{endpoint}/providers/Microsoft.Insights/metrics"
    common = {"api-version": METRICS_API, "timespan": _timespan(window_s), "interval": "PT1M"}
    counts = _series(
        api.arm(
            "GET",
            resource,
            metricnames="RequestsPerMinute",
            aggregation="Average",
            **{"$filter": "statusCodeClass eq '*'"},
            **common,
        )
    )
    latency = _series(
        api.arm(
            "GET", resource, metricnames=",".join(LATENCY.values()), aggregation="Average", **common
        )
    )
    by_class: dict[str, int] = {}
    for ts in counts.get("RequestsPerMinute", []):
        dims = {d["name"]["value"]: d["value"] for d in ts.get("metadatavalues") or []}
        cls = dims.get("statusCodeClass", "2xx")
        count = sum(pt.get("average") or 0 for pt in ts["data"])
        by_class[cls] = by_class.get(cls, 0) + round(count)
    values: dict[str, float | None] = {}
    for field, metric in LATENCY.items():
        points = [
            pt["average"]
            for ts in latency.get(metric, [])
            for pt in ts["data"]
            if pt.get("average") is not None
        ]
        values[field] = sum(points) / len(points) if points else None
    return MetricsReport(
        endpoint=endpoint,
        provider=PROVIDER,
        window_s=window_s,
        invocations=sum(by_class.values()),
        errors={k: v for k, v in by_class.items() if not k.startswith("2") and v},
        source="Azure Monitor (Microsoft.MachineLearningServices/workspaces/onlineEndpoints)",
        raw={"requests": counts, "latency": latency},
        **values,
    )


def _row(record: Any) -> list[float]:
    """One captured row: the collector writes a DataFrame's records (column → value, in the
    frame's column order) under ``"data"``."""
    values = record.values() if isinstance(record, dict) else record
    return [float(v) for v in values]


def captured_rows(api: AzureApi, endpoint: str, window_s: float) -> list[list[float]]:
    """Feature rows the data collector wrote (``model_inputs``) over the window, oldest first."""
    container = api.datastore_container()
    since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
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
