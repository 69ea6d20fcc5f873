"""Provider discovery: lazy, by name, open to third-party packages.

Lookup order: providers passed to :func:`register` (tests, notebooks), the built-in ``local``
provider, then entry points in the group ``cloudserve.providers``. Nothing is imported until a
provider is asked for by name, and a known provider that is not installed fails with the
command that installs it.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from cloudserve.errors import ProviderNotFound
from cloudserve.provider import Provider

__all__ = ["available", "get_provider_class", "install_hint", "register", "unregister"]

GROUP = "cloudserve.providers"

_BUILTIN: dict[str, str] = {"local": "cloudserve.local:LocalProvider"}
_INSTALL_HINTS: dict[str, str] = {
    "local": "pip install 'cloudserve[local]'",
    "sagemaker": "pip install 'cloudserve[sagemaker]' (from a clone: pip install -e providers/sagemaker)",
    "vertex": "pip install 'cloudserve[vertex]' (from a clone: pip install -e providers/vertex)",
    "azureml": "pip install 'cloudserve[azureml]' (from a clone: pip install -e providers/azureml)",
}
_registered: dict[str, type[Provider]] = {}


def register(provider_cls: type[Provider], name: str | None = None) -> type[Provider]:
    """Make a provider class available under ``name`` (default: its ``name``); returns it.

    Usable as a class decorator. A registered provider wins over built-ins and entry points.
    """
    key = name or provider_cls.name
    _registered[key] = provider_cls
    return provider_cls


def unregister(name: str) -> None:
    """Forget a provider added with :func:`register` (missing names are ignored)."""
    _registered.pop(name, None)


def install_hint(name: str) -> str | None:
    """The command that installs a known provider, if cloudserve knows it."""
    return _INSTALL_HINTS.get(name)


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def available() -> dict[str, str]:
    """Provider name → where it comes from (``registered``, ``builtin`` or the import string).

    Imports nothing.
    """
    found: dict[str, str] = dict.fromkeys(_BUILTIN, "builtin")
    found.update(_entry_points())
    found.update(dict.fromkeys(_registered, "registered"))
    return found


def _load(target: str, name: str) -> type[Provider]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        hint = install_hint(name)
        raise ProviderNotFound(
            name, install_hint=f"{hint} (import of '{missing}' failed)" if hint else None
        ) from exc
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{target} is not a cloudserve Provider subclass")
    return cls


def get_provider_class(name: str) -> type[Provider]:
    """The provider class called ``name``, imported on first use."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name], name)
    points = _entry_points()
    if name in points:
        return _load(points[name], name)
    raise ProviderNotFound(name, install_hint=install_hint(name))
