"""The handler template runs where the clouds run it: Python 3.8 with numpy (+ scikit-learn),
without cloudserve, copied as a standalone file the way providers upload it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudserve import _handler
from cloudserve.testing import refvenv

pytestmark = pytest.mark.slow

# The oldest Python among the target images, and the last library versions it installs.
PY38 = Path.home() / ".pyenv/versions/3.8.18/bin/python3.8"
NUMPY = ["numpy==1.24.4"]
SKLEARN = [*NUMPY, "scikit-learn==1.3.2", "pandas==2.0.3", "joblib==1.3.2", "scipy==1.10.1"]


def _python() -> str | None:
    return str(PY38) if PY38.exists() else None


def _run(python: Path, workdir: Path, script: str) -> dict:
    shutil.copy(_handler.__file__, workdir / "cloudserve_handler.py")
    (workdir / "check.py").write_text(script)
    # -I: isolated mode, so neither PYTHONPATH nor the user site can lend it cloudserve
    done = subprocess.run(
        [str(python), "-I", "check.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=refvenv.clean_env(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


NUMPY_ONLY = r"""
import json, sys
sys.path.insert(0, ".")
import cloudserve_handler as h
try:
    import cloudserve
    raise SystemExit("cloudserve is importable here")
except ImportError:
    pass
X, params = h.decode(b'{"instances": [[1, 2], [3, null]], "parameters": {"method": "p"}}',
                     "application/json")
csv_X, _ = h.decode(b"b,a\n1,2\n3,\n", "text/csv", ["a", "b"])
lines, kind = h.encode([[0.25, 0.75]], "application/jsonlines")
try:
    h.decode(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1000]}]}', "")
    overflow = None
except h.BadInput as exc:
    overflow = str(exc)
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "pandas": "pandas" in sys.modules,
    "X": [[None if v != v else v for v in row] for row in X.tolist()],
    "params": params,
    "csv": [[None if v != v else v for v in row] for row in csv_X.tolist()],
    "lines": lines.decode(), "kind": kind, "overflow": overflow,
}))
"""


def test_numpy_only(tmp_path: Path) -> None:
    python = refvenv.reference_venv("handler-numpy", NUMPY, python=_python())
    out = _run(python, tmp_path, NUMPY_ONLY)
    if PY38.exists():
        assert out["version"] == [3, 8]
    assert out["pandas"] is False
    assert out["X"] == [[1, 2], [3, None]] and out["params"] == {"method": "p"}
    assert out["csv"] == [[2, 1], [None, 3]]
    assert out["lines"] == "[0.25,0.75]\n" and out["kind"] == "application/jsonlines"
    assert "out of range" in out["overflow"]


TITANIC = r"""
import io, json, sys
sys.path.insert(0, ".")
import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
import cloudserve_handler as h

rng = np.random.default_rng(3)
n = 200
frame = pd.DataFrame({
    "Pclass": rng.integers(1, 4, n),
    "Sex": rng.choice(["male", "female"], n),
    "Age": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(1, 70, n).round()),
    "Fare": rng.uniform(5, 100, n).round(2),
    "Embarked": rng.choice(["S", "C", "Q", None], n),
})
y = ((frame.Sex == "female") | (frame.Pclass == 1)).astype(int)
pre = ColumnTransformer([
    ("num", SimpleImputer(strategy="median"), ["Age", "Fare", "Pclass"]),
    ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                          OneHotEncoder(handle_unknown="ignore")), ["Sex", "Embarked"]),
])
model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(frame, y)
import os
os.makedirs("model", exist_ok=True)
joblib.dump(model, "model/model.joblib")
with open("model/cloudserve.json", "w") as fh:
    json.dump({"framework": "sklearn"}, fh)

served = h.load_model("model")
names = h.model_feature_names(served, h.read_manifest("model"))
body = b"Sex,Embarked,Age,Fare,Pclass\nfemale,C,,71.28,1\nmale,S,22,7.25,3\nfemale,,30,8,2\n"
X, _ = h.decode(body, "text/csv", names)
reference = pd.read_csv(io.BytesIO(body))[names]
try:
    h.predict(served, X, {"method": "nope"})
    refused = None
except h.BadInput as exc:
    refused = str(exc)
print(json.dumps({
    "proba": h.predict(served, X, {"method": "predict_proba"}),
    "expected_proba": model.predict_proba(reference).tolist(),
    "labels": h.predict(served, X),
    "expected_labels": model.predict(reference).tolist(),
    "refused": refused,
}))
"""


def test_titanic_pipeline_under_python_3_8_sklearn(tmp_path: Path) -> None:
    python = refvenv.reference_venv("handler-sklearn", SKLEARN, python=_python())
    out = _run(python, tmp_path, TITANIC)
    assert out["proba"] == out["expected_proba"]
    assert out["labels"] == out["expected_labels"]
    assert "predict_proba" in out["refused"]
