"""The quick start: the whole cloudserve workflow on the local provider, offline.

    python examples/quickstart.py

Trains a scikit-learn model on the breast-cancer data that ships with scikit-learn, registers
it, deploys it locally, predicts online, runs a batch job, tunes a few trials and deploys the
best one, reads metrics and drift, prices the deployment on each cloud, and tears down.
``cloudserve demo`` runs the same steps with richer output. With a cloud target in
``cloudserve.yaml``, only the ``cs.connect(...)`` line changes.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import joblib
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import cloudserve as cs
from cloudserve.packaging import write_manifest

TRIAL = textwrap.dedent(
    """
    import argparse, os
    import joblib, pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cloudserve.packaging import write_manifest

    p = argparse.ArgumentParser()
    p.add_argument("--C", type=float)
    C = p.parse_args().C
    data = pd.read_csv(os.environ["CLOUDSERVE_INPUT_TRAIN"])
    x, y = data.drop(columns=["target"]), data["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
    print(f"val_accuracy={cross_val_score(model, x, y, cv=3).mean():.4f}")
    model.fit(x, y)
    joblib.dump(model, os.path.join(os.environ["CLOUDSERVE_MODEL_DIR"], "model.joblib"))
    write_manifest(os.environ["CLOUDSERVE_MODEL_DIR"], framework="sklearn")
    """
)


def main(work: Path) -> None:
    # 1. Train: a pipeline on a DataFrame, saved with its manifest.
    data = load_breast_cancer(as_frame=True)
    x = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    x_train, x_test, y_train, _ = train_test_split(x, data.target, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    model.fit(x_train, y_train)
    (work / "model").mkdir()
    joblib.dump(model, work / "model" / "model.joblib")
    write_manifest(work / "model", framework="sklearn", version="1")
    train_csv = work / "train.csv"
    x_train.assign(target=y_train).to_csv(train_csv, index=False)

    client = cs.connect("local")  # state in $CLOUDSERVE_STATE_DIR, else ./.cloudserve
    try:
        # 2. Register, with lineage: the data hash and a drift baseline are kept.
        spec = cs.ModelSpec(name="cancer", artifact=str(work / "model"), framework="sklearn")
        v1 = client.register_model(
            spec, lineage={"training_data": str(train_csv), "target": "target"}
        )
        print("registered", v1.name, v1.version, v1.content_hash)

        # 3. Deploy (after a smoke test on three rows), with data capture for drift.
        sample = x_test.head(3).to_dict(orient="records")
        ep = client.deploy(v1, "cancer", data_capture=True, sample_input=sample)
        print("deployed", ep.name, ep.status.value, ep.traffic)

        # 4. Online predictions: a DataFrame, a list of rows or records.
        pred = client.predict("cancer", x_test.head(5))
        print("predictions", pred.outputs, f"in {pred.latency_ms:.1f} ms")

        # 5. Batch: CSV in, CSV out, every row accounted for.
        x_test.to_csv(work / "batch.csv", index=False)
        job = client.batch_predict(v1, work / "batch.csv", work / "batch-out", wait=True)
        print("batch", job.rows_succeeded, "rows ok,", job.rows_failed, "failed →", job.output)

        # 6. Tune three trials, then register and deploy the best one in one call.
        (work / "trial.py").write_text(TRIAL)
        tuning = client.tune(
            cs.TuningSpec(
                train=cs.TrainSpec(
                    entrypoint=str(work / "trial.py"), inputs={"train": str(train_csv)}
                ),
                search_space={"C": cs.LogUniform(low=1e-3, high=10.0)},
                objective=cs.Objective(metric="val_accuracy"),
                max_trials=3,
                strategy="random",
                seed=0,
            ),
            wait=True,
        )
        best = tuning.best_trial
        print("best trial", best.id, best.params, best.value)
        v2, ep = client.provider.promote_best(
            tuning.id, name="cancer", version="2", endpoint="cancer"
        )
        print(
            "registered", v2.version, "from trial", v2.lineage["trial"], "now serving", ep.traffic
        )

        # 7. Metrics and drift against the training data.
        for i in range(0, len(x_test) - 4, 4):
            client.predict("cancer", x_test.iloc[i : i + 4])
        m = client.metrics("cancer", "1h")
        print(f"metrics: {m.invocations} requests, p50 {m.p50_ms:.1f} ms, p99 {m.p99_ms:.1f} ms")
        drift = client.drift("cancer", v1.lineage["baseline"], window="1h")
        print("drift flagged:", drift.flagged or "none")

        # 8. What the same deployment would cost on each cloud.
        try:
            from cloudserve.pricing import estimate
        except ImportError:
            print("pricing not available")
        else:
            deploy = cs.DeploySpec(
                model=spec, endpoint="cancer", compute=cs.Compute(size="cpu.small")
            )
            for provider in ("sagemaker", "vertex", "azureml"):
                e = estimate(deploy, provider=provider, region=None)
                print(
                    f"{provider:9} {e.instance_type:16} ${e.hourly:.3f}/h  ${e.monthly:.0f}/month"
                )
    finally:
        # 9. Tear down: the worker processes stop and the endpoint's state is removed.
        client.delete_endpoint("cancer")
        client.close()
    print("endpoints left:", [e.name for e in cs.connect("local").list_endpoints()])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp))
