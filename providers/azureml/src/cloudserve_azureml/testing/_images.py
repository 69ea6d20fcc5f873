"""Azure's image build, as the fake checks it: do an environment's pip lines resolve?

Azure builds a deployment's image from the environment's base image and conda file when the
deployment is created; a pip line that resolves on no package index fails the deployment with
``ImageBuildFailure``. The fake asks pip the same question without installing anything —
``pip install --dry-run --report`` for the conda file's Python version, binary wheels only
(``--only-binary=:all:``, which ``--python-version`` requires) — against the indexes this
machine's pip is configured with. Answers are cached on disk by the lines and the Python
version, so each distinct environment costs one resolution per machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from typing import Any

__all__ = ["build_error", "pip_lines"]

_PYTHON = re.compile(r"^python\s*[=<>~!]*\s*([0-9]+\.[0-9]+)")


def pip_lines(conda: Any) -> tuple[str | None, list[str]]:
    """(Python ``MAJOR.MINOR`` or None, pip requirement lines) of a conda file (text or dict)."""
    import yaml

    spec = yaml.safe_load(conda) if isinstance(conda, str) else conda
    python, lines = None, []
    for dep in (spec or {}).get("dependencies") or []:
        if isinstance(dep, dict):
            lines += [str(line) for line in dep.get("pip") or []]
        elif isinstance(dep, str) and (m := _PYTHON.match(dep.strip())):
            python = m.group(1)
    return python, lines


def build_error(conda: Any) -> str | None:
    """Why an image with this conda file would fail to build, or None when its pip lines
    resolve."""
    python, lines = pip_lines(conda)
    if not lines:
        return None
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    from cloudserve.testing.refvenv import cache_dir

    key = hashlib.sha256(json.dumps([python, sorted(lines)]).encode()).hexdigest()[:20]
    cached = cache_dir() / "azureml-image-builds" / f"{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())["error"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--report",
            "-",
            "--python-version",
            python,
            "--only-binary=:all:",
            *lines,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    error = None
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or [proc.stderr]
        error = f"ImageBuildFailure: pip could not install {lines}: {' '.join(tail)[-800:]}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"lines": lines, "python": python, "error": error}))
    return error
