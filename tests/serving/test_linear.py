"""Linear scikit-learn models predicted without scikit-learn's per-call checks (``_linear.py``):
the same answers to the bit, and scikit-learn itself for everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloudserve.packaging import write_manifest
from cloudserve.serving._linear import _matches, compile_predict
from cloudserve.serving._model import load_model

pytest.importorskip("sklearn", reason="the sklearn extra is not installed")
joblib = pytest.importorskip("joblib", reason="the sklearn extra is not installed")

from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import (  # noqa: E402
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import PolynomialFeatures, StandardScaler  # noqa: E402

RNG = np.random.default_rng(7)
X = RNG.normal(loc=3.0, scale=2.0, size=(400, 9))
BINARY = (X[:, 0] + X[:, 1] > 6).astype(int)
THREE = np.digitize(X[:, 2], [2.0, 4.0])


def _supported() -> dict[str, Any]:
    return {
        "scaler+logistic": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, BINARY),
        "scaler+logistic, 3 classes": make_pipeline(StandardScaler(), LogisticRegression()).fit(
            X, THREE
        ),
        "logistic, text labels": LogisticRegression().fit(X, np.array(["no", "yes"])[BINARY]),
        "two scalers, passthrough": make_pipeline(
            StandardScaler(with_mean=False),
            "passthrough",
            StandardScaler(with_std=False),
            LogisticRegression(),
        ).fit(X, BINARY),
        "linear regression, 2 targets": LinearRegression().fit(X, X[:, :2]),
        "scaler+ridge": make_pipeline(StandardScaler(), Ridge()).fit(X, X[:, 3]),
        "lasso": Lasso(alpha=0.01).fit(X, X[:, 3]),
        "elastic net": ElasticNet(alpha=0.01).fit(X, X[:, 3]),
    }


@pytest.mark.parametrize("name", list(_supported()))
def test_compiled_answers_are_the_models_own_to_the_bit(name: str):
    model = _supported()[name]
    compiled = compile_predict(model)
    assert compiled is not None, name
    predict, width = compiled
    assert width == X.shape[1]
    for n in (1, 2, 15, 64, 333):
        rows = RNG.normal(loc=3.0, scale=4.0, size=(n, width))
        ours, theirs = predict(rows), model.predict(rows)
        assert ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs)
        assert ours.tolist() == theirs.tolist()


def test_other_models_are_left_to_scikit_learn():
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    for model in (
        RandomForestClassifier(n_estimators=3, random_state=0).fit(X, BINARY),
        make_pipeline(PolynomialFeatures(), LogisticRegression(max_iter=500)).fit(X, BINARY),
        make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, BINARY),  # named columns
        LogisticRegression().fit(X.astype(np.float32), BINARY).set_params(),
    ):
        if isinstance(model, LogisticRegression):
            model.coef_ = model.coef_.astype(np.float32)  # not float64: not compiled
        assert compile_predict(model) is None, model


def test_a_compiled_function_that_disagrees_is_not_kept():
    model = LogisticRegression().fit(X, BINARY)
    predict, width = compile_predict(model)  # type: ignore[misc]
    assert _matches(model, predict, width)
    assert not _matches(model, lambda rows: 1 - predict(rows), width)


def test_the_server_uses_it_for_the_default_method_only(tmp_path: Path):
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, THREE)
    joblib.dump(model, tmp_path / "model.joblib")
    write_manifest(tmp_path, framework="sklearn", version="1")
    served = load_model(tmp_path)
    assert served._compiled is not None  # type: ignore[attr-defined]
    rows = RNG.normal(loc=3.0, scale=2.0, size=(5, X.shape[1]))
    assert served.predict(rows) == model.predict(rows).tolist()
    assert served.predict(rows, {"method": "predict_proba"}) == model.predict_proba(rows).tolist()
    # NaN: scikit-learn's own check and message, not the compiled arithmetic
    rows[2, 4] = np.nan
    with pytest.raises(Exception, match="NaN"):
        served.predict(rows)
