"""One table from azure-core / azure-ai-ml errors (and scoring answers) onto cloudserve's tree."""

from __future__ import annotations

from typing import Any

from cloudserve.errors import AuthError, ErrorTable, InvalidRequest, ServiceUnavailable

__all__ = ["ERROR_TABLE", "HTTP_OVERRIDES", "ScoringError"]


# Azure answers 424 ("Model Error") when the scoring container answers non-200, with the
# container's own status in this header (and a reason in ms-azureml-model-error-reason):
# https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints
MODEL_STATUS_HEADER = "ms-azureml-model-error-statuscode"
MODEL_REASON_HEADER = "ms-azureml-model-error-reason"


class ScoringError(Exception):
    """A non-2xx answer of an endpoint's scoring URI (not an azure-core call).

    ``status`` is what Azure answered; ``model_status`` the scoring container's own status
    when Azure wrapped it in a 424. The error is translated by the container's status: a 400
    from the scoring script is the caller's fault, not a service outage.
    """

    def __init__(
        self,
        status: int,
        message: str,
        retry_after: float | None = None,
        model_status: int | None = None,
    ):
        where = f"the model container answered {model_status}" if model_status else "scoring"
        super().__init__(f"{where} (HTTP {status}): {message}")
        self.status = status
        self.retry_after = retry_after
        self.model_status = model_status

    @classmethod
    def from_response(cls, status: int, headers: Any, text: str) -> ScoringError:
        """Read Azure's answer: its 424 headers, ``Retry-After`` and the body's message."""
        model_status = None
        if status == 424:
            try:
                model_status = int(headers.get(MODEL_STATUS_HEADER) or "")
            except ValueError:
                model_status = None
            reason = headers.get(MODEL_REASON_HEADER)
            if reason:
                text = f"{reason}: {text}"
        retry_after = headers.get("Retry-After")
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        return cls(status, text[:500], wait, model_status)


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    if isinstance(exc, ScoringError):
        return exc.model_status or exc.status, str(exc), exc.retry_after
    import requests

    # a reset connection or a read timeout on the scoring URI: the request may be repeated
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return "ServiceRequestError", f"{type(exc).__name__}: {exc}", None
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


# Azure ML answers 424 (Failed Dependency) when the deployment's own scoring container failed.
# A 424 that carries the container's status is translated by that status (see _extract: a 400
# from the scoring script is the caller's fault); a bare one means the container failed its
# probes or crashed. 408 is the model running past request_timeout_ms. Other statuses mean
# what the core's table says.
# ARM PUT is idempotent, so a 409 is never "already exists": it is a PUT that arrived while
# another operation on the same resource runs ("Conflict of operation, another operation on same
# entity is already running") — safe to repeat once that operation ends.
HTTP_OVERRIDES = {408: ServiceUnavailable, 409: ServiceUnavailable, 424: ServiceUnavailable}

ERROR_TABLE = ErrorTable(
    {
        "ClientAuthenticationError": AuthError,
        "ServiceRequestError": ServiceUnavailable,
        "ValidationException": InvalidRequest,
    },
    extract=_extract,
    http_overrides=HTTP_OVERRIDES,
)
