"""Azure Monitor metrics of the fake's online endpoints, from the scoring requests it served."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cloudserve_azureml.testing._service import FakeAzureMLService, ScoringRecord

PERCENTILES = {"RequestLatency_P50": 50, "RequestLatency_P95": 95, "RequestLatency_P99": 99}


def _window(query: dict[str, str]) -> tuple[float, float]:
    start, _, end = query.get("timespan", "").partition("/")
    if not start:
        return 0.0, float("inf")
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()  # noqa: E731
    return parse(start), parse(end) + 60  # the last minute is still being written


def _stamp(minute: float) -> str:
    return datetime.fromtimestamp(minute, timezone.utc).strftime("%Y-%m-%dT%H:%M:00Z")


def _split(query: dict[str, str]) -> list[str]:
    """The dimensions the ``$filter`` splits by (``deployment eq '*'``, …)."""
    return re.findall(r"(\w+)\s+eq\s+'\*'", query.get("$filter", ""))


def metrics_body(
    service: FakeAzureMLService, endpoint: str, query: dict[str, str]
) -> dict[str, Any]:
    """The ``metrics`` answer: per-minute points, one series per value of each dimension the
    filter splits by (``deployment`` for every metric, ``statusCodeClass`` for requests)."""
    start, end = _window(query)
    with service.lock:
        records = [r for r in service.scoring if r.endpoint == endpoint and start <= r.time <= end]
    split = _split(query)
    value = []
    # a one-minute point of a per-minute count: its average and its total are both the count
    aggregations = [a.strip().lower() for a in query.get("aggregation", "average").split(",")]
    for name in query.get("metricnames", "").split(","):
        if name == "RequestsPerMinute":
            dims = [d for d in split if d in ("deployment", "statusCodeClass")]
        elif name in PERCENTILES:
            dims = [d for d in split if d == "deployment"]
        else:
            continue
        groups: dict[tuple[str, ...], list[ScoringRecord]] = defaultdict(list)
        for r in records:
            values = {"deployment": r.deployment, "statusCodeClass": f"{r.status // 100}xx"}
            groups[tuple(values[d] for d in dims)].append(r)
        series = []
        for key, group in sorted(groups.items()):
            per_minute: dict[float, list[ScoringRecord]] = defaultdict(list)
            for r in group:
                per_minute[r.time // 60 * 60].append(r)
            if name == "RequestsPerMinute":
                data = [
                    {"timeStamp": _stamp(m), **dict.fromkeys(aggregations, len(v))}
                    for m, v in sorted(per_minute.items())
                ]
            else:
                data = [
                    {
                        "timeStamp": _stamp(m),
                        "average": float(
                            np.percentile([r.latency_ms for r in v], PERCENTILES[name])
                        ),
                    }
                    for m, v in sorted(per_minute.items())
                ]
            meta = [{"name": {"value": d}, "value": k} for d, k in zip(dims, key, strict=True)]
            series.append({"metadatavalues": meta, "data": data})
        value.append({"name": {"value": name}, "unit": "Count", "timeseries": series})
    return {"timespan": query.get("timespan"), "interval": query.get("interval"), "value": value}
