"""Online prediction on local endpoints: routing, sending, answers, self-healing.

The caller's process routes each request (weights, sticky routing keys, round-robin over
workers) and posts it straight to a worker. A worker that refuses the connection is skipped;
if it is dead its row is dropped at once so other callers skip it too, and when a variant has no
worker left the request restarts one (serverless: a cold start) under the endpoint's lock,
instead of failing until someone calls ``restart_endpoint``.

A worker's non-200 answer is the local provider's native error (:class:`WorkerAnswer`); it maps
onto the error tree through the core's HTTP-status table (:data:`ERROR_TABLE`), so a 401 is
``AuthError``, a 429 ``Throttled``. A worker shedding load past ``Compute.max_concurrency``
answers 503 ``overloaded``: for an endpoint that is its concurrency cap, so it is ``Throttled``
too.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from cloudserve.errors import (
    CloudServeError,
    ErrorTable,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Throttled,
)
from cloudserve.local import agent, monitor, workers
from cloudserve.local.config import LocalConfig
from cloudserve.local.locks import endpoint_lock
from cloudserve.local.router import RoundRobin, pick_variant
from cloudserve.local.shadow import Mirror
from cloudserve.local.store import StateDB, dumps
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import Prediction

__all__ = ["ERROR_TABLE", "Router", "WorkerAnswer"]


class WorkerAnswer(Exception):
    """A serving worker's non-200 answer: the local provider's native error."""

    def __init__(
        self, status: int, message: str, retry_after: float | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.code = code

    @classmethod
    def of(cls, response: httpx.Response) -> WorkerAnswer:
        """The answer of a worker's response."""
        from cloudserve.codecs import error_message

        try:
            body = response.json()
        except ValueError:
            body = None
        code = body.get("code") if isinstance(body, dict) else None
        after = response.headers.get("retry-after", "")
        return cls(
            response.status_code,
            error_message(response.content, response.reason_phrase),
            float(after) if after.isdigit() else None,
            code if isinstance(code, str) else None,
        )


def _extract(exc: BaseException) -> tuple[str | int, str, float | None] | None:
    if not isinstance(exc, WorkerAnswer):
        return None
    if exc.status == 503 and exc.code == "overloaded":
        return "overloaded", str(exc), exc.retry_after
    return exc.status, str(exc), exc.retry_after


# Worker statuses mean what the core's HTTP table says; the one native code is load shedding.
ERROR_TABLE = ErrorTable({"overloaded": Throttled}, extract=_extract)


def error_class(exc: CloudServeError) -> str:
    """The metrics bucket of a failed request."""
    if isinstance(exc, Throttled):
        return "throttled"
    if isinstance(exc, InvalidRequest | NotFound):
        return "4xx"
    if isinstance(exc, ServiceUnavailable):
        return "5xx"
    return "other"


class Router:
    """Sends predictions from this process to the endpoints' workers."""

    def __init__(self, db: StateDB, config: LocalConfig, recorder: monitor.Recorder):
        self.db, self.config, self.recorder = db, config, recorder
        self.http = httpx.Client(
            timeout=httpx.Timeout(config.request_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self.rr = RoundRobin()
        self.mirror = Mirror(db, self._send)
        self.lock_timeout = 2 * config.ready_timeout_s + config.drain_s + 30

    def _routing(self, endpoint: str) -> tuple[Any, dict[str, Any], dict[str, list[Any]]]:
        ep = self.db.one("SELECT * FROM endpoints WHERE name = ?", (endpoint,))
        if ep is None:
            raise NotFound(f"endpoint {endpoint} does not exist", provider="local")
        variants = {
            r["name"]: r
            for r in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (endpoint,))
        }
        found: dict[str, list[Any]] = {}
        for w in self.db.all("SELECT * FROM workers WHERE endpoint = ? ORDER BY id", (endpoint,)):
            found.setdefault(w["variant"], []).append(w)
        return ep, variants, found

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        variant: str | None,
        params: dict[str, Any],
        key: str | None,
    ) -> Prediction:
        """Route the rows to a variant and return its outputs (recorded for metrics)."""
        start = time.perf_counter()
        chosen: str | None = variant
        known = False  # only requests to an existing endpoint are recorded
        try:
            for attempt in range(4):
                ep, variants, found = self._routing(endpoint)
                known = True
                if variant is not None and variant not in variants:
                    raise NotFound(
                        f"endpoint {endpoint} has no variant {variant}", provider="local"
                    )
                chosen = variant or pick_variant(
                    [(n, v["weight"]) for n, v in variants.items()],
                    None if key is None else str(key),
                )
                if chosen is None:
                    raise ServiceUnavailable(
                        f"endpoint {endpoint} has no variant with traffic", provider="local"
                    )
                outputs = self._send(ep, chosen, found.get(chosen, []), instances, params)
                if outputs is not None:
                    break
                if not self._heal(endpoint, variants[chosen]):
                    time.sleep(0.05 * (attempt + 1))  # the routing table may be mid-switch
            else:
                raise ServiceUnavailable(
                    f"no worker of {endpoint}/{chosen} accepted the connection", provider="local"
                )
        except CloudServeError as exc:
            if known:
                self.recorder.invocation(endpoint, chosen, None, len(instances), error_class(exc))
                if variant is None:
                    self.mirror.maybe(ep, variants, found, instances, params, chosen, None,
                                      None, f"{type(exc).__name__}: {exc}")  # fmt: skip
            raise
        ms = (time.perf_counter() - start) * 1000
        self.recorder.invocation(endpoint, chosen, ms, len(instances))
        if variant is None:  # a request addressed to one variant is not mirrored
            self.mirror.maybe(ep, variants, found, instances, params, chosen, outputs, ms, None)
        rate, responses = ep["capture_rate"], ep["capture_responses"]
        self.recorder.capture(endpoint, chosen, instances, outputs if responses else None, rate)
        v = variants[chosen]
        return Prediction(
            outputs=outputs, model_version=v["model_version"], variant=chosen, latency_ms=ms
        )

    def _heal(self, endpoint: str, variant: Any) -> bool:
        """Start a worker for a variant left without a live one (a cold start for serverless),
        unless another process is doing it; True when one was started here."""
        found = workers.refs(self.db, "endpoint = ? AND variant = ?", (endpoint, variant["name"]))
        if any(ref.alive() for _, ref in found):
            return False
        with endpoint_lock(self.db.state_dir, endpoint, timeout=self.lock_timeout):
            current = self.db.one(
                "SELECT * FROM variants WHERE endpoint = ? AND name = ?",
                (endpoint, variant["name"]),
            )
            if current is None:
                return False
            if current["min_replicas"] == 0 and current["replicas"] == 0:
                with self.db.tx() as tx:  # a cold start: one worker, until the agent scales down
                    tx.execute(
                        "UPDATE variants SET replicas = 1 WHERE endpoint = ? AND name = ?",
                        (endpoint, variant["name"]),
                    )
                current = self.db.one(
                    "SELECT * FROM variants WHERE endpoint = ? AND name = ?",
                    (endpoint, variant["name"]),
                )
            started = workers.replace_dead(self.db, self.config, endpoint, current)
        agent.ensure_agent(self.db, self.config, endpoint)
        return started > 0

    def _send(
        self,
        ep: Any,
        variant: str,
        found: list[Any],
        instances: list[Any],
        params: dict[str, Any],
    ) -> list[Any] | None:
        """POST to the variant's workers in round-robin order; None when none accepted."""
        by_id = {w["id"]: w for w in found}
        body: dict[str, Any] = {"instances": instances}
        if params:
            body["parameters"] = params
        for wid in self.rr.order(ep["name"], variant, list(by_id)):
            w = by_id[wid]
            url = f"http://{workers.host_url(self.config)}:{w['port']}/invocations"
            try:
                response = self.http.post(
                    url,
                    content=dumps(body),
                    headers={
                        "Authorization": f"Bearer {ep['token']}",
                        "Content-Type": "application/json",
                    },
                )
            except (
                httpx.ConnectError,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
            ):
                # the worker is gone or going (drained); predictions are idempotent, so the
                # request is safe to send to the next worker
                self._forget_if_dead(w)
                continue
            except httpx.TimeoutException as exc:
                raise ServiceUnavailable(
                    f"worker of {ep['name']}/{variant} timed out", provider="local"
                ) from exc
            return self._outputs(response, len(instances))
        return None

    def _forget_if_dead(self, worker: Any) -> None:
        """Drop a dead worker's row so no caller routes to it (the agent replaces it)."""
        if not ProcessRef(worker["pid"], worker["ctime"]).alive():
            self.db.run("DELETE FROM workers WHERE id = ?", (worker["id"],))

    def _outputs(self, response: httpx.Response, n_rows: int) -> list[Any]:
        if response.status_code == 200:
            from cloudserve.codecs import decode_predictions

            outputs = decode_predictions(response.content, response.headers.get("content-type", ""))
            if len(outputs) != n_rows:
                raise ServiceUnavailable(
                    f"worker answered {len(outputs)} outputs for {n_rows} rows", provider="local"
                )
            return outputs
        raise ERROR_TABLE.translate(WorkerAnswer.of(response), provider="local")

    def close(self) -> None:
        """Finish mirrored requests and close the HTTP connections."""
        self.mirror.close()
        self.http.close()
