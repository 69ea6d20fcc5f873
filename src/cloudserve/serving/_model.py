"""Model loaders behind one interface: :func:`load_model` returns a :class:`LoadedModel`.

Each framework's library is imported only when a model of that framework is loaded, so this
module is cheap to import and needs none of the server's dependencies.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cloudserve import _handler, codecs
from cloudserve.errors import InvalidRequest
from cloudserve.packaging import Manifest, custom_manifest_hint, find_artifact, read_manifest
from cloudserve.serving._input_errors import onnx_rejection, torch_rejection
from cloudserve.serving._predictor import Predictor

__all__ = ["LoadedModel", "concat_rows", "load_model"]

_EXTRAS = {
    "sklearn": "cloudserve[sklearn]",
    "xgboost": "cloudserve[xgboost]",
    "onnx": "cloudserve[onnx]",
    "pytorch": "cloudserve[torch]",
}
_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class ModelOutputError(RuntimeError):
    """The model ran but answered something the server cannot send back (a 500)."""


class LoadedModel:
    """A model ready to predict.

    ``predict(instances)`` takes a list of rows, a list of dicts (keyed by feature name) or a
    numpy array and returns a JSON-able list with one output per input row. The server splits
    that into :meth:`decode` (a request body, by the rules of :mod:`cloudserve._handler`),
    :meth:`prepare` (per request: validate and convert, raising ``InvalidRequest``), :meth:`run`
    (per batch, in a worker thread) and :meth:`finish` (per request).

    Input the model itself rejects — a ``ValueError`` or ``TypeError`` from its validation (NaN
    where it takes none, a wrong width) — is an ``InvalidRequest`` with the model's message
    (code ``model_rejected_input``); anything else it raises is the server's fault.
    """

    framework: str = ""
    #: keys of ``parameters`` this kind of model reads (``None``: the model checks them itself)
    parameter_keys: frozenset[str] | None = frozenset()
    #: whether rows may hold text (categorical columns) rather than numbers only
    takes_text: bool = False

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self.name = manifest.name or (path.name if path.is_dir() else path.stem) or "model"
        sig = manifest.signature
        self.n_features: int | None = sig.n_features
        self.feature_names: list[str] | None = sig.feature_names
        self.dtype: str = sig.dtype
        self.input_name: str = sig.input_name or "input"

    @property
    def version(self) -> str:
        """The model version from the manifest."""
        return self.manifest.version

    def predict(self, instances: Any, parameters: dict[str, Any] | None = None) -> list[Any]:
        """One JSON-able output per input row."""
        rows = self.prepare(instances)
        return self.finish(self.run(rows, parameters or {}))

    def decode(self, body: bytes, content_type: str) -> tuple[Any, dict[str, Any]]:
        """A request body as ``(instances, parameters)``, named columns in this model's order."""
        return codecs.decode_request(body, content_type, self.feature_names)

    def prepare(self, instances: Any) -> Any:
        """Validate one request's instances and convert them to the model's input rows."""
        array = self._to_array(instances)
        if array.ndim == 1:  # one row of n_features values, else one value per row
            single = self.n_features is not None and self.n_features > 1
            array = array.reshape(1, -1) if single else array.reshape(-1, 1)
        if self.n_features is not None and array.shape[1] != self.n_features:
            raise InvalidRequest(
                f"each row needs {self.n_features} features, got {array.shape[1]}",
                code="wrong_shape",
            )
        return array

    def run(self, rows: Any, parameters: dict[str, Any]) -> list[Any]:
        """Predict a batch of prepared rows; one output per row."""
        self._check_parameters(parameters)
        try:
            outputs = self._predict(rows, parameters)
        except _handler.BadInput as exc:
            raise codecs.as_error(exc) from exc
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f"the model rejected the input: {exc}", code="model_rejected_input"
            ) from exc
        result = outputs.tolist() if isinstance(outputs, np.ndarray) else list(outputs)
        if len(result) != len(rows):
            raise ModelOutputError(f"the model returned {len(result)} outputs for {len(rows)} rows")
        return result

    def finish(self, outputs: list[Any]) -> list[Any]:
        """Turn one request's slice of the batch outputs into the response values."""
        return outputs

    def _predict(self, rows: Any, parameters: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _check_parameters(self, parameters: Any) -> None:
        if not isinstance(parameters, dict):
            raise InvalidRequest("'parameters' must be a JSON object", code="bad_parameters")
        if self.parameter_keys is None:
            return
        unknown = sorted(set(parameters) - self.parameter_keys)
        if unknown:
            raise InvalidRequest(
                f"unknown parameter(s) {unknown}; this {self.framework} model takes "
                f"{sorted(self.parameter_keys) or 'none'}",
                code="bad_parameters",
            )

    def _to_array(self, instances: Any) -> np.ndarray:
        if isinstance(instances, np.ndarray):
            array = instances
        elif isinstance(instances, list | tuple):  # in-process callers: rows or records
            try:
                array = _handler.decode_document(list(instances), self.feature_names)[0]
            except _handler.BadInput as exc:
                raise codecs.as_error(exc) from exc
        else:
            raise InvalidRequest(
                f"instances must be a list of rows, got {type(instances).__name__}",
                code="bad_shape",
            )
        if len(array) == 0:
            raise InvalidRequest("the request holds no rows", code="empty_input")
        if array.dtype == object and not (self.takes_text or self.dtype == "object"):
            text = next(v for v in array.ravel() if isinstance(v, str))
            raise InvalidRequest(
                f"this {self.framework or 'model'} model takes numbers only, got text {text!r:.40}",
                code="bad_value",
            )
        if array.dtype != object:
            try:
                array = array.astype(self.dtype, copy=False)
            except (TypeError, ValueError, OverflowError) as exc:
                raise InvalidRequest(
                    f"rows must be numbers ({self.dtype}): {exc}", code="bad_value"
                ) from exc
        if array.ndim > 2 and self.framework != "pytorch":
            raise InvalidRequest(
                f"rows must be flat lists of features, got shape {list(array.shape)}",
                code="wrong_shape",
            )
        return array


class SklearnModel(LoadedModel):
    """scikit-learn estimators and pipelines from joblib/pickle (trusted files only) or skops.

    Predictions go through the handler template (:func:`cloudserve._handler.predict`), as in the
    clouds' containers: ``parameters={"method": "predict_proba"}`` (or ``predict_log_proba``,
    ``decision_function``, ``transform``) picks another method, and a model fitted on a
    DataFrame gets one with its column names and per-column dtypes.
    """

    framework = "sklearn"
    parameter_keys = frozenset({"method"})
    takes_text = True

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        artifact = find_artifact(path, manifest)
        if artifact.suffix == ".skops":
            import skops.io

            trusted = (
                list(manifest.model_extra.get("trusted_types", [])) if manifest.model_extra else []
            )
            self.model = skops.io.load(artifact, trusted=trusted or None)
        else:
            self.model = _handler.load_model(str(artifact), "sklearn")
        if self.n_features is None:
            self.n_features = getattr(self.model, "n_features_in_", None)
        self.feature_names = _handler.model_feature_names(
            self.model, {"feature_names": self.feature_names}
        )
        from cloudserve.serving._linear import compile_predict

        # the default method of a linear pipeline, without scikit-learn's per-call checks
        # (same answers, checked on probe rows here; see _linear.py)
        self._compiled = compile_predict(self.model)

    def _predict(self, rows: np.ndarray, parameters: dict[str, Any]) -> Any:
        compiled = self._compiled
        if (
            compiled is not None
            and not parameters
            and isinstance(rows, np.ndarray)
            and rows.dtype == np.float64
            and rows.ndim == 2
            and rows.shape[1] == compiled[1]
            and np.isfinite(rows).all()
        ):
            return compiled[0](rows)
        import sklearn

        # scikit-learn re-checks on every call what cannot change between calls: the
        # estimator's own parameters (validated when it was fitted) and, for numbers, whether
        # they are finite. The first is skipped always; the second only when this batch was
        # just found finite here (one vectorised pass), so NaN still meets the model's own
        # check and message. Same answers, ~10% less time per model call.
        finite = isinstance(rows, np.ndarray) and rows.dtype.kind == "f" and np.isfinite(rows).all()
        with sklearn.config_context(assume_finite=bool(finite), skip_parameter_validation=True):
            return _handler.predict(self.model, rows, parameters)


class XGBoostModel(LoadedModel):
    """An XGBoost model saved in its native JSON, UBJ or ``.bst`` format (no pickle involved).

    A model saved by an ``XGBClassifier`` (``save_model``) is served as that classifier: labels
    from ``predict``, probabilities with ``parameters={"method": "predict_proba"}``; a plain
    ``Booster`` returns its transformed scores. ``parameters={"output_margin": true}`` returns
    raw margins instead. Other parameters are a 400.
    """

    framework = "xgboost"
    parameter_keys = frozenset({"method", "output_margin"})

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        self.model = _handler.load_model(str(find_artifact(path, manifest)), "xgboost")
        booster = self.model if type(self.model).__name__ == "Booster" else self.model.get_booster()
        if self.n_features is None:
            self.n_features = booster.num_features()
        if self.feature_names is None and booster.feature_names:
            self.feature_names = list(booster.feature_names)

    def _predict(self, rows: np.ndarray, parameters: dict[str, Any]) -> Any:
        return _handler.predict(self.model, rows, parameters)


class OnnxModel(LoadedModel):
    """An ONNX graph run by ONNX Runtime on the CPU.

    The first graph input takes the rows. The first output is returned unless
    ``parameters={"output": NAME}`` names another (e.g. a classifier's probabilities). Rows the
    graph cannot take are a 400 in ONNX Runtime's words (see :mod:`._input_errors`).
    """

    framework = "onnx"
    parameter_keys = frozenset({"output"})

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Batches are small and a request waits on one at a time: extra threads only add
        # hand-off cost, and replicas scale with --workers instead.
        options.intra_op_num_threads = (
            int(manifest.model_extra.get("onnx_threads", 1)) if manifest.model_extra else 1
        )
        self.session = ort.InferenceSession(
            str(find_artifact(path, manifest)), options, providers=["CPUExecutionProvider"]
        )
        first = self.session.get_inputs()[0]
        self.input_name = manifest.signature.input_name or first.name
        self.dtype = _ONNX_DTYPES.get(first.type, self.dtype)
        shape = first.shape
        if self.n_features is None and len(shape) == 2 and isinstance(shape[1], int):
            self.n_features = shape[1]
        # a graph input of unknown rank ([]) or with an open row dimension lets rows of any
        # width reach the nodes (see _input_errors)
        self._width_checked = bool(shape) and all(isinstance(d, int) for d in shape[1:])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _predict(self, rows: np.ndarray, parameters: dict[str, Any]) -> Any:
        name = parameters.get("output", self.outputs[0])
        if name not in self.outputs:
            raise InvalidRequest(
                f"output '{name}' is not in the graph; outputs are {self.outputs}",
                code="bad_parameters",
            )
        try:
            return self.session.run([name], {self.input_name: rows})[0]
        except Exception as exc:
            rejection = onnx_rejection(exc, width_checked=self._width_checked)
            if rejection is None:
                raise
            raise rejection from exc


class TorchScriptModel(LoadedModel):
    """A TorchScript module (``torch.jit.save``) run on the CPU under ``inference_mode``.

    Rows the module cannot take (torch's errors about shapes, sizes and dtypes, or its own
    ``ValueError``) are a 400 in torch's words (see :mod:`._input_errors`).
    """

    framework = "pytorch"

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        import torch

        self._torch = torch
        with warnings.catch_warnings():  # TorchScript is deprecated upstream yet still served
            warnings.simplefilter("ignore", DeprecationWarning)
            artifact = find_artifact(path, manifest)
            try:
                self.module = torch.jit.load(str(artifact), map_location="cpu")
            except RuntimeError as exc:
                raise InvalidRequest(
                    f"{artifact.name} is not a TorchScript module (a torch.save checkpoint or "
                    "state dict cannot be served: it needs the model's Python class). Export it "
                    "with torch.jit.save(torch.jit.script(model), 'model.pt') or "
                    "torch.jit.trace(model, example_input)",
                    code="not_torchscript",
                ) from exc
        self.module.eval()
        if manifest.signature.dtype == "float64":  # torch models default to float32 weights
            self.dtype = "float32"

    def _predict(self, rows: np.ndarray, parameters: dict[str, Any]) -> Any:
        with self._torch.inference_mode():
            try:
                out = self.module(self._torch.from_numpy(np.ascontiguousarray(rows)))
            except Exception as exc:
                rejection = torch_rejection(exc)
                if rejection is None:
                    raise
                raise rejection from exc
        return out.numpy()


class CustomModel(LoadedModel):
    """A :class:`~cloudserve.serving.Predictor` subclass named by the manifest's ``predictor``."""

    framework = "custom"
    parameter_keys = None

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        if not manifest.predictor or ":" not in manifest.predictor:
            raise InvalidRequest(custom_manifest_hint(path), code="bad_manifest")
        module_name, class_name = manifest.predictor.split(":", 1)
        cls = getattr(_import_from(path, module_name), class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Predictor)):
            raise InvalidRequest(
                f"{manifest.predictor} is not a cloudserve.serving.Predictor subclass",
                code="bad_manifest",
            )
        self.predictor: Predictor = cls()
        self.predictor.load(path)

    def decode(self, body: bytes, content_type: str) -> tuple[Any, dict[str, Any]]:
        # a predictor reads JSON rows as they were sent (records keep their keys)
        return codecs.decode_request(body, content_type, tabular=False)

    def prepare(self, instances: Any) -> Any:
        rows = self.predictor.preprocess(instances)
        if not isinstance(rows, list | np.ndarray):
            rows = list(rows)
        if len(rows) == 0:
            raise InvalidRequest("the request holds no rows", code="empty_input")
        return rows

    def _predict(self, rows: Any, parameters: dict[str, Any]) -> Any:
        return self.predictor.predict(rows)

    def finish(self, outputs: list[Any]) -> list[Any]:
        return list(self.predictor.postprocess(outputs))


def _import_from(directory: Path, module_name: str) -> Any:
    file = directory / (module_name.replace(".", "/") + ".py")
    if not file.exists():
        raise InvalidRequest(f"predictor module {file} does not exist", code="bad_manifest")
    # A unique name per directory: two model versions with the same module file can coexist.
    unique = f"cloudserve_predictor_{abs(hash(str(file.resolve())))}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module


_LOADERS: dict[str, type[LoadedModel]] = {
    "sklearn": SklearnModel,
    "xgboost": XGBoostModel,
    "onnx": OnnxModel,
    "pytorch": TorchScriptModel,
    "custom": CustomModel,
}


def load_model(path: str | Path) -> LoadedModel:
    """Load the model in a directory (or a single model file) for prediction.

    The framework comes from ``cloudserve.json``, an MLflow ``MLmodel`` file, or the files
    present. Raises ``InvalidRequest`` for a directory with nothing servable, and
    ``ImportError`` naming the extra to install when the framework's library is missing.
    """
    model_path = Path(path)
    manifest = read_manifest(model_path)
    loader = _LOADERS[manifest.framework]
    try:
        return loader(model_path, manifest)
    except ModuleNotFoundError as exc:
        raise ImportError(_missing_module_message(manifest.framework, exc.name or "")) from exc


# The libraries each loader imports itself; any other missing module was imported by the model.
_LOADER_LIBRARIES = {
    "sklearn": ("sklearn", "joblib", "skops"),
    "xgboost": ("xgboost",),
    "onnx": ("onnxruntime",),
    "pytorch": ("torch",),
}


def _missing_module_message(framework: str, name: str) -> str:
    top = name.partition(".")[0]
    if top in _LOADER_LIBRARIES.get(framework, ()):
        if importlib.util.find_spec(top) is None:
            extra = _EXTRAS.get(framework, "the framework's package")
            return f"serving a {framework} model needs {top}: pip install '{extra}'"
        return (
            f"the model file imports {name}, which the installed {top} does not have: it was "
            f"saved with another {top} version; install the version it was saved with"
        )
    return (
        f"the model file imports the module '{name}', which is not installed here; install the "
        "package that provides it (the environment that saved the model had it)"
    )


def concat_rows(parts: Sequence[Any]) -> Any:
    """Join the prepared rows of several requests into one batch."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    joined: list[Any] = []
    for p in parts:
        joined.extend(p.tolist() if isinstance(p, np.ndarray) else p)
    return joined
