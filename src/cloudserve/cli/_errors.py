"""The CLI's one error boundary: every mistake and failure becomes one line and an exit code.

- exit 2: a usage error (unknown command or option, missing argument, a value of the wrong type),
  a bad config file or environment override, a spec rejected before any request was sent,
  unreadable input (bad JSON or YAML, a missing file);
- exit 1: a failed operation (any other :class:`CloudServeError`), or an unexpected exception
  (a bug), shown as its type and message;
- exit 130: interrupted (Ctrl-C).

No traceback is printed unless ``--debug`` (or ``CLOUDSERVE_DEBUG=1``) is given.

The boundary depends on no private module of Typer or Click: the exceptions Click raises are
recognised by their public shape (``exit_code`` plus ``format_message()``), and ``typer.Exit`` /
``typer.Abort`` are Typer's public names.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import ValidationError

from cloudserve.errors import (
    CloudServeError,
    ConfigError,
    InvalidRequest,
    ProviderNotFound,
    SmokeTestFailed,
)

__all__ = ["FAILURE", "USAGE", "classify"]

USAGE = 2
FAILURE = 1
INTERRUPTED = 130

_NAME_RULE = "must start with a letter and hold only letters, digits and '-' (at most 63)"


def classify(exc: BaseException, prog: str = "cloudserve") -> tuple[int, str | None]:
    """The exit code and the one line to print for ``exc`` (``None``: print nothing)."""
    if isinstance(exc, typer.Exit) or _is_click_exit(exc):
        return int(getattr(exc, "exit_code", 0) or 0), None
    if isinstance(exc, typer.Abort | KeyboardInterrupt):
        return INTERRUPTED, "aborted"
    if _is_click_error(exc):
        return int(exc.exit_code), _usage_line(exc, prog)  # type: ignore[attr-defined]
    if isinstance(exc, ConfigError):
        return USAGE, f"config error: {_one_line(str(exc))}"
    if isinstance(exc, ProviderNotFound):
        return USAGE, f"error: {_one_line(str(exc))}"
    if isinstance(exc, InvalidRequest) and isinstance(exc.__cause__, ValidationError):
        # a spec refused when it was built (InvalidSpec): name the field and the value given
        cause = _innermost(exc.__cause__)
        return USAGE, f"invalid {cause.title}: {validation_line(cause)}"
    if isinstance(exc, InvalidRequest) and _before_any_request(exc):
        return USAGE, f"invalid request: {_one_line(str(exc))}"
    if isinstance(exc, CloudServeError):
        return FAILURE, f"error: {type(exc).__name__}: {_one_line(str(exc))}"
    if isinstance(exc, ValidationError):
        return USAGE, f"invalid {exc.title}: {validation_line(exc)}"
    if isinstance(exc, json.JSONDecodeError):  # orjson's error is a subclass
        return USAGE, f"invalid JSON: {_one_line(str(exc))}"
    if _is_yaml_error(exc):
        return USAGE, f"invalid YAML: {_one_line(str(exc))}"
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        what = exc.strerror or type(exc).__name__
        return USAGE, f"error: {what}: {exc.filename}"
    return FAILURE, (
        f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
        f"(run '{prog} --debug …' for the traceback)"
    )


def validation_line(exc: ValidationError) -> str:
    """A pydantic error as one line naming the field, the value and what is wrong."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "value"
    message = first["msg"]
    pattern = (first.get("ctx") or {}).get("pattern")
    if first["type"] == "string_pattern_mismatch" and pattern == _name_pattern():
        message = _NAME_RULE
    value = first.get("input")
    shown = f"={value!r}" if isinstance(value, str | int | float) and len(repr(value)) < 60 else ""
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}{shown}: {message}{more}"


def _innermost(exc: ValidationError) -> ValidationError:
    # A spec validated from a dict wraps the error of building it again: unwrap to the field.
    for _ in range(10):
        inner = (exc.errors(include_url=False)[0].get("ctx") or {}).get("error")
        if not isinstance(getattr(inner, "__cause__", None), ValidationError):
            break
        exc = inner.__cause__  # type: ignore[union-attr]
    return exc


def _name_pattern() -> str:
    from cloudserve.specs import NAME_PATTERN

    return NAME_PATTERN


def _is_click_exit(exc: BaseException) -> bool:
    # Click's own Exit (raised by --help, --version and ctx.exit()): an exit code, no message.
    return isinstance(getattr(exc, "exit_code", None), int) and not hasattr(exc, "format_message")


def _is_click_error(exc: BaseException) -> bool:
    # Click's ClickException / UsageError / BadParameter, wherever Typer imports Click from.
    return isinstance(getattr(exc, "exit_code", None), int) and callable(
        getattr(exc, "format_message", None)
    )


def _usage_line(exc: Any, prog: str) -> str | None:
    message = _one_line(exc.format_message())
    if not message:  # a group called without a command: its help is already printed
        return None
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or prog
    if int(exc.exit_code) == USAGE:
        return f"usage error: {message} (see '{path} --help')"
    return f"error: {message}"


def _before_any_request(exc: InvalidRequest) -> bool:
    # A spec or input the core or a provider's validate() rejected: no native error behind it.
    # An InvalidRequest translated from a cloud's 4xx answer chains that answer (__cause__).
    return not isinstance(exc, SmokeTestFailed) and exc.__cause__ is None


def _is_yaml_error(exc: BaseException) -> bool:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a core dependency
        return False
    return isinstance(exc, yaml.YAMLError)


def _one_line(text: str) -> str:
    return " ".join(text.split())
