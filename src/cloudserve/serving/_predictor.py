"""The base class of a custom predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["Predictor"]


class Predictor:
    """Subclass this to serve any Python model.

    The manifest names the class (``"predictor": "my_module:MyPredictor"``) and the module file
    lives in the model directory. The server creates one instance, calls :meth:`load` once with
    the model directory, then for each request:

    1. :meth:`preprocess` turns that request's instances into rows (a list or an array with one
       entry per row). Raise :class:`~cloudserve.errors.InvalidRequest` here for bad input: the
       caller gets a 400 naming the problem.
    2. :meth:`predict` runs on a batch — the preprocessed rows of one or more requests joined —
       and returns one output per row.
    3. :meth:`postprocess` turns each request's slice of the outputs into JSON-able values.

    ``predict`` runs in a worker thread, one batch at a time, so it need not be thread-safe.
    """

    def load(self, path: Path) -> None:
        """Load weights or state from the model directory."""

    def preprocess(self, instances: Any) -> Any:
        """Rows of one request, ready to batch; the default passes instances through."""
        return instances

    def predict(self, batch: Any) -> Any:
        """One output per row of ``batch``."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict(batch)")

    def postprocess(self, outputs: list[Any]) -> list[Any]:
        """JSON-able outputs for one request; the default passes them through."""
        return outputs
