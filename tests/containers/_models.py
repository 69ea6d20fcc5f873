"""Two models per framework with the same environment and different answers.

The image is built with the ``baked`` one; the cloud hands over the ``handed`` one, whose answers
must come back.
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np

from cloudserve.packaging import write_manifest

N_FEATURES = 4
ROWS = np.random.default_rng(7).normal(size=(5, N_FEATURES)).round(3).tolist()

SUM_PREDICTOR = textwrap.dedent(
    """
    from pathlib import Path

    from cloudserve.serving import Predictor


    class WeightedSum(Predictor):
        def load(self, path: Path) -> None:
            self.weight = float((path / "weight.txt").read_text())

        def predict(self, batch):
            return [round(self.weight * sum(row), 6) for row in batch]
    """
)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, N_FEATURES))
    sign = 1 if seed % 2 == 0 else -1  # the two models disagree on most rows
    return x, (sign * (x[:, 0] + 0.5 * x[:, 1]) > 0).astype(int)


def sklearn_model(directory: Path, seed: int) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _data(seed)
    directory.mkdir(parents=True)
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), directory / "model.joblib"
    )
    write_manifest(directory, framework="sklearn", version=str(seed), name="churn")
    return directory


def xgboost_model(directory: Path, seed: int) -> Path:
    import xgboost as xgb

    x, y = _data(seed)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(x, label=y), 5
    )
    directory.mkdir(parents=True)
    booster.save_model(str(directory / "model.ubj"))
    write_manifest(directory, framework="xgboost", version=str(seed), name="churn")
    return directory


def onnx_model(directory: Path, seed: int) -> Path:
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    x, _ = _data(seed)
    weights = np.arange(1, N_FEATURES + 1) * (1 if seed % 2 == 0 else -1)
    onx = skl2onnx.convert_sklearn(
        LinearRegression().fit(x, x @ weights),
        initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
    )
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    write_manifest(directory, framework="onnx", version=str(seed), name="churn")
    return directory


def torch_model(directory: Path, seed: int) -> Path:
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(N_FEATURES, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.linear(x), dim=1)

    torch.manual_seed(seed)
    directory.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Net()), str(directory / "model.pt"))
    write_manifest(
        directory,
        framework="pytorch",
        version=str(seed),
        name="churn",
        signature={"n_features": N_FEATURES, "dtype": "float32"},
    )
    return directory


def custom_model(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "weighted_sum.py").write_text(SUM_PREDICTOR)
    (directory / "weight.txt").write_text(str(seed + 1))
    write_manifest(
        directory,
        framework="custom",
        version=str(seed),
        name="churn",
        predictor="weighted_sum:WeightedSum",
    )
    return directory


def xgb_classifier_model(directory: Path, seed: int) -> Path:
    """A joblib-pickled ``XGBClassifier``: the pickle imports xgboost, the framework is sklearn."""
    import joblib
    import xgboost as xgb

    directory.mkdir(parents=True)
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2, random_state=seed).fit(*_data(seed))
    joblib.dump(model, directory / "model.joblib")
    return directory


def lgbm_classifier_model(directory: Path, seed: int) -> Path:
    """A joblib-pickled ``LGBMClassifier``: the pickle imports lightgbm."""
    import joblib
    import lightgbm as lgb

    directory.mkdir(parents=True)
    model = lgb.LGBMClassifier(n_estimators=5, min_child_samples=5, random_state=seed, verbose=-1)
    joblib.dump(model.fit(*_data(seed)), directory / "model.joblib")
    return directory


MAKERS = {
    "sklearn": sklearn_model,
    "xgboost": xgboost_model,
    "onnx": onnx_model,
    "pytorch": torch_model,
    "custom": custom_model,
    "xgb-classifier": xgb_classifier_model,
    "lgbm-classifier": lgbm_classifier_model,
}
