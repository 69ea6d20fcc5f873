"""One table from AWS error codes (botocore ``ClientError`` and transport errors) onto the tree.

SageMaker reports "not found" and "already exists" as ``ValidationException`` /
``ValidationError`` with a message, so those two codes are refined by their message before the
table is consulted; ``.code`` keeps the native code either way.
"""

from __future__ import annotations

import re

from cloudserve.errors import (
    AlreadyExists,
    AuthError,
    CloudServeError,
    ErrorTable,
    InvalidRequest,
    NotFound,
    OperationFailed,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
)

__all__ = ["ERROR_TABLE", "extract"]

_NOT_FOUND = re.compile(r"could not find|not found|does not exist|can't find|no such", re.I)
_EXISTS = re.compile(r"already exist", re.I)
_TOO_LARGE = re.compile(r"payload .*(exceed|too large)|exceeds the \d+ ?MB limit", re.I)

CODES: dict[str, type[CloudServeError]] = {
    "ValidationException": InvalidRequest,
    "ValidationError": InvalidRequest,
    "ValidationException/NotFound": NotFound,
    "ValidationException/AlreadyExists": AlreadyExists,
    "ValidationException/TooLarge": PayloadTooLarge,
    "ResourceNotFound": NotFound,
    "ResourceNotFoundException": NotFound,
    "NoSuchKey": NotFound,
    "NoSuchBucket": NotFound,
    "ResourceInUse": AlreadyExists,
    "ConflictException": AlreadyExists,
    "ResourceLimitExceeded": InvalidRequest,
    "ModelError": InvalidRequest,
    "ModelError/5xx": OperationFailed,
    # the Price List API (pricing refresh)
    "InvalidParameterException": InvalidRequest,
    "InvalidNextTokenException": InvalidRequest,
    "ExpiredNextTokenException": InvalidRequest,
    "NotFoundException": NotFound,
    "ModelNotReadyException": ServiceUnavailable,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "ThrottledException": Throttled,
    "TooManyRequestsException": Throttled,
    "RequestLimitExceeded": Throttled,
    "SlowDown": Throttled,
    "ServiceUnavailable": ServiceUnavailable,
    "InternalFailure": ServiceUnavailable,
    "InternalDependencyException": ServiceUnavailable,
    "InternalServerError": ServiceUnavailable,
    "InternalError": ServiceUnavailable,
    "ServiceUnavailableException": ServiceUnavailable,
    "AccessDeniedException": AuthError,
    "AccessDenied": AuthError,
    "UnrecognizedClientException": AuthError,
    "InvalidClientTokenId": AuthError,
    "ExpiredTokenException": AuthError,
    "ExpiredToken": AuthError,
    "NoCredentialsError": AuthError,
    "EndpointConnectionError": ServiceUnavailable,
    "ConnectionClosedError": ServiceUnavailable,
    "ReadTimeoutError": ServiceUnavailable,
    "ConnectTimeoutError": ServiceUnavailable,
}


def extract(exc: BaseException) -> tuple[str | int | None, str, float | None] | None:
    """(code, message, retry-after) of a botocore error, or None for other exceptions."""
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if not err.get("Code") and isinstance(status, int):
            # no AWS code (an S3 HEAD, a proxy's answer): the HTTP status goes through the table
            return status, str(err.get("Message") or exc), None
        code = str(err.get("Code") or status)
        message = str(err.get("Message") or exc)
        if code == "ModelError":
            original = exc.response.get("OriginalMessage") or message
            if int(exc.response.get("OriginalStatusCode") or 400) >= 500:
                # the container failed (not the caller's input): a model fault, not retried
                return "ModelError/5xx", f"the model failed: {original}", None
            message = f"the model rejected the request: {original}"
        if code not in CODES and isinstance(status, int) and status >= 500:
            code = "InternalFailure"
        return code, message, None
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return "NoCredentialsError", str(exc), None
    if isinstance(exc, bce.ConnectionClosedError | bce.EndpointConnectionError):
        return "EndpointConnectionError", str(exc), None
    if isinstance(exc, bce.ReadTimeoutError | bce.ConnectTimeoutError):
        return "ReadTimeoutError", str(exc), None
    return None


class _AwsErrorTable(ErrorTable):
    """The table, with validation codes refined by their message (see the module docstring)."""

    def translate(self, exc: BaseException, *, provider: str) -> CloudServeError:
        found = self.extract(exc)
        if found is not None and str(found[0]).startswith("Validation"):
            code, message, _ = found
            for kind, pattern in (
                ("NotFound", _NOT_FOUND),
                ("AlreadyExists", _EXISTS),
                ("TooLarge", _TOO_LARGE),
            ):
                if pattern.search(message):
                    cls = self.codes[f"ValidationException/{kind}"]
                    err = cls(message, provider=provider, code=str(code))
                    err.__cause__ = exc
                    return err
        return super().translate(exc, provider=provider)


ERROR_TABLE = _AwsErrorTable(CODES, extract=extract)
