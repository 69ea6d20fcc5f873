"""Shared monitoring maths: latency summaries and drift (PSI and Kolmogorov–Smirnov).

Every provider computes drift with this code, from the feature rows its data capture kept, so
a drift report means the same thing on every cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cloudserve.errors import InvalidRequest
from cloudserve.resources import DriftReport, FeatureDrift

__all__ = ["drift_report", "ks_test", "latency_percentiles", "load_baseline", "psi"]

_EPS = 1e-6


def latency_percentiles(
    latencies_ms: Sequence[float],
) -> tuple[float | None, float | None, float | None]:
    """(p50, p95, p99) of the latencies, or Nones when there are none."""
    if len(latencies_ms) == 0:
        return None, None, None
    p50, p95, p99 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def psi(baseline: np.ndarray, current: np.ndarray, *, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``baseline``.

    Bins are the baseline's deciles (so each holds ~10 % of it), open at both ends; empty bins
    get a small floor so the index stays finite. Rule of thumb: < 0.1 stable, 0.1–0.2 moderate,
    > 0.2 shifted.
    """
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1)[1:-1]))
    b = np.bincount(np.searchsorted(edges, baseline, side="right"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    bp = np.maximum(b / max(len(baseline), 1), _EPS)
    cp = np.maximum(c / max(len(current), 1), _EPS)
    return float(np.sum((cp - bp) * np.log(cp / bp)))


def ks_test(baseline: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and p-value (scipy)."""
    from scipy.stats import ks_2samp

    res = ks_2samp(baseline, current)
    return float(res.statistic), float(res.pvalue)


def load_baseline(
    baseline: str | Path | Any, features: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The baseline as a 2-D float array and its feature names.

    Accepts a CSV or Parquet path, a pandas DataFrame, an array / list of rows, or a registered
    model version whose lineage holds a dataset profile (``lineage["baseline"]``, a sample of its
    training data kept by the registry).
    """
    profile = _profile_path(baseline)
    if profile is not None:
        baseline = profile
    if isinstance(baseline, str | Path):
        path = Path(baseline)
        if not path.exists():
            raise InvalidRequest(f"baseline file not found: {path}")
        import pandas as pd

        frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
        baseline = frame
    if hasattr(baseline, "columns"):
        frame = baseline.select_dtypes("number")
        cols = features or [str(c) for c in frame.columns]
        return frame[cols].to_numpy(dtype=float), cols
    arr = np.asarray(baseline, dtype=float)
    if arr.ndim != 2:
        raise InvalidRequest("baseline must be a table of rows × features")
    return arr, features or [f"f{i}" for i in range(arr.shape[1])]


def _profile_path(baseline: Any) -> str | None:
    """The dataset profile of a registered model version, if ``baseline`` is one."""
    lineage = getattr(baseline, "lineage", None)
    if not isinstance(lineage, dict) or not hasattr(baseline, "version"):
        return None
    path = lineage.get("baseline")
    if not path:
        raise InvalidRequest(
            f"model {baseline.name}:{baseline.version} has no dataset profile; register it with "
            "lineage={'training_data': 'train.csv'} or pass a baseline file"
        )
    return str(path)


def _label(baseline: Any) -> str:
    if isinstance(baseline, str | Path):
        return str(baseline)
    if _profile_path(baseline) is not None:
        return f"model {baseline.name}:{baseline.version} training profile"
    return type(baseline).__name__


def drift_report(
    baseline: str | Path | Any,
    current_rows: Sequence[Sequence[float]],
    *,
    endpoint: str,
    provider: str,
    features: list[str] | None = None,
    psi_threshold: float = 0.2,
    ks_pvalue_threshold: float = 0.01,
    min_samples: int = 30,
) -> DriftReport:
    """Compare captured rows with the baseline, feature by feature.

    A feature is flagged when its PSI exceeds ``psi_threshold`` *and* the KS test rejects
    "same distribution" at ``ks_pvalue_threshold`` — both, so that large samples do not flag
    tiny, harmless differences and small samples do not flag noise.
    """
    base, names = load_baseline(baseline, features)
    if len(current_rows) < min_samples:
        raise InvalidRequest(
            f"only {len(current_rows)} captured rows for {endpoint}; drift needs at least "
            f"{min_samples} (is data capture on, and has the endpoint had traffic?)"
        )
    cur = np.asarray(current_rows, dtype=float)
    if cur.ndim != 2 or cur.shape[1] != base.shape[1]:
        raise InvalidRequest(
            f"captured rows have {cur.shape[-1] if cur.ndim == 2 else '?'} features, "
            f"the baseline has {base.shape[1]}"
        )
    out = []
    for i, name in enumerate(names):
        p = psi(base[:, i], cur[:, i])
        ks, pvalue = ks_test(base[:, i], cur[:, i])
        out.append(
            FeatureDrift(
                feature=name,
                psi=p,
                ks_statistic=ks,
                ks_pvalue=pvalue,
                flagged=p > psi_threshold and pvalue < ks_pvalue_threshold,
                baseline_mean=float(base[:, i].mean()),
                current_mean=float(cur[:, i].mean()),
            )
        )
    return DriftReport(
        endpoint=endpoint,
        provider=provider,
        baseline=_label(baseline),
        sample_size=len(cur),
        baseline_size=len(base),
        features=out,
        psi_threshold=psi_threshold,
        ks_pvalue_threshold=ks_pvalue_threshold,
    )
