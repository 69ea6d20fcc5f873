"""Strict request checks against Google's REST discovery documents.

The fake answers a request only after it matches a method of the API's discovery document —
the machine-readable definition Google publishes and ships in ``google-api-python-client``
(``googleapiclient/discovery_cache/documents/aiplatform.v1.json``, ``monitoring.v3.json``):
the path must match a method's ``flatPath``, the verb its ``httpMethod``, every query
parameter must be one the method declares (with its enum values and formats), and the JSON
body must fit the method's request schema — no unknown field at any depth, the declared JSON
type for every value, enum values the schema lists. Failures are ``400 INVALID_ARGUMENT`` with
the service's own wording (``Invalid JSON payload received. Unknown name "x" at 'model':
Cannot find field.``).

Enums: the GAPIC REST transport sends ``$alt=json;enum-encoding=int``, so enum values arrive as
numbers. The discovery document lists enum *names*; a number is mapped to its name through the
protobuf enum (from ``google.cloud.aiplatform_v1``) whose value names are exactly the ones the
document lists, then checked like a name.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from cloudserve_vertex.testing._http import ApiError

__all__ = ["DiscoveryValidator", "Method"]

# Query parameters every Google REST API accepts (the documents' own ``parameters`` list most;
# ``$alt`` is the spelling the GAPIC REST transport uses).
_SYSTEM = {"$alt", "alt", "$.xgafv", "fields", "key", "prettyPrint", "quotaUser", "access_token"}
_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_INT = re.compile(r"^-?\d+$")


@dataclass
class Method:
    """One REST method of a discovery document."""

    id: str
    http_method: str
    flat_path: str
    pattern: re.Pattern[str]
    literal: int
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    request: str | None = None


def _compile(flat_path: str) -> tuple[re.Pattern[str], int]:
    """A ``flatPath`` as a regex: each ``{param}`` is one path segment (no ``/`` or ``:``)."""
    parts = re.split(r"(\{[^}]+\})", flat_path)
    regex = "".join("([^/:]+)" if p.startswith("{") else re.escape(p) for p in parts)
    literal = sum(len(p) for p in parts if not p.startswith("{"))
    return re.compile(f"^{regex}$"), literal


def _methods(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = list((node.get("methods") or {}).values())
    for child in (node.get("resources") or {}).values():
        out.extend(_methods(child))
    return out


@functools.cache
def _proto_enums() -> dict[frozenset[str], dict[int, str]]:
    """Enum value names → {number: name} for every enum of ``google.cloud.aiplatform_v1``."""
    from google.cloud.aiplatform_v1 import types

    found: dict[frozenset[str], dict[int, str]] = {}
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, type) and issubclass(obj, enum.IntEnum):
            names = {m.value: m.name for m in obj}
            found.setdefault(frozenset(names.values()), names)
            return
        if isinstance(obj, type):
            for attr in vars(obj).values():
                if isinstance(attr, type):
                    walk(attr)

    for name in dir(types):
        walk(getattr(types, name))
    return found


class DiscoveryValidator:
    """Checks requests against one discovery document."""

    def __init__(self, document: dict[str, Any]):
        self.name = f"{document['name']}.{document['version']}"
        self.service_path = "/" + document.get("servicePath", "")
        self.schemas: dict[str, dict[str, Any]] = document.get("schemas", {})
        self.methods: list[Method] = []
        for doc in _methods(document):
            pattern, literal = _compile(doc["flatPath"])
            request = (doc.get("request") or {}).get("$ref")
            self.methods.append(
                Method(
                    doc["id"],
                    doc["httpMethod"],
                    doc["flatPath"],
                    pattern,
                    literal,
                    doc.get("parameters") or {},
                    request,
                )
            )
        # The most literal path wins: ``models/{id}:listVersions`` before ``models/{id}``.
        self.methods.sort(key=lambda x: -x.literal)
        # A path parameter holds no "/", so only methods with as many segments can match.
        self._by_depth: dict[int, list[Method]] = {}
        for m in self.methods:
            self._by_depth.setdefault(m.flat_path.count("/"), []).append(m)

    @classmethod
    @functools.cache
    def shipped(cls, name: str) -> DiscoveryValidator:
        """The validator for a document shipped in google-api-python-client (``aiplatform.v1``)."""
        docs = resources.files("googleapiclient") / "discovery_cache" / "documents"
        return cls(json.loads((docs / f"{name}.json").read_text()))

    # -- requests ----------------------------------------------------------------------------

    def match(self, http_method: str, path: str) -> Method:
        """The method a request addresses; 400 for a path or verb the API does not have."""
        relative = path.removeprefix(self.service_path)
        candidates = self._by_depth.get(relative.count("/"), [])
        on_path = [m for m in candidates if m.pattern.match(relative)]
        if not on_path:
            raise ApiError(400, f"{self.name} has no method at {path}")
        for m in on_path:
            if m.http_method == http_method:
                return m
        verbs = sorted({m.http_method for m in on_path})
        raise ApiError(
            400, f"{http_method} is not allowed on {path}; {self.name} accepts {', '.join(verbs)}"
        )

    def check(self, http_method: str, path: str, query: dict[str, str], body: bytes) -> Method:
        """Validate one request; returns its method or raises ``ApiError(400, …)``."""
        method = self.match(http_method, path)
        self._check_query(method, query)
        if method.request is None:
            if body.strip() not in (b"", b"{}"):
                raise ApiError(400, f"{method.id} takes no request body")
            return method
        props = self.schemas.get(method.request, {}).get("properties", {})
        if any(p.get("$ref") == "GoogleApiHttpBody" for p in props.values()):
            return method  # the HTTP body *is* the request (rawPredict): any bytes
        try:
            payload = json.loads(body or b"{}")
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON payload received. {exc}") from exc
        self.check_value(payload, {"$ref": method.request}, "")
        return method

    def _check_query(self, method: Method, query: dict[str, str]) -> None:
        for key, value in query.items():
            if key in _SYSTEM:
                continue
            spec = method.parameters.get(key)
            if spec is None or spec.get("location") != "query":
                raise ApiError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}": '
                    f"Cannot bind query parameter. Field '{key}' could not be found in request "
                    f"message ({method.id}).",
                )
            self._check_scalar(value, spec, key, from_query=True)
        for key, spec in method.parameters.items():
            if spec.get("location") == "query" and spec.get("required") and key not in query:
                raise ApiError(400, f"{method.id}: the query parameter {key} is required")

    # -- values ------------------------------------------------------------------------------

    def check_value(self, value: Any, spec: dict[str, Any], where: str) -> None:
        """Validate ``value`` against a schema fragment (``$ref``, type, items, properties)."""
        if value is None:  # JSON null is the field's default in proto3 JSON
            return
        if "$ref" in spec:
            schema = self.schemas[spec["$ref"]]
            return self.check_value(value, {k: v for k, v in schema.items() if k != "id"}, where)
        kind = spec.get("type")
        if kind == "object":
            self._check_object(value, spec, where)
        elif kind == "array":
            if not isinstance(value, list):
                raise ApiError(400, f"Invalid value at '{where}': expected a list")
            for i, item in enumerate(value):
                self.check_value(item, spec.get("items", {}), f"{where}[{i}]")
        elif kind not in (None, "any"):
            self._check_scalar(value, spec, where)

    def _check_object(self, value: Any, spec: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict):
            raise ApiError(400, f"Invalid value at '{where}': expected an object")
        props: dict[str, Any] = spec.get("properties") or {}
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            name = key if key in props else _camel(key)
            here = f"{where}.{_snake(name)}" if where else _snake(name)
            if name in props:
                self.check_value(item, props[name], here)
            elif extra is not None:
                self.check_value(item, extra, f"{where}[{key!r}]")
            else:
                at = f" at '{where}'" if where else ""
                raise ApiError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.',
                )

    def _check_scalar(
        self, value: Any, spec: dict[str, Any], where: str, *, from_query: bool = False
    ) -> None:
        kind, fmt = spec.get("type"), spec.get("format")
        bad = ApiError(400, f"Invalid value at '{where}' ({fmt or kind}): {value!r}")
        if from_query and kind != "string":
            value = _from_text(value, kind)
        if "enum" in spec:
            return self._check_enum(value, spec["enum"], where)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise bad
        elif kind == "integer" or fmt in ("int64", "uint64"):
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and _INT.match(value)
            )
            if not ok:
                raise bad
        elif kind == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok and value not in ("NaN", "Infinity", "-Infinity"):
                raise bad
        elif kind == "string":
            if not isinstance(value, str):
                raise bad
            if fmt == "google-duration" and not _DURATION.match(value):
                raise bad
            if fmt == "google-datetime" and not _DATETIME.match(value):
                raise bad

    def _check_enum(self, value: Any, names: list[str], where: str) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            numbers = _proto_enums().get(frozenset(names))
            if numbers is None:
                raise ApiError(
                    400,
                    f"Invalid value at '{where}': {value} (the fake knows no protobuf enum with "
                    "these names to read a number by; send the name)",
                )
            value = numbers.get(value, value)
        if value not in names:
            raise ApiError(
                400,
                f"Invalid value at '{where}', \"{value}\": not one of "
                f"{', '.join(n for n in names if not n.endswith('UNSPECIFIED'))}",
            )


def _from_text(value: str, kind: str | None) -> Any:
    if kind == "integer":
        return int(value) if _INT.match(value) else value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
