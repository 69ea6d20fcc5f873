"""The framework route, run exactly as SageMaker's sklearn 1.2-1 and xgboost 1.7-1 images run it.

In a venv pinned to the image's library versions, with sagemaker-inference at the image's version
and **no cloudserve** (``cloudserve.testing.refvenv``): a model is trained *there*, staged and
packed here by the provider's own packaging (which must choose that image from the versions the
artifact records), extracted as ``/opt/ml/model``, loaded with sagemaker-containers' import
semantics and served through sagemaker-inference's ``Transformer`` (``reference_serving.py``),
with JSON, CSV (header in another column order) and ``*/*``. Every answer must equal the model's
own ``predict`` / ``predict_proba`` in that venv.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from reference_images import IMAGES, PIP_ARGS

from cloudserve.specs import ModelSpec
from cloudserve.testing.refvenv import clean_env, reference_venv
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
from cloudserve_sagemaker._packaging import build_model_tarball

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("cloudserve._handler") is None,
        reason="the core's handler template (cloudserve._handler) has not landed in this checkout",
    ),
]

HERE = Path(__file__).parent
COLUMNS = ["age", "fare", "sex", "pclass"]

# Trains in the reference venv; writes the model and the model's own answers for the requests.
TRAIN = r"""
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd

framework, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
n = 300
frame = pd.DataFrame({
    "age": rng.uniform(1, 80, n).round(1),
    "fare": rng.uniform(5, 250, n).round(2),
    "sex": rng.choice(["female", "male"], n),
    "pclass": rng.integers(1, 4, n),
})
y = ((frame["sex"] == "female") & (frame["pclass"] < 3) | (frame["age"] < 12)).astype(int)
test = frame.iloc[:6].copy()
if framework == "sklearn":
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    model = Pipeline([
        ("prep", ColumnTransformer([("sex", OneHotEncoder(), ["sex"])], remainder="passthrough")),
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(frame, y)
    joblib.dump(model, out / "model.joblib")
else:
    import xgboost as xgb
    frame["sex"] = (frame["sex"] == "female").astype(int)
    test = frame.iloc[:6].copy()
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(frame, y)
    model.save_model(str(out / "model.json"))
answers = {
    "records": test.to_dict(orient="records"),
    "predict": model.predict(test).tolist(),
    "proba": model.predict_proba(test).tolist(),
}
(out.parent / "answers.json").write_text(json.dumps(answers, default=float))
"""


def _run(
    python: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    done = subprocess.run(
        [str(python), *args], capture_output=True, text=True, env=clean_env(**(env or {})), cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="session", params=["sklearn", "xgboost"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Train in the image's venv, pack with the provider, serve under the reference loader."""
    framework = request.param
    name = {"sklearn": "sagemaker-sklearn-1.2-1", "xgboost": "sagemaker-xgboost-1.7-1"}[framework]
    python = reference_venv(name, IMAGES[name], pip_args=PIP_ARGS)
    work = tmp_path_factory.mktemp(f"ref-{framework}")
    (work / "train.py").write_text(TRAIN)
    _run(python, str(work / "train.py"), framework, str(work / "artifact"))
    answers = json.loads((work / "answers.json").read_text())

    provider = SageMakerProvider(
        SageMakerConfig(
            role_arn="arn:aws:iam::123456789012:role/x", bucket="b-1", region="us-east-1"
        )
    )
    spec = ModelSpec(name="titanic", artifact=str(work / "artifact"), framework=framework)
    prepared = provider.prepare(spec)
    assert prepared.staged is not None
    tarball = build_model_tarball(prepared.staged, prepared.route)
    opt_ml = work / "opt_ml"
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as t:
        t.extractall(opt_ml / "model", filter="data")
    return {
        "framework": framework,
        "python": python,
        "route": prepared.route,
        "answers": answers,
        "opt_ml": opt_ml,
        "work": work,
    }


def serve(served: dict[str, Any], requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    file = served["work"] / "requests.json"
    file.write_text(json.dumps(requests))
    out = _run(
        served["python"],
        str(HERE / "reference_serving.py"),
        str(served["opt_ml"]),
        str(file),
        env=served["route"].env,
        cwd=served["work"],
    )
    return list(json.loads(out.splitlines()[-1])["results"])


def csv_body(records: list[dict[str, Any]], columns: list[str]) -> str:
    lines = [",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in records]
    return "\n".join(lines) + "\n"


def predictions(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])["predictions"]


def test_the_route_is_the_images_framework_route(served: dict[str, Any]) -> None:
    route = served["route"]
    assert route.kind == "framework"
    tag = {"sklearn": "sagemaker-scikit-learn:1.2-1-cpu-py3", "xgboost": "sagemaker-xgboost:1.7-1"}
    assert route.image.endswith(tag[served["framework"]])
    assert route.env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert not (served["opt_ml"] / "model" / "code" / "requirements.txt").exists()


def test_answers_equal_the_models_own(served: dict[str, Any]) -> None:
    answers = served["answers"]
    records = answers["records"]
    shuffled = list(reversed(COLUMNS))
    reordered = [{c: r[c] for c in shuffled} for r in records]
    proba = json.dumps({"instances": reordered, "parameters": {"method": "predict_proba"}})
    requests = [
        {
            "content_type": "application/json",
            "accept": "application/json",
            "body": json.dumps(reordered),
        },
        {"content_type": "application/json", "accept": "*/*", "body": json.dumps(reordered)},
        {
            "content_type": "text/csv",
            "accept": "application/json",
            "body": csv_body(records, shuffled),
        },
        {"content_type": "text/csv", "accept": "text/csv", "body": csv_body(records, COLUMNS)},
        {"content_type": "application/json", "accept": "application/json", "body": proba},
        {"content_type": "application/json", "accept": "application/json", "body": '[{"age": 3}]'},
    ]
    plain, star, csv_in, csv_out, probabilities, missing = serve(served, requests)
    for result in (plain, star, csv_in, probabilities):
        assert result["status"] == 200, result["body"]
        assert result["content_type"] == "application/json"
    expected = answers["predict"]
    assert predictions(plain) == expected
    assert predictions(star) == expected, "*/* gets the default accept (JSON)"
    assert predictions(csv_in) == expected, "a CSV header in another order is honoured"
    assert csv_out["status"] == 200 and csv_out["content_type"] == "text/csv"
    assert [int(float(v)) for v in csv_out["body"].split()] == expected
    got = [p for row in predictions(probabilities) for p in row]
    assert got == pytest.approx([p for row in answers["proba"] for p in row], abs=1e-6)
    assert missing["status"] == 400 and "fare" in missing["body"], missing


def test_the_handler_is_python_3_8(served: dict[str, Any]) -> None:
    code = served["opt_ml"] / "model" / "code"
    for name in ("inference.py", "cloudserve_handler.py"):
        ast.parse((code / name).read_text(), filename=name, feature_version=(3, 8))
