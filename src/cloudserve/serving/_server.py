"""Running the app: ``serve()`` in the foreground (uvicorn) and ``BackgroundServer`` in a thread."""

from __future__ import annotations

import json
import logging
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
from cloudserve.serving._settings import ServerSettings

__all__ = ["BackgroundServer", "app_from_env", "serve"]

_SETTINGS_ENV = "CLOUDSERVE_SERVE_SETTINGS"


def _uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": "httptools" if _has("httptools") else "h11",
        "lifespan": "on",
        "access_log": False,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": settings.drain_timeout_s,
        "timeout_keep_alive": 75,  # longer than the clouds' load balancers keep idle connections
    }


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def app_from_env() -> ServingApp:
    """The app for one worker process, from settings the launcher put in the environment."""
    return ServingApp(ServerSettings.model_validate_json(os.environ[_SETTINGS_ENV]))


def serve(settings: ServerSettings) -> int:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests; returns the exit code.

    One worker runs in this process; several run as uvicorn worker processes sharing the port.
    Exits 1 when the model cannot be loaded.
    """
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.workers > 1:
        return _serve_workers(settings)
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
    server = uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(settings)))
    server.run()
    return 1 if failed else 0


def _serve_workers(settings: ServerSettings) -> int:
    # Workers are separate processes: settings travel in the environment, and metrics are
    # summed across them through prometheus_client's multiprocess directory.
    os.environ[_SETTINGS_ENV] = settings.model_dump_json()
    with tempfile.TemporaryDirectory(prefix="cloudserve-metrics-") as metrics_dir:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        uvicorn.run(
            "cloudserve.serving._server:app_from_env",
            factory=True,
            workers=settings.workers,
            **_uvicorn_options(settings),
        )
    return 0


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
        self._server = uvicorn.Server(uvicorn.Config(self.app, **_uvicorn_options(self.settings)))
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
