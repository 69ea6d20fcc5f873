"""Targets: a ``cloudserve.yaml`` (or ``.toml``) file plus environment overrides → typed config.

File lookup: an explicit path, else ``CLOUDSERVE_CONFIG``, else ``cloudserve.yaml``,
``cloudserve.yml`` or ``cloudserve.toml`` in the working directory. Without a file, the ``local``
target exists with its defaults.

Each target block is validated by its own provider's config class, looked up by its
``provider`` key, so third-party providers get typed config too. Every field can be overridden
by an environment variable ``CLOUDSERVE_<TARGET>__<FIELD>`` (nested fields joined by ``__``;
lists and mappings written as JSON, other values read as YAML scalars):
``CLOUDSERVE_AWS__REGION=eu-west-1``, ``CLOUDSERVE_AWS__RETRY__MAX_ATTEMPTS=3``,
``CLOUDSERVE_LOCAL__PORT_RANGE="[21400, 21479]"``.

Which target ``connect()`` uses when none is named: ``CLOUDSERVE_TARGET``, else the file's
``default``, else ``local``.

Errors are :class:`~cloudserve.errors.ConfigError` naming the file, the target and the field;
secret values never appear in them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cloudserve.errors import ConfigError, ProviderNotFound
from cloudserve.provider import ProviderConfig

__all__ = [
    "FILE_NAMES",
    "Target",
    "TargetsFile",
    "default_state_dir",
    "find_config_file",
    "load_targets",
    "resolve_target",
]

FILE_NAMES = ("cloudserve.yaml", "cloudserve.yml", "cloudserve.toml")
ENV_PREFIX = "CLOUDSERVE_"
_RESERVED_ENV = {
    "CLOUDSERVE_CONFIG",
    "CLOUDSERVE_TARGET",
    "CLOUDSERVE_STATE_DIR",
    "CLOUDSERVE_LIVE",
}


def default_state_dir() -> Path:
    """Where cloudserve keeps local state (the local provider's state, the user price catalog
    and overrides): ``$CLOUDSERVE_STATE_DIR``, else ``.cloudserve`` in the working directory."""
    return Path(os.environ.get("CLOUDSERVE_STATE_DIR") or ".cloudserve")


@dataclass(frozen=True)
class Target:
    """A named target: its provider's validated config and where it came from."""

    name: str
    config: ProviderConfig
    file: Path | None = None

    @property
    def provider(self) -> str:
        """The provider name of this target."""
        return self.config.provider


@dataclass
class TargetsFile:
    """The raw targets of a config file (blocks not yet validated) and its default."""

    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    default: str | None = None
    file: Path | None = None


def find_config_file(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read, or None when there is none."""
    env = os.environ if env is None else env
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config file not found", file=str(p))
        return p
    if env.get("CLOUDSERVE_CONFIG"):
        p = Path(env["CLOUDSERVE_CONFIG"])
        if not p.is_file():
            raise ConfigError("config file named by CLOUDSERVE_CONFIG not found", file=str(p))
        return p
    for name in FILE_NAMES:
        p = Path.cwd() / name
        if p.is_file():
            return p
    return None


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"malformed TOML: {exc}", file=str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML{where}: {problem}", file=str(path)) from None


def load_targets(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> TargetsFile:
    """Read the targets file (if any) and apply environment overrides. Validates the shape only."""
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    data: Any = {} if file is None else (_parse(file) or {})
    where = str(file) if file else None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with 'targets'", file=where)
    unknown = set(data) - {"default", "targets"}
    if unknown:
        raise ConfigError(
            "unknown top-level key (expected 'default' and 'targets')",
            file=where,
            field=sorted(unknown)[0],
        )
    targets = data.get("targets") or {}
    if not isinstance(targets, dict):
        raise ConfigError(
            "'targets' must be a mapping of name → settings", file=where, field="targets"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, block in targets.items():
        if not isinstance(block, dict):
            raise ConfigError(
                "a target must be a mapping with a 'provider' key", file=where, target=str(name)
            )
        out[str(name)] = dict(block)
    _apply_env(out, env)
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigError("'default' must be a target name", file=where, field="default")
    return TargetsFile(targets=out, default=default, file=file)


def _apply_env(targets: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    by_upper = {name.upper().replace("-", "_"): name for name in targets}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in _RESERVED_ENV or "__" not in key:
            continue
        target_part, *path = key[len(ENV_PREFIX) :].split("__")
        if not path or not all(path):
            continue
        name = by_upper.get(target_part, target_part.lower())
        block = targets.setdefault(name, {})
        by_upper.setdefault(target_part, name)
        node = block
        for part in path[:-1]:
            node = node.setdefault(part.lower(), {})
        node[path[-1].lower()] = _env_value(key, raw)


def _env_value(key: str, raw: str) -> Any:
    """An override's value: JSON for a list or mapping (``[21400, 21479]``, ``{"a": 1}``),
    otherwise a YAML scalar (``0.2`` → float, ``true`` → bool, anything else a string)."""
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"environment variable {key} is not valid JSON ({exc.msg} at column "
                f"{exc.colno}); lists and mappings are written as JSON, e.g. [1, 2] or "
                '{"key": "value"}',
                field=key,
            ) from None
    try:
        value = yaml.safe_load(raw) if text else raw
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict | list) else value


def _config_class(provider: str, *, file: str | None, target: str) -> type[ProviderConfig]:
    from cloudserve.registry import available, get_provider_class

    try:
        return get_provider_class(provider).config_cls
    except ProviderNotFound as exc:
        known = ", ".join(sorted(available())) or "none"
        hint = f"; {exc.install_hint}" if exc.install_hint else ""
        raise ConfigError(
            f"unknown provider '{provider}' (installed: {known}){hint}",
            file=file,
            target=target,
            field="provider",
        ) from None


def validate_block(name: str, block: Mapping[str, Any], *, file: Path | None = None) -> Target:
    """Validate one target block with its provider's config class."""
    where = str(file) if file else None
    provider = block.get("provider")
    if not isinstance(provider, str) or not provider:
        raise ConfigError(
            "missing required key 'provider'", file=where, target=name, field="provider"
        )
    cls = _config_class(provider, file=where, target=name)
    try:
        config = cls.model_validate(dict(block))
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field_name = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key (not a setting of the " + provider + " provider)"
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise ConfigError(message + more, file=where, target=name, field=field_name) from None
    return Target(name=name, config=config, file=file)


def resolve_target(
    name: str | None = None,
    *,
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Target:
    """The target called ``name`` (else ``CLOUDSERVE_TARGET``, else the file's ``default``,
    else ``local``), validated."""
    env = os.environ if env is None else env
    tf = load_targets(path, env)
    where = str(tf.file) if tf.file else None
    chosen = name or env.get("CLOUDSERVE_TARGET") or tf.default or "local"
    if chosen == "local":
        # The built-in local target exists without a file; overrides such as
        # CLOUDSERVE_LOCAL__DRAIN_S=0.2 refine it rather than replacing it.
        block = {"provider": "local", **tf.targets.get("local", {})}
        return validate_block("local", block, file=tf.file)
    if chosen not in tf.targets:
        known = ", ".join(sorted(tf.targets)) or "none defined"
        raise ConfigError(
            f"no target named '{chosen}' (targets: {known})", file=where, target=chosen
        )
    return validate_block(chosen, tf.targets[chosen], file=tf.file)
