"""Azure Monitor metrics of the fake's online endpoints, from the scoring requests it served."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cloudserve_azureml.testing._service import FakeAzureMLService

PERCENTILES = {"RequestLatency_P50": 50, "RequestLatency_P95": 95, "RequestLatency_P99": 99}


def _window(query: dict[str, str]) -> tuple[float, float]:
    start, _, end = query.get("timespan", "").partition("/")
    if not start:
        return 0.0, float("inf")
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()  # noqa: E731
    return parse(start), parse(end) + 60  # the last minute is still being written


def _stamp(minute: float) -> str:
    return datetime.fromtimestamp(minute, timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z")


def metrics_body(
    service: FakeAzureMLService, endpoint: str, query: dict[str, str]
) -> dict[str, Any]:
    """The ``metrics`` answer: per-minute points, counts split by ``statusCodeClass``."""
    start, end = _window(query)
    with service.lock:
        records = [r for r in service.scoring if r.endpoint == endpoint and start <= r.time <= end]
    value = []
    # a one-minute point of a per-minute count: its average and its total are both the count
    aggregations = [a.strip().lower() for a in query.get("aggregation", "average").split(",")]
    for name in query.get("metricnames", "").split(","):
        if name == "RequestsPerMinute":
            by_class: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
            for r in records:
                by_class[f"{r.status // 100}xx"][r.time // 60 * 60] += 1
            series = [
                {
                    "metadatavalues": [{"name": {"value": "statusCodeClass"}, "value": cls}],
                    "data": [
                        {"timeStamp": _stamp(m), **dict.fromkeys(aggregations, n)}
                        for m, n in sorted(points.items())
                    ],
                }
                for cls, points in sorted(by_class.items())
            ]
        elif name in PERCENTILES:
            per_minute: dict[float, list[float]] = defaultdict(list)
            for r in records:
                per_minute[r.time // 60 * 60].append(r.latency_ms)
            series = [
                {
                    "metadatavalues": [],
                    "data": [
                        {
                            "timeStamp": _stamp(m),
                            "average": float(np.percentile(v, PERCENTILES[name])),
                        }
                        for m, v in sorted(per_minute.items())
                    ],
                }
            ]
        else:
            continue
        value.append({"name": {"value": name}, "unit": "Count", "timeseries": series})
    return {"timespan": query.get("timespan"), "interval": query.get("interval"), "value": value}
