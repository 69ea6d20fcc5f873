"""One table from google.api_core errors onto cloudserve's tree."""

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
    """The ``error.status`` (``"ALREADY_EXISTS"``, ``"ABORTED"`` …) of a REST error answer."""
    response = getattr(exc, "response", None)
    try:
        return str(response.json()["error"]["status"])  # type: ignore[union-attr]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    """``(HTTP status or error name, message, Retry-After)`` of a google-api-core error."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.AlreadyExists) or _google_status(exc) == "ALREADY_EXISTS":
        return "AlreadyExists", exc.message or str(exc), None  # type: ignore[attr-defined]
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


# Vertex answers 409 for ABORTED (a concurrent change to the same resource, safe to retry)
# as well as for ALREADY_EXISTS, which ``_extract`` names by its own code.
HTTP_OVERRIDES = {409: Aborted}

ERROR_TABLE = ErrorTable(
    {
        "AlreadyExists": AlreadyExists,
        "GoogleAuthError": AuthError,
        "RetryError": ServiceUnavailable,
        "ConnectionError": ServiceUnavailable,
    },
    extract=_extract,
    http_overrides=HTTP_OVERRIDES,
)
