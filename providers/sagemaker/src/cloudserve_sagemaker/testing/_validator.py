"""Requests checked against botocore's service model the way the service checks them.

botocore's client-side ``ParamValidator`` checks types, required members and minimums, but not
maximums, enums or ``pattern`` s, and moto checks almost nothing; SageMaker itself rejects all of
them with ``ValidationException`` (``400``). So the fake runs every request through this
validator first, with the same shapes botocore ships (``botocore/data/<service>/*/service-2.json``)
and the service's message format::

    1 validation error detected: Value '500' at
    'productionVariants.1.member.serverlessConfig.maxConcurrency' failed to satisfy constraint:
    Member must have value less than or equal to 200

Patterns are Java regular expressions, matched against the whole value (Java's
``Pattern.matches``, as AWS services validate). They are compiled with the ``regex`` module, which
knows the Unicode property classes (``\\p{L}``, ``\\p{Z}``, ``\\p{N}``) Python's ``re`` lacks;
Java's POSIX classes (``\\p{Alnum}``, ``\\p{ASCII}`` …) are US-ASCII in Java and are rewritten to
their ASCII ranges so they do not widen to Unicode.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["ServiceValidator", "Violation", "java_pattern", "message", "validator_for"]

# Java's POSIX character classes are ASCII-only (unless UNICODE_CHARACTER_CLASS is set).
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": "!-/:-@\\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1F\\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0B\\f\\r",
}
_SURROGATES = re.compile(r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})", re.I)
_HORIZONTAL = " \\t\\xA0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000"


def java_pattern(pattern: str) -> str:
    """A Java regular expression rewritten for the ``regex`` module (same meaning)."""
    out: list[str] = []
    i, depth = 0, 0  # depth > 0: inside a character class
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "pP" and pattern.startswith("{", i + 2):
                end = pattern.index("}", i + 2)
                name = pattern[i + 3 : end].removeprefix("Is")
                if name in _POSIX:
                    body = _POSIX[name]
                    negate = nxt == "P"
                    if depth and not negate:
                        out.append(body)
                    else:
                        out.append(f"[{'^' if negate else ''}{body}]")
                    i = end + 1
                    continue
            if nxt == "h":
                out.append(_HORIZONTAL if depth else f"[{_HORIZONTAL}]")
                i += 2
                continue
            pair = _SURROGATES.match(pattern, i)
            if pair:  # Java reads a surrogate pair as one code point beyond U+FFFF
                high, low = int(pair.group(1), 16), int(pair.group(2), 16)
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}")
                i = pair.end()
                continue
            if nxt == "z":
                out.append("\\Z")
                i += 2
                continue
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                end = len(pattern) if end < 0 else end
                import regex

                out.append(regex.escape(pattern[i + 2 : end]))
                i = end + 2
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]" and depth:
            depth -= 1
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    import regex

    return regex.compile(java_pattern(pattern))


@dataclass(frozen=True)
class Violation:
    """One failed constraint: where (the service's dotted path), the value, and the rule."""

    path: str
    value: Any
    constraint: str

    def text(self) -> str:
        """The violation as the service words it."""
        value = _show(self.value)
        return f"Value '{value}' at '{self.path}' failed to satisfy constraint: {self.constraint}"


def message(violations: list[Violation]) -> str:
    """The service's ``ValidationException`` message for these violations."""
    n = len(violations)
    head = f"{n} validation error{'s' if n > 1 else ''} detected: "
    return head + "; ".join(v.text() for v in violations)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return text if len(text) <= 256 else text[:253] + "..."


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


class ServiceValidator:
    """Checks operation inputs of one service against its botocore service model."""

    def __init__(self, service: str):
        import botocore.session

        self.service = service
        self.model = botocore.session.get_session().get_service_model(service)

    def validate(self, operation: str, params: dict[str, Any]) -> list[Violation]:
        """Every violation of ``operation``'s input shape by ``params`` (empty when valid).

        An unknown operation is itself a violation (the service would not know it either).
        """
        try:
            op = self.model.operation_model(operation)
        except Exception:  # botocore's OperationNotFoundError
            return [Violation("", operation, f"Unknown operation {operation}")]
        if op.input_shape is None:
            return []
        found: list[Violation] = []
        self._check(op.input_shape, params, "", found)
        return found

    def _check(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        kind = shape.type_name
        check = getattr(self, f"_{kind}", None)
        if check is not None:
            check(shape, value, path, found)

    def _structure(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if not isinstance(value, dict):
            found.append(Violation(path, value, "Member must be a structure"))
            return
        for name in shape.required_members:
            if value.get(name) is None:
                found.append(Violation(_join(path, name), None, "Member must not be null"))
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                found.append(Violation(_join(path, name), item, "Member is not in the model"))
            elif item is not None:
                self._check(member, item, _join(path, name), found)

    def _list(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if not isinstance(value, list):
            found.append(Violation(path, value, "Member must be a list"))
            return
        self._length(shape, len(value), value, path, found)
        for i, item in enumerate(value, start=1):
            self._check(shape.member, item, f"{path}.{i}.member", found)

    def _map(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if not isinstance(value, dict):
            found.append(Violation(path, value, "Member must be a map"))
            return
        self._length(shape, len(value), value, path, found)
        for part, inner in (("key", shape.key), ("value", shape.value)):
            rules: list[str] = []
            for k, v in value.items():
                sub: list[Violation] = []
                self._check(inner, k if part == "key" else v, path, sub)
                rules += [s.constraint for s in sub if s.constraint not in rules]
            if rules:
                text = f"Map {part} must satisfy constraint: [{', '.join(rules)}]"
                found.append(Violation(path, value, text))

    def _string(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if not isinstance(value, str):
            found.append(Violation(path, value, "Member must be a string"))
            return
        enum = shape.metadata.get("enum") or getattr(shape, "enum", None)
        if enum and value not in enum:
            found.append(
                Violation(path, value, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            )
        self._length(shape, len(value), value, path, found)
        pattern = shape.metadata.get("pattern")
        if pattern and _compiled(pattern).fullmatch(value) is None:
            found.append(
                Violation(path, value, f"Member must satisfy regular expression pattern: {pattern}")
            )

    def _blob(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if isinstance(value, bytes | bytearray | str):
            self._length(shape, len(value), f"<{len(value)} bytes>", path, found)

    def _number(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append(Violation(path, value, "Member must be a number"))
            return
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and value < lo:
            found.append(
                Violation(path, value, f"Member must have value greater than or equal to {lo}")
            )
        if hi is not None and value > hi:
            found.append(
                Violation(path, value, f"Member must have value less than or equal to {hi}")
            )

    _integer = _long = _float = _double = _number

    def _boolean(self, shape: Any, value: Any, path: str, found: list[Violation]) -> None:
        if not isinstance(value, bool):
            found.append(Violation(path, value, "Member must be a boolean"))

    @staticmethod
    def _length(shape: Any, n: int, value: Any, path: str, found: list[Violation]) -> None:
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if lo is not None and n < lo:
            found.append(
                Violation(path, value, f"Member must have length greater than or equal to {lo}")
            )
        if hi is not None and n > hi:
            found.append(
                Violation(path, value, f"Member must have length less than or equal to {hi}")
            )


_VALIDATORS: dict[str, ServiceValidator] = {}
_LOCK = threading.Lock()


def validator_for(service: str) -> ServiceValidator:
    """The (cached) validator of a botocore service name (``sagemaker``, ``pricing`` …)."""
    with _LOCK:
        found = _VALIDATORS.get(service)
        if found is None:
            found = _VALIDATORS[service] = ServiceValidator(service)
        return found
