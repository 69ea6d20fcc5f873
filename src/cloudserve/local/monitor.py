"""The local monitoring store: invocations (latency, errors) and captured requests.

Records are buffered in memory and written to the state database in batches (at most
``FLUSH_S`` seconds late, at once when this process reads metrics, and at exit), so that
recording costs a request nothing measurable. Readers in other processes see records once
flushed.
"""

from __future__ import annotations

import atexit
import random
import threading
import time
import weakref
from collections import Counter
from typing import Any

from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.monitoring import latency_percentiles
from cloudserve.resources import MetricsReport, VariantMetrics

__all__ = ["Recorder", "captured_rows", "metrics_report"]

FLUSH_S = 1.0
PURGE_EVERY_S = 600.0


class Recorder:
    """Buffers invocation and capture records and flushes them to the state database."""

    def __init__(self, db: StateDB, *, retention_s: float = 7 * 86400.0):
        self.db = db
        self.retention_s = retention_s
        self._calls: list[tuple[Any, ...]] = []
        self._captures: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cloudserve-recorder", daemon=True)
        self._thread.start()
        atexit.register(_flush_ref(weakref.ref(self)))

    def invocation(
        self,
        endpoint: str,
        variant: str | None,
        latency_ms: float | None,
        rows: int,
        error: str | None = None,
    ) -> None:
        """One request: its latency, row count and error class (``4xx``, ``5xx`` …) if it failed."""
        with self._lock:
            self._calls.append((endpoint, variant, now(), latency_ms, rows, error))

    def capture(
        self,
        endpoint: str,
        variant: str | None,
        inputs: list[Any],
        outputs: list[Any] | None,
        rate: float,
    ) -> None:
        """Keep the request (and response) with probability ``rate``."""
        if rate <= 0 or (rate < 1 and random.random() >= rate):
            return
        with self._lock:
            self._captures.append(
                (
                    endpoint,
                    variant,
                    now(),
                    dumps(inputs),
                    None if outputs is None else dumps(outputs),
                )
            )

    def flush(self) -> None:
        """Write everything buffered so far."""
        with self._lock:
            calls, self._calls = self._calls, []
            caps, self._captures = self._captures, []
        if not calls and not caps:
            return
        with self.db.tx() as tx:
            tx.executemany(
                "INSERT INTO invocations(endpoint, variant, ts, latency_ms, rows, error)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                calls,
            )
            tx.executemany(
                "INSERT INTO captures(endpoint, variant, ts, inputs, outputs)"
                " VALUES (?, ?, ?, ?, ?)",
                caps,
            )

    def purge(self) -> None:
        """Drop invocation and capture records older than the retention period."""
        cutoff = now() - self.retention_s
        with self.db.tx() as tx:
            tx.execute("DELETE FROM invocations WHERE ts < ?", (cutoff,))
            tx.execute("DELETE FROM captures WHERE ts < ?", (cutoff,))

    def _loop(self) -> None:
        next_purge = 0.0
        while not self._stop.wait(FLUSH_S):
            self.flush()
            if time.monotonic() >= next_purge:
                self.purge()
                next_purge = time.monotonic() + PURGE_EVERY_S

    def close(self) -> None:
        """Flush and stop the background writer."""
        self._stop.set()
        self.flush()


def _flush_ref(ref: weakref.ReferenceType[Recorder]) -> Any:
    def flush() -> None:
        rec = ref()
        if rec is not None:
            rec.flush()

    return flush


def metrics_report(
    db: StateDB, endpoint: str, window_s: float, *, hide_newest_s: float = 0.0
) -> MetricsReport:
    """Invocations, errors by class and latency percentiles, overall and per variant, over the
    last ``window_s`` seconds (without the newest ``hide_newest_s``: a monitoring delay)."""
    t = now()
    rows = db.all(
        "SELECT variant, latency_ms, error FROM invocations"
        " WHERE endpoint = ? AND ts >= ? AND ts <= ?",
        (endpoint, t - window_s, t - hide_newest_s),
    )
    per: dict[str, list[Any]] = {}
    for r in rows:
        per.setdefault(r["variant"] or "-", []).append(r)
    per_variant = {name: _summary(group) for name, group in per.items()}
    total = _summary(rows)
    return MetricsReport(
        endpoint=endpoint,
        provider="local",
        window_s=window_s,
        invocations=total.invocations,
        errors=total.errors,
        p50_ms=total.p50_ms,
        p95_ms=total.p95_ms,
        p99_ms=total.p99_ms,
        per_variant=per_variant,
        source=str(db.path),
    )


def _summary(rows: list[Any]) -> VariantMetrics:
    latencies = [
        r["latency_ms"] for r in rows if r["error"] is None and r["latency_ms"] is not None
    ]
    p50, p95, p99 = latency_percentiles(latencies)
    errors = Counter(r["error"] for r in rows if r["error"] is not None)
    return VariantMetrics(
        invocations=len(rows), errors=dict(errors), p50_ms=p50, p95_ms=p95, p99_ms=p99
    )


def _numeric(row: Any) -> list[float] | None:
    values = list(row.values()) if isinstance(row, dict) else row
    if not isinstance(values, list | tuple):
        return None
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def captured_rows(db: StateDB, endpoint: str, window_s: float) -> list[list[float]]:
    """The numeric feature rows captured for ``endpoint`` over the window, oldest first."""
    out: list[list[float]] = []
    for r in db.all(
        "SELECT inputs FROM captures WHERE endpoint = ? AND ts >= ? ORDER BY ts",
        (endpoint, now() - window_s),
    ):
        for row in loads(r["inputs"]) or []:
            values = _numeric(row)
            if values is not None:
                out.append(values)
    return out
