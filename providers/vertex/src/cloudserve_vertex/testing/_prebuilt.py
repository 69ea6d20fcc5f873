"""The fake's prebuilt prediction containers: Google's predictor steps, not cloudserve's runtime.

Vertex's prebuilt scikit-learn and XGBoost containers run Google's prediction code. Its steps,
as the Vertex AI SDK's predictors write them (googleapis/python-aiplatform,
``google/cloud/aiplatform/prediction/sklearn/predictor.py`` and ``…/xgboost/predictor.py``):

- load: from the artifact root, scikit-learn ``model.joblib`` (``joblib.load``) else
  ``model.pkl`` (``pickle.load``); XGBoost ``model.bst`` (``xgb.Booster(model_file=…)``) else
  ``model.joblib`` / ``model.pkl``; any other file name fails the load;
- preprocess: ``np.asarray(instances)`` (XGBoost: ``xgb.DMatrix`` of it) — ``parameters`` are
  not read;
- predict: ``model.predict(...)``; postprocess: ``{"predictions": result.tolist()}``.

The container's library version matters: a model written by a newer scikit-learn than the
image's, or an XGBoost 3 model in an XGBoost 2.x image, is refused here at load (on Vertex it
fails to unpickle, or — XGBoost 3's vector ``base_score`` — predicts wrongly without an error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from cloudserve_vertex.testing._http import ApiError

__all__ = ["PrebuiltPredictor", "prebuilt_of"]

_IMAGE = re.compile(r"/vertex-ai/prediction/(sklearn|xgboost)-cpu\.(\d+)-(\d+):latest$")


def prebuilt_of(image: str) -> tuple[str, tuple[int, int]] | None:
    """``("sklearn", (1, 5))`` for a prebuilt prediction image URI, else None."""
    m = _IMAGE.search(image)
    return (m[1], (int(m[2]), int(m[3]))) if m else None


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = re.findall(r"\d+", text)[:2]
    return int(major), int(minor)


class PrebuiltPredictor:
    """One prebuilt container serving the artifact in ``directory``."""

    def __init__(self, directory: Path, framework: str, version: tuple[int, int]):
        self.framework = framework
        self.version = version
        self.booster = False
        label = f"{framework}-cpu.{version[0]}-{version[1]}"
        if framework == "sklearn":
            self.model = self._load_pickled(directory, ("model.joblib", "model.pkl"), label)
        else:
            self.model = self._load_xgboost(directory, label)

    def _load_pickled(self, directory: Path, names: tuple[str, ...], label: str) -> Any:
        from cloudserve_vertex._packaging import _load_pickle

        for name in names:
            path = directory / name
            if path.exists():
                model, written = _load_pickle(path)
                if self.framework == "sklearn":
                    import sklearn

                    writer = _version_tuple(written or sklearn.__version__)
                    if writer > self.version:
                        raise ApiError(
                            400,
                            f"Model server never became ready: the {label} container cannot "
                            f"load {name}, pickled by scikit-learn {writer[0]}.{writer[1]}",
                        )
                return model
        raise ApiError(
            400,
            f"Model server never became ready: the {label} container found none of "
            f"{', '.join(names)} at the artifact root",
        )

    def _load_xgboost(self, directory: Path, label: str) -> Any:
        import xgboost as xgb

        from cloudserve_vertex._packaging import xgboost_file_version

        bst = directory / "model.bst"
        if not bst.exists():
            return self._load_pickled(directory, ("model.joblib", "model.pkl"), label)
        written = xgboost_file_version(bst)
        if written and _version_tuple(written) >= (3, 0) > self.version:
            raise ApiError(
                400,
                f"the {label} container would read this XGBoost {written} model.bst wrongly "
                "(vector base_score): refusing to serve it",
            )
        self.booster = True
        return xgb.Booster(model_file=str(bst))

    def predict(self, instances: list[Any], parameters: Any = None) -> list[Any]:
        """``np.asarray(instances)`` → ``model.predict`` → ``.tolist()``; parameters ignored."""
        try:
            x = np.asarray(instances)
            if self.booster:
                import xgboost as xgb

                return list(self.model.predict(xgb.DMatrix(x)).tolist())
            return list(self.model.predict(x).tolist())
        except Exception as exc:  # the container answers the error text with a 400
            raise ApiError(400, f"{type(exc).__name__}: {exc}") from exc
