"""The shared rollout conformance tests on Vertex AI (shadow is declared unsupported there, so
:class:`ShadowConformance` checks it is refused with its reason).

The fake stamps predictions with the harness's simulated clock and the provider ends its Cloud
Monitoring windows on it, so one-minute bakes run without sleeping.
"""

from __future__ import annotations

from pathlib import Path

from vertex_harness import VertexHarness

from cloudserve.testing.rollout import SimClock
from cloudserve.testing.suite import RolloutConformance, ShadowConformance
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex


class VertexRolloutHarness(VertexHarness):
    def start(self, workdir: Path) -> None:
        self.rollout_clock = SimClock()
        self.fake = FakeVertex(
            workdir=workdir / "fake-vertex", operation_polls=1, clock=self.rollout_clock.now
        ).serve()

    def make_provider(self) -> VertexProvider:
        provider = super().make_provider()
        provider.clock = self.rollout_clock.now  # metric windows end on the shared clock
        return provider

    def degrade_variant(
        self, endpoint: str, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        self.fake.degrade(variant, error_rate=error_rate, latency_ms=latency_ms)


class TestVertexRollout(VertexRolloutHarness, RolloutConformance):
    pass


class TestVertexShadow(VertexRolloutHarness, ShadowConformance):
    pass
