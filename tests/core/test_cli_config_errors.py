from __future__ import annotations

import subprocess
import sys

import pytest

BAD = {
    "unknown provider": ("targets:\n  a: {provider: nope}\n", "field 'provider'"),
    "missing field": ("targets:\n  a: {region: x}\n", "field 'provider'"),
    "wrong type": (
        "targets:\n  a: {provider: local, retry: {max_attempts: lots}}\n",
        "field 'retry.max_attempts'",
    ),
    "unknown key": ("targets:\n  a: {provider: local, colour: blue}\n", "field 'colour'"),
    "malformed yaml": ("targets:\n  a: [provider: local\n", "malformed YAML at line"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_clear_line(tmp_path, case):
    text, words = BAD[case]
    (tmp_path / "cloudserve.yaml").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "cloudserve.cli", "endpoints", "--target", "a"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "", "COLUMNS": "300"},
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("config error:") and words in lines[0]
    assert "Traceback" not in out.stderr and str(tmp_path) in lines[0]
