"""What users reach for first: version, describe, logs, jobs, delete that tells the truth,
--json everywhere, whole tables when piped, init, and the notebook/endpoint conveniences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.cli import main
from cloudserve.config import load_targets
from cloudserve.testing import make_sklearn_model, write_csv

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.5, 0.0]]


@pytest.fixture
def local_cwd(tmp_path: Path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    for key in ("CLOUDSERVE_CONFIG", "CLOUDSERVE_TARGET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def _json(capsys, *args: str):
    capsys.readouterr()
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_endpoint_and_job_commands_on_local(local_cwd, capsys):
    model = make_sklearn_model(local_cwd / "model")
    assert main(["deploy", str(model), "--endpoint", "churn", "--json"]) == 0
    capsys.readouterr()
    try:
        ep = _json(capsys, "describe", "churn")
        assert ep["name"] == "churn" and ep["status"] == "READY" and ep["variants"]

        log = _json(capsys, "logs", "churn", "--tail", "5")
        assert log["endpoint"] == "churn" and 0 < len(log["lines"]) <= 5

        # the Python side: predict_proba, delete and the notebook display on one endpoint
        with cs.connect() as client:
            endpoint = client.get_endpoint("churn")
            proba = endpoint.predict_proba(ROWS).outputs
            assert len(proba) == 2 and all(abs(sum(p) - 1) < 1e-6 for p in proba)
            html = endpoint._repr_html_()
            assert "<table>" in html and "churn" in html and "Endpoint" in html

        write_csv(local_cwd / "in.csv", ROWS * 50)
        job = _json(capsys, "batch", str(model), "in.csv", "out", "--no-wait")
        listed = _json(capsys, "jobs", "list")
        assert job["id"] in [j["id"] for j in listed]
        status = _json(capsys, "jobs", "status", job["id"])
        assert status["id"] == job["id"] and status["input"].endswith("in.csv")
        cancelled = _json(capsys, "jobs", "cancel", job["id"])
        assert cancelled["status"] in ("CANCELLED", "SUCCEEDED")  # it may have finished first

        assert _json(capsys, "delete", "churn") == {
            "endpoint": "churn",
            "target": "local",
            "deleted": True,
        }
    finally:
        main(["delete", "churn"])
    capsys.readouterr()
    assert main(["delete", "churn"]) == 0
    out = capsys.readouterr().out
    assert "deleted churn" not in out and "nothing to delete" in out
    assert _json(capsys, "delete", "nosuch")["deleted"] is False


def test_endpoint_delete_method(local_cwd):
    model = make_sklearn_model(local_cwd / "model")
    with cs.connect() as client:
        ep = client.deploy(cs.ModelSpec(name="gone", artifact=str(model)))
        ep.delete()
        assert [e.name for e in client.list_endpoints()] == []


def test_capabilities_json_names_reasons(local_cwd, capsys):
    caps = _json(capsys, "capabilities")
    local = caps["local"]
    assert local["deploy"] == {"supported": True, "reason": None}
    assert all(v["supported"] or v["reason"] for v in local.values())


def test_jobs_on_an_empty_target_and_unknown_job(local_cwd, capsys):
    assert _json(capsys, "jobs", "list") == []
    assert main(["jobs", "status", "nope"]) == 1
    assert "NotFound" in capsys.readouterr().err


def test_tables_are_whole_when_piped(cli):
    # stdout is a pipe here (and COLUMNS=80): long cells such as source URLs must not be cut
    run = cli("pricing", "show", "-p", "sagemaker")
    assert run.code == 0, run.stderr
    assert "…" not in run.stdout and "https://" in run.stdout


def test_init_scaffolds_a_valid_config(local_cwd, capsys):
    assert main(["init", "--cloud", "aws", "--cloud", "gcp", "--cloud", "azure"]) == 0
    targets = load_targets(local_cwd / "cloudserve.yaml", env={})
    assert sorted(targets.targets) == ["aws", "azure", "gcp", "local"]
    assert targets.default == "local"
    assert targets.targets["aws"]["provider"] == "sagemaker"
    assert main(["init"]) == 2  # never overwrites without --force
    assert "already exists" in capsys.readouterr().err
    assert main(["init", "--force"]) == 0
    assert sorted(load_targets(local_cwd / "cloudserve.yaml", env={}).targets) == ["local"]


def test_shell_completion_is_offered(cli):
    run = cli("--help")
    assert "--install-completion" in run.stdout and "--show-completion" in run.stdout
    bash = {
        "_CLOUDSERVE_COMPLETE": "complete_bash",
        "COMP_WORDS": "cloudserve de",
        "COMP_CWORD": "1",
    }
    run = cli(extra_env=bash)
    assert run.code == 0 and {"deploy", "describe", "delete"} <= set(run.stdout.split()), run


def test_batch_progress_counts_rows():
    from cloudserve.client import _job_fraction, _job_status

    job = cs.BatchJob(
        id="j",
        provider="local",
        status=cs.JobStatus.RUNNING,
        input="in.csv",
        output="out",
        rows_total=1000,
        rows_succeeded=400,
        rows_failed=20,
    )
    assert _job_status(job) == "RUNNING · 420/1,000 rows"
    assert _job_fraction(job) == pytest.approx(0.42)
    unknown = job.model_copy(update={"rows_total": None})
    assert _job_status(unknown) == "RUNNING" and _job_fraction(unknown) is None
