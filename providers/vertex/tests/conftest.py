"""Fixtures shared by the Vertex tests: a strict fake on a local port and a client on it."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The harness module sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator["FakeVertex"]:  # noqa: F821 - imported lazily
    """A fake whose LROs answer not-done twice; no request may break the discovery document."""
    from cloudserve_vertex.testing import FakeVertex

    with FakeVertex(workdir=tmp_path / "fake", operation_polls=2).serve() as f:
        yield f
        assert f.rejected() == [], "every request fits the discovery document"


@pytest.fixture
def client(fake):  # type: ignore[no-untyped-def]
    """A Client of a provider pointed at ``fake``."""
    from cloudserve.client import Client
    from cloudserve_vertex import VertexProvider

    provider = VertexProvider(fake.config())
    yield Client(provider)
    provider.close()
