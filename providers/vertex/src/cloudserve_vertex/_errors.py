"""One table from Google's errors onto cloudserve's tree.

HTTP statuses follow the shared table; Vertex's overrides are by the ``google.rpc`` status the
error body carries, because one HTTP status covers several: a 409 is ``ALREADY_EXISTS`` (not
retryable) or ``ABORTED`` (a concurrency conflict Google documents as safe to retry, e.g. two
updates of one endpoint at once). Network failures are ``ServiceUnavailable`` (retryable),
including a token fetch that could not reach the token server (``google.auth``'s
``TransportError``) and a response cut off mid-body (``ChunkedEncodingError``); a token the
server refuses is ``AuthError``.
"""

from __future__ import annotations

from typing import Any

from cloudserve.errors import (
    AlreadyExists,
    AuthError,
    ErrorTable,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
)

__all__ = ["ERROR_TABLE"]


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _rpc_status(exc: Any) -> str | None:
    """The ``google.rpc`` status name of an API error (REST body ``error.status`` or gRPC)."""
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return str(getattr(grpc_code, "name", grpc_code))
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except (ValueError, AttributeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("status") if isinstance(error, dict) else None


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    """``(code, message, Retry-After)`` of a Google / transport error; None when unknown."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        code: str | int | None = exc.code if isinstance(exc.code, int) else None
        status = _rpc_status(exc)
        if status in _BY_STATUS:
            code = status
        return code or type(exc).__name__, exc.message or str(exc), _retry_after(exc)
    if isinstance(exc, auth_exc.TransportError):
        return "AuthTransportError", f"cannot reach the token server: {exc}", None
    if isinstance(exc, auth_exc.GoogleAuthError):
        return "GoogleAuthError", str(exc), None
    if isinstance(exc, gexc.RetryError):
        return "RetryError", str(exc), None
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return "ConnectionError", str(exc), None
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "ChunkedEncodingError", f"the response was cut off: {exc}", None
    return None


# google.rpc statuses that decide the class where the HTTP status alone does not.
_BY_STATUS = {"ABORTED": ServiceUnavailable, "ALREADY_EXISTS": AlreadyExists}

ERROR_TABLE = ErrorTable(
    {
        400: InvalidRequest,
        401: AuthError,
        403: AuthError,
        404: NotFound,
        409: AlreadyExists,
        412: InvalidRequest,
        413: PayloadTooLarge,
        429: Throttled,
        500: ServiceUnavailable,
        502: ServiceUnavailable,
        503: ServiceUnavailable,
        504: ServiceUnavailable,
        **_BY_STATUS,
        "GoogleAuthError": AuthError,
        "AuthTransportError": ServiceUnavailable,
        "RetryError": ServiceUnavailable,
        "ConnectionError": ServiceUnavailable,
        "ChunkedEncodingError": ServiceUnavailable,
    },
    extract=_extract,
)
