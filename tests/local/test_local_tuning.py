"""Local tuning: a real scikit-learn search, pruning, grid, metrics file, promote the best."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider
from cloudserve.resources import JobStatus

TRAIN_DIGITS = '''
"""Train a decision tree on scikit-learn's digits; report validation accuracy."""
import argparse, os
import joblib
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier
from cloudserve.packaging import write_manifest

p = argparse.ArgumentParser()
p.add_argument("--max_depth", type=int)
p.add_argument("--ccp_alpha", type=float)
a = p.parse_args()
x, y = load_digits(return_X_y=True)
xt, xv, yt, yv = train_test_split(x, y, test_size=0.3, random_state=0)
clf = DecisionTreeClassifier(max_depth=a.max_depth, ccp_alpha=a.ccp_alpha, random_state=0)
clf.fit(xt, yt)
print(f"val_accuracy={clf.score(xv, yv):.5f}")
out = os.environ["CLOUDSERVE_MODEL_DIR"]
joblib.dump(clf, os.path.join(out, "model.joblib"))
write_manifest(out, framework="sklearn")
'''

CURVE = '''
"""A learning curve written to the metrics file: quality rises with epochs, peaks at x=0.7."""
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--x", type=float)
a = p.parse_args()
quality = 1 - abs(a.x - 0.7)
with open(os.environ["CLOUDSERVE_METRICS_FILE"], "a") as fh:
    for epoch in range(1, 7):
        fh.write(json.dumps({"score": quality * (1 - 0.5 ** epoch), "epoch": epoch}) + "\\n")
        fh.flush()
        time.sleep(0.15)
'''

GRID = """
import argparse
p = argparse.ArgumentParser()
p.add_argument("--kind")
p.add_argument("--n", type=int)
p.add_argument("--fixed")
a = p.parse_args()
assert a.fixed == "yes"
print("loss:", {"a": 1.0, "b": 2.0}[a.kind] * a.n)
"""


def script(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def test_tuning_a_real_model_beats_the_first_trial_and_deploys_the_best(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint=script(tmp_path, "train.py", TRAIN_DIGITS)),
        search_space={
            "max_depth": cs.IntRange(low=1, high=16),
            "ccp_alpha": cs.LogUniform(low=1e-4, high=0.3),
        },
        objective=cs.Objective(metric="val_accuracy", goal="maximize"),
        max_trials=4,
        parallel_trials=1,  # sequential, so that the seeded search is reproducible
        strategy="bayesian",
        seed=3,
    )
    job = client.tune(spec).wait(timeout=600)
    assert job.status is JobStatus.SUCCEEDED
    assert len(job.trials) == 4
    first = job.trials[0]
    assert job.best_trial is not None and first.value is not None
    assert job.best_trial.value > first.value
    for t in job.trials:
        assert Path(t.log).is_file() and "val_accuracy=" in Path(t.log).read_text()
        assert (Path(t.artifact) / "model.joblib").is_file()

    mv, ep = provider.promote_best(job.id, name="digits", endpoint="digits")
    assert mv.lineage["trial"] == job.best_trial.id
    assert mv.lineage["metrics"] == {"val_accuracy": job.best_trial.value}
    assert mv.lineage["hyperparameters"] == job.best_trial.params
    assert ep is not None and ep.variants[0].model_version == mv.version
    from sklearn.datasets import load_digits

    x, _ = load_digits(return_X_y=True)
    assert len(client.predict("digits", x[:5].tolist()).outputs) == 5


def test_pruning_stops_trials_that_fall_behind(client: Client, tmp_path: Path):
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint=script(tmp_path, "curve.py", CURVE)),
        search_space={"x": cs.Uniform(low=0.0, high=1.0)},
        objective=cs.Objective(metric="score"),
        max_trials=8,
        strategy="random",
        early_stopping=True,
        seed=0,
    )
    job = client.tune(spec).wait(timeout=300)
    pruned = [t for t in job.trials if t.status is JobStatus.CANCELLED]
    assert pruned and all("pruned" in (t.message or "") for t in pruned)
    assert all(len(t.intermediate) < 6 for t in pruned)
    finished = [t for t in job.trials if t.status is JobStatus.SUCCEEDED]
    assert finished and all(len(t.intermediate) == 6 for t in finished)
    assert job.best_trial in finished


def grid_spec(tmp: Path, *, n_high: int, **kw) -> cs.TuningSpec:
    """A grid over GRID's ``kind`` (a, b) and ``n`` (1..n_high)."""
    return cs.TuningSpec(
        train=cs.TrainSpec(
            entrypoint=script(tmp, "grid.py", GRID), hyperparameters={"fixed": "yes"}
        ),
        search_space={"kind": cs.Choice(values=["a", "b"]), "n": cs.IntRange(low=1, high=n_high)},
        objective=cs.Objective(metric="loss", goal="minimize"),
        strategy="grid",
        **kw,
    )


def test_grid_covers_every_combination_once(client: Client, tmp_path: Path):
    spec = grid_spec(tmp_path, n_high=2, max_trials=10, parallel_trials=2)
    job = client.tune(spec).wait(timeout=300)
    combos = sorted((t.params["kind"], t.params["n"]) for t in job.trials)
    assert combos == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert job.best_trial is not None and job.best_trial.params == {"kind": "a", "n": 1}


def test_failing_script_fails_the_job_with_its_reason(client: Client, tmp_path: Path):
    bad = script(tmp_path, "bad.py", "raise SystemExit('no data here')\n")
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint=bad),
        search_space={"x": cs.Uniform(low=0, high=1)},
        objective=cs.Objective(metric="score"),
        max_trials=2,
        strategy="random",
    )
    with pytest.raises(cs.OperationFailed, match="no trial reported"):
        client.tune(spec).wait(timeout=120)


def test_a_second_runner_leaves_a_tuning_job_another_runner_holds(
    state_dir: Path, tmp_path: Path
) -> None:
    """One runner per tuning job: a runner started while another holds the job's lock (a resume
    racing the live runner) exits without running trials or touching the job's status."""
    import fcntl
    import time

    from local_helpers import local_config

    from cloudserve.local.tuning import run as run_tuning

    config = local_config(state_dir)
    provider = LocalProvider(config)
    spec = grid_spec(tmp_path, n_high=1, max_trials=2)
    job_id = "tune-held"
    provider.db.run(
        "INSERT INTO tuning_jobs(id, spec, status, created_at) VALUES (?, ?, ?, ?)",
        (job_id, spec.model_dump_json(), JobStatus.RUNNING.value, time.time()),
    )
    work = state_dir / "tuning" / job_id
    work.mkdir(parents=True)
    try:
        with (work / "runner.lock").open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            run_tuning(config, job_id)  # returns at once: the job is someone else's
        row = provider.db.one("SELECT status, message FROM tuning_jobs WHERE id = ?", (job_id,))
        assert (row["status"], row["message"]) == (JobStatus.RUNNING.value, None)
        assert provider.db.all("SELECT * FROM trials WHERE job = ?", (job_id,)) == []
        run_tuning(config, job_id)  # the lock is free: this runner does the work
        row = provider.db.one("SELECT status FROM tuning_jobs WHERE id = ?", (job_id,))
        assert row["status"] == JobStatus.SUCCEEDED.value
    finally:
        provider.close()
