"""Environment capture for ``cloudserve build-image``: the exact packages an artifact needs.

A pickle names every class and function it needs by module (``xgboost.sklearn.XGBClassifier``
inside a joblib-pickled estimator, ``lightgbm.sklearn.LGBMClassifier``, a scikit-learn pipeline's
``scipy`` pieces). :func:`pickle_modules` reads those names from the pickle's opcodes **without
importing anything the pickle names**: every class resolves to an inert stand-in, so no code from
the file runs. Only the data types joblib needs to step over its inline arrays (``numpy.dtype``,
joblib's array wrapper) are the real ones. Each module is then mapped to the distribution that
installs it and pinned to the version installed here, the one that wrote the pickle.

An MLflow model ships its own pins (``requirements.txt`` beside ``MLmodel``): those are used as
they are.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import Manifest, find_artifact

__all__ = ["capture_requirements", "mlflow_requirements", "pickle_modules", "pin"]

_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# What joblib's reader must really build to find where each inline array's bytes end.
_DATA_TYPES = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("joblib.numpy_pickle", "NDArrayWrapper"),
    ("_codecs", "encode"),  # protocol 2 spells bytes this way (array data)
}


class _Stand_in:
    """Takes any construction, state or items a pickle gives it, and does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stand_in:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> _Stand_in:
        return _Stand_in()

    def __setstate__(self, state: Any) -> None:
        return None

    def __setitem__(self, key: Any, value: Any) -> None:
        return None

    def append(self, item: Any) -> None:
        """Lists pickled as ``APPENDS`` on a stand-in."""

    def extend(self, items: Iterable[Any]) -> None:
        """Lists pickled as ``APPENDS`` on a stand-in."""


class _Recording:
    """A ``find_class`` that records module names and hands back stand-ins."""

    modules: set[str]

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        if (module, name) in _DATA_TYPES:
            return super().find_class(module, name)  # type: ignore[misc]
        return type(name, (_Stand_in,), {"__module__": module})


class _PlainRecorder(_Recording, pickle.Unpickler):
    def __init__(self, file: Any):
        super().__init__(file)
        self.modules = set()


def _joblib_modules(path: Path) -> set[str]:
    from joblib import numpy_pickle as jp

    class _JoblibRecorder(_Recording, jp.NumpyUnpickler):
        def __init__(self, filename: str, fh: Any):
            jp.NumpyUnpickler.__init__(self, filename, fh, False)
            self.modules = set()

    # joblib decompresses (zlib, gzip, lz4, …) by magic number in this helper; its name changed
    # across releases.
    opener = getattr(jp, "_validate_fileobject_and_memmap", None) or jp._read_fileobject
    with path.open("rb") as raw, opener(raw, str(path), None) as opened:
        fh = opened[0] if isinstance(opened, tuple) else opened
        recorder = _JoblibRecorder(str(path), fh)
        recorder.load()
    return recorder.modules


def pickle_modules(path: str | Path) -> set[str]:
    """Every module a pickle (plain or joblib) names, without importing any of them."""
    file = Path(path)
    try:
        try:
            return _joblib_modules(file)
        except ModuleNotFoundError as exc:
            if exc.name != "joblib":
                raise
        with file.open("rb") as fh:
            recorder = _PlainRecorder(fh)
            recorder.load()
        return recorder.modules
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidRequest(
            f"cannot read the pickle {file}: {type(exc).__name__}: {exc}", code="bad_model"
        ) from exc


def pin(dist: str) -> str:
    """``dist==VERSION`` as installed here, or the bare name when it is not installed.

    A local version label (``2.13.0+cpu``) is dropped: ``==2.13.0`` still matches that file, and
    which build (CPU or CUDA) is found is up to the pip configuration of the building machine.
    """
    try:
        return f"{dist}=={metadata.version(dist).split('+')[0]}"
    except metadata.PackageNotFoundError:
        return dist


def _distributions(modules: Iterable[str], artifact: Path) -> list[str]:
    owners = metadata.packages_distributions()
    found: list[str] = []
    for module in sorted(modules):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in ("builtins", "copy_reg", "__builtin__"):
            continue
        if top == "__main__":
            raise InvalidRequest(
                f"{artifact} pickles objects defined in a script's __main__; they cannot be "
                "loaded anywhere else: define them in an importable module",
                code="bad_model",
            )
        dists = owners.get(top)
        if not dists:
            raise InvalidRequest(
                f"{artifact} imports '{module}', which is not installed here, so its version "
                "cannot be pinned: install the package that wrote the model",
                code="unpinnable_module",
            )
        found.extend(d for d in dists if d not in found)
    return found


def mlflow_requirements(model_dir: Path) -> list[str] | None:
    """The pins an MLflow model directory ships (``requirements.txt``), or ``None``."""
    file = model_dir / "requirements.txt"
    if not (model_dir / "MLmodel").exists() or not file.exists():
        return None
    return [
        line.strip()
        for line in file.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "-"))
    ]


def capture_requirements(
    model_dir: Path, manifest: Manifest, framework_dists: Iterable[str]
) -> list[str]:
    """The artifact's requirement lines: an MLflow model's own pins, else the framework's
    distributions and every distribution its pickle imports, pinned to the versions here."""
    shipped = mlflow_requirements(model_dir)
    if shipped is not None:
        return shipped
    dists = list(framework_dists)
    if manifest.framework != "custom":
        artifact = find_artifact(model_dir, manifest)
        if artifact.suffix.lower() in _PICKLE_SUFFIXES:
            dists += [
                d for d in _distributions(pickle_modules(artifact), artifact) if d not in dists
            ]
    return [pin(d) for d in dists]
