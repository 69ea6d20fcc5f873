"""Cached reference virtual environments: a cloud image's libraries, without cloudserve.

What cloudserve sends to a cloud (a SageMaker ``inference.py``, an Azure ``score.py``, a batch
script) runs there with that image's library versions and no cloudserve. Tests reproduce that in a
venv pinned to those versions::

    python = reference_venv("sklearn-1.2-1", ["scikit-learn==1.2.1", "numpy==1.24.1"])
    subprocess.run([python, "-c", "import inference"], cwd=code_dir, check=True)

A venv is keyed by its name and a hash of its requirements, built once (under a file lock, so
parallel test processes share one build) and reused by later tests and later runs. The cache lives
in ``$CLOUDSERVE_TEST_CACHE`` (default ``~/.cache/cloudserve-tests``). Packages come from the
indexes the machine's pip is configured with; nothing names a host. ``cloudserve`` is never
installed, and :func:`reference_venv` checks that it cannot be imported there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ReferenceVenvError", "cache_dir", "clean_env", "reference_venv"]

_READY = ".cloudserve-ready"
# variables that would put the running environment's packages on a reference venv's path
_LEAKY = frozenset({"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE"})


class ReferenceVenvError(RuntimeError):
    """A reference venv could not be built; the message holds pip's own output."""


_NO_CLOUDSERVE = (
    "import importlib.util, sys; sys.exit(bool(importlib.util.find_spec('cloudserve')))"
)


def cache_dir() -> Path:
    """Where cached test artefacts (reference venvs, base images) live."""
    root = os.environ.get("CLOUDSERVE_TEST_CACHE") or Path.home() / ".cache" / "cloudserve-tests"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak the test venv into a reference venv."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env.update(extra)
    return env


def _key(name: str, requirements: Sequence[str], python: str) -> str:
    text = "\n".join([name, python, *sorted(requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bin(root: Path, name: str) -> Path:
    return root / ("Scripts" if os.name == "nt" else "bin") / name


def reference_venv(
    name: str,
    requirements: Sequence[str],
    *,
    python: str | None = None,
    pip_args: Sequence[str] = (),
) -> Path:
    """Return the python of a venv holding exactly ``requirements`` (built once, then cached).

    ``python`` is the interpreter the venv is made from (default: the running one). ``pip_args``
    are extra ``pip install`` options (``--only-binary=:all:``, say). Raises
    :class:`ReferenceVenvError` with pip's output when the install fails.
    """
    base = python or sys.executable
    root = cache_dir() / "venvs" / f"{name}-{_key(name, [*requirements, *pip_args], base)}"
    py = _bin(root, "python")
    with _locked(root.with_suffix(".lock")):
        if (root / _READY).exists():
            return py
        if root.exists():
            shutil.rmtree(root)  # a build that died half-way
        if python is None:
            venv.EnvBuilder(with_pip=True, clear=True).create(root)
        else:
            subprocess.run([base, "-m", "venv", str(root)], check=True)
        if requirements:
            cmd = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            done = subprocess.run(
                [*cmd, *pip_args, *requirements],
                capture_output=True,
                text=True,
                check=False,
                env=clean_env(),
            )
            if done.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise ReferenceVenvError(
                    f"pip could not build the {name} reference venv:\n{done.stdout}{done.stderr}"
                )
        probe = subprocess.run(
            [str(py), "-c", _NO_CLOUDSERVE], capture_output=True, check=False, env=clean_env()
        )
        if probe.returncode != 0:
            raise ReferenceVenvError(f"cloudserve is importable in the {name} reference venv")
        (root / _READY).write_text("\n".join(requirements) + "\n")
    return py
