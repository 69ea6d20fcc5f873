#!/usr/bin/env python3
"""Bootstrap and run cloudserve from a fresh clone with nothing but Python.

    python dev.py demo          # the quick start: the full workflow on the local backend
    python dev.py test [ARGS]   # the test suite (ARGS go to pytest)

Creates ``.venv`` beside this file on first use and installs the project into it (the core, the
local backend and, for tests, the three provider packages from ./providers). Reinstalls only
when a requirements file changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# an empty CLOUDSERVE_DEV_VENV means unset (not "the current directory")
VENV = Path(os.environ.get("CLOUDSERVE_DEV_VENV") or ROOT / ".venv")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")

REQUIREMENTS = {"demo": "requirements.txt", "test": "requirements-dev.txt"}


def _digest(req: Path) -> str:
    h = hashlib.sha256(req.read_bytes())
    for line in req.read_text().splitlines():
        # an editable path's own pyproject changes what gets installed too
        if line.startswith("-e ") and not line.startswith("-e ."):
            path = ROOT / line[3:].split("[")[0].strip()
            h.update((path / "pyproject.toml").read_bytes())
    h.update((ROOT / "pyproject.toml").read_bytes())
    return h.hexdigest()


def ensure_env(kind: str) -> None:
    """Create the virtualenv and install ``kind``'s requirements when they changed."""
    if not PY.exists():
        print(f"creating {VENV} …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        subprocess.run([PY, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    req = ROOT / REQUIREMENTS[kind]
    stamp = VENV / f".cloudserve-{kind}.sha256"
    digest = _digest(req)
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"installing {req.name} into {VENV} …", flush=True)
    subprocess.run(
        [PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
        check=True,
        cwd=ROOT,
    )
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    kind, rest = argv[0], argv[1:]
    ensure_env(kind)
    if kind == "demo":
        return subprocess.call([BIN / "cloudserve", "demo", *rest], cwd=ROOT)
    code = subprocess.call([PY, "-m", "pytest", *rest], cwd=ROOT)
    if code == 5:
        print("pytest collected no tests: that is a failure here, not a pass", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
