"""The per-endpoint agent process: keeps the workers alive, autoscales, works the queue.

Every deploy starts its endpoint's agent (``python -m cloudserve.local.agent --config JSON
--endpoint NAME``); it exits by itself once its endpoint is deleted. Its loop:

- **Supervision**, every ``supervise_interval_s``: a worker that died (killed, crashed) is
  replaced, and a variant is kept at ``max(replicas, min_replicas)`` live workers. Every ten
  seconds it also stops workers of its endpoint that no row owns (left by a process that died
  mid-deploy). Changes are made under the endpoint's lock; while a deploy or delete holds it,
  the agent waits for the next round.
- **Autoscaling** follows Little's law: the mean number of requests in flight over the last
  ``autoscale_window_s`` is the summed latency of the requests served in it divided by its
  length. The agent keeps ``ceil(in_flight / target)`` live workers (target
  ``compute.autoscale_target``, default 1 request in flight per worker) between
  ``min_replicas`` and ``max_replicas``, adding at once and removing one worker at a time after
  ``scale_down_after_s`` of low load. A serverless variant (``min_replicas`` 0) thus scales to
  zero when idle; its next request starts a worker again (a cold start).
- **Queued predictions** are served in order.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudserve.errors import CloudServeError, NotFound
from cloudserve.local import supervisor, workers
from cloudserve.local.config import LocalConfig
from cloudserve.local.locks import EndpointLock
from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import JobStatus

if TYPE_CHECKING:
    from cloudserve.local.provider import LocalProvider

__all__ = ["Agent", "ensure_agent", "main"]

FETCHED_KEEP_S = 3600.0
SWEEP_EVERY_S = 10.0


def ensure_agent(db: StateDB, config: LocalConfig, endpoint: str) -> None:
    """Start the endpoint's agent unless it runs."""
    with db.tx() as tx:
        row = tx.execute(
            "SELECT agent_pid, agent_ctime FROM endpoints WHERE name = ?", (endpoint,)
        ).fetchone()
        if row is None:
            return
        if row["agent_pid"] and ProcessRef(row["agent_pid"], row["agent_ctime"]).alive():
            return
        ref = supervisor.spawn(
            supervisor.python_module(
                "cloudserve.local.agent",
                "--config",
                config.model_dump_json(),
                "--endpoint",
                endpoint,
            ),
            log=db.state_dir / "endpoints" / endpoint / "agent.log",
        )
        tx.execute(
            "UPDATE endpoints SET agent_pid = ?, agent_ctime = ? WHERE name = ?",
            (ref.pid, ref.ctime, endpoint),
        )


class Agent:
    """The loop of one endpoint's agent."""

    def __init__(self, provider: LocalProvider, endpoint: str):
        self.provider = provider
        self.db = provider.db
        self.config = provider.config
        self.endpoint = endpoint
        self.low_since: dict[str, float] = {}
        self.next_supervise = self.next_scale = self.next_sweep = 0.0
        self.backoff = self.config.supervise_interval_s

    def run(self) -> None:
        """Work until the endpoint is gone."""
        while self.db.one("SELECT 1 FROM endpoints WHERE name = ?", (self.endpoint,)):
            worked = self.work_queue()
            t = time.monotonic()
            if t >= self.next_supervise:
                self.next_supervise = t + self.supervise()
            if t >= self.next_scale:
                self.locked(self.autoscale)
                self.purge()
                self.next_scale = t + self.config.autoscale_interval_s
            if t >= self.next_sweep:
                workers.sweep(self.db, self.endpoint)
                self.next_sweep = t + SWEEP_EVERY_S
            if not worked:
                time.sleep(0.05)

    def locked(self, fn: Any) -> bool:
        """Run ``fn`` under the endpoint's lock, unless a deploy or delete holds it."""
        lock = EndpointLock(self.db.state_dir, self.endpoint)
        if not lock.try_acquire():
            return False
        try:
            fn()
        finally:
            lock.release()
        return True

    # -- supervision ---------------------------------------------------------------------------

    def _short(self, variant: Any) -> bool:
        found = workers.refs(
            self.db, "endpoint = ? AND variant = ?", (self.endpoint, variant["name"])
        )
        live = sum(ref.alive() for _, ref in found)
        return live < len(found) or live < max(variant["replicas"], variant["min_replicas"])

    def supervise(self) -> float:
        """Replace dead workers; seconds until the next round (backing off while it fails)."""
        variants = self.db.all("SELECT * FROM variants WHERE endpoint = ?", (self.endpoint,))
        short = [v for v in variants if self._short(v)]
        if not short:
            self.backoff = self.config.supervise_interval_s
            return self.backoff

        def restart() -> None:
            for v in short:
                current = self.db.one(
                    "SELECT * FROM variants WHERE endpoint = ? AND name = ?",
                    (self.endpoint, v["name"]),
                )
                if current is not None:
                    started = workers.replace_dead(self.db, self.config, self.endpoint, current)
                    print(f"supervise: {v['name']}: started {started} worker(s)", flush=True)

        try:
            self.locked(restart)
        except CloudServeError:
            traceback.print_exc()  # e.g. a model that no longer loads: try again later
            self.backoff = min(self.backoff * 2, 30.0)
            return self.backoff
        self.backoff = self.config.supervise_interval_s
        return self.backoff

    # -- queued predictions ----------------------------------------------------------------

    def claim(self) -> Any:
        """Take the oldest pending request (marks it RUNNING); None when the queue is empty."""
        with self.db.tx() as tx:
            row = tx.execute(
                "SELECT * FROM async_requests WHERE endpoint = ? AND status = ?"
                " ORDER BY created_at LIMIT 1",
                (self.endpoint, JobStatus.PENDING.value),
            ).fetchone()
            if row is not None:
                tx.execute(
                    "UPDATE async_requests SET status = ? WHERE id = ?",
                    (JobStatus.RUNNING.value, row["id"]),
                )
            return row

    def work_queue(self) -> bool:
        """Serve one queued request; False when there was none."""
        row = self.claim()
        if row is None:
            return False
        update: tuple[str, str | None, str | None]
        try:
            pred = self.provider.predict(
                self.endpoint,
                loads(row["inputs"]),
                variant=row["variant"],
                parameters=loads(row["parameters"]) or None,
            )
            update = (JobStatus.SUCCEEDED.value, dumps(pred.outputs), None)
        except CloudServeError as exc:
            update = (JobStatus.FAILED.value, None, f"{type(exc).__name__}: {exc.message}")
        self.db.run(
            "UPDATE async_requests SET status = ?, outputs = ?, error = ?, finished_at = ?"
            " WHERE id = ?",
            (*update, now(), row["id"]),
        )
        return True

    def purge(self) -> None:
        """Forget results fetched more than FETCHED_KEEP_S ago (unfetched ones stay)."""
        self.db.run(
            "DELETE FROM async_requests WHERE endpoint = ? AND fetched_at < ?",
            (self.endpoint, now() - FETCHED_KEEP_S),
        )

    # -- autoscaling ---------------------------------------------------------------------------

    def in_flight(self, variant: str) -> float:
        """Mean requests in flight on ``variant`` over the last ``autoscale_window_s``."""
        window = self.config.autoscale_window_s
        self.provider.recorder.flush()
        row = self.db.one(
            "SELECT SUM(latency_ms) AS busy FROM invocations"
            " WHERE endpoint = ? AND variant = ? AND ts >= ?",
            (self.endpoint, variant, now() - window),
        )
        busy = float(row["busy"] or 0.0) if row is not None else 0.0
        return busy / 1000.0 / window

    def autoscale(self) -> None:
        """Bring each autoscaled variant's live worker count to what its load needs."""
        for v in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (self.endpoint,)):
            if v["min_replicas"] == v["max_replicas"]:
                continue
            live = [
                w
                for w, ref in workers.refs(
                    self.db, "endpoint = ? AND variant = ? ORDER BY id", (self.endpoint, v["name"])
                )
                if ref.alive()
            ]
            target = v["autoscale_target"] or 1.0
            want = math.ceil(self.in_flight(v["name"]) / target)
            want = min(max(want, v["min_replicas"]), v["max_replicas"])
            with contextlib.suppress(CloudServeError):
                if want > len(live):
                    self.low_since.pop(v["name"], None)
                    self.scale_up(v, want - len(live))
                elif want < len(live):
                    since = self.low_since.setdefault(v["name"], time.monotonic())
                    if time.monotonic() - since >= self.config.scale_down_after_s:
                        self.scale_down(live[-1])
                        self.low_since.pop(v["name"], None)
                else:
                    self.low_since.pop(v["name"], None)

    def _count_replicas(self, tx: Any, variant: str) -> None:
        tx.execute(
            "UPDATE variants SET replicas = (SELECT COUNT(*) FROM workers"
            " WHERE endpoint = ? AND variant = ?) WHERE endpoint = ? AND name = ?",
            (self.endpoint, variant, self.endpoint, variant),
        )

    def scale_up(self, variant: Any, count: int) -> None:
        """Start ``count`` more workers for the variant and put them in service."""
        started: list[ProcessRef] = []
        try:
            fresh = workers.start_workers(
                self.db,
                self.config,
                self.endpoint,
                variant["name"],
                Path(variant["model_dir"]),
                self.provider.endpoints.token(self.endpoint),
                count,
                started,
                max_queue=workers.max_queue_of(variant),
            )
        except BaseException:
            supervisor.stop_all(started, grace_s=5)
            raise
        with self.db.tx() as tx:
            workers.insert_workers(tx, self.endpoint, variant["name"], fresh)
            self._count_replicas(tx, variant["name"])

    def scale_down(self, worker: Any) -> None:
        """Take one worker out of service, then let it finish what it holds and stop it."""
        with self.db.tx() as tx:
            tx.execute("DELETE FROM workers WHERE id = ?", (worker["id"],))
            self._count_replicas(tx, worker["variant"])
        time.sleep(self.config.drain_s)
        supervisor.stop_all([ProcessRef(worker["pid"], worker["ctime"])])


def main(argv: list[str] | None = None) -> None:
    """Entry point of the agent process."""
    from cloudserve.local.provider import LocalProvider

    parser = argparse.ArgumentParser(prog="cloudserve.local.agent")
    parser.add_argument("--config", required=True, help="LocalConfig as JSON")
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args(argv)
    provider = LocalProvider(LocalConfig.model_validate_json(args.config))
    try:
        # NotFound: the endpoint was deleted while a request was in flight — we are done.
        with contextlib.suppress(NotFound):
            Agent(provider, args.endpoint).run()
    finally:
        provider.close()


if __name__ == "__main__":
    main()
