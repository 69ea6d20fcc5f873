"""What runs inside an Azure ML deployment, as the fake runs it.

- :func:`mount_model` lays a registered model out the way Azure mounts it:
  ``AZUREML_MODEL_DIR=…/azureml-models/NAME/VERSION``, a folder model as one subfolder named
  after the uploaded folder, a file model as the file itself.
- :class:`EntryScript` imports a deployment's uploaded entry script (``score.py``,
  ``batch_score.py``) with the deployment's environment variables and ``AZUREML_MODEL_DIR``
  set, and calls ``init()`` — then ``run(request)`` per scoring request the way Azure's
  inference server (``azmlinfsrv``) calls it, or ``run(mini_batch)`` the way the batch driver
  does.

The scoring scripts import ``rawhttp`` and ``AMLResponse`` from
``azureml_inference_server_http.api``. When that package is not installed (it pins its own
Flask and OpenTelemetry versions, so the test environment does not carry it) the fake provides
those two names, copied from azureml-inference-server-http 1.5.1
(``azureml_inference_server_http/api/aml_request.py`` and ``api/aml_response.py``, MIT) on
werkzeug, Flask's request/response layer. The real server is exercised by the acceptance test
that runs ``azmlinfsrv`` itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["EntryScript", "RuntimeContainer", "mount_model"]

# os.environ and sys.path are process-wide: one entry script is set up or run at a time.
_PROCESS = threading.RLock()
# azmlinfsrv answers this when run() raises (server/routes.py, handle_score).
UNHANDLED = "An unexpected error occurred in scoring script. Check the logs for more info."


def mount_model(files: dict[str, bytes], prefix: str, name: str, version: str, root: Path) -> Path:
    """Write a model's blobs under ``root`` as Azure mounts them; return ``AZUREML_MODEL_DIR``.

    ``files`` maps blob names to bytes; ``prefix`` is the model's path in the datastore (the
    uploaded folder, or the uploaded file itself).
    """
    model_dir = root / "azureml-models" / name / version
    model_dir.mkdir(parents=True, exist_ok=True)
    prefix = prefix.rstrip("/")
    base = prefix.rsplit("/", 1)[-1]
    for blob, data in files.items():
        if blob == prefix:  # a file model: the file itself
            target = model_dir / base
        else:  # a folder model: a subfolder named after the uploaded folder
            target = model_dir / base / blob[len(prefix) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return model_dir


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# Where the running entry script's Collector writes (set around each run() call).
_SINK = threading.local()


def _monitoring_api() -> dict[str, types.ModuleType]:
    """A stand-in for ``azureml.ai.monitoring`` (package ``azureml-ai-monitoring``) when it is
    absent: ``Collector(name).collect(df)`` hands the frame's records to the fake, which writes
    them where Azure's data collector does."""
    if importlib.util.find_spec("azureml") is not None:
        with contextlib.suppress(ImportError):
            if importlib.util.find_spec("azureml.ai.monitoring") is not None:
                return {}

    class Collector:
        def __init__(self, *, name: str, on_error: Any = None, **_: Any):
            self.name = name
            self.on_error = on_error

        def collect(self, data: Any, correlation_context: Any = None) -> Any:
            sink = getattr(_SINK, "write", None)
            if sink is not None:
                sink(self.name, json.loads(data.to_json(orient="records")))
            return correlation_context or {"id": uuid.uuid4().hex}

    names = ["azureml", "azureml.ai", "azureml.ai.monitoring"]
    mods = {n: types.ModuleType(n) for n in names}
    mods["azureml.ai.monitoring"].Collector = Collector  # type: ignore[attr-defined]
    return mods


def _inference_server_api() -> dict[str, types.ModuleType]:
    """Stand-ins for ``azureml_inference_server_http.api`` when the package is absent."""
    if importlib.util.find_spec("azureml_inference_server_http") is not None:
        return {}
    from werkzeug.wrappers import Response

    class AMLResponse(Response):  # copied from api/aml_response.py, on werkzeug
        def __init__(
            self,
            message: Any,
            status_code: int,
            response_headers: dict[str, str] | None = None,
            json_str: bool = False,
            run_function_failed: bool = False,
        ):
            headers = response_headers or {}
            if message is None:
                super().__init__(json.dumps({}), status=status_code, mimetype="application/json")
            elif json_str:
                super().__init__(
                    json.dumps(message), status=status_code, mimetype="application/json"
                )
            else:
                super().__init__(message, status=status_code)
                if "Content-Type" in headers:
                    self.headers.remove("Content-Type")
            self.headers["x-ms-run-function-failed"] = str(run_function_failed)
            for header, value in headers.items():
                for v in value.split(","):
                    self.headers.add_header(header, v.strip())

    request_mod = types.ModuleType("azureml_inference_server_http.api.aml_request")
    request_mod.rawhttp = lambda func: func  # type: ignore[attr-defined]
    response_mod = types.ModuleType("azureml_inference_server_http.api.aml_response")
    response_mod.AMLResponse = AMLResponse  # type: ignore[attr-defined]
    return {
        "azureml_inference_server_http": types.ModuleType("azureml_inference_server_http"),
        "azureml_inference_server_http.api": types.ModuleType("azureml_inference_server_http.api"),
        "azureml_inference_server_http.api.aml_request": request_mod,
        "azureml_inference_server_http.api.aml_response": response_mod,
    }


class EntryScript:
    """A deployment's entry script, imported from its code directory and initialised."""

    def __init__(
        self,
        script: Path,
        model_dir: Path,
        env: dict[str, str],
        collect: Callable[[str, list[dict[str, Any]]], None] | None = None,
    ):
        self.env = {**env, "AZUREML_MODEL_DIR": str(model_dir)}
        self.collect = collect
        with _PROCESS, _environ(self.env):
            path, modules = list(sys.path), dict(sys.modules)
            shims = {**_inference_server_api(), **_monitoring_api()}
            sys.modules.update(shims)
            try:
                spec = importlib.util.spec_from_file_location(
                    f"azureml_entry_{uuid.uuid4().hex}", script
                )
                assert spec is not None and spec.loader is not None
                self.module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(self.module)
                self.module.init()
            finally:
                # each deployment keeps its own copy of the modules shipped beside its script
                sys.path[:] = path
                for name in set(sys.modules) - set(modules):
                    if name in shims or name == "cloudserve_handler":
                        sys.modules.pop(name, None)

    def score(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One scoring request, answered as azmlinfsrv answers it (status, headers, body)."""
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request, Response

        builder = EnvironBuilder(method="POST", path="/score", data=body, headers=headers)
        request = Request(builder.get_environ())
        try:
            with _PROCESS, _environ(self.env):
                _SINK.write = self.collect
                try:
                    out = self.module.run(request)
                finally:
                    _SINK.write = None
        except Exception:  # azmlinfsrv: an exception in run() is a 500 with a fixed message
            return (
                500,
                {"Content-Type": "application/json"},
                json.dumps({"message": UNHANDLED}).encode(),
            )
        if isinstance(out, Response):
            return out.status_code, dict(out.headers), out.get_data()
        return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()

    def run_mini_batch(self, files: list[str]) -> list[Any]:
        """``run(mini_batch)`` as Azure's batch driver calls it."""
        with _PROCESS, _environ(self.env):
            return list(self.module.run(files))


class RuntimeContainer:
    """The container route: cloudserve's runtime image serving the model Azure mounted.

    ``load_model`` is the fake's model loader (cloudserve's serving runtime by default); the
    model under ``AZUREML_MODEL_DIR`` is found with the runtime image's own
    ``resolve_azureml_model_dir`` (the folder of a folder model).
    """

    def __init__(self, model_dir: Path, load_model: Callable[[Path], Any] | None):
        from cloudserve.serving._location import resolve_azureml_model_dir

        if load_model is None:
            from cloudserve.serving import load_model as runtime_load

            load_model = runtime_load
        self.model = load_model(resolve_azureml_model_dir(model_dir))

    def score(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One ``/score`` request as the runtime answers it: JSON ``instances`` in,
        ``predictions`` out; the caller's bad input → 400 naming it, the model's own failure →
        500 (the runtime's ``_failure``: ``InvalidRequest`` is the caller's, anything else the
        model's)."""
        from cloudserve.errors import InvalidRequest

        json_type = {"Content-Type": "application/json"}
        try:
            payload = json.loads(body or b"{}")
            instances = payload.get("instances") if isinstance(payload, dict) else payload
            if not isinstance(instances, list):
                raise InvalidRequest("the body needs an 'instances' list")
            outputs = self.model.predict(instances)
        except (InvalidRequest, ValueError) as exc:  # ValueError: the body is not JSON
            return 400, json_type, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        except Exception:
            doc = {
                "error": "the model failed on this request; the server log has the details",
                "code": "model_error",
            }
            return 500, json_type, json.dumps(doc).encode()
        if hasattr(outputs, "tolist"):
            outputs = outputs.tolist()
        return 200, json_type, json.dumps({"predictions": outputs}, default=_plain).encode()


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value.item()
