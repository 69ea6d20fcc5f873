"""Small HTTP helpers shared by the fake's routes: replies and Google-style error bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# google.rpc.Code names for the HTTP statuses the fake answers with.
_STATUS = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"),
    409: (6, "ALREADY_EXISTS"),
    412: (9, "FAILED_PRECONDITION"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "INTERNAL"),
    503: (14, "UNAVAILABLE"),
}


@dataclass
class Reply:
    """One HTTP answer of the fake."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def as_tuple(self) -> tuple[int, dict[str, str], bytes]:
        return self.status, self.headers, self.body


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, orjson.dumps(data), {"Content-Type": "application/json", **(headers or {})}
    )


def error_reply(
    status: int, message: str, headers: dict[str, str] | None = None, name: str | None = None
) -> Reply:
    """A Google API error body (``{"error": {code, message, status}}``); ``name`` overrides the
    status name where one HTTP status has several (409: ALREADY_EXISTS or ABORTED)."""
    name = name or _STATUS.get(status, (2, "UNKNOWN"))[1]
    body = {"error": {"code": status, "message": message, "status": name}}
    return json_reply(body, status, headers)


def rpc_code(status: int) -> int:
    """The google.rpc.Code for an HTTP status (used in failed operations)."""
    return _STATUS.get(status, (2, "UNKNOWN"))[0]


class ApiError(Exception):
    """Raised inside a route to answer with a Google API error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
