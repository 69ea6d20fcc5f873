"""The conformance-suite harness for the Azure ML provider, backed by the fake service."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cloudserve.provider import RetrySettings, WaitSettings
from cloudserve.testing import Fault, ProviderHarness
from cloudserve_azureml import AzureMLConfig, AzureMLProvider
from cloudserve_azureml.testing import FakeAzureML

FAULTS = {
    Fault.THROTTLE: "throttle",
    Fault.UNAVAILABLE: "unavailable",
    Fault.FAIL_OPERATION: "fail_operation",
    Fault.FAIL_AFTER_CREATE: "fail_deployment",
}


def fast_config(fake: FakeAzureML, **overrides: object) -> AzureMLConfig:
    """A config for the fake workspace with millisecond polls and retries."""
    return AzureMLConfig(
        subscription_id=fake.subscription_id,
        resource_group=fake.resource_group,
        workspace=fake.workspace,
        region="eastus",
        compute="cpu-cluster",
        sdk_polling_interval_s=0.01,
        retry=RetrySettings(
            max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05, max_elapsed_s=20
        ),
        waits=WaitSettings(poll_interval_s=0.01, max_poll_interval_s=0.05, deploy_timeout_s=60),
        **overrides,  # type: ignore[arg-type]
    )


class AzureMLHarness(ProviderHarness):
    """Runs the real MLClient against a fresh fake workspace per test (2 InProgress polls)."""

    fake: FakeAzureML

    def start(self, workdir: Path) -> None:
        self.fake = FakeAzureML(workdir=workdir / "fake-azureml", in_progress_polls=2).start()

    def stop(self) -> None:
        self.fake.stop()

    def make_provider(self) -> AzureMLProvider:
        return AzureMLProvider(fast_config(self.fake), credential=self.fake.credential())

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        self.fake.inject(FAULTS[fault], times=times, message=message, retry_after="0.01")

    def settle_shadow(self) -> None:
        self.fake.settle_mirror()  # the fake scores mirrored copies off the caller's path

    def leftover_resources(self) -> list[str]:
        return self.fake.leftovers()

    def read_batch_output(self, output: str) -> list[Any]:
        """Predictions from Azure's ``predictions.csv`` (``file,row,prediction,error``, no
        header), in input order."""
        path = Path(output) / "predictions.csv"
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        rows.sort(key=lambda r: (r[0], int(r[1])))
        return [json.loads(r[2]) for r in rows if not r[3]]
