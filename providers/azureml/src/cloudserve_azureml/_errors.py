"""One table from azure-core / azure-ai-ml errors (and scoring answers) onto cloudserve's tree."""

from __future__ import annotations

from typing import Any

from cloudserve.errors import AuthError, ErrorTable, InvalidRequest, ServiceUnavailable

__all__ = ["ERROR_TABLE", "HTTP_OVERRIDES", "ScoringError"]


class ScoringError(Exception):
    """A non-2xx answer of an endpoint's scoring URI (not an azure-core call)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"scoring answered {status}: {message}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    if isinstance(exc, ScoringError):
        return exc.status, str(exc), exc.retry_after
    from azure.core import exceptions as az

    if isinstance(exc, az.ClientAuthenticationError):
        return "ClientAuthenticationError", exc.message or str(exc), None
    if isinstance(exc, az.HttpResponseError):
        return exc.status_code, exc.message or str(exc), _retry_after(exc.response)
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError):
        return "ServiceRequestError", str(exc), None
    if type(exc).__name__ in ("ValidationException", "UserErrorException"):
        return "ValidationException", str(exc), None
    return None


# Azure ML answers 424 (Failed Dependency) when the deployment's own scoring container failed;
# HTTP statuses otherwise mean what the core's table says.
HTTP_OVERRIDES = {424: ServiceUnavailable}

ERROR_TABLE = ErrorTable(
    {
        "ClientAuthenticationError": AuthError,
        "ServiceRequestError": ServiceUnavailable,
        "ValidationException": InvalidRequest,
    },
    extract=_extract,
    http_overrides=HTTP_OVERRIDES,
)
