"""The scikit-learn loader skips the per-call checks that cannot fail, never the ones that can.

``SklearnModel`` runs the model under ``assume_finite`` only for a batch it has just found
finite itself: the answers are scikit-learn's own, and NaN still meets the model's own check
(a 400 naming it) or its own handling (an imputer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import write_manifest
from cloudserve.serving._model import load_model
from conftest import N_FEATURES, train_data

pytest.importorskip("sklearn", reason="the sklearn extra is not installed")
joblib = pytest.importorskip("joblib", reason="the sklearn extra is not installed")


def _rows(n: int = 50) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, N_FEATURES))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_answers_are_the_models_own(sklearn_dir: Path, method: str):
    served = load_model(sklearn_dir)
    pipeline = joblib.load(sklearn_dir / "model.joblib")
    rows = _rows()
    assert served.predict(rows, {"method": method}) == getattr(pipeline, method)(rows).tolist()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_value_is_still_refused_by_the_model_naming_it(sklearn_dir: Path, bad):
    served = load_model(sklearn_dir)
    rows = _rows(3)
    rows[1, 2] = bad
    with pytest.raises(InvalidRequest) as caught:
        served.predict(rows)
    assert caught.value.code == "model_rejected_input"
    assert "NaN" in str(caught.value) or "infinity" in str(caught.value)


def test_a_model_that_imputes_still_gets_its_nan(tmp_path: Path):
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = train_data()
    pipeline = make_pipeline(SimpleImputer(), LogisticRegression()).fit(x, y)
    joblib.dump(pipeline, tmp_path / "model.joblib")
    write_manifest(tmp_path, framework="sklearn", version="1")
    rows = _rows(4)
    rows[0, 0] = np.nan
    assert load_model(tmp_path).predict(rows) == pipeline.predict(rows).tolist()
