"""The cloudserve model server: one ASGI app that speaks every cloud's container contract.

In-process use needs nothing beyond the model's own library::

    from cloudserve.serving import load_model
    model = load_model("model/")          # sklearn, xgboost, onnx, pytorch or a custom Predictor
    model.predict([[0.1, 2.0, 3.5]])      # -> one JSON-able output per row

Serving needs the ``serve`` extra (uvicorn, httptools, uvloop, prometheus-client)::

    python -m cloudserve.serving --model-dir model/ --port 8080
    with BackgroundServer("model/") as srv: ...   # srv.url on a free loopback port

The server pieces are imported on first use, so ``load_model`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudserve.serving._model import LoadedModel, load_model
from cloudserve.serving._predictor import Predictor
from cloudserve.serving._settings import ServerSettings

if TYPE_CHECKING:
    from cloudserve.serving._app import ServingApp
    from cloudserve.serving._server import BackgroundServer, serve

__all__ = [
    "BackgroundServer",
    "LoadedModel",
    "Predictor",
    "ServerSettings",
    "ServingApp",
    "load_model",
    "serve",
]

_LAZY = {
    "BackgroundServer": "cloudserve.serving._server",
    "serve": "cloudserve.serving._server",
    "ServingApp": "cloudserve.serving._app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cloudserve.serving' has no attribute {name!r}")
