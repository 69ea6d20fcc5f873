"""Fixtures of the local provider's tests: a provider on a temporary state directory.

Every test gets its own state directory; at the end every endpoint in it is deleted and any
process still running from it is killed, so no test leaves a worker behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_helpers import cleanup, local_config

from cloudserve.client import Client
from cloudserve.local import LocalProvider


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "state"
    yield d
    cleanup(d)


@pytest.fixture
def provider(state_dir: Path) -> Iterator[LocalProvider]:
    p = LocalProvider(local_config(state_dir))
    yield p
    p.close()


@pytest.fixture
def client(provider: LocalProvider) -> Client:
    return Client(provider)
