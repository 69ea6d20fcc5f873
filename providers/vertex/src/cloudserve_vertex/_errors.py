"""One table from google.api_core errors onto cloudserve's tree."""

from __future__ import annotations

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


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    """``(HTTP status or error name, message, Retry-After)`` of a google-api-core error."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code if isinstance(exc.code, int) else None
        return code or type(exc).__name__, exc.message or str(exc), _retry_after(exc)
    if isinstance(exc, auth_exc.GoogleAuthError):
        return "GoogleAuthError", str(exc), None
    if isinstance(exc, gexc.RetryError):
        return "RetryError", str(exc), None
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return "ConnectionError", str(exc), None
    return None


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
        "GoogleAuthError": AuthError,
        "RetryError": ServiceUnavailable,
        "ConnectionError": ServiceUnavailable,
    },
    extract=_extract,
)
