"""Waiting for long-running operations: always bounded, with backoff, jitter and progress.

``wait_for`` polls until a state is terminal or the timeout passes, calling ``progress`` after
each poll so that the CLI (Rich) or a notebook can show what is happening. ``wait=False`` on a
client call returns a handle instead; the handle can be polled later, from any process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cloudserve.errors import Timeout

__all__ = ["Progress", "ProgressCallback", "wait_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One observation of a long-running operation."""

    description: str
    status: str
    elapsed_s: float
    polls: int
    timeout_s: float
    done: bool = False
    fraction: float | None = None
    message: str | None = None


ProgressCallback = Callable[[Progress], None]


def wait_for(
    poll: Callable[[], T],
    *,
    is_done: Callable[[T], bool],
    timeout: float,
    description: str,
    status_of: Callable[[T], str] = str,
    fraction_of: Callable[[T], float | None] | None = None,
    interval: float = 1.0,
    max_interval: float = 30.0,
    backoff: float = 1.5,
    progress: ProgressCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Poll ``poll()`` until ``is_done(state)``; return the final state.

    The interval grows by ``backoff`` up to ``max_interval``, each sleep jittered to 50–100 % so
    that many waiters do not poll in step. Raises :class:`~cloudserve.errors.Timeout` naming the
    last status when ``timeout`` seconds pass. Errors raised by ``poll`` propagate unchanged.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive: every wait is bounded")
    start = clock()
    polls = 0
    delay = interval
    while True:
        state = poll()
        polls += 1
        elapsed = clock() - start
        done = is_done(state)
        if progress is not None:
            progress(
                Progress(
                    description=description,
                    status=status_of(state),
                    elapsed_s=elapsed,
                    polls=polls,
                    timeout_s=timeout,
                    done=done,
                    fraction=fraction_of(state) if fraction_of else None,
                )
            )
        if done:
            return state
        remaining = timeout - elapsed
        if remaining <= 0:
            raise Timeout(
                f"{description} did not finish within {timeout:g}s "
                f"(last status: {status_of(state)})"
            )
        sleep(min(delay * random.uniform(0.5, 1.0), remaining))
        delay = min(delay * backoff, max_interval)
