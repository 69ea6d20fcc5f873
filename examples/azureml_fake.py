"""Deploy, predict, shadow, canary, monitor, batch-score, tune and delete on Azure ML — offline.

The real azure-ai-ml MLClient talks HTTP to ``cloudserve_azureml.testing.FakeAzureML``; the
fake mounts the model as Azure does and answers requests through the uploaded ``score.py`` (a
bad request comes back as Azure's 424), resolves the generated environment against the package
index as Azure's image build would, runs batch jobs through the uploaded batch script and sweep
trials by running the training script, so every number printed is real. Point the same code
at a real workspace by dropping the fake and the ``credential`` argument.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cloudserve as cs
from cloudserve.testing import make_sklearn_model, sample_rows, write_csv
from cloudserve_azureml import AzureMLConfig, AzureMLProvider
from cloudserve_azureml.testing import FakeAzureML

# A small real training run in plain Python (so each trial starts in milliseconds): ridge
# regression on noisy data, trained on one half and scored on the other.
TRAIN_SCRIPT = """\
import argparse, random

p = argparse.ArgumentParser()
p.add_argument("--alpha", type=float)
p.add_argument("--degree", type=int)
a = p.parse_args()
rng = random.Random(0)
xs = [rng.uniform(-1, 1) for _ in range(400)]
ys = [x**3 - x + rng.gauss(0, 0.1) for x in xs]
feats = [[x**k for k in range(a.degree + 1)] for x in xs]
n = len(feats[0])
# normal equations (X'X + alpha I) w = X'y on the training half, by Gauss-Jordan
A = [[sum(f[i] * f[j] for f in feats[:200]) + (a.alpha if i == j else 0) for j in range(n)]
     for i in range(n)]
b = [sum(f[i] * y for f, y in zip(feats[:200], ys[:200])) for i in range(n)]
for i in range(n):
    piv = A[i][i]
    A[i] = [v / piv for v in A[i]]; b[i] /= piv
    for r in range(n):
        if r != i:
            k = A[r][i]
            A[r] = [vr - k * vi for vr, vi in zip(A[r], A[i])]; b[r] -= k * b[i]
mse = sum((sum(w * v for w, v in zip(b, f)) - y) ** 2 for f, y in zip(feats[200:], ys[200:])) / 200
print(f"val_mse={mse:.6f}")
"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cs-azureml-example-"))
    with FakeAzureML(in_progress_polls=2, workdir=work / "fake") as fake:
        config = AzureMLConfig(
            subscription_id=fake.subscription_id,
            resource_group=fake.resource_group,
            workspace=fake.workspace,
            region="eastus",
            compute="cpu-cluster",  # the cluster batch and sweep jobs run on
            sdk_polling_interval_s=0.01,  # the SDK's default is 30 s per poll
            waits={
                "poll_interval_s": 0.05,
                "max_poll_interval_s": 0.2,
            },  # job polls: the fake is fast
        )
        client = cs.Client(AzureMLProvider(config, credential=fake.credential()))

        v1 = cs.ModelSpec(
            name="churn",
            version="1",
            framework="sklearn",
            artifact=str(make_sklearn_model(work / "m1", version="1")),
        )
        v2 = cs.ModelSpec(
            name="churn",
            version="2",
            framework="sklearn",
            artifact=str(make_sklearn_model(work / "m2", version="2", seed=1)),
        )

        ep = client.deploy(v1, "churn-ep", cs.Compute(size="cpu.medium"))
        print("deployed:", ep.status.value, ep.traffic, ep.variants[0].instance_type)
        rows = sample_rows(5)
        print("predict:", client.predict("churn-ep", rows).outputs)
        proba = client.predict("churn-ep", rows[:2], parameters={"method": "predict_proba"})
        print("probabilities:", [[round(p, 3) for p in row] for row in proba.outputs])
        try:  # the scoring script answers 400; Azure wraps it in a 424 with the status
            client.predict("churn-ep", [[1.0]])
        except cs.InvalidRequest as exc:
            print("bad input:", type(exc).__name__, exc.code)
        # What Azure builds: the generated score.py runs in an environment of pinned pip lines
        # (the framework and what the pickle imports, at the versions installed here).
        (dep,) = fake.deployments("churn-ep")
        conda = fake.service._asset(dep["properties"]["environmentId"])["properties"]["condaFile"]
        pins = [ln.strip("- ") for ln in conda.splitlines() if "==" in ln or "server-http" in ln]
        print("environment:", pins)

        # A shadow first: 20 % of the requests are mirrored to v2, whose answers nobody sees;
        # both deployments' score.py log each request and the report joins them by request id.
        ep = client.deploy(v2, "churn-ep", shadow=20)
        print("shadow:", ep.traffic, {v.name: v.shadow for v in ep.variants})
        for i in range(50):
            client.predict("churn-ep", sample_rows(1, seed=i))
        fake.settle_mirror()  # the fake scores the mirrored copies off the caller's path
        shadow = client.shadow_report("churn-ep")
        print(f"shadow report: {shadow.mirrored} mirrored, agreement {shadow.agreement_rate}")

        ep = client.deploy(v2, "churn-ep", traffic=20)  # canary beside v1: mirroring ends
        print("canary:", ep.traffic, "| fake sees:", fake.traffic("churn-ep"))
        print("v2 only:", client.predict("churn-ep", rows, variant="v2").outputs)

        report = client.metrics("churn-ep", "1h")
        print(f"metrics: {report.invocations} requests, p50 {report.p50_ms:.2f} ms")

        # Batch: a batch endpoint + model batch deployment; the local CSV goes up as a data asset
        # and predictions.csv (file,row,prediction,error) comes back into ./out.
        job = client.batch_predict(
            v1,
            write_csv(work / "in.csv", sample_rows(20, seed=2)),
            work / "out",
            compute=cs.Compute(size="cpu.medium", replicas=2),
            batch_size=8,
        )
        done = job.wait(timeout=60)
        print(f"batch: {done.status.value}, {done.rows_succeeded}/{done.rows_total} rows")
        print(
            "batch deployment:", fake.batch_deployments("csb-churn")[0]["properties"]["resources"]
        )

        # Tuning: a sweep job whose trials run train.py; the metric is what the script prints.
        script = work / "src" / "train.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(TRAIN_SCRIPT)
        tuning = client.tune(
            cs.TuningSpec(
                train=cs.TrainSpec(entrypoint=str(script)),
                search_space={
                    "alpha": cs.LogUniform(low=1e-4, high=10.0),
                    "degree": cs.IntRange(low=1, high=5),
                },
                objective=cs.Objective(metric="val_mse", goal="minimize"),
                max_trials=6,
                parallel_trials=3,
                strategy="random",
                early_stopping=True,
                seed=3,
            )
        ).wait(timeout=120)
        best = tuning.best_trial
        assert best is not None
        print(
            f"tuning: {len(tuning.trials)} trials, best val_mse {best.value:.4f} with {best.params}"
        )
        print("sweep search space:", fake.job(tuning.id)["properties"]["searchSpace"])

        client.delete_endpoint("churn-ep")
        # The batch endpoint stays for the next job; models, data and code assets stay as history.
        print("online endpoints left:", [e["name"] for e in fake.endpoints()])
        assert fake.endpoints() == []


if __name__ == "__main__":
    main()
