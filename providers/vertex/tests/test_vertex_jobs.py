"""Jobs on Vertex AI: ``list_jobs`` / ``cancel_job`` over batch prediction and tuning jobs —
the GAPIC JobServiceClient (REST transport) against the strict fake; ``endpoint_logs`` is
refused with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from vertex_harness import churn_model as model

from cloudserve.client import Client
from cloudserve.errors import NotFound, UnsupportedOperation
from cloudserve.resources import BatchJob, JobStatus, TuningJob
from cloudserve.specs import Choice, Objective, TrainSpec, TuningSpec
from cloudserve.testing import TRAIN_SCRIPT, sample_rows, write_csv
from cloudserve_vertex.testing import FakeVertex


def start_batch(client: Client, tmp_path: Path) -> BatchJob:
    return client.batch_predict(
        model(tmp_path), write_csv(tmp_path / "in.csv", sample_rows(4)), tmp_path / "out"
    )


def start_tuning(client: Client, tmp_path: Path) -> TuningJob:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    spec = TuningSpec(
        train=TrainSpec(entrypoint=str(script)),
        search_space={"kind": Choice(values=["a"])},
        objective=Objective(metric="val_score"),
        max_trials=1,
        strategy="grid",
    )
    return client.tune(spec)


def foreign_batch_job(fake: FakeVertex, client: Client) -> str:
    """A batch prediction job someone else started (no cloudserve label) on the same model."""
    from google.cloud import aiplatform_v1 as v1

    ours = fake.batch_jobs()[0]
    job = v1.BatchPredictionJob(
        display_name="theirs",
        model=ours["model"],
        input_config={"instances_format": "csv", "gcs_source": {"uris": ["gs://theirs/in.csv"]}},
        output_config={
            "predictions_format": "jsonl",
            "gcs_destination": {"output_uri_prefix": "gs://theirs/out"},
        },
        dedicated_resources={
            "machine_spec": {"machine_type": "n1-standard-2"},
            "starting_replica_count": 1,
            "max_replica_count": 1,
        },
    )
    api = client.provider.api  # type: ignore[attr-defined]
    created = api.client("job").create_batch_prediction_job(
        parent=api.parent, batch_prediction_job=job
    )
    return str(created.name.rsplit("/", 1)[-1])


def test_list_shows_cloudserves_jobs_newest_first_and_no_foreign_ones(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    batch = start_batch(client, tmp_path)
    foreign = foreign_batch_job(fake, client)
    tuning = start_tuning(client, tmp_path)
    listed = client.list_jobs()
    assert [j.id for j in listed] == [tuning.id, batch.id]
    assert foreign not in [j.id for j in listed]
    tuned, batched = listed
    assert isinstance(tuned, TuningJob) and tuned.objective == "val_score"
    assert isinstance(batched, BatchJob) and batched.output == str(tmp_path / "out")
    # both listings ask for cloudserve's label
    lists = [u for m, u in fake.requests_made() if m == "GET" and u.split("?")[0].endswith("Jobs")]
    assert len(lists) == 2 and all("managed-by" in u for u in lists)
    # once the job succeeded, a listing downloads nothing; get_batch_job does
    client.wait_batch(batch, timeout=60)
    for f in (tmp_path / "out").iterdir():
        f.unlink()
    again = next(j for j in client.list_jobs() if j.id == batch.id)
    assert again.status is JobStatus.SUCCEEDED and not any((tmp_path / "out").iterdir())


def test_listing_follows_page_tokens(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    from cloudserve_vertex.testing import _service

    first = start_batch(client, tmp_path)
    second = start_batch(client, tmp_path)
    page_size, _service.DEFAULT_PAGE_SIZE = _service.DEFAULT_PAGE_SIZE, 1
    try:
        listed = client.list_jobs()
    finally:
        _service.DEFAULT_PAGE_SIZE = page_size
    assert {j.id for j in listed} == {first.id, second.id}
    assert any("pageToken=" in u for _, u in fake.requests_made())


def test_cancel_a_running_batch_job(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    job = start_batch(client, tmp_path)
    cancelled = client.cancel_job(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    posts = [
        u for m, u in fake.requests_made() if m == "POST" and u.split("?")[0].endswith(":cancel")
    ]
    assert len(posts) == 1
    assert not (tmp_path / "out").exists(), "a cancelled job leaves no local output"


def test_cancel_a_running_tuning_job(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    job = start_tuning(client, tmp_path)
    client.provider.cancel_job(job.id)
    done = client.provider.get_tuning_job(job.id)
    assert done.status is JobStatus.CANCELLED and done.trials == []
    assert done.message == "CANCELLED"  # error.code 1, as the API reference describes


def test_an_ended_job_is_left_as_it_is(fake: FakeVertex, client: Client, tmp_path: Path) -> None:
    job = client.wait_batch(start_batch(client, tmp_path), timeout=60)
    assert client.cancel_job(job.id).status is JobStatus.SUCCEEDED
    assert not [u for m, u in fake.requests_made() if m == "POST" and ":cancel" in u]


def test_the_fake_refuses_to_cancel_an_ended_job(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    from google.api_core import exceptions

    job = client.wait_batch(start_batch(client, tmp_path), timeout=60)
    api = client.provider.api  # type: ignore[attr-defined]
    with pytest.raises(exceptions.BadRequest, match="cannot be cancelled"):
        api.client("job").cancel_batch_prediction_job(
            name=f"{api.parent}/batchPredictionJobs/{job.id}"
        )


def test_unknown_job_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="987654"):
        client.cancel_job("987654")


def test_endpoint_logs_are_refused_with_the_reason(client: Client) -> None:
    with pytest.raises(UnsupportedOperation, match="Cloud Logging"):
        client.logs("churn", tail=10)
