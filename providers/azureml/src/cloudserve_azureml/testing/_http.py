"""The fake served over HTTP to other processes, and the relay those processes install.

The fake answers requests for Azure's public hostnames in-process (see ``FakeAzureML``); a test
that runs cloudserve in a *subprocess* (to kill it mid-operation) serves the same fake on a
local port with :func:`serve` and, in the subprocess, installs :func:`relay`: every request the
real SDK makes to an Azure hostname is intercepted there and forwarded, unchanged, to that port
(the original URL in the ``X-Fake-Url`` header), so both processes see one workspace.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudserve_azureml.testing._service import FakeAzureMLService

__all__ = ["relay", "serve"]

URL_HEADER = "X-Fake-Url"
DROP_HEADER = "X-Fake-Drop"  # the fake's "reset_scoring" / "timeout_scoring" answers


def _handler(service: FakeAzureMLService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # two writes per answer: no delayed-ACK stall

        def log_message(self, *args: Any) -> None:  # quiet
            return

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = self.headers.get(URL_HEADER, "")
            answer = service.handle(self.command, url, self.headers, body)
            if isinstance(answer, str):
                status, headers, out = 599, {DROP_HEADER: answer}, b""
            else:
                status, headers, out = answer
            data = out.encode() if isinstance(out, str) else (out or b"")
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _answer

    return Handler


@contextmanager
def serve(service: FakeAzureMLService) -> Iterator[str]:
    """Serve ``service`` on 127.0.0.1 (a free port) while the block runs; yields its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def relay(address: str) -> Iterator[None]:
    """Forward every request for an Azure hostname to the fake served at ``address``."""
    import requests
    import responses

    from cloudserve.testing.fakes import request_body
    from cloudserve_azureml.testing import _HOSTS

    host, _, port = address.partition(":")

    def forward(request: Any) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            headers[URL_HEADER] = request.url
            body = request_body(request)
            headers["Content-Length"] = str(len(body))
            conn.request(request.method, "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() != "content-length"}
        finally:
            conn.close()
        drop = out.get(DROP_HEADER)
        if drop == "reset_scoring":
            raise requests.ConnectionError("Connection reset by peer")
        if drop == "timeout_scoring":
            raise requests.ReadTimeout("Read timed out")
        return resp.status, out, data

    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    for method in ("GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"):
        mock.add_callback(method, _HOSTS, callback=forward)
    mock.start()
    try:
        yield
    finally:
        mock.stop()
        mock.reset()
