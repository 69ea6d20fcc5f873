"""The conformance suite run against the in-memory provider: it proves the suite itself."""

from __future__ import annotations

from cloudserve.testing.memory import MemoryHarness
from cloudserve.testing.suite import ProviderConformance


class TestMemoryConformance(MemoryHarness, ProviderConformance):
    pass
