"""Running the app: ``serve()`` in the foreground (uvicorn) and ``BackgroundServer`` in a thread."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from cloudserve.serving._app import ServingApp
from cloudserve.serving._http import make_protocol
from cloudserve.serving._settings import ServerSettings

__all__ = ["BackgroundServer", "serve"]

log = logging.getLogger("cloudserve.serving")

LOAD_FAILED = 3  # a worker's exit code when the model cannot be loaded
_RESTARTS = 5  # a worker that dies this many times in a row (not a load failure) stops the server


def _config(app: ServingApp, settings: ServerSettings) -> uvicorn.Config:
    protocol = make_protocol(
        idle_timeout_s=settings.idle_timeout_s,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        admit=app.admit,
        fast=app.fast_route,
        max_body_bytes=settings.max_body_bytes,
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=protocol,
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # no proxy rewrites client addresses here; saves a middleware hop
        server_header=False,
        log_config=None,  # uvicorn's lines go through the root logger: one format, timestamps
        log_level=settings.log_level,
        # uvicorn takes whole seconds here; rounding up never cuts a drain short
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]
        backlog=2048,
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _configure_logging(settings: ServerSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
    )


def serve(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests; returns the exit code.

    One worker runs in this process; several run as worker processes sharing one listening
    socket, supervised by this one. Returns 1 when the model cannot be loaded (by any worker).
    """
    _configure_logging(settings)
    if settings.workers > 1:
        return _Supervisor(settings).run()
    return _serve_one(settings, None)


def _serve_one(settings: ServerSettings, sock: socket.socket | None) -> int:
    failed: list[bool] = []
    server: uvicorn.Server | None = None

    def stop_on_failure() -> None:
        failed.append(True)
        assert server is not None
        server.should_exit = True

    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make that
    # one a no-op so a drained shutdown exits 0, as the container contracts expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    app = ServingApp(settings, on_load_failure=stop_on_failure)
    server = uvicorn.Server(_config(app, settings))
    server.run(sockets=None if sock is None else [sock])
    return 1 if failed else 0


def _worker(settings_json: str, sock: socket.socket) -> None:
    """One worker process: serve on the inherited socket; exit ``LOAD_FAILED`` if the model
    cannot be loaded, so the supervisor stops instead of restarting it forever."""
    settings = ServerSettings.model_validate_json(settings_json)
    _configure_logging(settings)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    raise SystemExit(LOAD_FAILED if _serve_one(settings, sock) else 0)


class _Supervisor:
    """Binds the socket, runs ``workers`` processes on it, and stops them in the right order.

    On SIGTERM/SIGINT the supervisor first closes its own copy of the listening socket, then
    asks every worker to drain: each stops accepting at once and finishes its in-flight requests.
    A worker that cannot load the model stops the whole server with exit code 1; one that dies
    otherwise is restarted.
    """

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.stopping = threading.Event()
        self.failed = False
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[Any] = []

    def run(self) -> int:
        s = self.settings
        # Workers are spawned (fresh interpreters): prometheus_client reads this at import.
        with tempfile.TemporaryDirectory(prefix="cloudserve-metrics-") as metrics_dir:
            os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
            sock = socket.create_server((s.host, s.port), backlog=2048, reuse_port=False)
            sock.set_inheritable(True)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stopping.set())
            log.info("listening on http://%s:%d with %d workers", s.host, s.port, s.workers)
            self._procs = [self._spawn(sock) for _ in range(s.workers)]
            self._watch(sock)
            self._stop_accepting(sock)
            self._drain()
        return 1 if self.failed else 0

    def _spawn(self, sock: socket.socket) -> Any:
        proc = self._ctx.Process(
            target=_worker, args=(self.settings.model_dump_json(), sock), daemon=False
        )
        proc.start()
        return proc

    def _watch(self, sock: socket.socket) -> None:
        deaths = 0
        while not self.stopping.wait(0.2):
            for i, proc in enumerate(self._procs):
                if proc.is_alive():
                    continue
                if proc.exitcode == LOAD_FAILED:
                    log.error("a worker could not load the model (see above); stopping")
                    self.failed = True
                    self.stopping.set()
                    return
                deaths += 1
                if deaths > _RESTARTS:
                    log.error("workers keep dying (last exit code %s); stopping", proc.exitcode)
                    self.failed = True
                    self.stopping.set()
                    return
                log.warning("worker %d exited with code %s; restarting it", proc.pid, proc.exitcode)
                self._procs[i] = self._spawn(sock)

    @staticmethod
    def _stop_accepting(sock: socket.socket) -> None:
        """Stop the shared socket accepting, for every worker at once, before any drains.

        On Linux, shutting down a listening socket ends listening for all processes holding
        it, so a client connecting from now on is refused at once instead of waiting in the
        accept queue of a worker about to close it (which resets that connection).
        """
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)
        sock.close()

    def _drain(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + 5
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %d did not drain in time; killing it", proc.pid)
                proc.kill()
                proc.join()


class BackgroundServer:
    """Serve a model on a free loopback port in a background thread.

    >>> with BackgroundServer("model/", max_batch_size=1) as srv:
    ...     httpx.post(f"{srv.url}/invocations", json={"instances": rows})

    ``settings`` are :class:`ServerSettings` fields. Entering waits until the model is loaded
    (``ready_timeout`` seconds at most) and raises ``RuntimeError`` if it fails to load.
    """

    def __init__(self, model_dir: str | Path, *, ready_timeout: float = 60.0, **settings: Any):
        settings.setdefault("host", "127.0.0.1")
        settings.setdefault("port", 0)
        self.settings = ServerSettings(model_dir=Path(model_dir), **settings)
        self.ready_timeout = ready_timeout
        self.app = ServingApp(self.settings)
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.host, self.settings.port))
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(_config(self.app, self.settings))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            daemon=True,
            name="cloudserve-server",
        )
        self._thread.start()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.app.model is not None and self._server is not None and self._server.started:
                return
            if self.app.load_error is not None:
                self.stop()
                raise RuntimeError(f"the model failed to load: {self.app.load_error}")
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError("the server thread stopped during startup")
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"the model was not ready after {self.ready_timeout} s")

    def stop(self) -> None:
        """Stop serving (in-flight requests are drained first)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.settings.drain_timeout_s + 5)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"BackgroundServer({json.dumps(str(self.settings.model_dir))}, url={self.url!r})"
