"""The conformance suite run against the in-memory provider: it proves the suite itself."""

from __future__ import annotations

from pathlib import Path

from cloudserve.provider import RetrySettings, WaitSettings
from cloudserve.specs import ModelSpec
from cloudserve.testing import Fault, ProviderHarness
from cloudserve.testing.suite import ProviderConformance
from memory_provider import MemoryConfig, MemoryProvider, MemoryService

FAST = {
    "retry": RetrySettings(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01),
    "waits": WaitSettings(poll_interval_s=0.001, max_poll_interval_s=0.01),
}


class MemoryHarness(ProviderHarness):
    provider_cls = MemoryProvider

    def start(self, workdir: Path) -> None:
        self.label = f"conf-{id(self)}-{workdir.name}"
        MemoryProvider.services[self.label] = MemoryService()

    def stop(self) -> None:
        MemoryProvider.services.pop(self.label, None)

    @property
    def service(self) -> MemoryService:
        return MemoryProvider.services[self.label]

    def make_provider(self):
        return self.provider_cls(MemoryConfig(label=self.label, **FAST))

    def model_spec(self, workdir: Path, version: str = "1") -> ModelSpec:
        d = workdir / f"model-v{version}"
        d.mkdir(parents=True, exist_ok=True)
        return ModelSpec(name="cs-conf", version=version, artifact=str(d), framework="custom")

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        s = self.service
        if fault is Fault.THROTTLE:
            s.throttle = times
        elif fault is Fault.UNAVAILABLE:
            s.unavailable = times
        elif fault is Fault.FAIL_OPERATION:
            s.fail_operation = message
        else:
            s.fail_after_create = message

    def leftover_resources(self) -> list[str]:
        return [r for r in self.service.all_resources() if r.split("/")[0] in ("endpoint", "model")]


class TestMemoryConformance(MemoryHarness, ProviderConformance):
    pass
