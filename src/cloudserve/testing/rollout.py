"""Test support for rollouts: interrupt one the way a crash would.

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

from cloudserve.client import Client

__all__ = ["kill_while_baking"]


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
