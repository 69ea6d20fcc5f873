"""Batch jobs killed at random points and resumed: every input row appears exactly once in the
output plus the errors, or the job ends FAILED / the resume is refused. Never SUCCEEDED with a
wrong count. Also: one runner per job, and OpenMP models (XGBoost, LightGBM) in the workers."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from local_helpers import local_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider
from cloudserve.local.batch import run as run_batch
from cloudserve.packaging import write_manifest
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.testing import sample_rows

N_ROWS = 1200
CHUNK_ROWS = 100

SUMMING_PREDICTOR = '''
import time
from cloudserve.serving import Predictor

class Summing(Predictor):
    """Sums each row's features, a little slowly (so that a test can kill a job half-way)."""

    def predict(self, batch):
        time.sleep(0.05)
        return [float(sum(row)) for row in batch]
'''


def summing_model(tmp: Path) -> cs.ModelSpec:
    d = tmp / "summing"
    d.mkdir(exist_ok=True)
    (d / "summing.py").write_text(SUMMING_PREDICTOR)
    write_manifest(d, framework="custom", predictor="summing:Summing")
    return cs.ModelSpec(name="summing", artifact=str(d), framework="custom")


def write_input(tmp: Path, seed: int) -> tuple[Path, list[list[float]]]:
    rows = sample_rows(N_ROWS, seed=seed)
    src = tmp / "in.csv"
    pd.DataFrame(rows, columns=list("abcd")).to_csv(src, index=False)
    return src, rows


def start(client: Client, tmp: Path, src: Path) -> BatchJob:
    return client.batch_predict(
        summing_model(tmp), src, tmp / "out", batch_size=50, max_concurrency=2
    )


def kill_runner(job: BatchJob, client: Client) -> BatchJob:
    """SIGKILL the runner and its workers (its process group); the job as it was left."""
    with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
        runner = psutil.Process(job.raw["pid"])
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
    return client.get_batch_job(job.id)


def kill_at_random(client: Client, job: BatchJob, rng: random.Random) -> BatchJob:
    """Wait until the runner has done a random share of the rows (or a random time before its
    first chunk), then kill it (unless it has ended meanwhile)."""
    deadline = time.monotonic() + 120
    while (job := job.refresh()).status is JobStatus.PENDING:
        assert time.monotonic() < deadline, "the runner never started"
        time.sleep(0.02)
    # the point is chosen by progress, not by the clock, so a fast machine still kills mid-way
    point = rng.uniform(-0.2, 0.8) * N_ROWS
    if point <= 0:
        time.sleep(rng.uniform(0.0, 0.3))
    while point > 0 and (job := job.refresh()).rows_succeeded + job.rows_failed < point:
        if job.status.is_terminal or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    job = job.refresh()
    return job if job.status.is_terminal else kill_runner(job, client)


def assert_exactly_once(job: BatchJob, out: Path, rows: list[list[float]]) -> None:
    assert job.status is JobStatus.SUCCEEDED, job.message
    preds = pd.read_csv(out / "predictions.csv")
    errors = pd.read_csv(job.error_file) if job.error_file else pd.DataFrame({"row": []})
    seen = preds["row"].tolist() + errors["row"].astype(int).tolist()
    assert sorted(seen) == list(range(N_ROWS)), (
        f"{len(seen)} outputs for {N_ROWS} rows, {len(seen) - len(set(seen))} duplicated"
    )
    assert preds["row"].tolist() == sorted(preds["row"]), "predictions stay in input order"
    expected = np.asarray(rows).sum(axis=1)[preds["row"].to_numpy()]
    assert np.allclose(preds["prediction"].to_numpy(), expected)
    assert (job.rows_total, job.rows_succeeded + job.rows_failed) == (N_ROWS, N_ROWS)


def corrupt_a_part(state_dir: Path, job: BatchJob, how: str, rng: random.Random) -> bool:
    parts = sorted((state_dir / "batch" / job.id / "parts").glob("out-*.csv"))
    if not parts:
        return False
    victim = rng.choice(parts)
    if how == "delete":
        victim.unlink()
    else:
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    return True


@pytest.mark.parametrize(
    ("seed", "resume_chunk_rows", "damage"),
    [
        (1, CHUNK_ROWS, None),
        (2, 30, None),  # smaller chunks on resume: the stored plan is followed
        (3, 700, None),
        (4, CHUNK_ROWS, "truncate"),
        (5, 30, "delete"),
    ],
)
def test_killed_at_random_and_resumed_every_row_exactly_once(
    state_dir: Path, tmp_path: Path, seed: int, resume_chunk_rows: int, damage: str | None
):
    rng = random.Random(seed)
    src, rows = write_input(tmp_path, seed)
    first = LocalProvider(local_config(state_dir, batch_chunk_rows=CHUNK_ROWS))
    client = Client(first)
    try:
        job = start(client, tmp_path, src)
        resumed = damaged = False
        for _ in range(2):  # two kills at random points, each followed by a resume
            job = kill_at_random(client, job, rng)
            if job.status is JobStatus.SUCCEEDED:  # it ended before the kill
                break
            assert job.status is JobStatus.FAILED, job.message
            damaged = damage is not None and corrupt_a_part(state_dir, job, damage, rng)
            again = LocalProvider(local_config(state_dir, batch_chunk_rows=resume_chunk_rows))
            try:
                job = again.resume_batch(job.id).bind(client)
                resumed = True
            finally:
                again.close()
        done = job.wait(timeout=300)
        assert_exactly_once(done, tmp_path / "out", rows)
        log = (state_dir / "batch" / "logs" / f"{job.id}.log").read_text()
        if resumed:  # a fast machine may finish the job before the first kill
            assert f"following the stored plan: {CHUNK_ROWS} rows per chunk" in log
        if damaged:
            assert "is predicted again" in log
    finally:
        first.close()


def test_a_changed_input_is_refused_on_resume(state_dir: Path, tmp_path: Path):
    src, _ = write_input(tmp_path, 7)
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=CHUNK_ROWS))
    client = Client(provider)
    try:
        job = start(client, tmp_path, src)
        while (job := job.refresh()).rows_succeeded < 2 * CHUNK_ROWS:
            assert job.status is not JobStatus.SUCCEEDED, "finished before it could be killed"
            time.sleep(0.02)
        kill_runner(job, client)
        pd.DataFrame(sample_rows(N_ROWS + 7, seed=8), columns=list("abcd")).to_csv(src, index=False)
        with pytest.raises(cs.OperationFailed, match="changed since the job started"):
            provider.resume_batch(job.id).bind(client).wait(timeout=300)
        assert client.get_batch_job(job.id).status is JobStatus.FAILED
    finally:
        provider.close()


def test_two_resumes_at_once_start_one_runner(state_dir: Path, tmp_path: Path):
    src, rows = write_input(tmp_path, 9)
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=CHUNK_ROWS))
    client = Client(provider)
    try:
        job = start(client, tmp_path, src)
        while (job := job.refresh()).rows_succeeded < CHUNK_ROWS:
            time.sleep(0.02)
        kill_runner(job, client)
        barrier = threading.Barrier(2)
        others = [LocalProvider(local_config(state_dir)) for _ in range(2)]

        def resume(p: LocalProvider) -> None:
            barrier.wait()
            p.resume_batch(job.id)

        threads = [threading.Thread(target=resume, args=(p,)) for p in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in others:
            p.close()
        while not (current := client.get_batch_job(job.id)).status.is_terminal:
            time.sleep(0.05)
        assert_exactly_once(current, tmp_path / "out", rows)
        log = (state_dir / "batch" / "logs" / f"{job.id}.log").read_text()
        assert log.count("following the stored plan") == 1, "one runner resumed the job"
    finally:
        provider.close()


def test_a_runner_leaves_a_job_another_runner_holds(state_dir: Path, tmp_path: Path):
    src, _ = write_input(tmp_path, 10)
    config = local_config(state_dir, batch_chunk_rows=CHUNK_ROWS)
    provider = LocalProvider(config)
    job_id = "batch-held"
    spec = cs.BatchSpec(model=summing_model(tmp_path), input=str(src), output=str(tmp_path / "o"))
    provider.db.run(
        "INSERT INTO batch_jobs(id, spec, status, created_at) VALUES (?, ?, ?, ?)",
        (job_id, spec.model_dump_json(), JobStatus.RUNNING.value, time.time()),
    )
    work = state_dir / "batch" / job_id
    work.mkdir(parents=True)
    with (work / "runner.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run_batch(config, job_id)  # returns at once: the job is someone else's
    row = provider.db.one("SELECT status, message, plan FROM batch_jobs WHERE id = ?", (job_id,))
    assert (row["status"], row["message"], row["plan"]) == (JobStatus.RUNNING.value, None, None)
    provider.close()


def _xgboost_model(tmp: Path) -> cs.ModelSpec:
    xgb = pytest.importorskip("xgboost")
    x = np.asarray(sample_rows(300, seed=1))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    d = tmp / "xgb"
    d.mkdir()
    xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y).get_booster().save_model(
        d / "model.json"
    )
    write_manifest(d, framework="xgboost")
    return cs.ModelSpec(name="xgb", artifact=str(d), framework="xgboost")


def _lightgbm_model(tmp: Path) -> cs.ModelSpec:
    lgb = pytest.importorskip("lightgbm")
    import joblib

    x = np.asarray(sample_rows(300, seed=2))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    d = tmp / "lgb"
    d.mkdir()
    joblib.dump(lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(x, y), d / "model.joblib")
    write_manifest(d, framework="sklearn")
    return cs.ModelSpec(name="lgb", artifact=str(d), framework="sklearn")


@pytest.mark.parametrize("make", [_xgboost_model, _lightgbm_model], ids=["xgboost", "lightgbm"])
def test_openmp_models_do_not_hang_in_batch_workers(state_dir: Path, tmp_path: Path, make):
    model = make(tmp_path)
    src, _ = write_input(tmp_path, 11)
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=CHUNK_ROWS))
    try:
        job = Client(provider).batch_predict(model, src, tmp_path / "out", max_concurrency=2)
        done = job.wait(timeout=240)
        assert done.status is JobStatus.SUCCEEDED
        assert (done.rows_succeeded, done.rows_failed) == (N_ROWS, 0)
        got = pd.read_csv(tmp_path / "out" / "predictions.csv")
        assert got["row"].tolist() == list(range(N_ROWS))
        assert got["prediction"].between(0, 1).all()  # classes or probabilities
    finally:
        provider.close()
