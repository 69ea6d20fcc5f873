"""Child processes of the local provider: serving workers, batch and tuning runners, agents.

Processes start in their own session so they outlive the Python process that deployed them (a
later process or CLI call finds them through the state database). A process is named by its
pid *and* its start time, so a recycled pid is never mistaken for a live worker. A stopped
process that another process started stays a zombie until its parent reaps it; stopping counts
a zombie as gone instead of waiting for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from cloudserve.errors import OperationFailed

__all__ = ["ProcessRef", "bindable", "spawn", "stop_all", "stop_group", "tail", "wait_ready"]

# Popen objects of the children this process started, so that their exit is reaped here
# (a dead child that is never waited for stays a zombie and looks alive). A forked child is
# not their parent: it must not ask them (``poll`` would answer "exited" for a live process).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
os.register_at_fork(after_in_child=_CHILDREN.clear)


@dataclass(frozen=True)
class ProcessRef:
    """A process by pid and creation time."""

    pid: int
    ctime: float

    def alive(self) -> bool:
        """True while the very process (not a pid reuse) runs and is not a zombie."""
        child = _CHILDREN.get(self.pid)
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(self.pid, None)
            return False
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.ctime) > 0.5:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def spawn(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> ProcessRef:
    """Start ``argv`` detached (own session), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    _CHILDREN[proc.pid] = proc
    return ProcessRef(proc.pid, psutil.Process(proc.pid).create_time())


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def bindable(host: str, port: int) -> int | None:
    """``port`` (or, for 0, a port the system picks) if nobody listens on it now, else None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return None
        return int(s.getsockname()[1])


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a log file (empty when it does not exist)."""
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_ready(
    ref: ProcessRef, url: str, *, log: Path, timeout: float, headers: dict[str, str]
) -> None:
    """Poll ``url`` until it answers 200; OperationFailed if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    with httpx.Client(timeout=2.0, headers=headers) as http:
        while True:
            if not ref.alive():
                raise OperationFailed(
                    f"worker (pid {ref.pid}) exited before it was ready; its log ends:\n"
                    + tail(log),
                    provider="local",
                )
            with contextlib.suppress(httpx.HTTPError):
                if http.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise OperationFailed(
                    f"worker (pid {ref.pid}) not ready after {timeout:g}s; its log ends:\n"
                    + tail(log),
                    provider="local",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)


def _running(proc: psutil.Process) -> bool:
    """True until the process exited (a zombie has exited; its parent reaps it)."""
    child = _CHILDREN.get(proc.pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(proc.pid, None)
        return False
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_exit(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for the processes to exit; those still running."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    running = [p for p in procs if _running(p)]
    while running and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
        running = [p for p in running if _running(p)]
    return running


def stop_all(refs: Iterable[ProcessRef], *, grace_s: float = 10.0) -> None:
    """SIGTERM every live process (they drain), then SIGKILL what is left after ``grace_s``."""
    procs = []
    for ref in refs:
        if not ref.alive():
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(ref.pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
    for proc in _wait_exit(procs, grace_s):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_exit(procs, 5)


def stop_group(ref: ProcessRef, *, grace_s: float = 5.0) -> None:
    """Stop a runner and everything it started (its session's process group): SIGTERM, then
    SIGKILL after ``grace_s``."""
    if not ref.alive():
        return
    members = [psutil.Process(ref.pid)]
    with contextlib.suppress(psutil.Error):
        members += members[0].children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(ref.pid, signal.SIGTERM)  # the runner leads its own session and group
    for proc in _wait_exit(members, grace_s):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_exit(members, 5)


def runner_main(prog: str, run: Callable[[Any, str], Any], argv: list[str] | None = None) -> None:
    """The entry point of a job runner process (batch, tuning): ``--config JSON --job ID``.

    ``run`` records failures on the job itself; the traceback goes to the runner's log and the
    process exits 1.
    """
    import argparse
    import traceback

    from cloudserve.local.config import LocalConfig

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", required=True, help="LocalConfig as JSON")
    parser.add_argument("--job", required=True)
    args = parser.parse_args(argv)
    try:
        run(LocalConfig.model_validate_json(args.config), args.job)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
