"""Retries for errors that are safe to repeat, and only those.

Throttling, 5xx answers, dropped connections and read timeouts are retried with full-jitter
exponential backoff, bounded in attempts and in total time, honouring a ``Retry-After`` hint.
Everything else — and any non-idempotent create — is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from cloudserve.errors import CloudServeError, Throttled

__all__ = ["RetryPolicy", "is_retryable"]

log = logging.getLogger("cloudserve.retry")
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """True for errors a repeat may cure: throttling, 5xx, connection resets, read timeouts."""
    if isinstance(exc, CloudServeError):
        return exc.retryable
    return isinstance(exc, ConnectionError | TimeoutError)


class RetryPolicy:
    """A bounded retry policy built on tenacity.

    ``max_attempts`` counts the first try; ``max_elapsed_s`` bounds the whole call including
    waits. Waits are random in ``[0, min(max_backoff_s, initial_backoff_s * 2**n)]`` (full
    jitter), or the service's ``retry_after`` when it gave one (capped at ``max_backoff_s``).
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        max_elapsed_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_elapsed_s = max_elapsed_s
        self._sleep = sleep
        self._jitter = wait_random_exponential(multiplier=initial_backoff_s, max=max_backoff_s)

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        """Build from a config block with the same field names (``RetrySettings``)."""
        return cls(
            max_attempts=settings.max_attempts,
            initial_backoff_s=settings.initial_backoff_s,
            max_backoff_s=settings.max_backoff_s,
            max_elapsed_s=settings.max_elapsed_s,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_backoff_s)
        return float(self._jitter(state))

    def _log(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("retrying after attempt %d: %s", state.attempt_number, exc)

    def retrying(self) -> Retrying:
        """A tenacity ``Retrying`` configured with this policy (reraises the last error)."""
        return Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_elapsed_s),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log,
            reraise=True,
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` and retry it while it raises retry-safe errors."""
        return self.retrying()(fn, *args, **kwargs)
