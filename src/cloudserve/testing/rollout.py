"""Test support for rollouts: clocks that run bake times without sleeping, and interrupting a
rollout the way a crash would.

``SimClock`` is a settable clock a harness shares with its fake (which stamps requests and metric
datapoints with it) and its provider (which ends metric windows with it); ``WallClock`` is real
time, for a provider whose metrics are stamped by the system clock (local). ``TrafficClock`` is
what a test hands a rollout as its clock: a bake sends real predictions through the client,
spread over the bake, instead of sleeping — and can stop a rollout mid-bake the way a crash would.

``kill_while_baking(client, endpoint, argv)`` starts ``argv`` (a process that runs a rollout on
``endpoint`` with real bake times), waits until the rollout state recorded with the endpoint shows
its first bake, and kills the process with SIGKILL — so a test can resume or abort the rollout
from another process, as a user would after a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Protocol

from cloudserve.client import Client
from cloudserve.errors import CloudServeError

__all__ = [
    "BaseClock",
    "SimClock",
    "SimulatedCrash",
    "TrafficClock",
    "WallClock",
    "kill_while_baking",
]

#: A whole minute (2027-01-15T08:00:00Z), so one-minute bakes fill whole metric periods.
SIM_START = 1_800_000_000.0


class BaseClock(Protocol):
    """The time a fake, its provider and a test share."""

    def now(self) -> float: ...

    def advance_to(self, t: float) -> None: ...


class SimClock:
    """Simulated time: ``now()`` is what the test last set; it never goes backwards."""

    def __init__(self, start: float = SIM_START):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, float(t))


class WallClock:
    """Real time: advancing sleeps until then."""

    def now(self) -> float:
        return time.time()

    def advance_to(self, t: float) -> None:
        delay = t - time.time()
        if delay > 0:
            time.sleep(delay)


class SimulatedCrash(BaseException):
    """Raised from inside a bake by :class:`TrafficClock` (``crash_in_bake``): a BaseException,
    so the rollout stops where it is with nothing caught or cleaned up, as when its process dies."""


class TrafficClock:
    """The clock a test gives a rollout: each bake sends ``requests`` predictions through
    ``client`` spread evenly over the bake, advancing ``base`` as it goes, then ends the bake.

    Failed predictions are what the gates are meant to see, so they are counted, not raised.
    ``crash_in_bake=N`` raises :class:`SimulatedCrash` half-way through the N-th bake.
    """

    def __init__(
        self,
        base: BaseClock,
        client: Client,
        endpoint: str,
        rows: Sequence[Any],
        *,
        requests: int = 300,
        crash_in_bake: int | None = None,
    ):
        self.base, self.client, self.endpoint = base, client, endpoint
        self.rows = list(rows)
        self.requests, self.crash_in_bake = requests, crash_in_bake
        self.bakes = 0
        self.failures = 0

    def now(self) -> float:
        return self.base.now()

    def sleep(self, seconds: float) -> None:
        self.bakes += 1
        start, tick = self.base.now(), seconds / (self.requests + 1)
        for i in range(self.requests):
            if self.bakes == self.crash_in_bake and i == self.requests // 2:
                raise SimulatedCrash(f"crashed half-way through bake {self.bakes}")
            self.base.advance_to(start + (i + 1) * tick)
            try:
                self.client.predict(self.endpoint, [self.rows[i % len(self.rows)]])
            except CloudServeError:
                self.failures += 1
        self.base.advance_to(start + seconds)


def kill_while_baking(
    client: Client, endpoint: str, argv: Sequence[str], *, timeout: float = 120.0
) -> None:
    """Run ``argv`` until its rollout on ``endpoint`` is baking, then SIGKILL it."""
    proc = subprocess.Popen(list(argv), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = client.rollout_status(endpoint)
            if status is not None and status.history:
                return
            if proc.poll() is not None:
                raise AssertionError(f"the rollout process ended early (exit {proc.returncode})")
            time.sleep(0.2)
        raise AssertionError(f"the rollout on {endpoint} never reached its first bake")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
