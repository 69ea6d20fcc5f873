"""Connection limits and overload: timeouts, header size, shedding on arrival, abandoned requests."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloudserve.packaging import write_manifest
from cloudserve.serving import BackgroundServer

# A predictor that records the first value of every row it is given, and takes its time.
RECORDING_PREDICTOR = textwrap.dedent(
    """
    import time
    from cloudserve.serving import Predictor

    class Recording(Predictor):
        def load(self, path):
            self.seen = []
            self.delay = float((path / "delay.txt").read_text())

        def predict(self, batch):
            self.seen.extend(row[0] for row in batch)
            time.sleep(self.delay)
            return [sum(row) for row in batch]
    """
)


def recording_model(directory: Path, delay: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "recording.py").write_text(RECORDING_PREDICTOR)
    (directory / "delay.txt").write_text(str(delay))
    write_manifest(directory, framework="custom", predictor="recording:Recording")
    return directory


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (the connection stays open)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def strict(custom_dir: Path) -> Iterator[BackgroundServer]:
    """Short timeouts, a small header limit and a token."""
    with BackgroundServer(
        custom_dir,
        idle_timeout_s=0.5,
        header_timeout_s=0.5,
        body_timeout_s=0.5,
        max_header_bytes=4096,
        token="tok",
    ) as srv:
        yield srv


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(strict):
    sock = connect(strict.url)
    started = time.monotonic()
    assert read_all(sock) == b""  # closed by the server, nothing sent
    assert 0.4 <= time.monotonic() - started < 5


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(strict):
    sock = connect(strict.url)
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert read_all(sock) == b""
    assert 0.4 <= time.monotonic() - started < 5


def test_headers_sent_too_slowly_get_408_and_the_connection_closes(strict):
    sock = connect(strict.url)
    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"code":"timeout"' in answer and b"headers" in answer


def test_a_body_sent_too_slowly_gets_408(strict):
    sock = connect(strict.url)
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[[1, 2]"
    )
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body" in answer


@pytest.mark.parametrize("size", [8 * 1024, 8 * 1024 * 1024])
def test_an_oversized_header_gets_431_before_auth(strict, size: int):
    sock = connect(strict.url)
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(head)  # the server may stop reading once it has enough to refuse
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]  # not 401: no token was sent
    assert b'"code":"headers_too_large"' in answer


def test_headers_under_the_limit_and_the_token_still_work(strict):
    r = httpx.post(
        f"{strict.url}/invocations",
        json=[[1, 2]],
        headers={"authorization": "Bearer tok", "x-trace": "t" * 2000},
    )
    assert r.status_code == 200 and r.json() == {"predictions": [3.5]}


@pytest.fixture()
def slow_recording(tmp_path: Path) -> Path:
    return recording_model(tmp_path / "recording", delay=1.0)


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def _post_in_thread(url: str, row: list[float], out: list, timeout: float = 30) -> threading.Thread:
    def call() -> None:
        try:
            out.append(httpx.post(f"{url}/invocations", json=[row], timeout=timeout))
        except httpx.TimeoutException as exc:
            out.append(exc)

    t = threading.Thread(target=call)
    t.start()
    return t


def send_raw(url: str, row: list[float]) -> socket.socket:
    """A request on its own connection, without waiting for the answer."""
    sock = connect(url)
    body = json.dumps([row]).encode()
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def test_shed_on_arrival_by_queue_wait_before_the_body_is_read(tmp_path: Path):
    # 0.3 s a batch, one request a batch: once one request is in the model and one waits, a
    # new one would wait 0.3-0.6 s, far over 50 ms, for the next 0.3 s at least.
    model = recording_model(tmp_path / "m", delay=0.3)
    with BackgroundServer(model, max_batch_size=1, max_queue_ms=50) as srv:
        batcher = srv.app.batcher
        assert httpx.post(f"{srv.url}/invocations", json=[[0, 0]]).status_code == 200
        queued = [send_raw(srv.url, [i, 0]) for i in range(1, 6)]
        wait_until(lambda: batcher.overloaded() is not None)
        sock = connect(srv.url)
        # Headers only: the answer must come without the body ever being sent.
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        answer = read_response(sock)
        sock.close()  # its body will never come: do not keep the drain waiting for it
        answers = [read_response(q) for q in queued]
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"retry-after: " in answer.lower() and b'"code":"overloaded"' in answer
    served = [a for a in answers if a.startswith(b"HTTP/1.1 200")]
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(served) + len(refused) == len(answers)  # what was admitted is served
    assert 1 <= len(served) <= 2, answers  # one in the model (and one waiting), then refused
    assert all(b"retry-after: " in a.lower() for a in refused)
    assert f"cloudserve_shed_requests_total {1 + len(refused)}.0" in metrics


def test_a_refused_request_whose_body_never_comes_does_not_hold_the_drain(tmp_path: Path):
    model = recording_model(tmp_path / "m", delay=0.3)
    srv = BackgroundServer(model, max_batch_size=1, max_queue_ms=50, drain_timeout_s=60)
    with srv:
        assert httpx.post(f"{srv.url}/invocations", json=[[0, 0]]).status_code == 200
        queued = [send_raw(srv.url, [i, 0]) for i in range(1, 4)]
        wait_until(lambda: srv.app.batcher.overloaded() is not None)
        sock = connect(srv.url)
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        assert read_response(sock).startswith(b"HTTP/1.1 503")
        for q in queued:
            read_response(q)
        started = time.monotonic()
    # the drain closed the refused connection instead of waiting the 60 s for its body
    assert time.monotonic() - started < 20
    assert sock.recv(100) == b""
    sock.close()


def test_a_full_batch_waiting_refuses_once_the_wait_passes_the_limit(custom_dir: Path):
    """Admission when the model is the bottleneck: the next model call always has a full batch
    waiting, and a new request is refused once what it would wait (the batch in the model, then
    each full batch ahead) passes ``max_queue_ms``."""
    from cloudserve.serving._batching import Batcher, _Item

    batcher = Batcher(None, max_batch_size=4, max_wait_ms=2, max_queue=100, max_queue_ms=20)  # type: ignore[arg-type]
    batcher._batch_s = 0.008

    def queue(n: int) -> None:
        batcher._queue.clear()
        batcher._queue.extend(_Item([[0]], 1, {}, b"", lambda *_: None) for _ in range(n))

    queue(3)
    assert batcher.overloaded() is None  # the next model call takes it
    queue(4)
    assert batcher.overloaded() is None  # 8 ms in the model + one batch ahead: 16 ms
    queue(8)
    assert batcher.overloaded() == 1  # 8 + 2 x 8 = 24 ms: refused
    batcher._running_since = time.perf_counter() - 0.006  # the batch in the model is 3/4 done
    assert batcher.overloaded() is None  # 2 + 16 = 18 ms
    queue(100)
    assert batcher.overloaded() is not None  # the hard bound
    batcher._executor.shutdown()


def test_a_slow_first_batch_does_not_make_its_queue_look_old(slow_recording: Path):
    with BackgroundServer(slow_recording, max_batch_size=1, max_queue_ms=50) as srv:
        seen, batcher = srv.app.model.predictor.seen, srv.app.batcher
        first = send_raw(srv.url, [1, 0])
        wait_until(lambda: seen == [1])  # 1 s in the model, no estimate yet
        second = send_raw(srv.url, [2, 0])
        wait_until(lambda: batcher.depth == 1)
        time.sleep(0.2)
        assert batcher.overloaded() is None
        assert read_response(first).startswith(b"HTTP/1.1 200")
        assert read_response(second).startswith(b"HTTP/1.1 200")


def test_shed_on_arrival_by_queue_depth(slow_recording: Path):
    with BackgroundServer(slow_recording, max_batch_size=1, max_queue=1) as srv:
        seen, batcher = srv.app.model.predictor.seen, srv.app.batcher
        out: list = []
        first = _post_in_thread(srv.url, [1, 0], out)
        wait_until(lambda: seen == [1])
        second = _post_in_thread(srv.url, [2, 0], out)
        wait_until(lambda: batcher.depth == 1)
        r = httpx.post(f"{srv.url}/invocations", content=b"not even json")  # never decoded
        first.join(10)
        second.join(10)
        # after a shed the keep-alive connection goes on serving
        with httpx.Client(base_url=srv.url) as client:
            assert client.post("/invocations", json=[[3, 0]]).status_code == 200
    assert r.status_code == 503 and r.json()["code"] == "overloaded"
    assert int(r.headers["retry-after"]) >= 1
    assert sorted(r.status_code for r in out) == [200, 200]


def test_a_request_whose_client_left_is_not_sent_to_the_model(slow_recording: Path):
    with BackgroundServer(slow_recording, max_batch_size=64) as srv:
        seen, batcher = srv.app.model.predictor.seen, srv.app.batcher
        out: list = []
        first = _post_in_thread(srv.url, [1, 0], out)
        wait_until(lambda: seen == [1])  # the model is busy for 1 s
        quitters = [send_raw(srv.url, [777, 0]) for _ in range(8)]
        wait_until(lambda: batcher.depth == 8)  # all queued behind the first ...
        for sock in quitters:
            sock.close()  # ... and their clients give up
        first.join(10)
        last = httpx.post(f"{srv.url}/invocations", json=[[2, 0]], timeout=30)
        metrics = httpx.get(f"{srv.url}/metrics").text
    assert [r.status_code for r in out] == [200]
    assert last.json() == {"predictions": [2.0]}
    assert seen == [1, 2], seen  # the model never saw an abandoned row
    assert "cloudserve_abandoned_requests_total 8.0" in metrics


def test_shed_on_arrival_when_the_event_loop_runs_late(custom_dir: Path):
    """Requests waiting unread in the sockets show in no queue: a late event loop sheds too,
    once the server has more requests in hand than a batch (never a closed loop's few), while
    the requests' own work is what keeps it busy."""
    with BackgroundServer(custom_dir, max_queue_ms=20, max_batch_size=4) as srv:
        batcher = srv.app.batcher
        assert batcher.overloaded(in_progress=10) is None
        loop = batcher._task.get_loop()  # the server thread's event loop
        stop = time.monotonic() + 1.0

        def hog() -> None:  # a server too busy with its requests' work to keep passes short
            time.sleep(0.05)
            batcher.note_work(0.05)
            if time.monotonic() < stop:
                loop.call_soon(hog)

        loop.call_soon_threadsafe(hog)
        wait_until(lambda: batcher.overloaded(in_progress=10) is not None, timeout=5)
        assert batcher.overloaded(in_progress=4) is None  # a batch's worth is still let in
        wait_until(lambda: batcher.overloaded(in_progress=10) is None, timeout=10)  # recovers
        served = httpx.post(f"{srv.url}/invocations", json=[[1, 2]], timeout=10)
    assert served.status_code == 200


def test_what_the_model_loaded_is_frozen_out_of_the_collector(custom_dir: Path):
    """A full collection under load must not walk the model and every import (the c=64 tail)."""
    gc.unfreeze()
    with BackgroundServer(custom_dir) as srv:
        assert srv.app.model is not None
        assert gc.get_freeze_count() > 0
    gc.unfreeze()


def test_shed_on_arrival_by_the_age_of_the_requests_in_hand(custom_dir: Path):
    """Admitted requests waiting past the limit (on anything: the loop, the batcher, the
    model) make the server refuse a share of new ones growing with the age; never while no
    more than a batch is in hand."""
    with BackgroundServer(custom_dir, max_queue_ms=20, max_batch_size=4) as srv:
        batcher = srv.app.batcher
        # the HTTP work every request costs (refused or not) is the bottleneck: no refusing
        assert batcher.work_share() < 0.25
        assert batcher.overloaded(in_progress=10, oldest_s=0.5) is None

        def decided(in_progress: int, oldest_s: float) -> int | None:
            batcher.note_work(1.0)  # the requests' own work is the bottleneck
            return batcher.overloaded(in_progress=in_progress, oldest_s=oldest_s)

        assert decided(10, 0.01) is None
        assert decided(4, 5.0) is None  # a batch's worth
        assert decided(10, 0.5) == 1  # far past: all refused
        # 1.5x the limit: about half refused (bounds ~10 standard deviations wide)
        refused = sum(decided(10, 0.03) is not None for _ in range(400))
        assert 100 < refused < 300, refused


def test_the_work_share_is_the_recent_time_spent_on_the_requests_own_work():
    from cloudserve.serving._batching import WORK_S, Batcher

    batcher = Batcher(None, max_batch_size=4, max_wait_ms=2, max_queue=100)  # type: ignore[arg-type]
    assert batcher.work_share() == 0.0
    batcher.note_work(WORK_S / 2)
    assert 0.45 < batcher.work_share() <= 0.5
    batcher._work_at -= WORK_S  # one time constant later, with no more work: e^-1 of it
    assert 0.15 < batcher.work_share() < 0.2
    batcher._running_since = time.perf_counter() - 10 * WORK_S  # a long batch in the model
    assert batcher.work_share() == 1.0
    batcher._executor.shutdown()


def test_the_http_layer_tells_admission_how_long_received_requests_have_waited(
    slow_recording: Path,
):
    with BackgroundServer(slow_recording, max_batch_size=1, max_queue_ms=20) as srv:
        seen, batcher = srv.app.model.predictor.seen, srv.app.batcher
        asked: list[tuple[int, float]] = []
        decide = batcher.overloaded

        def recording(in_progress: int = 0, oldest_s: float = 0.0) -> int | None:
            asked.append((in_progress, oldest_s))
            return decide(in_progress, oldest_s)

        batcher.overloaded = recording  # type: ignore[method-assign]
        first = send_raw(srv.url, [1, 0])
        wait_until(lambda: seen == [1])  # 1 s in the model
        queued = [send_raw(srv.url, [i, 0]) for i in (2, 3)]
        wait_until(lambda: batcher.depth == 2)
        time.sleep(0.3)
        last = send_raw(srv.url, [4, 0])
        answers = [read_response(s) for s in (first, *queued, last)]
    in_progress, oldest = asked[-1]
    assert in_progress == 3 and oldest >= 0.3, asked
    # the wait was the batch in the model: nothing was refused for it
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
