"""One table from Google's errors onto cloudserve's tree.

HTTP statuses go through the core's shared table (``cloudserve.errors.HTTP_STATUS_ERRORS``)
with one Vertex override: a 409 is ``Aborted`` (retryable) — Vertex answers 409 for ABORTED, a
concurrent change to the same resource that is safe to repeat, as well as for ALREADY_EXISTS,
which is recognised by the ``google.rpc`` status the error body carries and stays
``AlreadyExists``. Network failures are ``ServiceUnavailable`` (retryable), including a token
fetch that could not reach the token server (``google.auth``'s ``TransportError``) and a
response cut off mid-body (``requests``' ``ChunkedEncodingError``); a token the server refuses
(``RefreshError``) is ``AuthError``.
"""

from __future__ import annotations

from cloudserve.errors import Aborted, AlreadyExists, AuthError, ErrorTable, ServiceUnavailable

__all__ = ["ERROR_TABLE", "HTTP_OVERRIDES"]


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _google_status(exc: BaseException) -> str | None:
    """The ``google.rpc`` status (``"ALREADY_EXISTS"``, ``"ABORTED"`` …): the REST error body's
    ``error.status``, or the gRPC status code."""
    grpc_code = getattr(exc, "grpc_status_code", None)
    if grpc_code is not None:
        return str(getattr(grpc_code, "name", grpc_code))
    response = getattr(exc, "response", None)
    try:
        return str(response.json()["error"]["status"])  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    """``(HTTP status or error name, message, Retry-After)`` of a Google / transport error."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.AlreadyExists) or _google_status(exc) == "ALREADY_EXISTS":
        return "AlreadyExists", exc.message or str(exc), None  # type: ignore[attr-defined]
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code if isinstance(exc.code, int) else None
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


HTTP_OVERRIDES = {409: Aborted}

ERROR_TABLE = ErrorTable(
    {
        "AlreadyExists": AlreadyExists,
        "GoogleAuthError": AuthError,
        "AuthTransportError": ServiceUnavailable,
        "RetryError": ServiceUnavailable,
        "ConnectionError": ServiceUnavailable,
        "ChunkedEncodingError": ServiceUnavailable,
    },
    extract=_extract,
    http_overrides=HTTP_OVERRIDES,
)
