"""The shared rollout and shadow conformance tests on SageMaker, real boto3 against the fake.

The fake stamps each invocation's CloudWatch datapoints and captures with the harness's
simulated clock and the provider ends its metric and capture windows on it, so one-minute bakes
run without sleeping. Mirroring to a shadow variant happens inside the invocation, so
``settle_shadow`` has nothing to wait for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sagemaker_harness import SageMakerHarness, fast_config, start_fake

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.testing.rollout import SimClock
from cloudserve.testing.suite import RolloutConformance, ShadowConformance
from cloudserve_sagemaker import SageMakerProvider


class SageMakerRolloutHarness(SageMakerHarness):
    def start(self, workdir: Path) -> None:
        self.rollout_clock = SimClock()
        self.fake = start_fake(
            workdir, creating_polls=1, updating_polls=1, job_polls=1, clock=self.rollout_clock.now
        )

    def make_provider(self) -> SageMakerProvider:
        return SageMakerProvider(
            fast_config(self.fake, **self.config_overrides), clock=self.rollout_clock.now
        )

    def degrade_variant(
        self, endpoint: str, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        self.fake.degrade(variant, error_rate=error_rate, latency_ms=latency_ms)


class TestSageMakerRollout(SageMakerRolloutHarness, RolloutConformance):
    pass


class TestSageMakerShadow(SageMakerRolloutHarness, ShadowConformance):
    pass
