"""Azure ML scoring script, uploaded by cloudserve as ``score.py`` beside ``cloudserve_handler.py``.

Azure's inference server (``azmlinfsrv``, package ``azureml-inference-server-http``) calls
``init()`` once and ``run(request)`` per request. ``AZUREML_MODEL_DIR`` holds the registered
model: a folder model as one subfolder named after the uploaded folder, a file model as the file
itself. Decoding (JSON rows, records, ``{"instances", "parameters"}``, CSV, JSON Lines, NPY),
prediction (``parameters={"method": "predict_proba"}``) and encoding come from the handler
template, so answers match cloudserve's own server. Bad input answers 400 naming the problem;
the server stays up. Python 3.8 syntax, the standard library and the handler only.

When ``CLOUDSERVE_DATA_CAPTURE`` is set, inputs and outputs go to the deployment's
``model_inputs`` / ``model_outputs`` collections through ``azureml-ai-monitoring``'s
``Collector`` (custom-logging collections need it; Azure collects nothing by itself).

When ``CLOUDSERVE_REQUEST_LOG`` is set (the live and shadow deployments of an endpoint with
mirrored traffic), every request is also written to the ``cloudserve_requests`` collection as one
row: the request id cloudserve's client put in the body (``"request_id"``; else the
``x-ms-client-request-id`` header), the outputs as JSON text, the error, the time spent in
``run()`` and when. The id is a column, not only the collector's correlation id, because Azure's
data collector batches requests that arrive close together into one record.
"""

import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cloudserve_handler as handler
from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse

log = logging.getLogger("cloudserve.score")

_model = None
_feature_names = None
_collectors = None
_requests = None
REQUEST_LOG = "cloudserve_requests"
JSON = "application/json"


def model_path(root):
    """The model under ``AZUREML_MODEL_DIR``: the one folder or file in it, else the root."""
    entries = [e for e in os.listdir(root) if not e.startswith(".")]
    if len(entries) == 1:
        return os.path.join(root, entries[0])
    return root


def init():
    global _model, _feature_names, _collectors, _requests
    path = model_path(os.environ["AZUREML_MODEL_DIR"])
    manifest = handler.read_manifest(path)
    framework = manifest.get("framework") or os.environ.get("CLOUDSERVE_FRAMEWORK") or None
    _model = handler.load_model(handler.find_model_file(path), framework)
    _feature_names = handler.model_feature_names(_model, manifest)
    if os.environ.get("CLOUDSERVE_DATA_CAPTURE"):
        from azureml.ai.monitoring import Collector

        _collectors = (
            Collector(name="model_inputs", on_error=_capture_failed),
            Collector(name="model_outputs", on_error=_capture_failed),
        )
    if os.environ.get("CLOUDSERVE_REQUEST_LOG"):
        from azureml.ai.monitoring import Collector

        _requests = Collector(name=REQUEST_LOG, on_error=_capture_failed)


def _capture_failed(exc):
    log.warning("data capture failed: %s", exc)


def _error(status, message):
    return AMLResponse({"error": message}, status, json_str=True)


@rawhttp
def run(request):
    if request.method != "POST":
        return _error(405, "POST the rows to score")
    start = time.perf_counter()
    try:
        rows, parameters = handler.decode(
            request.get_data(), request.headers.get("Content-Type") or JSON, _feature_names
        )
        outputs = handler.predict(_model, rows, parameters)
        body, content_type = handler.encode(outputs, request.headers.get("Accept") or JSON)
    except ValueError as exc:  # handler.BadInput, or the model refusing the rows' shape
        message = f"{type(exc).__name__}: {exc}"
        _log_request(request, None, message, start)
        return _error(400, message)
    except Exception as exc:  # the model's own fault: azmlinfsrv answers 500
        _log_request(request, None, f"{type(exc).__name__}: {exc}", start)
        raise
    _log_request(request, outputs, None, start)
    if _collectors is not None:
        _capture(rows, outputs)
    return AMLResponse(body, 200, {"Content-Type": content_type})


def _capture(rows, outputs):
    import pandas as pd

    inputs = pd.DataFrame(rows, columns=_feature_names or None)
    context = _collectors[0].collect(inputs)
    _collectors[1].collect(pd.DataFrame({"prediction": [json.dumps(o) for o in outputs]}), context)


def request_id(request):
    """The id cloudserve's client gave this request: ``"request_id"`` in a JSON body (a
    mirrored copy carries the body it is scored on), else the ``x-ms-client-request-id``
    header, else ``None``."""
    try:
        doc = json.loads(request.get_data() or b"null")
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("request_id"), str):
        return doc["request_id"]
    return request.headers.get("x-ms-client-request-id") or None


def _log_request(request, outputs, error, start):
    if _requests is None:
        return
    import pandas as pd

    row = {
        "request_id": request_id(request),
        # {"predictions": [...]}, the handler's JSON answer, whatever the caller accepts
        "outputs": handler.encode(outputs, JSON)[0].decode() if outputs is not None else None,
        "error": error,
        "latency_ms": (time.perf_counter() - start) * 1000,
        "ts": time.time(),
    }
    _requests.collect(pd.DataFrame([row]))
