"""Deploy, canary, predict, batch, tune, monitor and delete on Vertex AI — against the fake.

The real google-cloud-aiplatform GAPIC clients (REST transport) and google-cloud-storage talk
plain HTTP to ``cloudserve_vertex.testing.FakeVertex`` on a local port; the fake predicts by
running the deployed scikit-learn model and runs tuning trials for real. Point the same code
at a real project by replacing ``fake.config()`` with
``VertexConfig(project=..., location=..., staging_bucket="gs://...")``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cloudserve as cs
from cloudserve.testing import TRAIN_SCRIPT, make_sklearn_model, sample_rows, write_csv
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cs-vertex-example-"))
    with FakeVertex(operation_polls=2, workdir=work / "fake").serve() as fake:
        client = cs.Client(VertexProvider(fake.config()))  # anonymous creds, fast polls
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

        ep = client.deploy(v2, "churn-ep", traffic=20)  # canary: a new Model Registry version
        print(
            "canary:",
            ep.traffic,
            "| versions:",
            [v["versionId"] for v in fake.model_versions("churn")],
        )
        client.set_traffic("churn-ep", {"v1": 0, "v2": 100})
        print("v2 only:", client.predict("churn-ep", rows, variant="v2").outputs)

        job = client.batch_predict(v2, write_csv(work / "in.csv", sample_rows(20)), work / "out")
        print(
            "batch:",
            job.wait(timeout=60).status.value,
            sorted(p.name for p in (work / "out").iterdir()),
        )

        script = work / "train.py"
        script.write_text(TRAIN_SCRIPT)
        tuning = client.tune(
            cs.TuningSpec(
                train=cs.TrainSpec(entrypoint=str(script)),
                search_space={
                    "lr": cs.LogUniform(low=1e-4, high=1e-1),
                    "depth": cs.IntRange(low=2, high=10),
                },
                objective=cs.Objective(metric="val_score"),
                max_trials=3,
                strategy="random",
            )
        ).wait(timeout=120)
        print("best trial:", tuning.best_trial.params if tuning.best_trial else None)

        report = client.metrics("churn-ep", "1h")
        print(f"metrics: {report.invocations} requests, p50 {report.p50_ms:.2f} ms")

        client.delete_endpoint("churn-ep")
        print("left in the project:", fake.leftovers())
        assert fake.leftovers() == []


if __name__ == "__main__":
    main()
