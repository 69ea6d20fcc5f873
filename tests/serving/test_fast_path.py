"""The HTTP fast path: JSON predict requests answered without an ASGI scope, cycle or task.

Everything here also holds on the ASGI path; these tests pin down that the fast path keeps the
HTTP contract (pipelining order, HTTP/1.0, Expect: 100-continue, the body limit, the token) while
skipping uvicorn's per-request machinery.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.serving.conftest import ROWS
from tests.serving.test_limits import connect, read_all, read_response

from cloudserve.serving import BackgroundServer


def post(path: str, rows: list[Any], *, extra: str = "", version: str = "1.1") -> bytes:
    body = json.dumps({"instances": rows}).encode()
    return (
        f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_responses(sock: socket.socket, n: int) -> list[bytes]:
    """``n`` responses with Content-Length bodies, however the reads split them."""
    data, out = b"", []
    while len(out) < n:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                out.append(head + sep + rest[:length])
                data = rest[length:]
                continue
        data += sock.recv(65536)
    return out


def body_of(response: bytes) -> Any:
    return json.loads(response.partition(b"\r\n\r\n")[2])


@pytest.fixture(scope="module")
def server(custom_dir: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(custom_dir, max_body_bytes=4096, token="s3cret") as srv:
        yield srv


@pytest.fixture
def asgi_calls(server: BackgroundServer) -> Iterator[list[str]]:
    """The paths of the requests that reached the ASGI app (the slow path)."""
    calls: list[str] = []
    original = server.app._http

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await original(scope, receive, send)

    server.app._http = counting  # type: ignore[method-assign]
    yield calls
    server.app._http = original  # type: ignore[method-assign]


AUTH = "Authorization: Bearer s3cret\r\n"


@pytest.mark.parametrize("path", ["/invocations", "/predict", "/score"])
def test_a_predict_request_is_answered_without_the_asgi_app(server, asgi_calls, path):
    with connect(server.url) as sock:
        sock.sendall(post(path, ROWS[:2], extra=AUTH))
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    offset = server.app.model.predictor.offset  # type: ignore[union-attr]
    assert body_of(response) == {"predictions": [round(sum(r) + offset, 6) for r in ROWS[:2]]}
    assert asgi_calls == []


def test_other_routes_still_take_the_asgi_path(server, asgi_calls):
    with connect(server.url) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    assert asgi_calls == ["/ping"]


def test_pipelined_requests_are_answered_in_order(server):
    """Three requests in one write, the middle one for the ASGI path: answers keep the order."""
    with connect(server.url) as sock:
        sock.sendall(
            post("/invocations", [[1.0] * 6], extra=AUTH)
            + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
            + post("/invocations", [[2.0] * 6], extra=AUTH)
        )
        first, second, third = read_responses(sock, 3)
    assert body_of(first) == {"predictions": [6.5]}
    assert body_of(second) == {"status": "ready"}
    assert body_of(third) == {"predictions": [12.5]}


def test_http_1_0_is_answered_and_closed(server):
    with connect(server.url) as sock:
        sock.sendall(post("/invocations", [[1.0] * 6], extra=AUTH, version="1.0"))
        response = read_all(sock)  # returns only once the server closed the connection
    assert b"connection: close" in response.lower()
    assert body_of(response) == {"predictions": [6.5]}


def test_expect_100_continue_gets_its_interim_answer(server):
    body = json.dumps({"instances": [[1.0] * 6]}).encode()
    with connect(server.url) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + AUTH.encode()
            + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert body_of(read_response(sock)) == {"predictions": [6.5]}


def test_a_body_over_the_limit_gets_413_and_never_reaches_the_model(server, asgi_calls):
    rows = [[1.0] * 6] * 200  # ~6 KB of JSON, over the 4 KB limit
    batches = len(server.app.model.predictor.batches)  # type: ignore[union-attr]
    with connect(server.url) as sock:
        sock.sendall(post("/invocations", rows, extra=AUTH))
        response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert body_of(response)["code"] == "payload_too_large"
    assert len(server.app.model.predictor.batches) == batches  # type: ignore[union-attr]


def test_the_token_is_checked_on_the_fast_path(server):
    with connect(server.url) as sock:
        sock.sendall(post("/invocations", [[1.0] * 6]))
        missing = read_response(sock)
        sock.sendall(post("/invocations", [[1.0] * 6], extra="Authorization: Bearer nope\r\n"))
        wrong = read_response(sock)
    for response in (missing, wrong):
        assert response.startswith(b"HTTP/1.1 401 ")
        assert b"www-authenticate: Bearer" in response


def test_a_bad_body_gets_a_400_naming_the_problem_on_the_fast_path(server):
    with connect(server.url) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + AUTH.encode()
            + b"Content-Length: 9\r\n\r\n{not json"
        )
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert body_of(response)["code"] == "malformed_json"
    assert b"Traceback" not in response
