"""The one error tree of cloudserve.

Every error a user can see from cloudserve is a :class:`CloudServeError`. Providers translate
their SDK's native errors onto this tree through an :class:`ErrorTable`, keep the native code on
``.code`` and chain the original exception (``raise NotFound(...) from exc``)::

    CloudServeError                  .provider, .code, .retryable
    ├── ConfigError                  .file, .target, .field  (bad cloudserve.yaml / env)
    ├── ProviderNotFound             .install_hint
    ├── UnsupportedOperation         .capability, .reason    (raised before any request)
    ├── NotFound
    ├── AlreadyExists
    ├── InvalidRequest               bad spec or payload (HTTP 400)
    │   ├── PayloadTooLarge          (HTTP 413)
    │   ├── UnsupportedMediaType     a Content-Type no codec reads (HTTP 415)
    │   ├── NotAcceptable            an Accept no codec writes (HTTP 406)
    │   └── SmokeTestFailed          the artifact failed its pre-deploy check
    ├── AuthError                    credentials missing, expired or refused (401/403)
    ├── Throttled                    .retry_after            retryable
    ├── ServiceUnavailable           5xx, connection reset   retryable
    ├── OperationFailed              a long-running operation ended in failure
    └── Timeout                      a bounded wait ran out
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "AlreadyExists",
    "AuthError",
    "CloudServeError",
    "ConfigError",
    "ErrorTable",
    "InvalidRequest",
    "NotAcceptable",
    "NotFound",
    "OperationFailed",
    "PayloadTooLarge",
    "ProviderNotFound",
    "ServiceUnavailable",
    "SmokeTestFailed",
    "Throttled",
    "Timeout",
    "UnsupportedMediaType",
    "UnsupportedOperation",
]


class CloudServeError(Exception):
    """Base of every cloudserve error.

    ``provider`` names the provider that raised it (``None`` for core errors), ``code`` keeps the
    native error code (``"ValidationException"``, ``404``, ``"ResourceNotFound"`` …).
    """

    retryable: bool = False

    def __init__(self, message: str, *, provider: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code

    def __str__(self) -> str:
        where = f"[{self.provider}] " if self.provider else ""
        code = f" ({self.code})" if self.code else ""
        return f"{where}{self.message}{code}"


class ConfigError(CloudServeError):
    """The targets file or the environment does not describe a valid target.

    ``str(err)`` is one line naming the file, the target and the field.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        target: str | None = None,
        field: str | None = None,
    ):
        super().__init__(message)
        self.file = file
        self.target = target
        self.field = field

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.target:
            parts.append(f"target '{self.target}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        where = ", ".join(parts)
        return f"{where}: {self.message}" if where else self.message


class ProviderNotFound(CloudServeError):
    """No provider of that name is installed; ``install_hint`` says what to install."""

    def __init__(self, name: str, *, install_hint: str | None = None):
        hint = f" Install it with: {install_hint}" if install_hint else ""
        super().__init__(f"no cloudserve provider named '{name}' is installed.{hint}")
        self.name = name
        self.install_hint = install_hint


class UnsupportedOperation(CloudServeError):
    """The provider lacks the capability the operation needs. Raised before any request."""

    def __init__(self, capability: Any, reason: str, *, provider: str | None = None):
        cap = getattr(capability, "value", capability)
        super().__init__(f"{cap} is not supported: {reason}", provider=provider)
        self.capability = capability
        self.reason = reason


class NotFound(CloudServeError):
    """The endpoint, model, job or object does not exist."""


class AlreadyExists(CloudServeError):
    """A resource of that name already exists and cannot be reused as asked."""


class InvalidRequest(CloudServeError):
    """The spec or payload is invalid; the message names the problem."""


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the endpoint accepts."""


class UnsupportedMediaType(InvalidRequest):
    """The request's ``Content-Type`` is not JSON, CSV or NPY (HTTP 415)."""


class NotAcceptable(InvalidRequest):
    """The ``Accept`` header asks for a format the server cannot produce (HTTP 406)."""


class SmokeTestFailed(InvalidRequest):
    """The model artifact failed its pre-deploy smoke test; nothing was created."""


class AuthError(CloudServeError):
    """Credentials are missing, expired or not allowed to do this."""


class Throttled(CloudServeError):
    """The service asked us to slow down. ``retry_after`` is its hint in seconds, if any."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, provider=provider, code=code)
        self.retry_after = retry_after


class ServiceUnavailable(CloudServeError):
    """A 5xx answer, a dropped connection or a read timeout: safe to retry when idempotent."""

    retryable = True


class OperationFailed(CloudServeError):
    """A long-running operation (deploy, batch job, tuning job) ended in failure."""


class Timeout(CloudServeError):
    """A bounded wait ran out before the operation finished."""


ErrorFactory = type[CloudServeError]


class ErrorTable:
    """Maps native error codes onto the tree.

    ``codes`` maps a native code (a string such as ``"ValidationException"`` or an HTTP status
    as int) to an error class. ``extract`` pulls ``(code, message, retry_after)`` out of a native
    exception; it returns ``None`` for exceptions the table does not know.
    """

    def __init__(
        self,
        codes: Mapping[str | int, ErrorFactory],
        *,
        extract: Callable[[BaseException], tuple[str | int | None, str, float | None] | None],
        default: ErrorFactory = CloudServeError,
    ):
        self.codes = dict(codes)
        self.extract = extract
        self.default = default

    def translate(self, exc: BaseException, *, provider: str) -> CloudServeError:
        """Return the cloudserve error for ``exc`` with ``__cause__`` set to ``exc``.

        A ``CloudServeError`` passes through unchanged.
        """
        if isinstance(exc, CloudServeError):
            return exc
        found = self.extract(exc)
        if found is None:
            err: CloudServeError = self.default(f"{type(exc).__name__}: {exc}", provider=provider)
        else:
            code, message, retry_after = found
            cls = self.codes.get(code, self.default) if code is not None else self.default
            code_str = None if code is None else str(code)
            if issubclass(cls, Throttled):
                err = cls(message, provider=provider, code=code_str, retry_after=retry_after)
            else:
                err = cls(message, provider=provider, code=code_str)
        err.__cause__ = exc
        return err


def http_status_error(status: int) -> ErrorFactory:
    """The error class for an HTTP status code, used by every HTTP-speaking table."""
    if status == 404:
        return NotFound
    if status == 409:
        return AlreadyExists
    if status == 413:
        return PayloadTooLarge
    if status in (401, 403):
        return AuthError
    if status == 429:
        return Throttled
    if status >= 500:
        return ServiceUnavailable
    if 400 <= status < 500:
        return InvalidRequest
    return CloudServeError
