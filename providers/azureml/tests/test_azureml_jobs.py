"""Batch endpoints and sweep jobs, checked against the fake's state, through the real MLClient."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from azureml_harness import AzureMLHarness, fast_config

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest, OperationFailed
from cloudserve.resources import JobStatus
from cloudserve.serving import load_model
from cloudserve.specs import (
    BatchSpec,
    Choice,
    Compute,
    IntRange,
    LogUniform,
    ModelSpec,
    Objective,
    TrainSpec,
    TuningSpec,
    Uniform,
)
from cloudserve.testing import TRAIN_SCRIPT, sample_rows, write_csv
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml._states import JOB_STATES, job_status

DATASTORE = "azureml://datastores/workspaceblobstore/paths"


@pytest.fixture
def model(harness: AzureMLHarness, tmp_path: Path) -> ModelSpec:
    """A real scikit-learn model; batch jobs score it through cloudserve's serving runtime."""
    return harness.model_spec(tmp_path)


def _client(harness: AzureMLHarness, **config: object) -> Client:
    provider = AzureMLProvider(
        fast_config(harness.fake, **config), credential=harness.fake.credential()
    )
    return Client(provider)


def _predictions(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return [r for r in csv.reader(fh) if r]


# -- batch -------------------------------------------------------------------------------------


def test_batch_deployment_settings_and_real_outputs(harness, client, tmp_path, model):
    rows = sample_rows(12, seed=5)
    spec = BatchSpec(
        model=model,
        input=str(write_csv(tmp_path / "in.csv", rows)),
        output=str(tmp_path / "out"),
        compute=Compute(size="cpu.medium", replicas=2),
        batch_size=5,
        max_concurrency=3,
        error_threshold=2,
    )
    job = client.batch_predict(spec)
    assert job.status is JobStatus.PENDING, "the fake answers NotStarted/Queued first"
    done = job.wait(timeout=60)
    assert (done.status, done.rows_total, done.rows_succeeded, done.rows_failed) == (
        JobStatus.SUCCEEDED,
        12,
        12,
        0,
    )

    fake = harness.fake
    (dep,) = fake.batch_deployments("csb-cs-conf")
    props = dep["properties"]
    assert props["miniBatchSize"] == 10
    assert props["maxConcurrencyPerInstance"] == 3
    assert props["errorThreshold"] == 2
    assert props["outputAction"] == "AppendRow"
    assert props["outputFileName"] == "predictions.csv"
    assert props["resources"]["instanceCount"] == 2
    assert props["resources"]["instanceType"] == "Standard_DS3_v2"
    assert props["compute"].endswith("/computes/cpu-cluster") or props["compute"] == "cpu-cluster"
    assert props["environmentVariables"]["CLOUDSERVE_BATCH_ROWS"] == "5"
    assert props["codeConfiguration"]["scoringScript"] == "batch_score.py"
    endpoint = fake.resource("batchEndpoints/csb-cs-conf")
    assert endpoint["properties"]["defaults"]["deploymentName"] == "v1-cs"
    stored = fake.job(done.id)["properties"]
    assert "/data/cs-batch-input-in/versions/" in stored["inputs"]["input"]["uri"]
    assert stored["inputs"]["input"]["jobInputType"] == "uri_file"

    written = _predictions(Path(done.output) / "predictions.csv")
    expected = load_model(Path(str(model.artifact))).predict(rows)
    assert [json.loads(r[2]) for r in written] == expected
    assert [int(r[1]) for r in written] == list(range(12))


def test_same_settings_reuse_the_deployment_changed_ones_update_it(
    harness, client, tmp_path, model
):
    data = str(write_csv(tmp_path / "in.csv", sample_rows(3)))
    client.batch_predict(model, data, tmp_path / "o1", wait=True)
    puts = [u for m, u in harness.fake.requests_made() if m == "PUT" and "/deployments/" in u]
    client.batch_predict(model, data, tmp_path / "o2", wait=True)
    again = [u for m, u in harness.fake.requests_made() if m == "PUT" and "/deployments/" in u]
    assert again == puts, "the same settings do not touch the deployment"
    client.batch_predict(model, data, tmp_path / "o3", max_concurrency=4, wait=True)
    (dep,) = harness.fake.batch_deployments("csb-cs-conf")
    assert dep["properties"]["maxConcurrencyPerInstance"] == 4
    assert harness.fake.model_versions("cs-conf") == ["1"]


def test_datastore_folder_in_datastore_out(harness, client, tmp_path, model):
    fake = harness.fake
    part1 = sample_rows(4, seed=1)
    part2 = sample_rows(3, seed=2)
    csv_text = "".join(",".join(str(v) for v in r) + "\n" for r in part1)  # no header
    fake.service.blobs.put(
        fake.service.storage_account, fake.service.container, "in/a.csv", csv_text.encode()
    )
    jsonl = "".join(json.dumps(r) + "\n" for r in part2).encode()
    fake.service.blobs.put(
        fake.service.storage_account, fake.service.container, "in/b.jsonl", jsonl
    )
    out = f"{DATASTORE}/results/run1/"
    done = client.batch_predict(model, f"{DATASTORE}/in/", out, wait=True)
    assert done.output == out and done.rows_total == 7 and done.rows_failed == 0
    lines = fake.blob("results/run1/predictions.csv").decode().splitlines()
    assert sorted({line.split(",")[0] for line in lines}) == ["a.csv", "b.jsonl"]
    assert fake.job(done.id)["properties"]["inputs"]["input"]["jobInputType"] == "uri_folder"


def test_rows_the_model_rejects_are_counted_failed(harness, client, tmp_path, model):
    good = sample_rows(5, seed=3)
    path = tmp_path / "mixed.csv"
    lines = (
        [",".join(map(str, r)) for r in good[:3]]
        + ["1.0,2.0"]
        + [",".join(map(str, r)) for r in good[3:]]
    )
    path.write_text("\n".join(lines) + "\n")
    done = client.batch_predict(model, path, tmp_path / "out", wait=True)
    assert (done.rows_total, done.rows_succeeded, done.rows_failed) == (6, 5, 1)
    written = _predictions(tmp_path / "out" / "predictions.csv")
    (bad,) = [r for r in written if r[3]]
    assert bad[1] == "3" and bad[2] == ""


def test_defect_13_a_bad_row_costs_only_itself(harness, client, tmp_path, model):
    rows = sample_rows(4)
    path = write_csv(tmp_path / "in.csv", rows)
    with path.open("a") as fh:
        fh.write(",".join(["not-a-number"] * len(rows[0])) + "\n")
    done = client.batch_predict(model, path, tmp_path / "out", error_threshold=0, wait=True)
    assert (done.rows_total, done.rows_succeeded, done.rows_failed) == (5, 4, 1)
    written = _predictions(tmp_path / "out" / "predictions.csv")
    assert [bool(r[3]) for r in sorted(written, key=lambda r: int(r[1]))] == [False] * 4 + [True]


def test_unreadable_files_past_the_error_threshold_fail_the_job(harness, tmp_path, model):
    client = _client(harness, batch_mini_batch_size=1)  # one file per run(): failures isolated
    folder = tmp_path / "in"
    write_csv(folder / "good.csv", sample_rows(4))
    (folder / "broken.csv").write_bytes(b"\xff\xfe\x00 not text")
    job = client.batch_predict(model, folder, tmp_path / "out", error_threshold=0)
    with pytest.raises(OperationFailed) as info:
        job.wait(timeout=60)
    assert "errorThreshold 0" in str(info.value)
    tolerant = client.batch_predict(model, folder, tmp_path / "out2", error_threshold=1, wait=True)
    assert (tolerant.rows_total, tolerant.rows_succeeded, tolerant.rows_failed) == (4, 4, 0)


def test_get_batch_job_from_another_process(harness, client, tmp_path, model):
    job = client.batch_predict(
        model,
        write_csv(tmp_path / "in.csv", sample_rows(3)),
        tmp_path / "out",
    )
    other = _client(harness)  # a fresh provider knows the job by its id alone
    done = other.wait_batch(other.get_batch_job(job.id), timeout=60)
    assert done.status is JobStatus.SUCCEEDED and done.output == str(tmp_path / "out")
    assert len(_predictions(tmp_path / "out" / "predictions.csv")) == 3


def test_batch_validation_happens_before_any_request(harness, client, tmp_path, model):
    data = str(write_csv(tmp_path / "in.csv", sample_rows(2)))
    before = len(harness.fake.requests_made())
    no_cluster = AzureMLProvider(
        fast_config(harness.fake).model_copy(update={"compute": None}),
        credential=harness.fake.credential(),
    )
    with pytest.raises(InvalidRequest, match="compute"):
        Client(no_cluster).batch_predict(model, data, tmp_path / "o")
    with pytest.raises(InvalidRequest, match="Parquet"):
        client.batch_predict(model, data, tmp_path / "o", format="parquet")
    with pytest.raises(InvalidRequest, match="azureml://"):
        client.batch_predict(model, data, "s3://bucket/out/")
    with pytest.raises(InvalidRequest, match="payload"):
        client.batch_predict(model, data, tmp_path / "o", max_payload_mb=2)
    with pytest.raises(InvalidRequest, match="fixed instance_count"):
        client.batch_predict(model, data, tmp_path / "o", compute=Compute(max_replicas=3))
    assert len(harness.fake.requests_made()) == before


def test_job_states_map_through_one_table():
    assert job_status("Completed") is JobStatus.SUCCEEDED
    assert job_status("Canceled") is JobStatus.CANCELLED
    assert job_status("Finalizing") is JobStatus.RUNNING
    assert job_status("SomethingNew") is JobStatus.PENDING
    assert set(JOB_STATES.values()) == set(JobStatus)


# -- tuning ------------------------------------------------------------------------------------


def _script(tmp_path: Path, text: str = TRAIN_SCRIPT) -> str:
    path = tmp_path / "src" / "train.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _objective(params: dict) -> float:
    """What TRAIN_SCRIPT prints for these parameters."""
    value = 1.0 - 0.1 * abs(math.log10(params["lr"]) + 2.0) - 0.02 * abs(params["depth"] - 6)
    return round(value, 6)


def test_sweep_space_limits_sampling_policy_and_real_metrics(harness, client, tmp_path):
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path), max_runtime_s=120),
        search_space={
            "lr": LogUniform(low=1e-4, high=1e-1),
            "depth": IntRange(low=2, high=10),
            "kind": Choice(values=["a", "b"]),
            "n": IntRange(low=0, high=4),
            "frac": Uniform(low=0.1, high=0.9),
        },
        objective=Objective(metric="val_score", goal="maximize"),
        max_trials=4,
        parallel_trials=2,
        strategy="random",
        early_stopping=True,
        seed=7,
    )
    job = client.tune(spec)
    stored = harness.fake.job(job.id)["properties"]
    space = stored["searchSpace"]
    assert space["lr"][0] == "loguniform"
    assert space["lr"][1] == pytest.approx([math.log(1e-4), math.log(1e-1)])
    assert space["depth"] == ["quniform", [2, 10, 1]]
    assert space["n"] == ["randint", [5]]
    assert space["kind"] == ["choice", [["a", "b"]]]
    assert space["frac"] == ["uniform", [0.1, 0.9]]
    assert stored["samplingAlgorithm"]["samplingAlgorithmType"] == "Random"
    assert stored["samplingAlgorithm"]["seed"] == 7
    limits = stored["limits"]
    assert (limits["maxTotalTrials"], limits["maxConcurrentTrials"]) == (4, 2)
    assert limits["trialTimeout"] == "PT2M" and limits["timeout"] == "PT4M"
    policy = stored["earlyTermination"]
    assert policy["policyType"] == "Bandit" and policy["slackFactor"] == 0.1
    assert stored["objective"] == {"goal": "maximize", "primaryMetric": "val_score"}
    assert stored["experimentName"] == "cloudserve-tuning", "defect 14: the sweep keeps it"
    assert stored["trial"]["command"].startswith("python cloudserve_trial.py train.py --lr ")
    assert "/codes/" in stored["trial"]["codeId"]

    done = job.wait(timeout=120)
    assert done.status is JobStatus.SUCCEEDED and len(done.trials) == 4
    for trial in done.trials:
        assert trial.status is JobStatus.SUCCEEDED
        assert trial.value == pytest.approx(_objective(trial.params)), "metric is the script's"
        assert isinstance(trial.params["depth"], int) and 2 <= trial.params["depth"] <= 10
        assert 0 <= trial.params["n"] <= 4 and trial.params["kind"] in ("a", "b")
    assert done.best_trial == max(done.trials, key=lambda t: t.value)
    assert harness.fake.job(job.id)["properties"]["properties"]["best_child_run_id"] == (
        done.best_trial.id
    )


def test_grid_sweep_runs_every_combination(harness, client, tmp_path):
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path)),
        search_space={
            "depth": IntRange(low=4, high=6),
            "kind": Choice(values=["a", "b"]),
            "lr": Choice(values=[0.01]),
        },
        objective=Objective(metric="val_score", goal="minimize"),
        max_trials=10,
        parallel_trials=3,
        strategy="grid",
    )
    done = client.tune(spec, wait=True)
    stored = harness.fake.job(done.id)["properties"]
    assert stored["samplingAlgorithm"]["samplingAlgorithmType"] == "Grid"
    assert stored["searchSpace"]["depth"] == ["choice", [[4, 5, 6]]]
    combos = {(t.params["depth"], t.params["kind"]) for t in done.trials}
    assert combos == {(d, k) for d in (4, 5, 6) for k in ("a", "b")}
    assert done.best_trial.value == min(t.value for t in done.trials)
    assert done.best_trial.params["depth"] == 4, "the objective is lowest farthest from 6"


@pytest.mark.parametrize(
    ("strategy", "policy", "expected"),
    [
        ("hyperband", "bandit", ("Random", "Bandit")),
        ("random", "median_stopping", ("Random", "MedianStopping")),
        ("random", "truncation_selection", ("Random", "TruncationSelection")),
    ],
)
def test_early_termination_policies_and_hyperband(harness, tmp_path, strategy, policy, expected):
    client = _client(harness, early_termination=policy)
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path)),
        search_space={"lr": LogUniform(low=1e-3, high=1e-1), "depth": IntRange(low=2, high=8)},
        objective=Objective(metric="val_score"),
        max_trials=1,
        strategy=strategy,
        early_stopping=strategy != "hyperband",
    )
    job = client.tune(spec)
    stored = harness.fake.job(job.id)["properties"]
    assert stored["samplingAlgorithm"]["samplingAlgorithmType"] == expected[0]
    assert stored["earlyTermination"]["policyType"] == expected[1]
    if policy == "truncation_selection":
        assert stored["earlyTermination"]["truncationPercentage"] == 20


def test_trials_get_data_inputs_and_fixed_hyperparameters(harness, client, tmp_path):
    script = _script(
        tmp_path,
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--train'); p.add_argument('--scale', type=float)\n"
        "p.add_argument('--depth', type=int)\n"
        "a = p.parse_args()\n"
        "rows = open(a.train).read().splitlines()[1:]\n"
        "print(f'rows: {len(rows) * a.scale + a.depth}')\n",
    )
    data = write_csv(tmp_path / "train.csv", sample_rows(8))
    spec = TuningSpec(
        train=TrainSpec(
            entrypoint=script, inputs={"train": str(data)}, hyperparameters={"scale": 0.5}
        ),
        search_space={"depth": Choice(values=[1, 2])},
        objective=Objective(metric="rows", goal="maximize"),
        max_trials=2,
        strategy="grid",
    )
    done = client.tune(spec, wait=True)
    assert sorted(t.value for t in done.trials) == [5.0, 6.0]
    assert done.best_trial.params == {"depth": 2}


def test_a_failing_script_fails_its_trials_and_the_sweep(harness, client, tmp_path):
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path, "raise SystemExit('no data')\n")),
        search_space={"depth": Choice(values=[1])},
        objective=Objective(metric="val_score"),
        max_trials=1,
        strategy="grid",
    )
    job = client.tune(spec)
    with pytest.raises(OperationFailed, match="every trial failed"):
        job.wait(timeout=60)
    (trial,) = client.get_tuning_job(job.id).trials
    assert trial.status is JobStatus.FAILED and trial.value is None


def test_named_sweep_is_submitted_once(harness, client, tmp_path):
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path)),
        search_space={"depth": Choice(values=[3])},
        objective=Objective(metric="val_score"),
        max_trials=1,
        strategy="grid",
        name="cs-sweep-once",
    )
    client.tune(spec)
    client.tune(spec)
    puts = [u for m, u in harness.fake.requests_made() if m == "PUT" and "/jobs/" in u]
    assert len(puts) == 1


def test_tuning_validation_happens_before_any_request(harness, client, tmp_path):
    script = _script(tmp_path)
    before = len(harness.fake.requests_made())

    def spec(**kw: object) -> TuningSpec:
        base: dict = {
            "train": TrainSpec(entrypoint=script),
            "search_space": {"lr": LogUniform(low=1e-3, high=1e-1)},
            "objective": Objective(metric="val_score"),
        }
        return TuningSpec(**{**base, **kw})

    with pytest.raises(InvalidRequest, match="Bayesian"):
        client.tune(spec())  # the default strategy is bayesian; Azure's has no loguniform
    with pytest.raises(InvalidRequest, match="early termination"):
        client.tune(spec(search_space={"x": Uniform(low=0, high=1)}, early_stopping=True))
    with pytest.raises(InvalidRequest, match="not a local file"):
        client.tune(spec(train=TrainSpec(entrypoint="missing.py"), strategy="random"))
    with pytest.raises(InvalidRequest, match="VM size"):
        client.tune(spec(train=TrainSpec(entrypoint=script, compute=Compute()), strategy="random"))
    assert len(harness.fake.requests_made()) == before


def test_the_client_waits_for_jobs_and_reads_survive_throttling(harness, tmp_path, model):
    provider = harness.make_provider()
    spec = BatchSpec(
        model=model,
        input=str(write_csv(tmp_path / "in.csv", sample_rows(4))),
        output=str(tmp_path / "o"),
    )
    first = provider.batch_predict(spec)  # returns at once: the provider does not wait
    harness.fake.inject("throttle", times=2, retry_after="0.01")
    assert provider.get_batch_job(first.id).status in (JobStatus.PENDING, JobStatus.RUNNING)
    done = Client(provider).batch_predict(spec, wait=True)  # polls get_batch_job to the end
    assert done.status is JobStatus.SUCCEEDED and done.rows_succeeded == 4
    throttled = [u for m, u in harness.fake.requests_made() if "/jobs/" in u and m == "GET"]
    assert len(throttled) >= 3, "the throttled reads were retried"


def test_a_failed_batch_deployment_is_removed_and_the_next_job_recreates_it(
    harness, client, tmp_path, model
):
    data = write_csv(tmp_path / "in.csv", sample_rows(3))
    harness.fake.inject("fail_operation", times=1, message="image build failed: cs-marker-7")
    with pytest.raises(OperationFailed, match="cs-marker-7"):
        client.batch_predict(model, data, tmp_path / "o")
    assert harness.fake.batch_endpoints() == [], "a Failed endpoint would be reused"
    done = client.batch_predict(model, data, tmp_path / "o", wait=True)
    assert done.status is JobStatus.SUCCEEDED
    (dep,) = harness.fake.batch_deployments("csb-cs-conf")
    assert dep["properties"]["provisioningState"] == "Succeeded"


def test_defect_12_the_trial_wrapper_runs_where_mlflow_is_absent(tmp_path):
    """Azure sets MLFLOW_TRACKING_URI in every job; an environment without mlflow must still
    run the trial (``python -S``: no site-packages, so no mlflow, only the standard library)."""
    import subprocess
    import sys

    from cloudserve_azureml import _packaging as pkg

    (tmp_path / "cloudserve_trial.py").write_text(pkg.trial_wrapper())
    (tmp_path / "train.py").write_text("print('val_score=0.75')\n")
    env = {
        "MLFLOW_TRACKING_URI": "azureml://eastus.api.azureml.ms/mlflow/v1.0/x",
        "CLOUDSERVE_METRIC": "val_score",
        "CLOUDSERVE_METRIC_REGEX": r"val_score=([0-9.]+)",
    }
    proc = subprocess.run(
        [sys.executable, "-S", "cloudserve_trial.py", "train.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "val_score=0.75" in proc.stdout


def test_trial_environment_pins_what_the_training_code_imports(harness, client, tmp_path):
    import sklearn

    from cloudserve_azureml.testing._images import pip_lines

    script = tmp_path / "code" / "train.py"
    script.parent.mkdir()
    script.write_text("import sklearn.linear_model\nimport numpy as np\n" + TRAIN_SCRIPT)
    spec = TuningSpec(
        train=TrainSpec(entrypoint=str(script), max_runtime_s=60),
        search_space={"lr": Uniform(low=0.1, high=0.2)},
        objective=Objective(metric="val_score"),
        max_trials=1,
    )
    job = client.tune(spec)
    env_id = harness.fake.job(job.id)["properties"]["trial"]["environmentId"]
    env = harness.fake.service._asset(env_id)
    _, lines = pip_lines(env["properties"]["condaFile"])
    assert f"scikit-learn=={sklearn.__version__}" in lines
    assert not any(line.lower().startswith("cloudserve") for line in lines)


def test_defect_13_csv_with_string_columns_is_scored(harness, client, tmp_path):
    import joblib
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"plan": ["basic", "pro", "basic", "pro"] * 5, "usage": [float(i) for i in range(20)]}
    )
    target = [int(p == "pro") for p in frame["plan"]]
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(frame, target)
    model_dir = tmp_path / "strings"
    model_dir.mkdir()
    joblib.dump(pipe, model_dir / "model.joblib")
    spec = ModelSpec(name="cs-strings", version="1", artifact=str(model_dir), framework="sklearn")
    data = tmp_path / "in.csv"
    data.write_text("usage,plan\n3.0,pro\n4.0,basic\nnot-a-number,pro\n")
    done = client.batch_predict(spec, data, tmp_path / "out", wait=True)
    assert (done.rows_total, done.rows_succeeded, done.rows_failed) == (3, 2, 1)
    written = sorted(_predictions(tmp_path / "out" / "predictions.csv"), key=lambda r: int(r[1]))
    expected = pipe.predict(pd.DataFrame({"plan": ["pro", "basic"], "usage": [3.0, 4.0]}))
    assert [json.loads(r[2]) for r in written[:2]] == expected.tolist()


def test_storage_with_shared_keys_disabled_is_read_with_the_entra_credential(tmp_path, model):
    from cloudserve_azureml.testing import FakeAzureML

    fake = FakeAzureML(workdir=tmp_path / "keyless", shared_key_access=False).start()
    try:
        client = Client(AzureMLProvider(fast_config(fake), credential=fake.credential()))
        rows = sample_rows(3)
        done = client.batch_predict(model, write_csv(tmp_path / "in.csv", rows), tmp_path / "o")
        done = done.wait(timeout=60)
        assert done.status is JobStatus.SUCCEEDED and done.rows_succeeded == 3
        keyed = [u for m, u in fake.requests_made() if u.lower().endswith("/listsecrets")]
        assert not keyed, "a keyless datastore is never asked for its secrets"
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "model_name",
    ["churn", "churn-", "a" * 40, "churn-model-" + "x" * 19 + "-", "Churn_Model.v2", "9lives"],
)
def test_defect_14_batch_names_always_fit_azure_rules(model_name):
    from cloudserve_azureml import _packaging as pkg

    assert pkg.valid_name(pkg.batch_endpoint_name(model_name)), pkg.batch_endpoint_name(model_name)
    for variant in ("v1", "v" + "9" * 40, "blue-", "-x-"):
        assert pkg.valid_name(pkg.deployment_name(variant)), pkg.deployment_name(variant)
    assert not pkg.valid_name("ends-with-") and not pkg.valid_name("ab")


def test_a_trial_environment_that_does_not_resolve_fails_the_sweep(harness, tmp_path):
    client = _client(harness, extra_requirements=["no-such-distribution-cs==0.0.1"])
    spec = TuningSpec(
        train=TrainSpec(entrypoint=_script(tmp_path), max_runtime_s=60),
        search_space={"lr": Uniform(low=0.1, high=0.2)},
        objective=Objective(metric="val_score"),
        max_trials=1,
    )
    with pytest.raises(OperationFailed, match="ImageBuildFailure"):
        client.tune(spec).wait(timeout=60)
