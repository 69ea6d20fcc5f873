"""Shadow variants of the local provider: a share of requests mirrored, answers kept aside.

A variant deployed with ``shadow=N`` has weight 0 and ``variants.shadow = N``. After a request is
answered by production, the router draws whether to mirror it (probability N %); a mirrored
request is sent to the shadow variant on a small thread pool, off the caller's path, and the pair
(one request id, both outputs, both latencies and errors) is written to ``shadow_pairs``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from cloudserve.errors import CloudServeError
from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.resources import ShadowPair

__all__ = ["Mirror"]

#: (endpoint row, variant, its workers, rows, parameters) → outputs, None when no worker took it
Send = Callable[[Any, str, list[Any], list[Any], dict[str, Any]], "list[Any] | None"]


class Mirror:
    """Sends a share of an endpoint's requests to its shadow variants and records the pairs."""

    def __init__(self, db: StateDB, send: Send, *, threads: int = 4):
        self.db = db
        self.send = send
        self._pool: ThreadPoolExecutor | None = None
        self._threads = threads
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def maybe(
        self,
        ep: Any,
        variants: Mapping[str, Any],
        workers: Mapping[str, list[Any]],
        instances: list[Any],
        params: dict[str, Any],
        production: str | None,
        outputs: list[Any] | None,
        latency_ms: float | None,
        error: str | None,
    ) -> None:
        """Mirror this request to each shadow variant with that variant's probability."""
        for name, v in variants.items():
            share = v["shadow"]
            if not share or name == production or random.random() * 100 >= share:
                continue
            pair = ShadowPair(
                request_id=uuid.uuid4().hex,
                ts=now(),
                production_variant=production,
                shadow_variant=name,
                production_outputs=outputs,
                production_latency_ms=latency_ms,
                production_error=error,
            )
            args = (ep, name, list(workers.get(name, [])), instances, params, pair)
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, "cloudserve-shadow")
                future = self._pool.submit(self._mirror, *args)
                self._pending.add(future)
            future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _mirror(
        self,
        ep: Any,
        variant: str,
        workers: list[Any],
        instances: list[Any],
        params: dict[str, Any],
        pair: ShadowPair,
    ) -> None:
        start = time.perf_counter()
        try:
            out = self.send(ep, variant, workers, instances, params)
            if out is None:
                pair.shadow_error = "no worker of the shadow variant accepted the request"
            else:
                pair.shadow_outputs = out
                pair.shadow_latency_ms = (time.perf_counter() - start) * 1000
        except CloudServeError as exc:
            pair.shadow_error = f"{type(exc).__name__}: {exc}"
        self.db.run(
            "INSERT INTO shadow_pairs(endpoint, request_id, ts, pair) VALUES (?, ?, ?, ?)",
            (ep["name"], pair.request_id, pair.ts, dumps(pair.model_dump(mode="json"))),
        )

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the mirrored requests still in flight (so a report sees them)."""
        with self._lock:
            pending = list(self._pending)
        if pending:
            wait(pending, timeout=timeout)

    def pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """The pairs recorded for ``endpoint`` over the last ``window_s`` seconds."""
        self.drain()
        rows = self.db.all(
            "SELECT pair FROM shadow_pairs WHERE endpoint = ? AND ts >= ? ORDER BY ts",
            (endpoint, now() - window_s),
        )
        return [ShadowPair.model_validate(loads(r["pair"])) for r in rows]

    def close(self) -> None:
        """Finish what is in flight and stop the threads (idempotent)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
