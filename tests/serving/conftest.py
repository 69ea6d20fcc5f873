"""Model directories for every framework the server loads, built once per test session."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from cloudserve.packaging import write_manifest

N_FEATURES = 6
ROWS = np.random.default_rng(1).normal(size=(4, N_FEATURES)).round(4).tolist()

CUSTOM_PREDICTOR = textwrap.dedent(
    '''
    """A test predictor: sums each row; a row starting with 666 crashes it; sleeps if asked."""
    import time
    from pathlib import Path

    from cloudserve.errors import InvalidRequest
    from cloudserve.serving import Predictor


    class SumPredictor(Predictor):
        def load(self, path: Path) -> None:
            self.offset = float((path / "offset.txt").read_text())
            self.delay = float((path / "delay.txt").read_text()) if (path / "delay.txt").exists() else 0.0
            self.batches = []

        def preprocess(self, instances):
            if not isinstance(instances, list):
                instances = instances.tolist()
            for row in instances:
                if not isinstance(row, list):
                    raise InvalidRequest("each row must be a list of numbers", code="wrong_shape")
            return instances

        def predict(self, batch):
            self.batches.append(len(batch))
            if self.delay:
                time.sleep(self.delay)
            if any(row and row[0] == 666 for row in batch):
                raise RuntimeError("the model cannot handle 666")
            return [sum(row) + self.offset for row in batch]

        def postprocess(self, outputs):
            return [round(o, 6) for o in outputs]
    '''
)


def train_data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, N_FEATURES))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def make_custom(directory: Path, *, delay: float = 0.0, version: str = "1") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sum_predictor.py").write_text(CUSTOM_PREDICTOR)
    (directory / "offset.txt").write_text("0.5")
    if delay:
        (directory / "delay.txt").write_text(str(delay))
    write_manifest(
        directory, framework="custom", version=version, predictor="sum_predictor:SumPredictor"
    )
    return directory


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def sklearn_dir(model_root: Path) -> Path:
    pytest.importorskip("sklearn", reason="the sklearn extra is not installed")
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = train_data()
    directory = model_root / "sk"
    directory.mkdir()
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), directory / "model.joblib"
    )
    write_manifest(directory, framework="sklearn", version="7", name="churn")
    return directory


@pytest.fixture(scope="session")
def xgboost_dir(model_root: Path) -> Path:
    xgb = pytest.importorskip("xgboost", reason="the xgboost extra is not installed")
    x, y = train_data()
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(x, label=y), 10
    )
    directory = model_root / "xgb"
    directory.mkdir()
    booster.save_model(str(directory / "model.ubj"))
    write_manifest(directory, framework="xgboost", version="2")
    return directory


@pytest.fixture(scope="session")
def onnx_dir(model_root: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx (test dependency) is not installed")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    x, _ = train_data()
    reg = LinearRegression().fit(x, x @ np.arange(1, N_FEATURES + 1))
    onx = skl2onnx.convert_sklearn(
        reg, initial_types=[("features", FloatTensorType([None, N_FEATURES]))]
    )
    directory = model_root / "onnx"
    directory.mkdir()
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    return directory  # no manifest: the framework is detected from the .onnx file


@pytest.fixture(scope="session")
def torch_dir(model_root: Path) -> Path:
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (pip install torch==2.13.0)"
    )

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(N_FEATURES, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.linear(x), dim=1)

    torch.manual_seed(0)
    directory = model_root / "torch"
    directory.mkdir()
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still widely shipped
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Net()), str(directory / "model.pt"))
    write_manifest(
        directory, framework="pytorch", version="1", signature={"n_features": N_FEATURES}
    )
    return directory


@pytest.fixture(scope="session")
def custom_dir(model_root: Path) -> Path:
    return make_custom(model_root / "custom")


@pytest.fixture(scope="session", params=["sklearn", "xgboost", "onnx", "custom", "torch"])
def any_model_dir(request: pytest.FixtureRequest) -> Path:
    """Each framework's model directory in turn."""
    return request.getfixturevalue(f"{request.param}_dir")
