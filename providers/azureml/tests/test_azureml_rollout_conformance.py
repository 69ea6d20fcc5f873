"""The shared rollout and shadow conformance tests on Azure ML, the real MLClient against the
fake workspace.

The fake stamps scoring requests with the harness's simulated clock and the provider ends its
Azure Monitor windows on it, so one-minute bakes run without sleeping.
"""

from __future__ import annotations

from pathlib import Path

from azureml_harness import AzureMLHarness, fast_config

from cloudserve.testing.rollout import SimClock
from cloudserve.testing.suite import RolloutConformance, ShadowConformance
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml._packaging import deployment_name
from cloudserve_azureml.testing import FakeAzureML


class AzureMLRolloutHarness(AzureMLHarness):
    def start(self, workdir: Path) -> None:
        self.rollout_clock = SimClock()
        self.fake = FakeAzureML(
            workdir=workdir / "fake-azureml", in_progress_polls=1, clock=self.rollout_clock.now
        ).start()

    def make_provider(self) -> AzureMLProvider:
        return AzureMLProvider(
            fast_config(self.fake), credential=self.fake.credential(), clock=self.rollout_clock.now
        )

    def degrade_variant(
        self, endpoint: str, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        self.fake.degrade(deployment_name(variant), error_rate=error_rate, latency_ms=latency_ms)


class TestAzureMLRollout(AzureMLRolloutHarness, RolloutConformance):
    pass


class TestAzureMLShadow(AzureMLRolloutHarness, ShadowConformance):
    pass
