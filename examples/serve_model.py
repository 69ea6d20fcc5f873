"""Serve a scikit-learn model with the cloudserve runtime and call it the way each cloud would.

    python examples/serve_model.py

Trains a small pipeline, packages it as a model directory (``cloudserve.json`` manifest), checks
it in-process with ``load_model``, then starts the real server on a free loopback port and calls
the SageMaker, Vertex AI, Azure ML and Open Inference Protocol routes, a CSV request, and
``/metrics``. Runs offline in a few seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cloudserve import codecs
from cloudserve.packaging import write_manifest
from cloudserve.serving import BackgroundServer, load_model


def train(model_dir: Path) -> list[list[float]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model_dir.mkdir(parents=True)
    joblib.dump(model, model_dir / "model.joblib")
    write_manifest(model_dir, framework="sklearn", version="1", name="churn")
    return [[1.0, 0.0, -1.0, 0.0], [-1.0, 0.5, 1.0, 0.0], [0.5, 0.2, 0.1, -0.3]]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "churn"
        rows = train(model_dir)

        # In-process: what the pre-deploy smoke test and the cloud fakes use.
        local = load_model(model_dir).predict(rows)
        print("in-process:", local)

        # The real server, with adaptive batching and a bearer token.
        with BackgroundServer(model_dir, token="demo-token", log_level="warning") as srv:
            auth = {"authorization": "Bearer demo-token"}
            with httpx.Client(base_url=srv.url, headers=auth, timeout=10) as http:
                assert http.get("/ping").status_code == 200  # SageMaker health
                sagemaker = http.post("/invocations", json={"instances": rows}).json()
                vertex = http.post("/predict", json={"instances": rows, "parameters": {}}).json()
                azure = http.post("/score", json={"data": rows}).json()
                proba = http.post(
                    "/invocations",
                    json={"instances": rows, "parameters": {"method": "predict_proba"}},
                ).json()
                v2 = http.post(
                    "/v2/models/churn/infer",
                    json={
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [len(rows), 4],
                                "datatype": "FP64",
                                "data": np.ravel(rows).tolist(),
                            }
                        ]
                    },
                ).json()
                csv = http.post(
                    "/invocations",
                    content=codecs.encode_instances(rows, "text/csv"),
                    headers={"content-type": "text/csv", "accept": "text/csv"},
                )
                metrics = http.get("/metrics").text

        print("SageMaker /invocations:", sagemaker["predictions"])
        print("Vertex /predict:", vertex["predictions"])
        print("Azure /score:", azure["predictions"])
        print("probabilities:", [[round(p, 3) for p in row] for row in proba["predictions"]])
        print("v2 infer:", v2["outputs"][0]["data"])
        print("CSV:", csv.text.split())
        served = [
            line for line in metrics.splitlines() if line.startswith("cloudserve_requests_total")
        ]
        print("metrics:", *served, sep="\n  ")
        assert sagemaker["predictions"] == vertex["predictions"] == azure["predictions"] == local
        assert v2["outputs"][0]["data"] == local


if __name__ == "__main__":
    main()
