"""The local provider passes the whole conformance suite, faults included."""

from __future__ import annotations

from pathlib import Path

from local_helpers import cleanup, local_config, processes_of

from cloudserve.local import LocalProvider, faults
from cloudserve.local.store import StateDB
from cloudserve.testing import Fault, ProviderHarness
from cloudserve.testing.suite import AnswersParityTests, ProviderConformance

_KINDS = {
    Fault.THROTTLE: faults.THROTTLE,
    Fault.UNAVAILABLE: faults.UNAVAILABLE,
    Fault.FAIL_OPERATION: faults.FAIL_OPERATION,
    Fault.FAIL_AFTER_CREATE: faults.FAIL_AFTER_CREATE,
}


class LocalHarness(ProviderHarness):
    """Faults are armed in the state database, where the provider checks them (its test hook)."""

    native_errors = False

    def start(self, workdir: Path) -> None:
        self.state_dir = workdir / "state"

    def stop(self) -> None:
        cleanup(self.state_dir)

    def make_provider(self) -> LocalProvider:
        return LocalProvider(local_config(self.state_dir), fault_hooks=True)

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        faults.arm(StateDB(self.state_dir), _KINDS[fault], times, message)

    def leftover_resources(self) -> list[str]:
        db = StateDB(self.state_dir)
        rows = [f"endpoint/{r['name']}" for r in db.all("SELECT name FROM endpoints")]
        rows += [f"variant/{r['endpoint']}/{r['name']}" for r in db.all("SELECT * FROM variants")]
        rows += [f"worker/{r['pid']}" for r in db.all("SELECT pid FROM workers")]
        rows += [f"process/{p.pid}" for p in processes_of(self.state_dir)]
        return rows


class TestLocalConformance(LocalHarness, ProviderConformance):
    pass


class TestLocalAnswersParity(LocalHarness, AnswersParityTests):
    pass
