"""Small pieces shared by the cloud fakes that intercept HTTP with ``responses``."""

from __future__ import annotations

from typing import Any

__all__ = ["request_body"]


def request_body(request: Any) -> bytes:
    """The body of a ``requests.PreparedRequest`` as bytes (str, bytes or a file-like stream)."""
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return body.read()  # a file-like upload stream
