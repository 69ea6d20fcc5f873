"""Helpers of the local provider's tests (a module of its own so that test files can import it
whatever other ``conftest`` modules pytest has loaded)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil

from cloudserve.local import LocalConfig, LocalProvider
from cloudserve.provider import RetrySettings, WaitSettings

FAST = {
    "retry": RetrySettings(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01),
    "waits": WaitSettings(poll_interval_s=0.05, max_poll_interval_s=0.2),
    "drain_s": 0.05,
}


def local_config(state_dir: Path, **overrides) -> LocalConfig:
    """A config with fast waits and retries for tests."""
    return LocalConfig(state_dir=state_dir, **{**FAST, **overrides})


def processes_of(state_dir: Path) -> list[psutil.Process]:
    """Live processes started for this state directory (found by their command line)."""
    needle = str(state_dir.resolve())
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(needle in part for part in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def cleanup(state_dir: Path) -> None:
    """Delete every endpoint of the state directory and kill what is left of its processes."""
    if (state_dir / "state.db").exists():
        provider = LocalProvider(local_config(state_dir))
        provider.db.run("DELETE FROM faults")
        for ep in provider.db.all("SELECT name FROM endpoints"):
            with contextlib.suppress(Exception):
                provider.delete_endpoint(ep["name"], wait=False)
        provider.close()
    leftovers = processes_of(state_dir)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)
