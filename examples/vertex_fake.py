"""Both serving routes on Vertex AI, then canary, batch, tuning, metrics and delete — on the fake.

The real google-cloud-aiplatform GAPIC clients (REST transport) and google-cloud-storage talk
plain HTTP to ``cloudserve_vertex.testing.FakeVertex`` on a local port. The fake checks every
request against Google's discovery document, serves a prebuilt container the way Google's
predictor does (``np.asarray(instances)`` then ``model.predict``) and the container route with
the cloudserve runtime, and runs tuning trials for real.

- **Prebuilt route**: ``examples/models/churn-sklearn-1.5/model.joblib`` was trained and saved
  with scikit-learn 1.5.2 (pandas columns tenure, spend, calls, age), so Vertex's own
  ``sklearn-cpu.1-5`` container can load it; named columns are sent as rows in that order.
- **Container route**: a model saved by today's scikit-learn is newer than every prebuilt
  container, so it runs in the cloudserve runtime image named by the target's
  ``serving_image`` (``cloudserve build-image --push TARGET`` sets it). Without one, deploy
  refuses before any request and says which command builds it.

Point the same code at a real project by replacing ``fake.config()`` with
``VertexConfig(project=..., location=..., staging_bucket="gs://...", serving_image=...)``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import cloudserve as cs
from cloudserve.testing import TRAIN_SCRIPT, make_sklearn_model, sample_rows, write_csv
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex

SKLEARN_15_MODEL = Path(__file__).parent / "models" / "churn-sklearn-1.5"


def main() -> None:
    # the fake's prebuilt container loads the 1.5 pickle in this process's newer scikit-learn
    # and, as Google's predictor does, hands it an ndarray without column names
    warnings.filterwarnings("ignore", message="Trying to unpickle estimator")
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    work = Path(tempfile.mkdtemp(prefix="cs-vertex-example-"))
    with FakeVertex(operation_polls=2, workdir=work / "fake").serve() as fake:
        client = cs.Client(VertexProvider(fake.config()))  # anonymous creds, fast polls

        # 1. prebuilt route: Google's sklearn-cpu.1-5 container serves the 1.5 model
        v1 = cs.ModelSpec(
            name="churn", version="1", framework="sklearn", artifact=str(SKLEARN_15_MODEL)
        )
        ep = client.deploy(v1, "churn-ep", cs.Compute(size="cpu.medium"))
        image = fake.model_versions("churn")[0]["containerSpec"]["imageUri"]
        print("deployed:", ep.status.value, ep.traffic, "on", image.rsplit("/", 1)[-1])
        records = [
            {"age": 0.3, "calls": 0.1, "spend": 1.0, "tenure": 0.8},
            {"age": -0.4, "calls": 2.5, "spend": 0.3, "tenure": -1.2},
        ]
        print(
            "predict (records → rows in the model's order):",
            client.predict("churn-ep", records).outputs,
        )

        # 2. container route: a model saved by today's scikit-learn
        v2 = cs.ModelSpec(
            name="churn",
            version="2",
            framework="sklearn",
            artifact=str(make_sklearn_model(work / "m2", version="2", seed=1)),
        )
        bare = cs.Client(VertexProvider(fake.config(serving_image=None), target="gcp"))
        try:
            bare.deploy(v2, "churn-ep", traffic=20)
        except cs.InvalidRequest as exc:
            print("without serving_image:", str(exc).split(": ", 1)[1][:150], "…")
        ep = client.deploy(v2, "churn-ep", traffic=20)  # canary: a new Model Registry version
        routes = [v["labels"]["cloudserve-route"] for v in fake.model_versions("churn")]
        print("canary:", ep.traffic, "| routes:", routes)
        client.set_traffic("churn-ep", {"v1": 0, "v2": 100})
        rows = sample_rows(5)
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
                    "depth": cs.IntRange(low=2, high=10, step=2),
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
