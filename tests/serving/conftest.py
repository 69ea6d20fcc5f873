"""Model directories for every framework the server loads, built once per test session."""

from __future__ import annotations

import logging
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class LogWatch(logging.Handler):
    """Every record the server logs while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    logger = logging.getLogger("cloudserve.serving")
    logger.addHandler(watch)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(level)


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


def softmax_linear() -> Any:
    """softmax(Linear(6, 2)) with seeded weights: the TorchScript model most tests serve."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(N_FEATURES, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.linear(x), dim=1)

    torch.manual_seed(0)
    return Net()


@pytest.fixture(scope="session")
def torch_dir(model_root: Path) -> Path:
    pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    return save_torchscript(
        model_root / "torch", softmax_linear(), signature={"n_features": N_FEATURES}
    )


def save_torchscript(directory: Path, module: object, **manifest: object) -> Path:
    """A scripted module saved as a served model directory (``manifest``: extra fields)."""
    import torch

    directory.mkdir(parents=True)
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still widely shipped
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(directory / "model.pt"))
    write_manifest(directory, framework="pytorch", version="1", **manifest)
    return directory


@pytest.fixture(scope="session")
def torch_models(model_root: Path) -> dict[str, Path]:
    """TorchScript modules that declare no width, by what they do with a request's rows.

    ``linear``: softmax(Linear(6, 2)); ``conv``: Conv1d over rows shaped [N, 1, L] (any L >= 2);
    ``embedding``: token ids; ``checks``: its own ``ValueError`` for rows not 3 wide;
    ``broken``: raises on every call; ``singular``: inverts a singular weight matrix on every
    call (torch's own ``RuntimeError``, not about the rows).
    """
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (pip install torch==2.13.0)"
    )

    class Conv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 1, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).sum(dim=2)

    class Embedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(10, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embedding(x).sum(dim=1)

    class Checks(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] != 3:
                raise ValueError("rows need 3 columns: age, income, tenure")
            return x.sum(dim=1)

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("the weights file was truncated")

    class Singular(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(N_FEATURES, N_FEATURES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ torch.linalg.inv(self.weight)

    torch.manual_seed(0)
    root = model_root / "torch-dynamic"
    modules = {
        "linear": softmax_linear(),
        "conv": Conv(),
        "embedding": Embedding(),
        "checks": Checks(),
        "broken": Broken(),
        "singular": Singular(),
    }
    return {name: save_torchscript(root / name, m) for name, m in modules.items()}


def save_onnx(directory: Path, nodes: list, x: object, initializers: tuple = ()) -> Path:
    """A one-input, one-output ONNX graph (input ``x``, output ``y``) as a model directory."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime since 1.15 reads
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    return directory


@pytest.fixture(scope="session")
def onnx_models(model_root: Path) -> dict[str, Path]:
    """ONNX graphs by what they do with a request's rows.

    ``dynamic``: rows @ W (6x1) with the input declared ``["N", "F"]`` (no width);
    ``unshaped``: the same with no shape declared at all;
    ``sequence``: an input of rank 3 ``[N, C, L]``; ``bytes``: a ``uint8`` input;
    ``broken``: reshapes every batch to a constant shape it never fits (a fixed-width input);
    ``bad_index``: gathers index 9 from a 3-element constant (ONNX Runtime's
    ``InvalidArgument``, raised by a node, for every input).
    """
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from onnx import TensorProto, helper, numpy_helper

    def x(elem_type: int, shape: list | None) -> object:
        return helper.make_tensor_value_info("x", elem_type, shape)

    def const(name: str, values: np.ndarray) -> object:
        return numpy_helper.from_array(values, name)

    node = helper.make_node
    root = model_root / "onnx-graphs"
    return {
        "dynamic": save_onnx(
            root / "dynamic",
            [node("MatMul", ["x", "W"], ["y"])],
            x(TensorProto.FLOAT, ["N", "F"]),
            (const("W", np.ones((N_FEATURES, 1), np.float32)),),
        ),
        "unshaped": save_onnx(
            root / "unshaped",
            [node("MatMul", ["x", "W"], ["y"])],
            x(TensorProto.FLOAT, None),
            (const("W", np.ones((N_FEATURES, 1), np.float32)),),
        ),
        "sequence": save_onnx(
            root / "sequence",
            [node("Identity", ["x"], ["y"])],
            x(TensorProto.FLOAT, ["N", "C", "L"]),
        ),
        "bytes": save_onnx(
            root / "bytes",
            [node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
            x(TensorProto.UINT8, ["N", N_FEATURES]),
        ),
        "broken": save_onnx(
            root / "broken",
            [node("Reshape", ["x", "S"], ["y"])],
            x(TensorProto.FLOAT, ["N", N_FEATURES]),
            (const("S", np.array([7, 5], np.int64)),),
        ),
        "bad_index": save_onnx(
            root / "bad_index",
            [node("Gather", ["D", "I"], ["g"]), node("Mul", ["x", "g"], ["y"])],
            x(TensorProto.FLOAT, ["N", "F"]),
            (const("D", np.ones(3, np.float32)), const("I", np.array([9], np.int64))),
        ),
    }


@pytest.fixture(scope="session")
def custom_dir(model_root: Path) -> Path:
    return make_custom(model_root / "custom")


@pytest.fixture(scope="session", params=["sklearn", "xgboost", "onnx", "custom", "torch"])
def any_model_dir(request: pytest.FixtureRequest) -> Path:
    """Each framework's model directory in turn."""
    return request.getfixturevalue(f"{request.param}_dir")
