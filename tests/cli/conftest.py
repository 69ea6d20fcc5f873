from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


@pytest.fixture
def cli(tmp_path: Path):
    """Run ``cloudserve ARGS…`` in a fresh process, in an empty working directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLOUDSERVE_") or k == "CLOUDSERVE_TEST_CACHE"
    }
    env.update({"CLOUDSERVE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "80", "NO_COLOR": "1"})

    def run(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> Run:
        out = subprocess.run(
            [sys.executable, "-m", "cloudserve.cli", *args],
            cwd=cwd or tmp_path,
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(out.returncode, out.stdout, out.stderr)

    return run
