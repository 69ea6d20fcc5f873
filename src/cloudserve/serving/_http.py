"""The HTTP/1.1 connection: uvicorn's httptools protocol with the limits a public server needs.

uvicorn parses and dispatches; this subclass adds what it leaves open:

- **timeouts** per connection state: *idle* (no request in progress, including a fresh connection
  that never sends a byte), *header* (from a request's first byte to the end of its headers) and
  *body* (from the end of the headers to the end of the body). One sweep per server checks every
  connection's deadline, so a request costs one float store per state, not a timer each;
- a **header size limit**: past ``max_header_bytes`` the request gets 431 before any route, auth
  or body handling, and the connection is closed without buffering the rest;
- **shedding on arrival**: when the headers are in, the app's
  ``admit(path, in_progress, oldest_s)`` may answer at once (503 + Retry-After, pre-encoded) so
  an overloaded server spends no time on the body, the ASGI task or the decoder of a request it
  would refuse anyway. ``in_progress`` counts the requests the app is reading or answering,
  ``oldest_s`` is how long the oldest fully received one has been waiting for its answer (the
  server's own queue age, whatever it waits on: the batcher, the model, or the event loop);
- **disconnect tracking**: the scope carries the transport under
  ``scope["extensions"]["cloudserve"]["transport"]`` so the batcher can drop a request whose client
  left before the model runs;
- **one write per answer**: ``scope["extensions"]["cloudserve"]["respond"](status, headers, body)``
  sends a complete response (status line, headers, ``content-length``, body) in one
  ``transport.write`` instead of uvicorn's two ASGI ``send`` calls and two writes;
- **graceful drain**: on shutdown an idle keep-alive connection is given ``DRAIN_GRACE_S`` to send
  the request its client may already have in flight (answered with ``Connection: close``) instead
  of being closed under it, which would reset that client;
- a **fast path** for the app's hottest routes: when the headers are in, ``fast(url, method)``
  may return a handler; the request then never becomes an ASGI scope, cycle or task. Its body
  is collected here (up to ``max_body_bytes``), and ``handler(exchange, headers, body)`` runs
  synchronously once it is complete; the app answers later, from any callback on the event
  loop, with ``exchange.respond(status, headers, body)`` (one write, as above). uvicorn's own
  per-request work (the scope, an ``asyncio.Event``, the cycle, the task, its keep-alive timer)
  was about as much CPU as the whole prediction of one row. Everything else (other routes, a
  pipelined request behind an unanswered one, ``Expect: 100-continue``) takes the ASGI path.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = ["Exchange", "FastHandler", "ServingProtocol", "make_protocol"]

_IDLE, _HEAD, _BODY, _BUSY, _LINGER = range(5)
_IN_HAND = (_BODY, _BUSY)  # a request the app is reading or answering
DRAIN_GRACE_S = 0.5
_LINGER_S = 2.0  # after a 431/408: read and discard this long so the client sees the answer


def _answer(status: bytes, code: str, message: str) -> bytes:
    body = b'{"error":"%s","code":"%s"}' % (message.encode(), code.encode())
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, len(body), body)
    )


class _Limits:
    """Per-server settings and the one sweep that enforces the deadlines."""

    def __init__(
        self,
        *,
        idle_timeout_s: float,
        header_timeout_s: float,
        body_timeout_s: float,
        max_header_bytes: int,
        admit: Callable[[bytes, int, float], bytes | None] | None,
        fast: Callable[[bytes, bytes], FastHandler | None] | None = None,
        max_body_bytes: int | None = None,
    ):
        self.timeouts = {
            _IDLE: idle_timeout_s,
            _HEAD: header_timeout_s,
            _BODY: body_timeout_s,
            _LINGER: _LINGER_S,
        }
        self.max_header_bytes = max_header_bytes
        self.in_hand = 0  # connections whose request the app is reading or answering
        # (since, connection) in the order their requests were fully received; an entry is
        # stale once that connection's ``received`` moved on (see ``oldest``)
        self.received: collections.deque[tuple[float, ServingProtocol]] = collections.deque()
        self.admit = admit
        self.fast = fast
        self.max_body_bytes = max_body_bytes
        self.body_too_large = _answer(
            b"413 Content Too Large",
            "payload_too_large",
            f"the body is over the {max_body_bytes}-byte limit",
        )
        self.too_large = _answer(
            b"431 Request Header Fields Too Large",
            "headers_too_large",
            f"the request headers are over the {max_header_bytes}-byte limit",
        )
        self.connections: weakref.WeakSet[ServingProtocol] = weakref.WeakSet()
        self._sweeping: asyncio.TimerHandle | None = None
        self.period = max(0.05, min(1.0, min(self.timeouts.values()) / 4))

    def oldest(self, now: float) -> float:
        """Seconds the oldest fully received, unanswered request has waited (0.0: none)."""
        received = self.received
        while received:
            since, conn = received[0]
            if conn.received == since and conn.state == _BUSY:
                return now - since
            received.popleft()
        return 0.0

    def track(self, conn: ServingProtocol) -> None:
        self.connections.add(conn)
        if self._sweeping is None:
            self._sweeping = conn.loop.call_later(self.period, self._sweep, conn.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in list(self.connections):
            if conn.deadline is not None and now >= conn.deadline:
                conn.expire()
        self._sweeping = (
            loop.call_later(self.period, self._sweep, loop) if self.connections else None
        )


def _response(
    status: int,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    keep_alive: bool,
    body: bytes,
    *,
    head: bool = False,
) -> bytes:
    """A whole HTTP/1.1 response: status line, headers, ``content-length`` and the body (none
    for a HEAD request), for one ``transport.write``."""
    parts = [STATUS_LINE[status]]
    for name, value in (*default_headers, *headers):
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"content-length: %d\r\n\r\n" % len(body))
    if not head:
        parts.append(body)
    return b"".join(parts)


class _NoEvent:
    """uvicorn's protocol sets its cycle's ``message_event``; a fast-path request has no reader."""

    @staticmethod
    def set() -> None:
        return None


class Exchange:
    """One request on the fast path: what uvicorn's protocol reads of a request cycle, and the
    way to answer it (:meth:`respond`, once)."""

    __slots__ = ("conn", "disconnected", "keep_alive", "response_complete", "response_started")
    message_event = _NoEvent()

    def __init__(self, conn: ServingProtocol, keep_alive: bool):
        self.conn = conn
        self.keep_alive = keep_alive
        self.response_started = self.response_complete = self.disconnected = False

    @property
    def transport(self) -> asyncio.Transport:
        """The client's connection (closing once the client left)."""
        return self.conn.transport

    def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Send the whole answer in one write; nothing happens if the client already left."""
        if self.disconnected or self.response_started:
            return
        self.response_started = True
        conn = self.conn
        transport = conn.transport
        transport.write(
            _response(status, conn.server_state.default_headers, headers, self.keep_alive, body)
        )
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        conn.on_response_complete()


#: the app's handler for a fast-path request: (exchange, headers, body) -> None
FastHandler = Callable[[Exchange, list[tuple[bytes, bytes]], bytes], None]


class ServingProtocol(HttpToolsProtocol):
    """One client connection (see the module docstring); :func:`make_protocol` sets ``limits``."""

    limits: _Limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _IDLE
        self.deadline: float | None = None
        self.received = 0.0  # when the request in hand was fully received
        self._head_bytes = 0
        self._shed = False
        self._draining = False
        self._fast: FastHandler | None = None  # the handler of the fast-path request being read
        self._body: list[bytes] = []
        self._body_size = 0

    def _enter(self, state: int) -> None:
        was_busy, busy = self.state in _IN_HAND, state in _IN_HAND
        if busy != was_busy:
            self.limits.in_hand += 1 if busy else -1
        self.state = state
        timeout = self.limits.timeouts.get(state)
        self.deadline = None if timeout is None else self.loop.time() + timeout

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter(_IDLE)
        self.limits.track(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(_IDLE)
        self.deadline = None
        self.limits.connections.discard(self)
        super().connection_lost(exc)

    def eof_received(self) -> None:
        if self.state == _LINGER:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _LINGER:
            return  # discard what a refused client still sends
        if state <= _HEAD:  # idle or reading headers
            self._head_bytes += len(data)
        super().data_received(data)
        if self.state <= _HEAD and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(self.limits.too_large)

    def expire(self) -> None:
        """The current state's deadline passed: 408 while a request is unanswered, else close."""
        waiting = self.cycle is not None and not self.cycle.response_started
        if self.state == _HEAD or (self.state == _BODY and not self._shed and waiting):
            what = "headers" if self.state == _HEAD else "body"
            self._refuse(
                _answer(b"408 Request Timeout", "timeout", f"the request {what} came too slowly")
            )
            return
        self.deadline = None
        self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        """Answer and half-close; keep reading (discarding) briefly so the client reads it."""
        self._enter(_LINGER)
        self._fast = None
        self._body = []
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # what uvicorn's on_message_begin resets; its ASGI scope is built only for a request
        # that takes the ASGI path (see _asgi_scope)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._enter(_HEAD)

    def _asgi_scope(self) -> None:
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers
        # one extension entry, a dict as ASGI wants extension values to be
        self._ext: dict[object, object] = {"transport": self.transport}
        self.scope["extensions"] = {"cloudserve": self._ext}

    def on_headers_complete(self) -> None:
        # _head_bytes counts whole reads, so it can include body bytes: look closer only then
        if self._head_bytes > self.limits.max_header_bytes and self._head_size() > (
            self.limits.max_header_bytes
        ):
            self._refuse(self.limits.too_large)
            return
        self._head_bytes = 0
        admit = self.limits.admit
        if admit is not None and (self.cycle is None or self.cycle.response_complete):
            answer = admit(self.url, self.limits.in_hand, self.limits.oldest(self.loop.time()))
            if answer is not None:
                self._shed = True
                self._enter(_BODY)
                self.transport.write(answer)
                return
        fast = self.limits.fast
        if (
            fast is not None
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete)
        ):
            handler = fast(self.url, self.parser.get_method())
            if handler is not None:
                parser = self.parser
                keep_alive = (
                    not self._draining
                    and parser.get_http_version() != "1.0"
                    and parser.should_keep_alive()
                )
                self.cycle = Exchange(self, keep_alive)  # type: ignore[assignment]
                self._fast = handler
                self._body = []
                self._body_size = 0
                self._enter(_BODY)
                return
        self._asgi_scope()
        super().on_headers_complete()
        if self._draining:
            self.cycle.keep_alive = False
        self._ext["respond"] = functools.partial(self._respond, self.cycle)
        self._enter(_BODY)

    def _respond(
        self, cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """The whole answer to ``cycle``'s request in one write (see the module docstring)."""
        if cycle.disconnected or cycle.response_started:
            return
        cycle.response_started = True
        head = cycle.scope["method"] == "HEAD"
        self.transport.write(
            _response(status, cycle.default_headers, headers, cycle.keep_alive, body, head=head)
        )
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) + 16

    def on_body(self, body: bytes) -> None:
        if self._fast is not None:
            self._body.append(body)
            self._body_size += len(body)
            limit = self.limits.max_body_bytes
            if limit is not None and self._body_size > limit:
                self._fast = None
                self._body = []
                self._refuse(self.limits.body_too_large)
            return
        if not self._shed and self.state != _LINGER:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.state == _LINGER:
            return
        handler = self._fast
        if handler is not None:
            self._fast = None
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            self._body = []
            self._enter(_BUSY)
            if self.limits.admit is not None:
                self.received = self.loop.time()
                self.limits.received.append((self.received, self))
            handler(self.cycle, self.headers, body)  # type: ignore[arg-type]
            return
        if self._shed:
            self._shed = False
            if self._draining or not self.parser.should_keep_alive():
                self.transport.close()
            self._enter(_IDLE)
            return
        answered = self.cycle is not None and self.cycle.response_complete  # e.g. an early 413
        self._enter(_IDLE if answered else _BUSY)
        if not answered and self.limits.admit is not None:  # only admission reads the ages
            self.received = self.loop.time()
            self.limits.received.append((self.received, self))
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.state == _BUSY:
            self._enter(_IDLE)
        # uvicorn's, without its keep-alive timer per answer: the sweep above times idle
        # connections out
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        if self._draining and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Drain: finish what is in flight; give an idle connection a short grace, then close."""
        self._draining = True
        if self._shed or self.state == _LINGER:
            # refused (503, 431, 408) and answered already: nothing in flight to finish
            self.transport.close()
        elif self.state == _IDLE:
            self.deadline = self.loop.time() + DRAIN_GRACE_S
        elif self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False


def make_protocol(
    *,
    idle_timeout_s: float,
    header_timeout_s: float,
    body_timeout_s: float,
    max_header_bytes: int,
    admit: Callable[[bytes, int, float], bytes | None] | None = None,
    fast: Callable[[bytes, bytes], FastHandler | None] | None = None,
    max_body_bytes: int | None = None,
) -> type[ServingProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits (and fast path)."""
    limits = _Limits(
        idle_timeout_s=idle_timeout_s,
        header_timeout_s=header_timeout_s,
        body_timeout_s=body_timeout_s,
        max_header_bytes=max_header_bytes,
        admit=admit,
        fast=fast,
        max_body_bytes=max_body_bytes,
    )
    return type("ServingProtocol", (ServingProtocol,), {"limits": limits})
