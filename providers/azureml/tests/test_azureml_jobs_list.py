"""Jobs and logs on Azure ML: ``list_jobs`` / ``cancel_job`` over batch and sweep jobs, and
``endpoint_logs`` from ``online_deployments.get_logs`` — the real MLClient against the fake."""

from __future__ import annotations

from pathlib import Path

import pytest
from azureml_harness import AzureMLHarness

from cloudserve.client import Client
from cloudserve.errors import NotFound
from cloudserve.resources import BatchJob, JobStatus, TuningJob
from cloudserve.specs import Choice, ModelSpec, Objective, TrainSpec, TuningSpec
from cloudserve.testing import TRAIN_SCRIPT, sample_rows, write_csv
from cloudserve_azureml.testing import FakeAzureML


class SlowJobsHarness(AzureMLHarness):
    """Jobs answer Queued/Running for five reads, long enough to be cancelled."""

    def start(self, workdir: Path) -> None:
        self.fake = FakeAzureML(
            workdir=workdir / "fake-azureml", in_progress_polls=2, job_polls=5
        ).start()


@pytest.fixture
def harness_class() -> type[AzureMLHarness]:
    return SlowJobsHarness


@pytest.fixture
def model(harness: AzureMLHarness, tmp_path: Path) -> ModelSpec:
    return harness.model_spec(tmp_path)


def start_batch(client: Client, tmp_path: Path, model: ModelSpec) -> BatchJob:
    return client.batch_predict(
        model, write_csv(tmp_path / "in.csv", sample_rows(4)), tmp_path / "out"
    )


def one_trial_sweep(folder: Path) -> TuningSpec:
    """A one-trial grid over the shared training script, written into ``folder``."""
    script = folder / "train.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(TRAIN_SCRIPT)
    return TuningSpec(
        train=TrainSpec(entrypoint=str(script)),
        search_space={"depth": Choice(values=[3])},
        objective=Objective(metric="val_score"),
        max_trials=1,
        strategy="grid",
    )


def start_sweep(client: Client, tmp_path: Path) -> TuningJob:
    return client.tune(one_trial_sweep(tmp_path / "src"))


def foreign_job(harness: AzureMLHarness) -> str:
    """A command job someone else ran in the workspace (a type cloudserve never lists)."""
    from azure.ai.ml import command

    ml = harness.make_provider().api.ml
    job = command(
        command="python -c 'print(1)'",
        environment="azureml:AzureML-sklearn-1.5@latest",
        compute="cpu-cluster",
        name="someone-elses-job",
    )
    return ml.jobs.create_or_update(job).name


def foreign_sweep(harness: AzureMLHarness, tmp_path: Path) -> str:
    """A sweep without cloudserve's tag (built the way cloudserve builds its own)."""
    from cloudserve_azureml import _tuning

    spec = one_trial_sweep(tmp_path / "theirs")
    api = harness.make_provider().api
    trial = _tuning._command_job(api, spec, "their-sweep")(**_tuning.search_space(spec))
    sweep = trial.sweep(
        primary_metric="val_score",
        goal="maximize",
        sampling_algorithm="grid",
        compute="cpu-cluster",
    )
    sweep.set_limits(max_total_trials=1, max_concurrent_trials=1)
    sweep.name = "their-sweep"
    return str(api.ml.jobs.create_or_update(sweep).name)


def test_list_shows_cloudserves_jobs_newest_first_and_no_foreign_ones(
    harness, client, tmp_path, model
):
    batch = start_batch(client, tmp_path, model)
    foreign_job(harness)
    assert foreign_sweep(harness, tmp_path) == "their-sweep"
    sweep = start_sweep(client, tmp_path)
    listed = client.list_jobs()
    assert [j.id for j in listed] == [sweep.id, batch.id]
    tuned, batched = listed
    assert isinstance(tuned, TuningJob) and tuned.objective == "val_score"
    assert isinstance(batched, BatchJob) and batched.input == batch.input
    # the listing is one jobs.list() (GET …/jobs) and the batch endpoints' tags
    gets = [u.split("?")[0] for m, u in harness.fake.requests_made() if m == "GET"]
    assert any(u.endswith("/jobs") for u in gets)
    assert any(u.endswith("/batchEndpoints") for u in gets)
    # once the job succeeded a listing still downloads nothing; get_batch_job does
    client.wait_batch(batch, timeout=60)
    (tmp_path / "out" / "predictions.csv").unlink()
    again = next(j for j in client.list_jobs() if j.id == batch.id)
    assert again.status is JobStatus.SUCCEEDED and again.rows_total is None
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_cancel_a_running_batch_job(harness, client, tmp_path, model):
    job = start_batch(client, tmp_path, model)
    assert job.status is JobStatus.PENDING
    cancelled = client.cancel_job(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    native = harness.fake.service.get(f"jobs/{job.id}")["properties"]
    assert native["status"] == "Canceled"
    posts = [u for m, u in harness.fake.requests_made() if m == "POST" and "/cancel" in u]
    assert len(posts) == 1
    assert not (tmp_path / "out").exists(), "a cancelled job scores nothing"


def test_cancel_a_running_sweep(harness, client, tmp_path):
    job = start_sweep(client, tmp_path)
    assert client.cancel_job(job.id).status is JobStatus.CANCELLED
    assert client.provider.get_tuning_job(job.id).trials == [], "no trial ran"


def test_a_sweep_is_no_batch_job_and_a_batch_job_no_sweep(harness, client, tmp_path, model):
    sweep, batch = start_sweep(client, tmp_path), start_batch(client, tmp_path, model)
    with pytest.raises(NotFound, match="not a batch job"):
        client.provider.get_batch_job(sweep.id)
    with pytest.raises(NotFound, match="not a sweep"):
        client.provider.get_tuning_job(batch.id)
    assert client.get_job(sweep.id).id == sweep.id


def test_an_ended_job_is_left_as_it_is(harness, client, tmp_path, model):
    job = client.wait_batch(start_batch(client, tmp_path, model), timeout=60)
    assert client.cancel_job(job.id).status is JobStatus.SUCCEEDED
    assert not [u for m, u in harness.fake.requests_made() if m == "POST" and "/cancel" in u]


def test_unknown_job_is_not_found(client):
    with pytest.raises(NotFound):
        client.cancel_job("csb-nothing-here")


def test_logs_are_the_last_lines_of_each_deployment(harness, client, tmp_path):
    client.deploy(harness.model_spec(tmp_path), "cs-logs")
    for _ in range(3):
        client.predict("cs-logs", sample_rows(2))
    with pytest.raises(Exception):  # noqa: B017 - the model refuses one row of one feature
        client.predict("cs-logs", [[1.0]])
    every = client.logs("cs-logs", tail=100)
    assert len(every) == 5
    deployment = every[0].split(": ", 1)[0]
    assert all(line.startswith(f"{deployment}: ") for line in every)
    last = client.logs("cs-logs", tail=2)
    assert last == every[-2:]
    assert '"POST /score HTTP/1.1" 200' in last[0] and '"POST /score HTTP/1.1" 4' in last[1]
    posts = [u for m, u in harness.fake.requests_made() if m == "POST" and "getLogs" in u]
    assert posts, "read with online_deployments.get_logs"


def test_logs_of_a_missing_endpoint_are_not_found(client):
    with pytest.raises(NotFound):
        client.logs("cs-nowhere", tail=5)
