"""Adaptive batching: concurrent requests coalesced into one model call, split back after.

One batch runs at a time; whatever queued meanwhile forms the next batch. Under light load a
request runs alone and at once; under heavy load batches fill up without anyone waiting on a
timer. A model whose batches take more than ``INLINE_S`` runs in a worker thread so the event
loop keeps reading requests while it works; a faster one runs on the loop itself, because the
hand-off to a thread (and the GIL between the two) costs more than such a batch.

Admission is decided on arrival (:meth:`Batcher.overloaded`): when too many requests wait, or the
oldest has waited too long, or the event loop itself runs late (then requests wait unread in
the sockets, where no queue shows them), a new one is refused before its body is read, so what
is admitted keeps a bounded latency. A request whose client has gone is dropped from its batch
before the model runs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from cloudserve.serving._model import LoadedModel, concat_rows

__all__ = ["Batcher", "ClientGone", "Overloaded"]

log = logging.getLogger("cloudserve.serving")

INLINE_S = 0.005  # batches faster than this run on the event loop, not in the worker thread
LAG_PROBE_S = 0.005  # how often the event loop's lag is probed
YIELD_S = 0.01  # the longest stretch of back-to-back batches before the loop gets a turn
WORK_S = 0.2  # the time constant of the requests' own work share (see Batcher.work_share)
WORK_BOUND = 0.25  # the work share from which refusing frees the server (see work_bound)


class Overloaded(Exception):
    """The queue is full: the request is shed (503 + Retry-After) instead of queued."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"the server is overloaded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The client closed its connection before its request reached the model."""


#: called once per request with its outputs, or with the exception it ends with
Done = Callable[[list[Any] | None, BaseException | None], None]


@dataclass(eq=False, slots=True)
class _Item:
    rows: Any
    n: int
    parameters: dict[str, Any]
    key: bytes
    done: Done
    transport: Any = None  # the client's connection, when the server tells (see _http.py)
    arrived: float = field(default_factory=time.perf_counter)
    future: asyncio.Future[list[Any]] | None = None  # set by submit(): the awaiting handler's
    finished: bool = False

    def gone(self) -> bool:
        return self.transport is not None and self.transport.is_closing()


class Batcher:
    """Feeds one model from a bounded queue.

    ``pending`` is a callable returning how many requests are being received but not yet
    submitted; the batcher waits (up to ``max_wait_ms``) for more rows only while it is above 0.
    ``max_queue`` and ``max_queue_ms`` bound the waiting requests by count and by the age of the
    oldest. ``on_batch(rows)`` is called with each batch's row count, ``on_gone()`` for each
    request dropped because its client left (for metrics).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        max_queue_ms: float = 1000.0,
        pending: Any = lambda: 0,
        on_batch: Any = lambda rows: None,
        on_gone: Any = lambda: None,
    ):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.max_queue_s = max_queue_ms / 1000
        self._pending = pending
        self._on_batch = on_batch
        self._on_gone = on_gone
        self._queue: collections.deque[_Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cloudserve-model")
        self._task: asyncio.Task[None] | None = None
        self._batch_s: float | None = None  # running estimate of one batch's time
        self._running_since = 0.0  # when the batch in the model started (0: none)
        self.loop_lag_s = 0.0  # smoothed lateness of a timer on the event loop
        self._lag_probe: asyncio.TimerHandle | None = None
        self._cycle_s: float | None = None  # time from one busy turn to the next (see _loop)
        self._work_s = 0.0  # the requests' own work, exponentially weighted (see work_share)
        self._work_new = 0.0  # noted since the last fold
        self._work_at = time.perf_counter()
        # the model's own time for recent batches (no thread hand-off), for INLINE_S
        self._model_times: collections.deque[float] = collections.deque(maxlen=15)

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching loop (and the loop-lag probe) on the running event loop."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop())
        self._lag_probe = loop.call_later(LAG_PROBE_S, self._probe_lag, loop, loop.time())

    def _probe_lag(self, loop: asyncio.AbstractEventLoop, scheduled: float) -> None:
        """How late a timer fires: about the length of the event loop's passes (smoothed)."""
        lag = max(0.0, loop.time() - scheduled - LAG_PROBE_S)
        self.loop_lag_s += 0.05 * (lag - self.loop_lag_s)  # sustained lag, not one stall
        self._lag_probe = loop.call_later(LAG_PROBE_S, self._probe_lag, loop, loop.time())

    async def stop(self) -> None:
        """Stop the loop and the worker thread; call it once no request is in flight."""
        if self._lag_probe is not None:
            self._lag_probe.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def overloaded(self, in_progress: int = 0, oldest_s: float = 0.0) -> int | None:
        """``None`` when a new request can be admitted, else the seconds to tell it to wait.

        ``in_progress`` is how many requests the server is handling (read, decoded, waiting or
        being answered); ``oldest_s`` how long the oldest of those fully received has waited.
        """
        lag, target = self.loop_lag_s, self.max_queue_s
        # Refusing frees the server only from a request's own work (decoding, its share of a
        # batch, encoding): its HTTP exchange costs about the same refused or answered (10-20 us
        # here, against ~20 us for a whole answer from a light model). When that own work is a
        # small share of the server's time, the bottleneck is the HTTP work every request costs
        # anyway, and refusing would trade good answers for 503s at the same latency
        # (measured: 0.07 of saturation answered with the brakes below, 0.65 without). Then
        # the server answers everything in order, as fast as it can.
        work_bound = self.work_bound()
        if work_bound and in_progress > self.max_batch_size and oldest_s > target:
            limit = self._max_wait_in_hand()
            if oldest_s > limit and random.random() < (oldest_s - limit) / limit:
                # The server's own queue age: admitted requests already wait longer than
                # allowed (on the batcher, the model, or event-loop passes full of other
                # connections' requests). With more than a batch of them in hand, refuse a
                # share of arrivals growing with the age past the limit (a brake, not on/off:
                # refusing all until the oldest is answered starves the good answers), so
                # admitted latency stays bounded when many connections send at once (an open
                # loop). A closed loop of up to a batch of clients never trips it.
                return max(1, round(oldest_s))
        if (
            work_bound
            and lag > target
            and in_progress > self.max_batch_size
            and random.random() < (lag - target) / target
        ):
            # Requests wait unread in the sockets for about a loop pass: when passes run long
            # with more requests in hand than a batch, the server is CPU-bound before the model,
            # and the queue below cannot show it. Refuse a share of arrivals growing with the
            # lag past its target (a smooth brake, not on/off), so passes shrink back. No more
            # than a batch of clients at a time, as in a closed loop, is never refused for this.
            return 1
        queue = self._queue
        waiting = len(queue)
        if waiting >= self.max_queue:  # the hard bound
            return max(1, round(self._expected_wait(waiting, work_bound)))
        if waiting < self.max_batch_size:
            return None  # the next model call takes it
        # A full batch already waits: a new request waits for the batch in the model, then for
        # every full batch ahead of it. Refuse once that wait passes ``max_queue_ms``: this is
        # what bounds the latency of what is admitted when the model is the bottleneck, while
        # the model still gets full batches back to back (one always waits). Per batch: its own
        # time or, when the requests' own work is the bottleneck, the busy cycle (the batch plus
        # the loop's other work), whichever is longer.
        wait = self._expected_wait(waiting, work_bound)
        if wait <= self.max_queue_s:
            return None
        return max(1, round(wait))

    def _expected_wait(self, waiting: int, work_bound: bool) -> float:
        per_batch = self._batch_s or 0.0
        if work_bound:
            per_batch = max(per_batch, self._cycle_s or 0.0)
        running = time.perf_counter() - self._running_since if self._running_since else 0.0
        return max(0.0, per_batch - running) + (waiting // self.max_batch_size) * per_batch

    def work_bound(self) -> bool:
        """Whether the requests' own work took at least ``WORK_BOUND`` of the time lately
        (see :meth:`work_share`): only then does refusing requests free enough of the server
        for the rest. Under overload the refusals themselves take CPU, so a model that is the
        bottleneck at saturation (~90% of the time) takes ~50% at 2x."""
        return self.work_share() >= WORK_BOUND

    def note_work(self, seconds: float) -> None:
        """Count ``seconds`` of a request's own work done outside the model (decoding,
        encoding) towards :meth:`work_share`. One addition per request: the decay is applied
        once per batch (see :meth:`_fold_work`)."""
        self._work_new += seconds

    def _fold_work(self) -> None:
        now = time.perf_counter()
        self._work_s = self._work_s * math.exp((self._work_at - now) / WORK_S) + self._work_new
        self._work_new = 0.0
        self._work_at = now

    def work_share(self) -> float:
        """The share of recent wall time (exponentially weighted over ``WORK_S``) spent on the
        requests' own work: running batches, and what :meth:`note_work` was told. 0.0 to 1.0."""
        self._fold_work()
        work = self._work_s
        if self._running_since:  # the batch in the model counts as it runs
            work += time.perf_counter() - self._running_since
        return min(1.0, work / WORK_S)

    def _max_wait_in_hand(self) -> float:
        """How long a received request may wait for its answer: the batch in the model so far
        plus ``max_queue_ms``, or three batch times. Unlike the queue's own age limit, event-loop
        cycles do not extend it: long passes are what this limit is there to cut."""
        running = time.perf_counter() - self._running_since if self._running_since else 0.0
        return max(self.max_queue_s + running, 3 * (self._batch_s or 0.0))

    async def submit(
        self, rows: Any, parameters: dict[str, Any], transport: Any = None
    ) -> list[Any]:
        """Predict one request's prepared rows; resolves to its outputs (or its own error).

        ``transport`` is the client's connection: if it closes before the batch runs, the
        request is dropped and ``ClientGone`` raised.
        """
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def done(result: list[Any] | None, exc: BaseException | None) -> None:
            if not future.done():
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)  # type: ignore[arg-type]

        self.enqueue(rows, parameters, done, transport).future = future
        return await future

    def enqueue(
        self, rows: Any, parameters: dict[str, Any], done: Done, transport: Any = None
    ) -> _Item:
        """Queue one request's prepared rows without waiting: ``done(outputs, None)`` or
        ``done(None, error)`` is called once, from the event loop, when its batch has run
        (``ClientGone`` if ``transport`` closed first). Raises ``Overloaded`` at once when the
        queue is full. The server's own HTTP fast path uses this: no future, no task."""
        if len(self._queue) >= self.max_queue:  # the hard bound, past admission on arrival
            raise Overloaded(self.overloaded() or 1)
        key = orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS) if parameters else b""
        item = _Item(rows, len(rows), parameters, key, done, transport)
        self._queue.append(item)
        if not self._wakeup.is_set():
            self._wakeup.set()
        return item

    async def _loop(self) -> None:
        # A *turn* is the batcher's share of one pass of the event loop: back-to-back batches
        # for up to YIELD_S, then the loop writes their answers and reads new requests. The
        # time from one busy turn to the next (the cycle) is what a waiting request pays per
        # turn, and what admission measures the queue's age against.
        turn = 0.0  # when the current busy turn started (0: the batcher was idle)
        while True:
            if not self._queue:
                turn = 0.0
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            now = time.perf_counter()
            if turn == 0.0 or now - turn > YIELD_S:
                if turn:
                    gap = now - turn
                    prev = self._cycle_s
                    self._cycle_s = gap if prev is None else 0.8 * prev + 0.2 * gap
                turn = now
            if len(self._queue) < self.max_batch_size:
                # One more loop turn before taking the batch: the requests read in the
                # meantime (the rest of a burst) join it. At c=16 batches double (~8 → ~15
                # rows) and CPU per request falls ~20%: scikit-learn's per-call cost is paid
                # by twice the rows. A lone request waits one turn (microseconds).
                await asyncio.sleep(0)
            batch = await self._collect()
            await self._run(batch)
            # Fairness: after YIELD_S of back-to-back batches, let the loop write their answers
            # and read new requests. Not after every batch: under overload each loop pass also
            # reads (and mostly refuses) every connection's request, so one batch a pass would
            # starve the admitted ones; admission bounds what waits here anyway.
            if time.perf_counter() - turn > YIELD_S:
                await asyncio.sleep(0)

    async def _collect(self) -> list[_Item]:
        first = self._queue.popleft()
        batch, rows = [first], first.n
        deadline = first.arrived + self.max_wait_s
        while rows < self.max_batch_size:
            nxt = self._take(first.key, self.max_batch_size - rows)
            if nxt is not None:
                batch.append(nxt)
                rows += nxt.n
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or self._pending() <= 0 or self._queue:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return batch

    def _take(self, key: bytes, room: int) -> _Item | None:
        """The first queued request with the same parameters that fits in ``room`` rows."""
        for i, item in enumerate(self._queue):
            if item.key == key and item.n <= room:
                del self._queue[i]
                return item
            if i >= 64:  # bound the scan; mismatched requests get their own batch soon
                return None
        return None

    async def _run(self, batch: list[_Item]) -> None:
        live = []
        for it in batch:
            if it.future is not None and it.future.done():  # the handler was cancelled
                continue
            if it.gone():
                self._on_gone()
                _resolve(it, exc=ClientGone())
                continue
            live.append(it)
        if not live:
            return
        started = self._running_since = time.perf_counter()
        try:
            joined = concat_rows([it.rows for it in live])
            outputs = await self._call(joined, live[0].parameters)
        except Exception as exc:
            if len(live) == 1:
                _resolve(live[0], exc=exc)
            else:
                await self._run_alone(live)
            return
        finally:
            self._running_since = 0.0
            elapsed = time.perf_counter() - started
            self.note_work(elapsed)
            self._fold_work()
            prev = self._batch_s
            self._batch_s = elapsed if prev is None else 0.8 * prev + 0.2 * elapsed
        self._on_batch(len(outputs))
        start = 0
        for it in live:
            _resolve(it, result=outputs[start : start + it.n])
            start += it.n

    async def _call(self, rows: Any, parameters: dict[str, Any]) -> list[Any]:
        recent = self._model_times
        # the median of recent batches: on a busy machine a preempted batch looks slow, once
        if recent and sorted(recent)[len(recent) // 2] < INLINE_S:
            return self._timed(rows, parameters)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, rows, parameters)

    def _timed(self, rows: Any, parameters: dict[str, Any]) -> list[Any]:
        """Run the model, keeping an estimate of its own time (without any thread hand-off)."""
        started = time.perf_counter()
        try:
            return self.model.run(rows, parameters)
        finally:
            self._model_times.append(time.perf_counter() - started)

    async def _run_alone(self, items: list[_Item]) -> None:
        """A batch failed: run its requests one by one so only the bad one fails."""
        for it in items:
            try:
                out = await self._call(it.rows, it.parameters)
            except Exception as exc:
                _resolve(it, exc=exc)
            else:
                self._on_batch(it.n)
                _resolve(it, result=out)


def _resolve(item: _Item, *, result: list[Any] | None = None, exc: Exception | None = None) -> None:
    if item.finished:
        return
    item.finished = True
    try:
        item.done(result, exc)
    except Exception:  # a failing answer must not stop the batches of everyone else
        log.exception("answering a request failed")
