"""Per-endpoint locks shared by every process of a state directory.

Deploy, delete, restarts and the endpoint's agent take the endpoint's lock (an ``flock`` on
``<state_dir>/locks/<endpoint>.lock``) before they change its workers, so two processes
deploying the same endpoint, or a delete during a deploy, run one after the other instead of
interleaving. The lock is released when its holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cloudserve.errors import Timeout

__all__ = ["EndpointLock", "RunnerBusy", "endpoint_lock", "runner_lock"]


class RunnerBusy(Exception):
    """Another runner process holds the job."""


@contextlib.contextmanager
def runner_lock(work: Path, what: str) -> Iterator[None]:
    """Hold the job's ``runner.lock`` in its work directory for as long as this runner works on
    it; a second runner of the same job (a resume while the first is alive) gets RunnerBusy."""
    work.mkdir(parents=True, exist_ok=True)
    with (work / "runner.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunnerBusy(f"another runner is working on {what}") from None
        yield


class EndpointLock:
    """The lock of one endpoint (not reentrant; one holder at a time, threads included)."""

    def __init__(self, state_dir: Path, endpoint: str):
        self.path = state_dir / "locks" / f"{endpoint}.lock"
        self.endpoint = endpoint
        self._fh: IO[str] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when taken."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fh = self.path.open("a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for its holder."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise Timeout(
                    f"endpoint {self.endpoint} is being deployed or deleted by another process "
                    f"(waited {timeout:g}s for it)",
                    provider="local",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def release(self) -> None:
        """Let the next holder in (idempotent)."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fh is not None


@contextlib.contextmanager
def endpoint_lock(state_dir: Path, endpoint: str, *, timeout: float) -> Iterator[EndpointLock]:
    """Hold ``endpoint``'s lock for the block."""
    lock = EndpointLock(state_dir, endpoint)
    lock.acquire(timeout)
    try:
        yield lock
    finally:
        lock.release()
