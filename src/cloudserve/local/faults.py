"""Test faults of the local provider (the conformance harness's hook).

A test arms a fault in the state store with :func:`arm`; a provider built with
``LocalProvider(config, fault_hooks=True)`` consumes one shot per checked call. A provider built
without it (every provider but a test's) holds :data:`NO_FAULTS` and never reads the table, so
predictions pay nothing for the hook.
"""

from __future__ import annotations

from cloudserve.errors import ServiceUnavailable, Throttled
from cloudserve.local.store import StateDB

__all__ = [
    "FAIL_AFTER_CREATE",
    "FAIL_OPERATION",
    "NO_FAULTS",
    "THROTTLE",
    "UNAVAILABLE",
    "FaultHooks",
    "NoFaults",
    "arm",
]

THROTTLE = "throttle"  # the next N checked calls raise Throttled
UNAVAILABLE = "unavailable"  # … raise ServiceUnavailable
FAIL_OPERATION = "fail_operation"  # the next deploy fails before it creates anything
FAIL_AFTER_CREATE = "fail_after_create"  # … fails after it started workers


def arm(db: StateDB, kind: str, times: int, message: str | None = None) -> None:
    """Arm ``kind`` for the next ``times`` checks."""
    db.run(
        "INSERT OR REPLACE INTO faults(kind, remaining, message) VALUES (?, ?, ?)",
        (kind, times, message),
    )


class NoFaults:
    """The hook of a provider that is not under test: nothing is ever armed."""

    def check(self) -> None:
        """Raise an armed request fault (never, here)."""

    def take(self, kind: str) -> str | None:
        """Consume one shot of an armed fault (none, here)."""
        return None


NO_FAULTS = NoFaults()


class FaultHooks(NoFaults):
    """Faults armed in the state store."""

    def __init__(self, db: StateDB):
        self.db = db

    def check(self) -> None:
        msg = self.take(THROTTLE)
        if msg is not None:
            raise Throttled(msg, provider="local", code=THROTTLE, retry_after=0.0)
        msg = self.take(UNAVAILABLE)
        if msg is not None:
            raise ServiceUnavailable(msg, provider="local", code=UNAVAILABLE)

    def take(self, kind: str) -> str | None:
        with self.db.tx() as tx:
            row = tx.execute(
                "SELECT remaining, message FROM faults WHERE kind = ?", (kind,)
            ).fetchone()
            if row is None or row["remaining"] <= 0:
                return None
            tx.execute("UPDATE faults SET remaining = remaining - 1 WHERE kind = ?", (kind,))
            return str(row["message"] or "injected failure")
