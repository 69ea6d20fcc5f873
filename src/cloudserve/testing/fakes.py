"""Small pieces shared by the cloud fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Degradation", "request_body"]


@dataclass
class Degradation:
    """An injected fault of one variant of a fake (``fake.degrade(...)``): every
    ``1/error_rate``-th answer fails — spread evenly, so any window of its traffic sees the
    rate — and ``latency_ms`` is added to the latency each answer reports in its metrics."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    answered: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.error_rate <= 1 or self.latency_ms < 0:
            raise ValueError("error_rate is a fraction in 0..1 and latency_ms is not negative")

    def fails_next(self) -> bool:
        """Whether the next answer fails (and count it)."""
        n = self.answered
        self.answered += 1
        return int((n + 1) * self.error_rate) > int(n * self.error_rate)


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
