"""Load generator and the cost/latency comparison across targets.

>>> from cloudserve.bench import run_load, compare
>>> run_load("http://127.0.0.1:8080/invocations", cs.Workload(rps=50, duration_s=30, payload=rows))
>>> report = compare(["aws", "gcp", "azure"], model, cs.Workload(rps=20, duration_s=60))
>>> report.save_html("compare.html")
"""

from __future__ import annotations

from cloudserve.bench.compare import CompareReport, TargetResult, compare
from cloudserve.bench.histogram import LatencyHistogram
from cloudserve.bench.load import LoadResult, classify_error, run_load
from cloudserve.bench.locust import export_locustfile

__all__ = [
    "CompareReport",
    "LatencyHistogram",
    "LoadResult",
    "TargetResult",
    "classify_error",
    "compare",
    "export_locustfile",
    "run_load",
]
