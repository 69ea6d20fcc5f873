"""scikit-learn's linear models, predicted without scikit-learn's per-call checks.

A ``Pipeline(StandardScaler, LogisticRegression)`` spends ~160 µs per ``predict`` call on input
validation (``validate_data`` in every step, the array-API dispatch, the pipeline's routing)
and ~4 µs on the arithmetic, whatever the rows: on a batch of a dozen one-row requests that is
more CPU per request than the whole HTTP exchange. The server validates the rows itself before
they reach the model (a float64 matrix of the model's width, every value finite), so for the
estimators below it can run the same arithmetic directly:

- any number of ``StandardScaler`` steps (and ``"passthrough"``): ``X - mean_``, then ``/ scale_``;
- a final ``LogisticRegression`` (``predict``: the class of the largest score, or of a positive
  score when binary), or ``LinearRegression``, ``Ridge``, ``Lasso``, ``ElasticNet``
  (``X @ coef_.T + intercept_``).

The same numpy operations scikit-learn performs, in the same order, so the answers are the same
to the bit. That is not assumed: :func:`compile_predict` runs the compiled function and the
model's own ``predict`` on probe rows (one row, and a batch) at load time and keeps it only if
every answer is identical; anything else (another estimator, a model fitted on a DataFrame,
another ``method``, a row that is not finite or not float64) goes through scikit-learn itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["compile_predict"]

Compiled = Callable[[np.ndarray], np.ndarray]


def compile_predict(model: Any) -> tuple[Compiled, int] | None:
    """``(predict, n_features)`` for a supported fitted model whose compiled answers match its
    own on probe rows, else ``None``."""
    try:
        found = _compile(model)
        if found is None or not _matches(model, *found):
            return None
    except Exception:  # an estimator of another version or shape: scikit-learn answers
        return None
    return found


def _compile(model: Any) -> tuple[Compiled, int] | None:
    from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in model.steps] if type(model) is Pipeline else [model]
    *transforms, final = steps
    if getattr(final, "feature_names_in_", None) is not None:
        return None  # fitted on a DataFrame: the handler passes one, with its column checks
    n_features = getattr(model, "n_features_in_", None)
    shifts: list[tuple[np.ndarray | None, np.ndarray | None]] = []
    for step in transforms:
        if step is None or step == "passthrough":
            continue
        if type(step) is not StandardScaler or getattr(step, "feature_names_in_", None) is not None:
            return None
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None
        for part in (mean, scale):
            if part is not None and (part.dtype != np.float64 or part.ndim != 1):
                return None
        shifts.append((mean, scale))
    if not isinstance(n_features, int | np.integer):
        return None
    coef, intercept = final.coef_, final.intercept_
    if coef.dtype != np.float64:
        return None
    coef_t = coef.T if coef.ndim == 2 else coef

    def transform(x: np.ndarray) -> np.ndarray:
        for mean, scale in shifts:
            x = x - mean if mean is not None else x.copy()
            if scale is not None:
                x /= scale
        return x

    kind = type(final)
    if kind is LogisticRegression:
        classes = final.classes_

        def classify(x: np.ndarray) -> np.ndarray:
            scores = transform(x) @ coef_t + intercept
            if scores.ndim > 1 and scores.shape[1] == 1:
                scores = scores.reshape(-1)
            indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
            return classes.take(indices, axis=0)

        return classify, int(n_features)
    if kind in (LinearRegression, Ridge, Lasso, ElasticNet):

        def regress(x: np.ndarray) -> np.ndarray:
            return transform(x) @ coef_t + intercept

        return regress, int(n_features)
    return None


def _matches(model: Any, compiled: Compiled, n_features: int) -> bool:
    rng = np.random.default_rng(20261127)
    for n in (1, 7, 64):
        probe = rng.normal(size=(n, n_features)) * 3.0
        ours, theirs = compiled(probe), np.asarray(model.predict(probe))
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            return False
        if not np.array_equal(ours, theirs):
            return False
    return True
