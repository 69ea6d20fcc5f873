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
    │   ├── InvalidSpec              .spec, .field, .problems   a spec field is invalid
    │   ├── PayloadTooLarge          (HTTP 413)
    │   ├── UnsupportedMediaType     a Content-Type no codec reads (HTTP 415)
    │   ├── NotAcceptable            an Accept no codec writes (HTTP 406)
    │   └── SmokeTestFailed          the artifact failed its pre-deploy check
    ├── AuthError                    credentials missing, expired or refused (401/403)
    ├── Aborted                      a concurrent change got in the way     retryable
    ├── Throttled                    .retry_after            retryable
    ├── ServiceUnavailable           5xx, connection reset   retryable
    ├── OperationFailed              a long-running operation ended in failure
    └── Timeout                      a bounded wait ran out

HTTP statuses map onto the tree through one table, :data:`HTTP_STATUS_ERRORS` (read with
:func:`http_status_error`). A provider whose cloud means something else by a status declares
that in its :class:`ErrorTable`'s ``http_overrides`` (Azure ML's 424, Vertex's retryable 409
ABORTED); the rest of its statuses go through the shared table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "HTTP_STATUS_ERRORS",
    "Aborted",
    "AlreadyExists",
    "AuthError",
    "CloudServeError",
    "ConfigError",
    "ErrorTable",
    "InvalidRequest",
    "InvalidSpec",
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
    "http_status_error",
    "make_error",
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


class InvalidSpec(InvalidRequest, ValueError):
    """A spec (``Compute``, ``DeploySpec`` …) was built with an invalid field.

    ``spec`` is the spec's class name, ``field`` the dotted path of the first bad field
    (``None`` for a rule across fields, whose message names them), ``problems`` every
    ``(field, message)`` found. It is also a ``ValueError``, as pydantic's errors are.
    """

    def __init__(self, spec: str, problems: list[tuple[str | None, str]]):
        listed = "; ".join(f"{field}: {msg}" if field else msg for field, msg in problems)
        super().__init__(f"invalid {spec}: {listed}")
        self.spec = spec
        self.problems = problems
        self.field = problems[0][0] if problems else None


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


class Aborted(CloudServeError):
    """A concurrent change to the same resource aborted the call (Vertex's HTTP 409 ABORTED);
    repeating it is safe."""

    retryable = True


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

HTTP_STATUS_ERRORS: Mapping[int, ErrorFactory] = MappingProxyType(
    {
        400: InvalidRequest,
        401: AuthError,
        403: AuthError,
        404: NotFound,
        406: NotAcceptable,
        409: AlreadyExists,
        410: NotFound,
        413: PayloadTooLarge,
        415: UnsupportedMediaType,
        429: Throttled,
    }
)
"""The one HTTP-status table. Other 4xx are :class:`InvalidRequest`, 5xx
:class:`ServiceUnavailable`, anything else :class:`CloudServeError`."""


def http_status_error(
    status: int, overrides: Mapping[int, ErrorFactory] | None = None
) -> ErrorFactory:
    """The error class for an HTTP status: the provider's ``overrides`` first, then the table."""
    if overrides and status in overrides:
        return overrides[status]
    if status in HTTP_STATUS_ERRORS:
        return HTTP_STATUS_ERRORS[status]
    if 500 <= status < 600:
        return ServiceUnavailable
    if 400 <= status < 500:
        return InvalidRequest
    return CloudServeError


class ErrorTable:
    """Maps native errors onto the tree.

    ``extract`` pulls ``(code, message, retry_after)`` out of a native exception (``None`` for
    exceptions it does not know). An ``int`` code is an HTTP status and goes through
    :func:`http_status_error` with this table's ``http_overrides``; any other code (a string
    such as ``"ValidationException"``) is looked up in ``codes``. ``codes`` holds no HTTP
    statuses: a status a cloud uses differently belongs in ``http_overrides``.
    """

    def __init__(
        self,
        codes: Mapping[str, ErrorFactory],
        *,
        extract: Callable[[BaseException], tuple[str | int | None, str, float | None] | None],
        http_overrides: Mapping[int, ErrorFactory] | None = None,
        default: ErrorFactory = CloudServeError,
    ):
        statuses = sorted(str(c) for c in codes if isinstance(c, int))
        if statuses:
            raise TypeError(
                f"HTTP statuses {', '.join(statuses)} belong in http_overrides, not codes"
            )
        self.codes = dict(codes)
        self.extract = extract
        self.http_overrides = dict(http_overrides or {})
        self.default = default

    def error_class(self, code: str | int | None) -> ErrorFactory:
        """The error class for a native code (an ``int`` is an HTTP status)."""
        if isinstance(code, int) and not isinstance(code, bool):
            return http_status_error(code, self.http_overrides)
        if code is None:
            return self.default
        return self.codes.get(str(code), self.default)

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
            err = make_error(self.error_class(code), message, provider, code, retry_after)
        err.__cause__ = exc
        return err


def make_error(
    cls: ErrorFactory,
    message: str,
    provider: str | None,
    code: str | int | None = None,
    retry_after: float | None = None,
) -> CloudServeError:
    """An instance of ``cls`` with the native ``code`` kept as a string."""
    code_str = None if code is None else str(code)
    if issubclass(cls, Throttled):
        return cls(message, provider=provider, code=code_str, retry_after=retry_after)
    return cls(message, provider=provider, code=code_str)
