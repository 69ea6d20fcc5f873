"""Prometheus metrics of the server (``GET /metrics``).

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by the launcher and every worker's
numbers are summed on each scrape.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    """The server's counters, each in its own registry so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        reg = self.registry
        self.requests = Counter(
            "cloudserve_requests",
            "Requests by route and status.",
            ["route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "cloudserve_request_latency_seconds",
            "Time from request to response, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "cloudserve_batch_size", "Rows per model call.", buckets=_BATCH_BUCKETS, registry=reg
        )
        self.queue_depth = Gauge(
            "cloudserve_queue_depth",
            "Requests waiting for the model.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.cache_hits = Counter("cloudserve_cache_hits", "Prediction cache hits.", registry=reg)
        self.cache_misses = Counter(
            "cloudserve_cache_misses", "Prediction cache misses.", registry=reg
        )
        self.shed = Counter(
            "cloudserve_shed_requests", "Requests refused with 503 on overload.", registry=reg
        )
        self.abandoned = Counter(
            "cloudserve_abandoned_requests",
            "Requests dropped before the model ran because their client had left.",
            registry=reg,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        children = self._children.get((route, status))
        if children is None:  # labels() is a locked lookup: do it once per (route, status)
            children = self.requests.labels(route, str(status)), self.latency.labels(route)
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)
