"""Local batch prediction: every row accounted for, three formats, resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import joblib
import numpy as np
import orjson
import pandas as pd
import psutil
import pytest
from local_helpers import local_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider
from cloudserve.packaging import write_manifest
from cloudserve.resources import JobStatus
from cloudserve.testing import make_sklearn_model, sample_rows

SLOW_PREDICTOR = '''
import time
from cloudserve.serving import Predictor

class Slow(Predictor):
    """Sums each row's features, slowly (so that a test can kill the job half-way)."""

    def predict(self, batch):
        time.sleep(0.15)
        return [float(sum(row)) for row in batch]
'''


@pytest.fixture
def small_chunks(state_dir: Path):
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=100))
    client = Client(provider)
    yield client
    provider.close()


def sklearn_model(tmp: Path) -> cs.ModelSpec:
    d = make_sklearn_model(tmp / "model")
    return cs.ModelSpec(name="clf", artifact=str(d), framework="sklearn")


def slow_model(tmp: Path) -> cs.ModelSpec:
    d = tmp / "slow"
    d.mkdir()
    (d / "slow.py").write_text(SLOW_PREDICTOR)
    write_manifest(d, framework="custom", predictor="slow:Slow")
    return cs.ModelSpec(name="slow", artifact=str(d), framework="custom")


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_every_row_accounted_for_with_bad_rows(small_chunks: Client, tmp_path: Path):
    rows = sample_rows(1000, seed=5)
    bad = {7: "abc", 250: "", 251: "too-many", 999: "nan-row"}
    src = tmp_path / "in.csv"
    with src.open("w") as fh:
        fh.write("f0,f1,f2,f3\n")
        for i, r in enumerate(rows):
            cells = [str(v) for v in r]
            if bad.get(i) == "abc":
                cells[1] = "abc"
            elif bad.get(i) == "":
                cells[2] = ""
            elif bad.get(i) == "too-many":
                cells.append("9")
            elif bad.get(i) == "nan-row":
                cells = ["", "", "", ""]
            fh.write(",".join(cells) + "\n")
    model = sklearn_model(tmp_path)
    job = small_chunks.batch_predict(model, src, tmp_path / "out", batch_size=10).wait(timeout=300)
    assert job.status is JobStatus.SUCCEEDED
    assert (job.rows_total, job.rows_succeeded, job.rows_failed) == (1000, 996, 4)
    preds = read_csv_rows(tmp_path / "out" / "predictions.csv")
    errors = read_csv_rows(Path(job.error_file))
    assert {int(e["row"]) for e in errors} == set(bad)
    assert all(e["error"] for e in errors)
    numbers = [int(p["row"]) for p in preds]
    assert numbers == sorted(set(range(1000)) - set(bad)), "each good row once, in order"
    clf = joblib.load(Path(model.artifact) / "model.joblib")
    expected = clf.predict(np.asarray([rows[i] for i in numbers]))
    assert [int(p["prediction"]) for p in preds] == expected.tolist()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_same_format_out(small_chunks: Client, tmp_path: Path, fmt: str):
    rows = sample_rows(250, seed=6)
    frame = pd.DataFrame(rows, columns=[f"f{i}" for i in range(4)])
    src = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(src)
    else:
        lines = [orjson.dumps(r) for r in frame.to_dict(orient="records")]
        lines[3] = b'{"f0": 1, broken'
        src.write_bytes(b"\n".join(lines) + b"\n")
    job = small_chunks.batch_predict(slow_model(tmp_path), src, tmp_path / "out").wait(timeout=300)
    out = tmp_path / "out" / f"predictions.{fmt}"
    if fmt == "parquet":
        got = pd.read_parquet(out)
        assert job.rows_failed == 0 and len(got) == 250
        assert np.allclose(got["prediction"], frame.sum(axis=1))
    else:
        got = [json.loads(line) for line in out.read_text().splitlines()]
        assert [g["row"] for g in got] == [i for i in range(250) if i != 3]
        (err,) = [json.loads(line) for line in Path(job.error_file).read_text().splitlines()]
        assert err["row"] == 3 and "malformed JSON" in err["error"]


def test_killed_job_resumes_from_its_last_finished_chunk(state_dir: Path, tmp_path: Path):
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=50))
    client = Client(provider)
    try:
        src = tmp_path / "big.csv"
        pd.DataFrame(sample_rows(2000, seed=8), columns=list("abcd")).to_csv(src, index=False)
        job = client.batch_predict(
            slow_model(tmp_path), src, tmp_path / "out", max_concurrency=1, batch_size=50
        )
        deadline = time.monotonic() + 120
        while (job := job.refresh()).rows_succeeded < 200:
            assert job.status is not JobStatus.SUCCEEDED, "finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runner = psutil.Process(job.raw["pid"])
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its worker processes
        runner.wait(timeout=10)
        killed = client.get_batch_job(job.id)
        assert killed.status is JobStatus.FAILED and "resume" in (killed.message or "")
        finished_before = killed.rows_succeeded
        assert 200 <= finished_before < 2000

        done = provider.resume_batch(job.id).bind(client).wait(timeout=300)
        assert done.status is JobStatus.SUCCEEDED
        assert (done.rows_total, done.rows_succeeded, done.rows_failed) == (2000, 2000, 0)
        got = pd.read_csv(tmp_path / "out" / "predictions.csv")
        assert got["row"].tolist() == list(range(2000)), "every row exactly once, in order"
        log = (state_dir / "batch" / "logs" / f"{job.id}.log").read_text()
        assert f"resuming: {finished_before // 50} chunk(s)" in log
    finally:
        provider.close()


def test_cancel_stops_the_runner_and_its_workers(state_dir: Path, tmp_path: Path):
    from local_helpers import processes_of

    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=50))
    client = Client(provider)
    try:
        src = tmp_path / "big.csv"
        pd.DataFrame(sample_rows(2000, seed=9), columns=list("abcd")).to_csv(src, index=False)
        job = client.batch_predict(slow_model(tmp_path), src, tmp_path / "out", batch_size=50)
        while (job := job.refresh()).rows_succeeded == 0:
            time.sleep(0.05)
        provider.cancel_job(job.id)
        assert client.get_batch_job(job.id).status is JobStatus.CANCELLED
        assert processes_of(state_dir) == []
        provider.cancel_job(job.id)  # already ended: nothing to do
        with pytest.raises(cs.NotFound):
            provider.cancel_job("no-such-job")
    finally:
        provider.close()
