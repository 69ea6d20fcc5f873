"""The test-support helpers other tests lean on: component checks and reference venvs."""

from __future__ import annotations

import subprocess

import pytest

from cloudserve.testing import components
from cloudserve.testing.refvenv import ReferenceVenvError, clean_env, reference_venv


def test_present_component_returns_its_path() -> None:
    assert components.needs("sh", "a shell").endswith("sh")


def test_missing_component_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(components.STRICT_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-xyz is not installed"):
        components.needs("no-such-tool-xyz", "testing")


def test_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(components.STRICT_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="must be here"):
        components.needs("no-such-tool-xyz", "testing")


def test_reference_venv_is_cached_and_has_no_cloudserve(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLOUDSERVE_TEST_CACHE", str(tmp_path))
    python = reference_venv("empty", [])
    again = reference_venv("empty", [])
    assert python == again and python.exists()
    probe = subprocess.run(
        [python, "-c", "import cloudserve"], capture_output=True, env=clean_env(), check=False
    )
    assert probe.returncode != 0 and b"No module named 'cloudserve'" in probe.stderr


def test_reference_venv_reports_pip_failure(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLOUDSERVE_TEST_CACHE", str(tmp_path))
    with pytest.raises(ReferenceVenvError, match="does-not-exist"):
        reference_venv("broken", [str(tmp_path / "does-not-exist")])
    assert not list((tmp_path / "venvs").glob("broken-*/bin"))
