"""The load generator: open loop at a fixed arrival rate, or closed loop at fixed concurrency.

Open loop (``Workload(rps=...)``) schedules request *i* at ``start + i / rps`` whatever the
previous responses did, and measures each latency from that intended start. A slow response
therefore cannot hide the requests that should have been sent meanwhile (no coordinated
omission): a server stall shows up in the tail as it would for real users. Closed loop
(``Workload(concurrency=...)``) keeps N requests in flight and measures from the actual send;
it answers "how fast can N clients go", and can hide stalls.

Requests sent during ``warmup_s`` run but are not recorded. Errors are counted by class
(``timeout``, ``connection``, ``throttled``, ``4xx``, ``5xx``, ``other``); latencies of failed
requests are not mixed into the histogram.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloudserve.bench.histogram import LatencyHistogram
from cloudserve.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Throttled,
    Timeout,
)
from cloudserve.specs import Workload

__all__ = ["LoadResult", "Target", "classify_error", "run_load", "to_callable"]

Call = Callable[[list[Any]], Any]
Target = Any  # a URL, a callable taking rows, a bound Endpoint, or (Client, endpoint name)
ErrorClass = Literal["timeout", "connection", "throttled", "4xx", "5xx", "other"]
_DEFAULT_MAX_IN_FLIGHT = 256


class LoadResult(BaseModel):
    """What one load run measured. Latencies in milliseconds; None when nothing succeeded."""

    model_config = ConfigDict(extra="forbid")

    target: str
    mode: Literal["open", "closed"]
    rps: float | None = None
    concurrency: int | None = None
    duration_s: float
    warmup_s: float
    requests: int = 0
    ok: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    warmup_requests: int = 0
    throughput_rps: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    curve: list[tuple[float, float]] = Field(default_factory=list)
    max_send_lag_ms: float = 0.0
    max_in_flight: int | None = None
    hdr_histogram: str | None = Field(default=None, repr=False)

    @property
    def error_count(self) -> int:
        """All failed requests, whatever their class."""
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Failed share of the recorded requests (0 when none were sent)."""
        return self.error_count / self.requests if self.requests else 0.0


class _Recorder:
    """Collects latencies and error counts from many threads.

    Requests are counted from when they are issued (``issue``) to when they finish (``done``);
    ``close`` counts the measured ones still unfinished as timeouts and ignores them after.
    """

    def __init__(self) -> None:
        self.hist = LatencyHistogram()
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.warmup = 0
        self.in_flight = 0
        self.last_done = 0.0
        self.closed = False
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()

    def issue(self, measured: bool) -> None:
        with self._lock:
            if measured:
                self.in_flight += 1

    def done(self, started: float, measured: bool, error: str | None) -> None:
        now = time.perf_counter()
        with self._lock:
            if self.closed:
                return
            if not measured:
                self.warmup += 1
                return
            self.in_flight -= 1
            self.requests += 1
            self.last_done = max(self.last_done, now)
            if error is not None:
                self.errors[error] += 1
        if error is None:
            self.hist.record((now - started) * 1000)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self.in_flight > 0:
                self.errors["timeout"] += self.in_flight
                self.requests += self.in_flight
                self.in_flight = 0


def classify_error(exc: BaseException) -> ErrorClass:
    """The error class a failed request counts under."""
    if isinstance(exc, Throttled):
        return "throttled"
    if isinstance(exc, Timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, ServiceUnavailable):
        return "5xx"
    if isinstance(exc, InvalidRequest | NotFound | AuthError):
        return "4xx"
    if isinstance(exc, ConnectionError):
        return "connection"
    return _classify_http(exc)


def _classify_http(exc: BaseException) -> ErrorClass:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is only needed for URL targets
        return "other"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connection"
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code == 429:
            return "throttled"
        return "5xx" if code >= 500 else "4xx"
    return "other"


def to_callable(target: Target, *, timeout_s: float = 30.0, max_connections: int = 64) -> Call:
    """A function that sends one request of rows to ``target`` and raises on failure.

    A string is a URL that gets ``POST {"instances": rows}``; an Endpoint bound to a client or
    a ``(client, endpoint_name)`` pair go through ``Client.predict``; a callable is used as is.
    """
    if isinstance(target, str):
        return _HttpCall(target, timeout_s, max_connections)
    if isinstance(target, tuple) and len(target) == 2:
        client, name = target
        return lambda rows: client.predict(name, rows)
    if hasattr(target, "predict") and hasattr(target, "name"):
        return lambda rows: target.predict(rows)
    if callable(target):
        return target
    raise InvalidRequest(f"cannot drive load at {target!r}: give a URL, a callable or an endpoint")


class _HttpCall:
    """POSTs ``{"instances": rows}`` to a URL over a pooled httpx client."""

    def __init__(self, url: str, timeout_s: float, max_connections: int):
        import httpx

        self.url = url
        self.client = httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    def __call__(self, rows: list[Any]) -> Any:
        response = self.client.post(self.url, json={"instances": rows})
        response.raise_for_status()
        return response.content

    def close(self) -> None:
        self.client.close()


def describe(target: Target) -> str:
    """A short label for a load target."""
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2:
        return f"{getattr(target[0], 'target', target[0])}/{target[1]}"
    return str(getattr(target, "name", None) or getattr(target, "__name__", None) or target)


def _payloads(workload: Workload, payload: list[Any] | None) -> itertools.cycle[list[Any]]:
    rows = payload if payload is not None else workload.payload
    if not rows:
        raise InvalidRequest("the workload needs a payload: a list of input rows")
    k = workload.rows_per_request
    batches = [[rows[(i + j) % len(rows)] for j in range(k)] for i in range(0, len(rows), k)]
    return itertools.cycle(batches)


def run_load(
    target: Target,
    workload: Workload,
    *,
    payload: list[Any] | None = None,
    max_in_flight: int | None = None,
    label: str | None = None,
) -> LoadResult:
    """Drive ``workload`` at ``target`` and measure it.

    ``target`` is a URL (POSTed ``{"instances": rows}``), a callable taking a list of rows, a
    bound Endpoint, or a ``(client, endpoint_name)`` pair. Rows come from ``payload`` or
    ``workload.payload``, ``rows_per_request`` at a time. In open-loop mode at most
    ``max_in_flight`` requests run at once (default: ``concurrency`` if given, else 256);
    requests beyond that wait, and their wait counts in their latency.
    """
    limit = max_in_flight or workload.concurrency or _DEFAULT_MAX_IN_FLIGHT
    batches = _payloads(workload, payload)
    call = to_callable(target, timeout_s=workload.timeout_s, max_connections=limit)
    rec = _Recorder()
    try:
        if workload.mode == "open":
            assert workload.rps is not None
            lag, start = _open_loop(call, workload.rps, workload, batches, rec, limit)
        else:
            assert workload.concurrency is not None
            limit = workload.concurrency
            lag, start = 0.0, _closed_loop(call, workload.concurrency, workload, batches, rec)
    finally:
        if isinstance(call, _HttpCall):
            call.close()
    if rec.fatal is not None:
        raise rec.fatal
    return _result(label or describe(target), workload, rec, start, lag, limit)


def _one(call: Call, rows: list[Any], started: float, measured: bool, rec: _Recorder) -> None:
    try:
        call(rows)
    except Exception as exc:
        rec.done(started, measured, classify_error(exc))
        return
    rec.done(started, measured, None)


def _open_loop(
    call: Call,
    rps: float,
    workload: Workload,
    batches: itertools.cycle[list[Any]],
    rec: _Recorder,
    limit: int,
) -> tuple[float, float]:
    total = math.ceil((workload.warmup_s + workload.duration_s) * rps)
    warm = math.ceil(workload.warmup_s * rps)
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="cloudserve-load")
    futures: list[Future[None]] = []
    max_lag = 0.0
    finished = False
    begin = time.perf_counter() + 0.01
    try:
        for i in range(total):
            intended = begin + i / rps
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
            if rec.fatal is not None:
                break
            rec.issue(i >= warm)
            fut = pool.submit(_one, call, next(batches), intended, i >= warm, rec)
            fut.add_done_callback(lambda f: _keep_fatal(f, rec))
            futures.append(fut)
        _drain(futures, rec, workload.timeout_s)
        finished = rec.fatal is None and all(f.done() for f in futures)
    finally:
        rec.close()
        # On Ctrl-C, a fatal error or hung requests: drop what has not started, do not wait.
        pool.shutdown(wait=finished, cancel_futures=not finished)
    return max_lag * 1000, begin + warm / rps


def _keep_fatal(fut: Future[None], rec: _Recorder) -> None:
    exc = fut.exception() if not fut.cancelled() else None
    if exc is not None and rec.fatal is None:
        rec.fatal = exc


def _drain(futures: list[Future[None]], rec: _Recorder, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s + 1
    for fut in futures:
        remaining = deadline - time.perf_counter()
        if remaining <= 0 or rec.fatal is not None:
            return
        try:
            fut.result(timeout=remaining)
        except FuturesTimeout:
            return
        except BaseException as exc:
            # A KeyboardInterrupt (or other non-Exception) escaped a request: stop the run.
            rec.fatal = rec.fatal or exc
            return


def _closed_loop(
    call: Call,
    concurrency: int,
    workload: Workload,
    batches: itertools.cycle[list[Any]],
    rec: _Recorder,
) -> float:
    begin = time.perf_counter()
    measure_from = begin + workload.warmup_s
    stop_at = measure_from + workload.duration_s
    lock = threading.Lock()

    def worker() -> None:
        try:
            while rec.fatal is None:
                started = time.perf_counter()
                if started >= stop_at:
                    return
                with lock:
                    rows = next(batches)
                rec.issue(started >= measure_from)
                _one(call, rows, started, started >= measure_from, rec)
        except BaseException as exc:
            # Re-raised by run_load in the calling thread (e.g. a KeyboardInterrupt).
            rec.fatal = rec.fatal or exc

    threads = [
        threading.Thread(target=worker, name=f"cloudserve-load-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for t in threads:
        t.start()
    deadline = stop_at + workload.timeout_s + 1
    try:
        for t in threads:
            t.join(max(0.0, deadline - time.perf_counter()))
    except BaseException as exc:
        # Ctrl-C while waiting: tell the workers to stop, then let the interrupt through.
        rec.fatal = rec.fatal or exc
        raise
    finally:
        rec.close()
    return measure_from


def _result(
    label: str, workload: Workload, rec: _Recorder, start: float, lag: float, limit: int
) -> LoadResult:
    elapsed = max(workload.duration_s, rec.last_done - start)
    ok = rec.requests - sum(rec.errors.values())
    h = rec.hist
    return LoadResult(
        target=label,
        mode=workload.mode,
        rps=workload.rps if workload.mode == "open" else None,
        concurrency=workload.concurrency,
        duration_s=workload.duration_s,
        warmup_s=workload.warmup_s,
        requests=rec.requests,
        ok=ok,
        errors=dict(rec.errors),
        warmup_requests=rec.warmup,
        throughput_rps=round(ok / elapsed, 3) if elapsed > 0 else 0.0,
        p50_ms=h.percentile(50),
        p90_ms=h.percentile(90),
        p95_ms=h.percentile(95),
        p99_ms=h.percentile(99),
        max_ms=h.percentile(100),
        mean_ms=h.mean(),
        curve=h.curve(),
        max_send_lag_ms=round(lag, 3),
        max_in_flight=limit,
        hdr_histogram=h.encode() if h.count else None,
    )
