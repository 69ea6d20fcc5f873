"""A loopback HTTP server whose response delay follows a known, injected profile."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Delay = Callable[[int, float], float]  # (request number, seconds since start) → delay in s


def every_nth(slow_every: int, fast_s: float, slow_s: float) -> Delay:
    """Request k sleeps ``slow_s`` when k % slow_every == slow_every - 1, else ``fast_s``."""
    return lambda k, _t: slow_s if k % slow_every == slow_every - 1 else fast_s


def periodic_stall(period_s: float, stall_s: float, base_s: float) -> Delay:
    """The whole server stalls for the first ``stall_s`` of every ``period_s``.

    A request arriving inside a stall waits until it ends, the way a GC pause or a
    stop-the-world compaction holds every request that is in flight.
    """

    def delay(_k: int, t: float) -> float:
        phase = t % period_s
        return base_s + (stall_s - phase if phase < stall_s else 0.0)

    return delay


@contextmanager
def loopback_server(delay: Delay, *, status: Callable[[int], int] = lambda k: 200) -> Iterator[str]:
    """Serve POST / on 127.0.0.1 with the given delay profile; yields the URL."""
    counter = itertools.count()
    lock = threading.Lock()
    started = time.perf_counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes; without this, Nagle + delayed ACK add 40 ms.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                k = next(counter)
            time.sleep(delay(k, time.perf_counter() - started))
            code = status(k)
            out = json.dumps({"predictions": [0 for _ in body.get("instances", [])]}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
