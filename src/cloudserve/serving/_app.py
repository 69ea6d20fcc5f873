"""The ASGI app: every cloud's container contract on one port.

A raw ASGI callable (no web framework) because every microsecond of routing and header handling
counts against the model's own time on small tabular requests; orjson does the JSON.

Routes (``{name}`` is the model name):

=============================================  ======  ===========================================
path                                           method  contract
=============================================  ======  ===========================================
``/ping``                                      GET     SageMaker health (200 once loaded)
``/invocations``                               POST    SageMaker predict
``/predict``, ``AIP_PREDICT_ROUTE``            POST    Vertex AI predict
``AIP_HEALTH_ROUTE``                           GET     Vertex AI health
``/score``                                     POST    Azure ML scoring
``/``, ``/live``                               GET     liveness (200 while the process is up)
``/ready``                                     GET     readiness (200 once loaded)
``/v2/health/live``, ``/v2/health/ready``      GET     Open Inference Protocol health
``/v2``, ``/v2/models/{name}``                 GET     server and model metadata
``/v2/models/{name}/ready``                    GET     model readiness
``/v2/models/{name}[/versions/{v}]/infer``     POST    typed-tensor inference (JSON or binary)
``/v2/repository/index``                       POST    the model repository (this one model)
``/metrics``                                   GET     Prometheus text
=============================================  ======  ===========================================
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from cloudserve import codecs
from cloudserve.errors import InvalidRequest, PayloadTooLarge
from cloudserve.serving._batching import Batcher, ClientGone, Overloaded
from cloudserve.serving._cache import PredictionCache, cache_key, make_cache
from cloudserve.serving._metrics import CONTENT_TYPE, ServerMetrics
from cloudserve.serving._model import LoadedModel, load_model
from cloudserve.serving._settings import ServerSettings
from cloudserve.serving._v2 import (
    HEADER_LENGTH,
    encode_infer_response,
    output_tensor,
    parse_infer_request,
)

if TYPE_CHECKING:
    from cloudserve.serving._http import Exchange, FastHandler

__all__ = ["ServingApp"]

log = logging.getLogger("cloudserve.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_STATUS_CODES: dict[type[Exception], int] = {
    PayloadTooLarge: 413,
    codecs.UnsupportedMediaType: 415,
    codecs.NotAcceptable: 406,
    InvalidRequest: 400,
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class HTTPError(Exception):
    """An answer other than 200, with a JSON body naming the problem."""

    def __init__(self, status: int, message: str, code: str, headers: list[Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or []


class ServingApp:
    """The ASGI application for one model directory.

    The model loads in a background thread at startup so the port accepts connections at once
    (SageMaker wants that within 250 ms); readiness routes answer 503 until it is loaded and 500
    if it failed to load.
    """

    def __init__(
        self, settings: ServerSettings, *, on_load_failure: Callable[[], None] | None = None
    ):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.model: LoadedModel | None = None
        self.load_error: str | None = None
        self.batcher: Batcher | None = None
        self.cache: PredictionCache | None = None
        self._receiving = 0  # requests whose body is being read or decoded
        self._on_load_failure = on_load_failure
        self._token = settings.token.encode() if settings.token else None
        self._static = self._static_routes()
        self._fast_routes: dict[bytes, FastHandler] = {
            path.encode(): functools.partial(self._fast_predict, label)
            for path, (method, label, handler) in self._static.items()
            if handler == self._predict
        }
        self._content_types: dict[str, list[tuple[bytes, bytes]]] = {}
        self._v2_output: tuple[str, list[int]] | None = None  # infer's datatype and shape
        self._shed_answers: dict[int, bytes] = {}

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Start loading the model and open the cache."""
        s = self.settings
        self.cache = make_cache(s.cache_size, s.cache_url, s.cache_ttl_s)
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._load, args=(loop,), daemon=True, name="cloudserve-load"
        ).start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        path = self.settings.model_dir
        where = str(path or "the places the clouds hand models over")
        try:
            if path is None:  # started by a cloud: find (or download) the model it handed over
                from cloudserve.serving._location import locate_model

                path = locate_model()[1]
                where = str(path)
            model = load_model(path)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot load the model from %s: %s", where, self.load_error)
            if self._on_load_failure is not None:
                loop.call_soon_threadsafe(self._on_load_failure)
            return
        loop.call_soon_threadsafe(self._ready, model)

    def _ready(self, model: LoadedModel) -> None:
        s = self.settings
        # The model, the framework and the imports are there for good: move them out of the
        # collector's way, so a full collection under load walks only the requests' objects
        # (walking the whole heap took tens of ms, the c=64 tail).
        gc.collect()
        gc.freeze()
        if s.model_name:
            model.name = s.model_name
        self.batcher = Batcher(
            model,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            max_queue_ms=s.max_queue_ms,
            pending=lambda: self._receiving,
            on_batch=self.metrics.batch_rows.observe,
            on_gone=self.metrics.abandoned.inc,
        )
        self.batcher.start()
        self.model = model
        log.info(
            "serving %s model %s version %s from %s (batching %s)",
            model.framework,
            model.name,
            model.version,
            model.path,
            f"up to {s.max_batch_size} rows / {s.max_wait_ms} ms" if s.batching else "off",
        )

    async def shutdown(self) -> None:
        """Stop the batcher and close the cache (the server has drained requests by now)."""
        if self.batcher is not None:
            await self.batcher.stop()
        if self.cache is not None:
            await self.cache.close()

    # -- admission on arrival (called by the HTTP protocol once a request's headers are in) ---

    def admit(self, url: bytes, in_progress: int = 0, oldest_s: float = 0.0) -> bytes | None:
        """``None`` to admit the request; else the whole 503 answer to send instead.

        ``in_progress`` and ``oldest_s`` are the HTTP layer's count of requests in hand and the
        age of the oldest fully received one (see :meth:`Batcher.overloaded`).

        Only predict routes are shed, and only while the batcher reports overload; the answer is
        pre-encoded so refusing costs no body read, no decode and no ASGI task.
        """
        batcher = self.batcher
        if batcher is None:
            return None
        retry_after = batcher.overloaded(in_progress, oldest_s)
        if retry_after is None or not self._is_predict(url):
            return None
        self.metrics.shed.inc()
        answer = self._shed_answers.get(retry_after)
        if answer is None:
            body = _error("the server is overloaded; retry later", "overloaded")
            answer = b"HTTP/1.1 503 Service Unavailable\r\n%s\r\n%s" % (
                b"".join(
                    b"%s: %s\r\n" % kv
                    for kv in [
                        *_JSON_HEADERS,
                        (b"retry-after", b"%d" % retry_after),
                        (b"content-length", b"%d" % len(body)),
                    ]
                ),
                body,
            )
            self._shed_answers[retry_after] = answer
        return answer

    def _is_predict(self, url: bytes) -> bool:
        path = url.partition(b"?")[0].decode("latin-1")
        found = self._static.get(path)
        if found is not None:
            return found[0] == "POST"
        return path.startswith("/v2/models/") and path.endswith("/infer")

    # -- the HTTP fast path (called by the protocol once a request's headers are in) ---------

    def fast_route(self, url: bytes, method: bytes) -> FastHandler | None:
        """The handler for a JSON-rows predict request that needs nothing asynchronous, else
        ``None`` (the request takes the ASGI path: other routes, a model still loading, a
        prediction cache to consult)."""
        if method != b"POST" or self.batcher is None or self.cache is not None:
            return None
        return self._fast_routes.get(url)

    def _fast_predict(
        self, label: str, exchange: Exchange, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """``_predict`` without a task or a future: decode and queue now, answer from the
        batch's callback (see _http.py)."""
        started = time.perf_counter()
        content_type = accept = encoding = b""
        auth = None
        for key, value in headers:
            if key == b"content-type":
                content_type = value
            elif key == b"accept":
                accept = value
            elif key == b"content-encoding":
                encoding = value
            elif key == b"authorization":
                auth = value
        model, batcher = self.model, self.batcher
        assert model is not None and batcher is not None
        accept_type = accept.decode("latin-1")

        def done(outputs: list[Any] | None, exc: BaseException | None) -> None:
            if exc is None:
                encoding_started = time.perf_counter()
                try:
                    assert outputs is not None
                    data, out_type = codecs.encode_response(model.finish(outputs), accept_type)
                except Exception as err:
                    status, data, answer_headers = self._failure(err)
                else:
                    status, answer_headers = 200, self._content_type(out_type)
                batcher.note_work(time.perf_counter() - encoding_started)
            elif isinstance(exc, ClientGone):  # nobody to answer; 499 as nginx counts it
                self.metrics.observe(label, 499, time.perf_counter() - started)
                return
            else:
                status, data, answer_headers = self._failure(exc)
            exchange.respond(status, answer_headers, data)
            self.metrics.observe(label, status, time.perf_counter() - started)

        try:
            if self._token is not None:
                self._check_token(auth)
            _, rows, parameters = self._decoded(
                model, body, content_type.decode("latin-1"), encoding.decode("latin-1")
            )
            batcher.enqueue(rows, parameters, done, exchange.transport)
        except Exception as exc:  # the server never dies of a request
            done(None, exc)
            return
        batcher.note_work(time.perf_counter() - started)  # decoding: what a refusal saves

    def _content_type(self, media_type: str) -> list[tuple[bytes, bytes]]:
        headers = self._content_types.get(media_type)
        if headers is None:
            headers = self._content_types[media_type] = [(b"content-type", media_type.encode())]
        return headers

    # -- routing ------------------------------------------------------------------------------

    def _static_routes(self) -> dict[str, tuple[str, str, Any]]:
        """path -> (method, route label, handler)."""
        predict = ("POST", "predict", self._predict)
        routes: dict[str, tuple[str, str, Any]] = {
            "/ping": ("GET", "ping", self._readiness),
            "/ready": ("GET", "ready", self._readiness),
            "/": ("GET", "live", self._liveness),
            "/live": ("GET", "live", self._liveness),
            "/v2/health/live": ("GET", "v2_live", self._liveness),
            "/v2/health/ready": ("GET", "v2_ready", self._readiness),
            "/v2": ("GET", "v2_server", self._v2_server),
            "/v2/repository/index": ("POST", "v2_index", self._v2_index),
            "/metrics": ("GET", "metrics", self._metrics),
            "/invocations": ("POST", "invocations", self._predict),
            "/predict": predict,
            "/score": ("POST", "score", self._predict),
        }
        if self.settings.predict_route:
            routes[self.settings.predict_route] = ("POST", "vertex_predict", self._predict)
        if self.settings.health_route:
            routes[self.settings.health_route] = ("GET", "vertex_health", self._readiness)
        return routes

    def _route(self, path: str) -> tuple[str, str, Any, str | None]:
        found = self._static.get(path)
        if found is not None:
            return (*found, None)
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/") :].split("/")
            name = parts[0]
            rest = parts[1:]
            if len(rest) >= 2 and rest[0] == "versions":
                rest = rest[2:]
            if rest == []:
                return "GET", "v2_model", self._v2_model, name
            if rest == ["ready"]:
                return "GET", "v2_model_ready", self._v2_model_ready, name
            if rest == ["infer"]:
                return "POST", "v2_infer", self._v2_infer, name
        raise HTTPError(404, f"no route {path}", "not_found")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        label = "other"
        try:
            method, label, handler, name = self._route(scope["path"])
            if scope["method"] != method and not (method == "GET" and scope["method"] == "HEAD"):
                raise HTTPError(405, f"{scope['path']} takes {method}", "method_not_allowed")
            if self._token is not None and label not in _PUBLIC_ROUTES:
                self._authorize(scope)
            status, body, headers = await handler(scope, receive, name)
        except ClientGone:  # nobody to answer; 499 as nginx counts it
            self.metrics.observe(label, 499, time.perf_counter() - started)
            return
        except Exception as exc:  # the server never dies of a request
            status, body, headers = self._failure(exc)
        respond = scope.get("extensions", {}).get("cloudserve", {}).get("respond")
        if respond is not None:  # cloudserve's own protocol: one write (see _http.py)
            respond(status, headers, body)
        else:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send(
                {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
            )
        self.metrics.observe(label, status, time.perf_counter() - started)

    def _authorize(self, scope: Scope) -> None:
        for key, value in scope["headers"]:
            if key == b"authorization":
                self._check_token(value)
                return
        self._check_token(None)

    def _check_token(self, value: bytes | None) -> None:
        if value is not None:
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(
                token.strip(), self._token or b""
            ):
                return
        raise HTTPError(
            401, "missing or wrong bearer token", "unauthorized", [(b"www-authenticate", b"Bearer")]
        )

    def _failure(self, exc: BaseException) -> tuple[int, bytes, list[Any]]:
        if isinstance(exc, HTTPError):
            return exc.status, _error(exc.message, exc.code), [*_JSON_HEADERS, *exc.headers]
        for cls, status in _STATUS_CODES.items():
            if isinstance(exc, cls):
                # the caller's fault: one log line, no traceback, an id to find it by
                code = getattr(exc, "code", None) or cls.__name__
                message = getattr(exc, "message", str(exc))
                error_id = uuid.uuid4().hex[:16]
                log.info("%d %s (error id %s): %.300s", status, code, error_id, message)
                return status, _error(message, code, error_id), _JSON_HEADERS
        if isinstance(exc, Overloaded):
            self.metrics.shed.inc()
            headers = [*_JSON_HEADERS, (b"retry-after", str(exc.retry_after_s).encode())]
            return 503, _error(str(exc), "overloaded"), headers
        error_id = uuid.uuid4().hex[:16]
        log.exception("prediction failed (error id %s)", error_id)
        body = orjson.dumps(
            {
                "error": "the model failed on this request; the server log has the details",
                "code": "model_error",
                "error_id": error_id,
            }
        )
        return 500, body, _JSON_HEADERS

    # -- health and metadata ------------------------------------------------------------------

    async def _liveness(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        return 200, orjson.dumps({"status": "alive"}), _JSON_HEADERS

    async def _readiness(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        self._require_model()
        return 200, orjson.dumps({"status": "ready"}), _JSON_HEADERS

    def _require_model(self, name: str | None = None) -> LoadedModel:
        if self.model is None:
            if self.load_error is not None:
                raise HTTPError(500, f"the model failed to load: {self.load_error}", "load_failed")
            raise HTTPError(503, "the model is loading", "loading", [(b"retry-after", b"1")])
        if name is not None and name != self.model.name:
            raise HTTPError(
                404, f"no model named '{name}' (this server has '{self.model.name}')", "not_found"
            )
        return self.model

    async def _v2_server(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        from cloudserve import __version__

        body = {"name": "cloudserve", "version": __version__, "extensions": []}
        return 200, orjson.dumps(body), _JSON_HEADERS

    async def _v2_model(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        model = self._require_model(name)
        width = -1 if model.n_features is None else model.n_features
        dtype = codecs.encode_v2_tensor("x", np.zeros(0, dtype=model.dtype))["datatype"]
        datatype, shape = await self._v2_output_signature(model)
        body = {
            "name": model.name,
            "versions": [model.version],
            "platform": model.framework,
            "inputs": [{"name": model.input_name, "datatype": dtype, "shape": [-1, width]}],
            "outputs": [{"name": "output-0", "datatype": datatype, "shape": shape}],
        }
        return 200, orjson.dumps(body), _JSON_HEADERS

    async def _v2_output_signature(self, model: LoadedModel) -> tuple[str, list[int]]:
        """What ``infer`` answers with by default, learnt by predicting one row of zeros once
        (a model that refuses zeros is described as ``BYTES`` until its first ``infer``)."""
        if self._v2_output is None and model.n_features is not None:
            probe = np.zeros((1, model.n_features), dtype=model.dtype)
            try:
                outputs = await asyncio.to_thread(model.predict, probe)
            except Exception as exc:
                log.info("cannot describe the v2 output from a row of zeros: %s", exc)
            else:
                self._remember_output(outputs)
        return self._v2_output or ("BYTES", [-1])

    def _remember_output(self, outputs: list[Any]) -> None:
        array, datatype = output_tensor(outputs)
        self._v2_output = (datatype, [-1, *array.shape[1:]])

    async def _v2_index(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        await self._read_body(scope, receive)  # an optional {"ready": true} filter
        if self.model is not None:
            entry = {"name": self.model.name, "version": self.model.version, "state": "READY"}
        else:  # the name is known only once loaded, unless it was given
            state = "UNAVAILABLE" if self.load_error else "LOADING"
            entry = {"name": self.settings.model_name or "", "state": state}
        return 200, orjson.dumps([entry]), _JSON_HEADERS

    async def _v2_model_ready(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        model = self._require_model(name)
        return 200, orjson.dumps({"name": model.name, "ready": True}), _JSON_HEADERS

    async def _metrics(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        if self.batcher is not None:
            self.metrics.queue_depth.set(self.batcher.depth)
        return 200, self.metrics.render(), [(b"content-type", CONTENT_TYPE.encode())]

    # -- prediction ---------------------------------------------------------------------------

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(
                    f"the body is {int(value)} bytes, over the {limit}-byte limit",
                    code="payload_too_large",
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client went away", "disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the body is over the {limit}-byte limit", code="payload_too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _predict(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        model = self._require_model()
        self._receiving += 1
        try:
            body = await self._read_body(scope, receive)
            instances, rows, parameters = self._decoded(
                model, body, _header(scope, b"content-type"), _header(scope, b"content-encoding")
            )
        finally:
            self._receiving -= 1
        outputs = await self._outputs(scope, model, instances, rows, parameters)
        data, out_type = codecs.encode_response(outputs, _header(scope, b"accept"))
        return 200, data, self._content_type(out_type)

    def _decoded(
        self, model: LoadedModel, body: bytes, content_type: str, encoding: str
    ) -> tuple[Any, Any, dict[str, Any]]:
        """A predict request's ``(instances, prepared rows, parameters)``, on either path."""
        if encoding:
            codecs.check_content_encoding(encoding)
        instances, parameters = model.decode(body, content_type)
        return instances, model.prepare(instances), parameters or self.settings.default_parameters

    async def _outputs(
        self,
        scope: Scope,
        model: LoadedModel,
        instances: Any,
        rows: Any,
        parameters: dict[str, Any],
    ) -> list[Any]:
        assert self.batcher is not None
        transport = scope.get("extensions", {}).get("cloudserve", {}).get("transport")
        if self.cache is None:
            return model.finish(await self.batcher.submit(rows, parameters, transport))
        key = cache_key(model.name, model.version, instances, parameters)
        cached = await self.cache.get(key)
        if cached is not None:
            self.metrics.cache_hits.inc()
            return cached
        self.metrics.cache_misses.inc()
        outputs = model.finish(await self.batcher.submit(rows, parameters, transport))
        await self.cache.set(key, outputs)
        return outputs

    async def _v2_infer(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        model = self._require_model(name)
        self._receiving += 1
        try:
            body = await self._read_body(scope, receive)
            header_length = _header(scope, HEADER_LENGTH) or None
            doc, tensors = parse_infer_request(body, header_length)
            instances = _v2_instances(tensors, model)
            parameters = codecs.request_parameters(doc)
            parameters = {k: v for k, v in parameters.items() if k != "binary_data_output"}
            rows = model.prepare(instances)
        finally:
            self._receiving -= 1
        outputs = await self._outputs(scope, model, instances, rows, parameters)
        if not parameters:
            self._remember_output(outputs)
        head: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if "id" in doc:
            head["id"] = doc["id"]
        data, headers = encode_infer_response(doc, head, outputs)
        return 200, data, headers


_PUBLIC_ROUTES = frozenset({"ping", "ready", "live", "v2_live", "v2_ready", "vertex_health"})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _error(message: str, code: str, error_id: str | None = None) -> bytes:
    if error_id is None:
        return orjson.dumps({"error": message, "code": code})
    return orjson.dumps({"error": message, "code": code, "error_id": error_id})


def _v2_instances(tensors: list[tuple[str, np.ndarray]], model: LoadedModel) -> np.ndarray:
    """One 2-D tensor is the rows; several 1-D (or [N, 1]) tensors are named feature columns."""
    if len(tensors) == 1:
        return tensors[0][1]
    order = model.feature_names or [n for n, _ in tensors]
    by_name = {n: a.reshape(len(a), -1) for n, a in tensors}
    missing = [n for n in order if n not in by_name]
    if missing:
        raise InvalidRequest(f"v2 inputs lack feature(s) {missing[:5]}", code="wrong_shape")
    if len({by_name[n].shape[0] for n in order}) > 1:
        raise InvalidRequest(
            "the v2 input tensors differ in their number of rows", code="wrong_shape"
        )
    return np.hstack([by_name[n] for n in order])
