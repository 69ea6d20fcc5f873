"""What the provider uploads for a prebuilt container, run through Google's predictor steps
in a venv pinned to the container's libraries (scikit-learn 1.5 / XGBoost 2.1, no cloudserve).

The model is trained in that venv (as a user on scikit-learn 1.5 would), deployed through the
provider to the fake, and then:
- the artifact the provider uploaded and the request body it sent go through a faithful copy
  of Google's scikit-learn predictor (load ``model.joblib`` / ``model.pkl`` from the artifact
  root, ``np.asarray(instances)``, ``model.predict``, ``.tolist()``) — source:
  googleapis/python-aiplatform ``google/cloud/aiplatform/prediction/sklearn/predictor.py``;
- the answers must be the model's own predictions, computed in the same venv.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest
from cloudserve.specs import ModelSpec
from cloudserve.testing.refvenv import clean_env, reference_venv
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex

pytestmark = pytest.mark.slow

# The prebuilt sklearn-cpu.1-5 image's libraries (Python 3.11 wheels of the same minor versions).
CONTAINER = ["scikit-learn==1.5.2", "numpy==1.26.4", "pandas==2.2.3", "joblib==1.4.2"]
COLUMNS = ["tenure", "spend", "calls", "age"]

TRAIN = """
import json, sys
import joblib, numpy as np, pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
rng = np.random.default_rng(0)
columns = json.loads(sys.argv[3])
x = pd.DataFrame(rng.normal(size=(300, 4)), columns=columns)
x.iloc[::7, 1] = np.nan  # the model learns what a missing value means
y = (x["tenure"] + x["calls"].fillna(0) > 0).astype(int)
model = HistGradientBoostingClassifier(max_iter=20).fit(x, y)
joblib.dump(model, sys.argv[1] + "/model.joblib")
rows = json.loads(sys.argv[2])
print(json.dumps(model.predict(pd.DataFrame(rows, columns=columns)).tolist()))
"""

# A faithful copy of the load / preprocess / predict / postprocess steps of Google's
# SklearnPredictor (googleapis/python-aiplatform, prediction/sklearn/predictor.py, and the
# model file names of google/cloud/aiplatform/constants/prediction.py).
GOOGLE_SKLEARN_PREDICTOR = """
import json, os, pickle, sys
import joblib, numpy as np
os.chdir(sys.argv[1])  # prediction_utils.download_model_artifacts() copies into the cwd
if os.path.exists("model.joblib"):
    model = joblib.load("model.joblib")
elif os.path.exists("model.pkl"):
    model = pickle.load(open("model.pkl", "rb"))
else:
    raise ValueError("One of the following model files must be provided: "
                     "['model.joblib', 'model.pkl'].")
body = json.load(sys.stdin)
instances = np.asarray(body["instances"])      # preprocess
result = model.predict(instances)               # predict
print(json.dumps({"predictions": result.tolist()}))  # postprocess
"""


# The prebuilt xgboost-cpu.2-1 image's XGBoost (the CPU-only wheel of the same version).
XGBOOST_CONTAINER = ["xgboost-cpu==2.1.4", "numpy==1.26.4", "scipy==1.13.1", "joblib==1.4.2"]

TRAIN_XGBOOST = """
import json, sys
import numpy as np, xgboost as xgb
rng = np.random.default_rng(3)
x = rng.normal(size=(200, 3))
y = (x[:, 0] - x[:, 2] > 0).astype(int)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, label=y), 8)
booster.save_model(sys.argv[1] + "/model.bst")
rows = np.asarray(json.loads(sys.argv[2]))
print(json.dumps(booster.predict(xgb.DMatrix(rows)).tolist()))
"""

# Google's XgboostPredictor steps (googleapis/python-aiplatform,
# google/cloud/aiplatform/prediction/xgboost/predictor.py): model.bst first, then preprocess
# into a DMatrix of np.asarray(instances), predict, tolist.
GOOGLE_XGBOOST_PREDICTOR = """
import json, os, sys
import numpy as np, xgboost as xgb
os.chdir(sys.argv[1])
booster = xgb.Booster(model_file="model.bst")
body = json.load(sys.stdin)
result = booster.predict(xgb.DMatrix(np.asarray(body["instances"])))
print(json.dumps({"predictions": result.tolist()}))
"""


@pytest.fixture(scope="session")
def container_python() -> Path:
    return reference_venv("vertex-sklearn-1.5", CONTAINER, pip_args=["--only-binary=:all:"])


@pytest.fixture(scope="session")
def xgboost_python() -> Path:
    return reference_venv("vertex-xgboost-2.1", XGBOOST_CONTAINER, pip_args=["--only-binary=:all:"])


@pytest.fixture
def fake(tmp_path: Path, container_python: Path) -> Iterator[FakeVertex]:
    """The fake's sklearn-cpu.1-5 container runs in the pinned venv too."""
    pythons = {"sklearn-cpu.1-5": container_python}
    with FakeVertex(workdir=tmp_path / "fake", prebuilt_python=pythons).serve() as f:
        yield f
        assert f.rejected() == [], "every request fits the discovery document"


def _run(python: Path, code: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(python), "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_uploaded_artifact_answers_like_the_model_under_googles_predictor(
    container_python: Path, fake: FakeVertex, tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas")
    rows = [[0.5, 1.0, -0.2, 30.0], [-1.5, float("nan"), 0.1, 41.0], [2.0, -0.3, 1.5, 25.0]]
    artifact = tmp_path / "user-model"
    artifact.mkdir()
    own = json.loads(
        _run(container_python, TRAIN, str(artifact), json.dumps(rows), json.dumps(COLUMNS))
    )

    client = Client(VertexProvider(fake.config()))
    model = ModelSpec(name="churn", version="1", artifact=str(artifact), framework="sklearn")
    client.deploy(model, "ep")
    [version] = fake.model_versions("churn")
    assert version["containerSpec"] == {
        "imageUri": "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"
    }, "chosen from the scikit-learn version that pickled the model; no routes, no env"
    assert version["labels"]["cloudserve-route"] == "prebuilt"

    # A DataFrame with the columns in another order and a NaN: sent as rows in the model's
    # feature order with null; the answer keeps the model's integer classes.
    frame = pd.DataFrame(rows, columns=COLUMNS)[["age", "calls", "spend", "tenure"]]
    pred = client.predict("ep", frame)
    assert pred.outputs == own and all(type(o) is int for o in pred.outputs)
    sent = fake.predictions()[-1].instances
    assert sent[1] == [-1.5, None, 0.1, 41.0]

    # The uploaded artifact and the sent body under Google's predictor, at the container's
    # versions, without cloudserve: the model's own predictions.
    uploaded = _download(fake, version["artifactUri"], tmp_path / "uploaded")
    assert (uploaded / "model.joblib").exists()
    answer = _run(
        container_python,
        GOOGLE_SKLEARN_PREDICTOR,
        str(uploaded),
        stdin=json.dumps({"instances": sent}),
    )
    assert json.loads(answer)["predictions"] == own

    # Batch: a CSV with its header in another order, and JSON Lines of objects (sent to the
    # prebuilt container as arrays in feature order through instanceConfig.included_fields).
    import orjson
    from vertex_harness import VertexHarness

    from cloudserve.resources import JobStatus

    csv_in = tmp_path / "in.csv"
    frame.iloc[[0, 2]].to_csv(csv_in, index=False)  # the rows without a blank
    done = client.batch_predict(model, csv_in, tmp_path / "out-csv").wait(timeout=120)
    assert done.status is JobStatus.SUCCEEDED
    assert VertexHarness().read_batch_output(str(tmp_path / "out-csv")) == [own[0], own[2]]
    jsonl_in = tmp_path / "in.jsonl"
    records = [{k: (None if v != v else v) for k, v in r.items()} for r in frame.to_dict("records")]
    jsonl_in.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    done = client.batch_predict(model, jsonl_in, tmp_path / "out-jsonl").wait(timeout=120)
    assert done.status is JobStatus.SUCCEEDED
    assert VertexHarness().read_batch_output(str(tmp_path / "out-jsonl")) == own
    [stored] = [j for j in fake.batch_jobs() if j["inputConfig"]["instancesFormat"] == "jsonl"]
    assert stored["instanceConfig"] == {"instanceType": "array", "includedFields": COLUMNS}

    # What the prebuilt predictor cannot serve is refused before any predict request.
    before = len(fake.predictions())
    with pytest.raises(InvalidRequest, match="parameters"):
        client.predict("ep", rows, parameters={"method": "predict_proba"})
    with pytest.raises(InvalidRequest, match="unknown columns"):
        client.predict("ep", [{"tenure": 1.0, "colour": 2.0}])
    assert len(fake.predictions()) == before


def _download(fake: FakeVertex, artifact_uri: str, dest: Path) -> Path:
    prefix = artifact_uri.removeprefix(f"{fake.staging_bucket}/")
    for name in fake.objects(fake.staging_bucket, prefix + "/"):
        target = dest / name[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(fake.read_object(f"{fake.staging_bucket}/{name}"))
    return dest


def test_an_xgboost_2_1_booster_on_the_xgboost_2_1_container(
    xgboost_python: Path, tmp_path: Path
) -> None:
    rows = [[0.3, -1.0, 0.2], [-0.7, 0.4, 1.1], [1.5, 0.0, -0.5]]
    artifact = tmp_path / "booster"
    artifact.mkdir()
    own = json.loads(_run(xgboost_python, TRAIN_XGBOOST, str(artifact), json.dumps(rows)))
    pythons = {"xgboost-cpu.2-1": xgboost_python}
    with FakeVertex(workdir=tmp_path / "fake", prebuilt_python=pythons).serve() as fake:
        client = Client(VertexProvider(fake.config()))
        model = ModelSpec(name="boost", artifact=str(artifact), framework="xgboost")
        client.deploy(model, "ep")
        [version] = fake.model_versions("boost")
        assert version["containerSpec"]["imageUri"].endswith("/xgboost-cpu.2-1:latest")
        assert client.predict("ep", rows).outputs == pytest.approx(own, rel=1e-6)
        sent = fake.predictions()[-1].instances
        uploaded = _download(fake, version["artifactUri"], tmp_path / "uploaded")
        answer = _run(
            xgboost_python,
            GOOGLE_XGBOOST_PREDICTOR,
            str(uploaded),
            stdin=json.dumps({"instances": sent}),
        )
        assert json.loads(answer)["predictions"] == pytest.approx(own, rel=1e-6)
        assert fake.rejected() == []
