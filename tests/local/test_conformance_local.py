"""The local provider passes the whole conformance suite, faults included."""

from __future__ import annotations

from pathlib import Path

from local_helpers import cleanup, local_config, processes_of

from cloudserve.local import LocalProvider, faults
from cloudserve.local.store import StateDB
from cloudserve.packaging import write_manifest
from cloudserve.specs import ModelSpec
from cloudserve.testing import Fault, ProviderHarness, make_sklearn_model
from cloudserve.testing.rollout import WallClock
from cloudserve.testing.suite import (
    AnswersParityTests,
    ProviderConformance,
    RolloutConformance,
    ShadowConformance,
)

_KINDS = {
    Fault.THROTTLE: faults.THROTTLE,
    Fault.UNAVAILABLE: faults.UNAVAILABLE,
    Fault.FAIL_OPERATION: faults.FAIL_OPERATION,
    Fault.FAIL_AFTER_CREATE: faults.FAIL_AFTER_CREATE,
}


DEGRADED = """\
import time
from pathlib import Path

import joblib

from cloudserve.serving import Predictor

ERROR_EVERY = {every}
DELAY_S = {delay_s}


class Degraded(Predictor):
    \"\"\"The usual model, failing every ERROR_EVERY-th call and DELAY_S slower.\"\"\"

    def load(self, path):
        self.model = joblib.load(Path(path) / "model.joblib")
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        if DELAY_S:
            time.sleep(DELAY_S)
        if ERROR_EVERY and self.calls % ERROR_EVERY == 0:
            raise RuntimeError("injected failure")
        return self.model.predict(rows).tolist()
"""


class LocalHarness(ProviderHarness):
    """Faults are armed in the state database, where the provider checks them (its test hook).

    Local metrics are stamped by the workers with real time, so a rollout's clock is the wall
    clock (the provider reads one-second windows). A degraded variant is the usual model served
    by a custom predictor that fails and sleeps as asked (``degrade_variant``), one request per
    call as the conformance tests send them.
    """

    native_errors = False

    def start(self, workdir: Path) -> None:
        self.state_dir = workdir / "state"
        self.rollout_clock = WallClock()
        self.degraded: dict[str, tuple[int, float]] = {}

    def stop(self) -> None:
        cleanup(self.state_dir)

    def make_provider(self) -> LocalProvider:
        return LocalProvider(local_config(self.state_dir), fault_hooks=True)

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        faults.arm(StateDB(self.state_dir), _KINDS[fault], times, message)

    def degrade_variant(
        self, endpoint: str, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        every = round(1 / error_rate) if error_rate else 0
        self.degraded[variant] = (every, latency_ms / 1000)

    def model_spec(self, workdir: Path, version: str = "1") -> ModelSpec:
        if f"v{version}" not in self.degraded:
            return super().model_spec(workdir, version)
        every, delay_s = self.degraded[f"v{version}"]
        directory = make_sklearn_model(workdir / f"model-v{version}-degraded", version=version)
        (directory / "degraded.py").write_text(DEGRADED.format(every=every, delay_s=delay_s))
        write_manifest(
            directory, framework="custom", version=version, predictor="degraded:Degraded"
        )
        return ModelSpec(
            name="cs-conf", version=version, artifact=str(directory), framework="custom"
        )

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


class TestLocalRollout(LocalHarness, RolloutConformance):
    pass


class TestLocalShadow(LocalHarness, ShadowConformance):
    """Mirrored requests still in flight are drained by ``shadow_pairs`` itself."""
