"""`cloudserve demo` runs the whole quick start and leaves nothing running."""

from __future__ import annotations

from pathlib import Path

from local_helpers import processes_of

from cloudserve.cli import main


def test_demo_runs_every_step_and_tears_down(tmp_path: Path, capsys):
    work = tmp_path / "demo"
    code = main(["demo", "--trials", "2", "--rows", "2000", "--workdir", str(work)])
    out = capsys.readouterr().out
    assert code == 0, out
    for step in (
        "train",
        "register",
        "deploy",
        "predict online",
        "batch",
        "tune",
        "drift",
        "cost",
        "tear down",
    ):
        assert step in out
    assert "2,000 predictions, 0 errors" in out
    assert "registered cancer:2" in out
    assert "drift in" in out and "no drift" in out
    assert "sagemaker" in out or "pricing not available" in out
    assert "0 endpoint(s) left" in out
    assert processes_of(work / "state") == []
