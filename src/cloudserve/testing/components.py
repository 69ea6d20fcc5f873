"""System components a test needs (a container runtime, a load generator, a browser …).

``needs("podman", "builds the serving image")`` returns when the component is on ``PATH`` (or is an
existing absolute path). When it is missing the test is skipped with the reason — except where the
environment says every component must be present (``CLOUDSERVE_STRICT_COMPONENTS=1``, which CI's
``.ci/run`` sets after installing them): there a missing component fails the test, so a CI machine
that lost a package cannot turn a container test into a silent skip.

Needs pytest; import it only from tests.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["STRICT_ENV", "find", "needs", "strict"]

STRICT_ENV = "CLOUDSERVE_STRICT_COMPONENTS"


def strict() -> bool:
    """Whether a missing component fails tests instead of skipping them."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}


def find(component: str) -> str | None:
    """The component's executable path, or ``None`` when it is not installed."""
    if os.path.isabs(component):
        return component if os.access(component, os.X_OK) else None
    return shutil.which(component)


def needs(component: str, why: str) -> str:
    """Return the path of ``component``; skip (or, under CI, fail) the test when it is missing."""
    path = find(component)
    if path is not None:
        return path
    message = f"{component} is not installed ({why})"
    if strict():
        pytest.fail(f"{message}; {STRICT_ENV}=1 says it must be here", pytrace=False)
    pytest.skip(message)
