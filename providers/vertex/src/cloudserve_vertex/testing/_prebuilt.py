"""The fake's prebuilt prediction containers: Google's predictor steps, not cloudserve's runtime.

Vertex's prebuilt scikit-learn and XGBoost containers run Google's prediction code. Its steps,
as the Vertex AI SDK's predictors write them (googleapis/python-aiplatform,
``google/cloud/aiplatform/prediction/sklearn/predictor.py`` and ``…/xgboost/predictor.py``,
file names from ``google/cloud/aiplatform/constants/prediction.py``):

- load: from the artifact root, scikit-learn ``model.joblib`` (``joblib.load``) else
  ``model.pkl`` (``pickle.load``); XGBoost ``model.bst`` (``xgb.Booster(model_file=…)``) else
  ``model.joblib`` / ``model.pkl``; any other file name fails the load;
- preprocess: ``np.asarray(instances)`` (XGBoost: an ``xgb.DMatrix`` of it) — ``parameters``
  are not read;
- predict: ``model.predict(...)``; postprocess: ``{"predictions": result.tolist()}``.

The container's library version matters. Give ``FakeVertex(prebuilt_python={"sklearn-cpu.1-5":
PYTHON})`` a Python whose environment holds that image's libraries (a reference venv) and the
steps run there, in a worker process; without one they run in this process, after refusing a
model written by a newer scikit-learn than the image's, or an XGBoost 3 model in an XGBoost 2.x
image (on Vertex the first fails to unpickle, the second predicts wrongly without an error).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

from cloudserve_vertex.testing._http import ApiError

__all__ = ["GOOGLE_PREDICTOR", "PrebuiltPredictor", "prebuilt_of"]

_IMAGE = re.compile(r"/vertex-ai/prediction/((sklearn|xgboost)-cpu\.(\d+)-(\d+)):latest$")

# Google's load / preprocess / predict / postprocess steps as a worker: one JSON request body
# a line on stdin, one JSON answer a line on stdout.
GOOGLE_PREDICTOR = """
import json, os, pickle, sys
import joblib, numpy as np
framework = sys.argv[2]
os.chdir(sys.argv[1])
booster = False
if framework == "xgboost" and os.path.exists("model.bst"):
    import xgboost as xgb
    model, booster = xgb.Booster(model_file="model.bst"), True
elif os.path.exists("model.joblib"):
    model = joblib.load("model.joblib")
elif os.path.exists("model.pkl"):
    model = pickle.load(open("model.pkl", "rb"))
else:
    raise ValueError("One of the following model files must be provided: "
                     "['model.bst', 'model.joblib', 'model.pkl'].")
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        instances = np.asarray(json.loads(line)["instances"])
        if booster:
            instances = xgb.DMatrix(instances)
        answer = {"predictions": model.predict(instances).tolist()}
    except Exception as exc:
        answer = {"error": "%s: %s" % (type(exc).__name__, exc)}
    print(json.dumps(answer), flush=True)
"""


def prebuilt_of(image: str) -> tuple[str, str, tuple[int, int]] | None:
    """``("sklearn-cpu.1-5", "sklearn", (1, 5))`` for a prebuilt image URI, else None."""
    m = _IMAGE.search(image)
    return (m[1], m[2], (int(m[3]), int(m[4]))) if m else None


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = re.findall(r"\d+", text)[:2]
    return int(major), int(minor)


class PrebuiltPredictor:
    """One prebuilt container serving the artifact in ``directory``."""

    def __init__(
        self,
        directory: Path,
        image: str,
        framework: str,
        version: tuple[int, int],
        python: str | None = None,
    ):
        self.image = image
        self._lock = threading.Lock()
        self._worker: subprocess.Popen[str] | None = None
        if python is not None:
            self._start(python, directory, framework)
        else:
            self._check_version(directory, framework, version)
            self._start_here(directory, framework)

    def _fail(self, reason: str) -> ApiError:
        return ApiError(400, f"Model server never became ready ({self.image}): {reason}")

    def _check_version(self, directory: Path, framework: str, version: tuple[int, int]) -> None:
        from cloudserve_vertex._packaging import read_pickle_facts, xgboost_file_version

        bst = directory / "model.bst"
        if framework == "xgboost" and bst.exists():
            written = xgboost_file_version(bst)
            if written and _version_tuple(written) >= (3, 0) > version:
                raise self._fail(
                    f"an XGBoost {written} model.bst is read wrongly by XGBoost "
                    f"{version[0]}.{version[1]} (vector base_score)"
                )
            return
        for name in ("model.joblib", "model.pkl"):
            if (directory / name).exists():
                written = read_pickle_facts(directory / name).sklearn_version
                if written and _version_tuple(written) > version:
                    raise self._fail(f"{name} was pickled by scikit-learn {written}")
                return

    def _start_here(self, directory: Path, framework: str) -> None:
        """Run the same steps in this process (the image's libraries are not at hand)."""
        import os
        import pickle

        import joblib
        import numpy as np

        self._np = np
        self._booster = False
        if framework == "xgboost" and (directory / "model.bst").exists():
            import xgboost as xgb

            self._model = xgb.Booster(model_file=str(directory / "model.bst"))
            self._booster = True
        elif (directory / "model.joblib").exists():
            self._model = joblib.load(directory / "model.joblib")
        elif (directory / "model.pkl").exists():
            with open(os.fspath(directory / "model.pkl"), "rb") as fh:
                self._model = pickle.load(fh)
        else:
            raise self._fail("none of model.bst, model.joblib, model.pkl at the artifact root")

    def _start(self, python: str, directory: Path, framework: str) -> None:
        worker = subprocess.Popen(
            [python, "-c", GOOGLE_PREDICTOR, str(directory), framework],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = worker.stdout.readline() if worker.stdout else ""
        if not line:
            err = worker.stderr.read() if worker.stderr else ""
            worker.wait(timeout=10)
            raise self._fail(err.strip().splitlines()[-1] if err.strip() else "worker exited")
        self._worker = worker

    def predict(self, instances: list[Any], parameters: Any = None) -> list[Any]:
        """``np.asarray(instances)`` → ``model.predict`` → ``.tolist()``; parameters ignored."""
        if self._worker is not None:
            with self._lock:
                assert self._worker.stdin and self._worker.stdout
                self._worker.stdin.write(json.dumps({"instances": instances}) + "\n")
                self._worker.stdin.flush()
                answer = json.loads(self._worker.stdout.readline())
            if "error" in answer:
                raise ApiError(400, answer["error"])
            return list(answer["predictions"])
        try:
            x = self._np.asarray(instances)
            if self._booster:
                import xgboost as xgb

                return list(self._model.predict(xgb.DMatrix(x)).tolist())
            return list(self._model.predict(x).tolist())
        except Exception as exc:  # the container answers the error text with a 400
            raise ApiError(400, f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Stop the worker process, if any."""
        if self._worker is not None:
            self._worker.kill()
            self._worker.wait(timeout=10)
            for stream in (self._worker.stdin, self._worker.stdout, self._worker.stderr):
                if stream is not None:
                    stream.close()
            self._worker = None
