"""A thread-safe latency histogram on top of HdrHistogram.

HdrHistogram (``hdrhistogram`` on PyPI, the HdrHistogram project's Python port with a C core)
keeps every value at 3 significant digits over the whole range at constant memory, so the
tail percentiles are exact to 0.1% however many requests a run records. Values are recorded in
microseconds.
"""

from __future__ import annotations

import threading

from hdrh.histogram import HdrHistogram

__all__ = ["CURVE_PERCENTILES", "LatencyHistogram"]

# Percentiles of the latency-by-percentile curve drawn in reports (HDR "nines" style).
CURVE_PERCENTILES = (0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)
_LOWEST_US = 1
_HIGHEST_US = 3_600 * 1_000_000  # one hour
_DIGITS = 3


class LatencyHistogram:
    """Latencies in milliseconds in, percentiles in milliseconds out. Safe across threads."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
        self._lock = threading.Lock()

    def record(self, latency_ms: float) -> None:
        """Add one latency (clamped to 1 µs … 1 h)."""
        us = min(max(round(latency_ms * 1000), _LOWEST_US), _HIGHEST_US)
        with self._lock:
            self._hist.record_value(us)

    @property
    def count(self) -> int:
        """Values recorded."""
        return int(self._hist.get_total_count())

    def percentile(self, p: float) -> float | None:
        """The latency at percentile ``p`` (0–100) in ms; None when nothing was recorded."""
        if self.count == 0:
            return None
        with self._lock:
            if p >= 100:
                return self._hist.get_max_value() / 1000
            if p <= 0:
                return self._hist.get_min_value() / 1000
            return self._hist.get_value_at_percentile(p) / 1000

    def mean(self) -> float | None:
        """Mean latency in ms; None when nothing was recorded."""
        return self._hist.get_mean_value() / 1000 if self.count else None

    def curve(self) -> list[tuple[float, float]]:
        """(percentile, latency ms) points for a latency-by-percentile chart."""
        if self.count == 0:
            return []
        return [(p, float(self.percentile(p) or 0.0)) for p in CURVE_PERCENTILES]

    def encode(self) -> str:
        """The histogram in HdrHistogram's compressed base64 form (for HdrHistogram tools)."""
        with self._lock:
            return self._hist.encode().decode("ascii")
