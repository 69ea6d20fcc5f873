"""Adaptive batching: concurrent requests coalesced into one model call, split back after.

One batch runs at a time, in a worker thread, so the event loop keeps reading requests while the
model works; whatever queued meanwhile forms the next batch. Under light load a request runs
alone and at once; under heavy load batches fill up without anyone waiting on a timer.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from cloudserve.serving._model import LoadedModel, concat_rows

__all__ = ["Batcher", "Overloaded"]


class Overloaded(Exception):
    """The queue is full: the request is shed (503 + Retry-After) instead of queued."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"the server is overloaded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Item:
    rows: Any
    n: int
    parameters: dict[str, Any]
    key: bytes
    future: asyncio.Future[list[Any]]
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Feeds one model from a bounded queue.

    ``pending`` is a callable returning how many requests are being received but not yet
    submitted; the batcher waits (up to ``max_wait_ms``) for more rows only while it is above 0.
    ``on_batch(rows)`` is called with each batch's row count (for metrics).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        pending: Any = lambda: 0,
        on_batch: Any = lambda rows: None,
    ):
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self._pending = pending
        self._on_batch = on_batch
        self._queue: collections.deque[_Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cloudserve-model")
        self._task: asyncio.Task[None] | None = None
        self._batch_s = 0.001  # running estimate of one batch's time, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop and the worker thread; call it once no request is in flight."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, rows: Any, parameters: dict[str, Any]) -> list[Any]:
        """Predict one request's prepared rows; resolves to its outputs (or its own error)."""
        if len(self._queue) >= self.max_queue:
            batches_ahead = len(self._queue) / max(self.max_batch_size, 1) + 1
            raise Overloaded(max(1, round(batches_ahead * self._batch_s)))
        key = orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS) if parameters else b""
        item = _Item(rows, len(rows), parameters, key, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wakeup.set()
        return await item.future

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            await self._run(batch)

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
        live = [it for it in batch if not it.future.done()]  # skip requests already cancelled
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            joined = concat_rows([it.rows for it in live])
            outputs = await loop.run_in_executor(
                self._executor, self.model.run, joined, live[0].parameters
            )
        except Exception as exc:
            if len(live) == 1:
                _resolve(live[0], exc=exc)
            else:
                await self._run_alone(live)
            return
        finally:
            elapsed = time.perf_counter() - started
            self._batch_s = 0.8 * self._batch_s + 0.2 * elapsed
        self._on_batch(len(outputs))
        start = 0
        for it in live:
            _resolve(it, result=outputs[start : start + it.n])
            start += it.n

    async def _run_alone(self, items: list[_Item]) -> None:
        """A batch failed: run its requests one by one so only the bad one fails."""
        loop = asyncio.get_running_loop()
        for it in items:
            try:
                out = await loop.run_in_executor(
                    self._executor, self.model.run, it.rows, it.parameters
                )
            except Exception as exc:
                _resolve(it, exc=exc)
            else:
                self._on_batch(it.n)
                _resolve(it, result=out)


def _resolve(item: _Item, *, result: list[Any] | None = None, exc: Exception | None = None) -> None:
    if item.future.done():
        return
    if exc is not None:
        item.future.set_exception(exc)
    else:
        assert result is not None
        item.future.set_result(result)
