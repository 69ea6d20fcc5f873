"""The per-endpoint agent process: works the queued-prediction queue and autoscales.

Started by the provider on the first ``predict_async``, or at deploy of an autoscaled or
serverless variant; it exits by itself once its endpoint is deleted. Run as
``python -m cloudserve.local.agent --config JSON --endpoint NAME``.

Autoscaling follows Little's law: the mean number of requests in flight over the last
``autoscale_window_s`` is the summed latency of the requests served in it divided by its
length. The agent keeps ``ceil(in_flight / target)`` workers (target
``compute.autoscale_target``, default 1 request in flight per worker) between
``min_replicas`` and ``max_replicas``, adding at once and removing one worker at a time after
``scale_down_after_s`` of low load. A serverless variant (``min_replicas`` 0) thus scales to
zero when idle; its next request starts a worker again (a cold start).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path
from typing import Any

from cloudserve.errors import CloudServeError, NotFound
from cloudserve.local.config import LocalConfig
from cloudserve.local.provider import LocalProvider, max_queue_of
from cloudserve.local.state import dumps, loads, now
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import JobStatus

__all__ = ["Agent", "main"]

FETCHED_KEEP_S = 3600.0


class Agent:
    """The loop of one endpoint's agent."""

    def __init__(self, provider: LocalProvider, endpoint: str):
        self.provider = provider
        self.db = provider.db
        self.endpoint = endpoint
        self.low_since: dict[str, float] = {}
        self.next_scale = 0.0

    def run(self) -> None:
        """Work until the endpoint is gone."""
        while self.db.one("SELECT 1 FROM endpoints WHERE name = ?", (self.endpoint,)):
            worked = self.work_queue()
            if time.monotonic() >= self.next_scale:
                self.autoscale()
                self.purge()
                self.next_scale = time.monotonic() + self.provider.config.autoscale_interval_s
            if not worked:
                time.sleep(0.05)

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

    def in_flight(self, variant: str) -> float:
        """Mean requests in flight on ``variant`` over the last ``autoscale_window_s``."""
        window = self.provider.config.autoscale_window_s
        self.provider.recorder.flush()
        row = self.db.one(
            "SELECT SUM(latency_ms) AS busy FROM invocations"
            " WHERE endpoint = ? AND variant = ? AND ts >= ?",
            (self.endpoint, variant, now() - window),
        )
        busy = float(row["busy"] or 0.0) if row is not None else 0.0
        return busy / 1000.0 / window

    def autoscale(self) -> None:
        """Bring each autoscaled variant's worker count to what its load needs."""
        for v in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (self.endpoint,)):
            if v["min_replicas"] == v["max_replicas"]:
                continue
            workers = self.db.all(
                "SELECT * FROM workers WHERE endpoint = ? AND variant = ? ORDER BY id",
                (self.endpoint, v["name"]),
            )
            target = v["autoscale_target"] or 1.0
            want = math.ceil(self.in_flight(v["name"]) / target)
            want = min(max(want, v["min_replicas"]), v["max_replicas"])
            have = len(workers)
            with contextlib.suppress(CloudServeError):
                if want > have:
                    self.low_since.pop(v["name"], None)
                    self.scale_up(v, want - have)
                elif want < have:
                    since = self.low_since.setdefault(v["name"], time.monotonic())
                    if time.monotonic() - since >= self.provider.config.scale_down_after_s:
                        self.scale_down(workers[-1])
                        self.low_since.pop(v["name"], None)
                else:
                    self.low_since.pop(v["name"], None)

    def scale_up(self, variant: Any, count: int) -> None:
        """Start ``count`` more workers for the variant and put them in service."""
        token = self.provider._token(self.endpoint)
        started: list[ProcessRef] = []
        fresh = self.provider._start_workers(
            self.endpoint,
            variant["name"],
            Path(variant["model_dir"]),
            token,
            count,
            None,
            started,
            max_queue_of(variant),
        )
        with self.db.tx() as tx:
            for ref, port, log in fresh:
                self.provider._insert_worker(tx, self.endpoint, variant["name"], ref, port, log)
            tx.execute(
                "UPDATE variants SET replicas = (SELECT COUNT(*) FROM workers"
                " WHERE endpoint = ? AND variant = ?) WHERE endpoint = ? AND name = ?",
                (self.endpoint, variant["name"], self.endpoint, variant["name"]),
            )

    def scale_down(self, worker: Any) -> None:
        """Take one worker out of service, then drain and stop it."""
        with self.db.tx() as tx:
            tx.execute("DELETE FROM workers WHERE id = ?", (worker["id"],))
            tx.execute(
                "UPDATE variants SET replicas = replicas - 1 WHERE endpoint = ? AND name = ?",
                (self.endpoint, worker["variant"]),
            )
        self.provider._drain([(worker, ProcessRef(worker["pid"], worker["ctime"]))])

    def purge(self) -> None:
        """Forget results fetched more than FETCHED_KEEP_S ago (unfetched ones stay)."""
        self.db.run(
            "DELETE FROM async_requests WHERE endpoint = ? AND fetched_at < ?",
            (self.endpoint, now() - FETCHED_KEEP_S),
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the agent process."""
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
