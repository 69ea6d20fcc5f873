"""The conformance-suite harness for the SageMaker provider, backed by the moto-based fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudserve.provider import RetrySettings, WaitSettings
from cloudserve.testing import Fault, ProviderHarness
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
from cloudserve_sagemaker.testing import FakeSageMaker

BUCKET = "cloudserve-test"
# The cloudserve serving image the container route deploys (models written with this
# environment's scikit-learn, which no prebuilt SageMaker image holds, take that route).
SERVING_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudserve-serving:test"
ROLE = "arn:aws:iam::123456789012:role/cloudserve"
FAULTS = {
    Fault.THROTTLE: "throttle",
    Fault.UNAVAILABLE: "unavailable",
    Fault.FAIL_OPERATION: "fail_endpoint",
    Fault.FAIL_AFTER_CREATE: "fail_create_endpoint",
}


def fast_config(fake: FakeSageMaker, **overrides: Any) -> SageMakerConfig:
    """A config for the fake with millisecond polls and retries."""
    settings: dict[str, Any] = {
        "region": fake.region,
        "role_arn": ROLE,
        "bucket": BUCKET,
        "endpoint_url": fake.url,
        "serving_image": SERVING_IMAGE,
        "retry": RetrySettings(
            max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01, max_elapsed_s=20
        ),
        "waits": WaitSettings(
            poll_interval_s=0.001, max_poll_interval_s=0.01, deploy_timeout_s=60, job_timeout_s=120
        ),
    }
    return SageMakerConfig(**{**settings, **overrides})


def start_fake(workdir: Path, **kwargs: Any) -> FakeSageMaker:
    """A fresh fake with the test bucket made (and dummy credentials in the environment)."""
    fake = FakeSageMaker(workdir=workdir / "fake-sagemaker", **kwargs).start()
    fake.client("s3").create_bucket(Bucket=BUCKET)
    return fake


class SageMakerHarness(ProviderHarness):
    """Runs real boto3 against a fresh fake per test; endpoints stay Creating/Updating for
    two polls, jobs InProgress for one."""

    fake: FakeSageMaker
    config_overrides: dict[str, Any] = {}

    def start(self, workdir: Path) -> None:
        self.fake = start_fake(workdir, creating_polls=2, updating_polls=2, job_polls=1)

    def stop(self) -> None:
        rejected = self.fake.rejected()
        self.fake.stop()
        assert rejected == [], "every request the provider sends passes the service model"

    def make_provider(self) -> SageMakerProvider:
        return SageMakerProvider(fast_config(self.fake, **self.config_overrides))

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        self.fake.inject(FAULTS[fault], times=times, message=message)  # type: ignore[arg-type]

    def leftover_resources(self) -> list[str]:
        return self.fake.leftovers()
