"""Metric-gated rollouts on the local provider: promotion, rollback on errors and on latency,
and a rollout whose process died resumed or aborted from another process."""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from pathlib import Path

import pytest
from local_helpers import local_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider
from cloudserve.packaging import write_manifest
from cloudserve.testing.rollout import TrafficClock as SharedTrafficClock
from cloudserve.testing.rollout import WallClock, kill_while_baking

PREDICTOR = """\
import time
from cloudserve.serving import Predictor

FAIL_EVERY = {fail_every}
DELAY_S = {delay_s}


class Flaky(Predictor):
    def load(self, path):
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        if DELAY_S:
            time.sleep(DELAY_S)
        if FAIL_EVERY and self.calls % FAIL_EVERY == 0:
            raise RuntimeError("injected failure")
        return [sum(r) for r in rows]
"""


def model(root: Path, version: str, *, fail_every: int = 0, delay_s: float = 0.0) -> cs.ModelSpec:
    """A custom model that sums rows, failing every ``fail_every``-th call or sleeping."""
    d = root / f"v{version}"
    d.mkdir(parents=True)
    (d / "flaky.py").write_text(PREDICTOR.format(fail_every=fail_every, delay_s=delay_s))
    write_manifest(d, framework="custom", version=version, predictor="flaky:Flaky")
    return cs.ModelSpec(name="ro", version=version, artifact=str(d), framework="custom")


class TrafficClock:
    """Real time, but a bake sends ``n`` requests instead of sleeping."""

    def __init__(self, client: Client, endpoint: str, n: int = 120):
        self.client, self.endpoint, self.n = client, endpoint, n
        self.bakes = 0

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.bakes += 1
        for i in range(self.n):
            with contextlib.suppress(
                cs.CloudServeError
            ):  # the failures are what the gates are meant to see
                self.client.predict(self.endpoint, [[float(i), 1.0]])


def gates(**kw) -> cs.Gates:
    # no latency gate unless a test asks: a shared machine's p99 is not what these tests check
    return cs.Gates(**{"min_invocations": 8, "max_p99_ratio": None, **kw})


@pytest.fixture
def live(client: Client, tmp_path: Path) -> Client:
    client.deploy(model(tmp_path, "1"), "ro", variant="v1")
    return client


def test_starved_step_bakes_again_then_fails_min_invocations(live: Client, tmp_path: Path) -> None:
    clock = TrafficClock(live, "ro", n=0)
    report = live.rollout(
        model(tmp_path, "2"),
        "ro",
        steps=[10, 100],
        bake="1s",
        gates=gates(max_bakes=2),
        clock=clock,
    )
    assert clock.bakes == 2
    assert [s.decision for s in report.history] == ["wait", "rollback"]
    assert report.failed_gate is not None and report.failed_gate.gate == "min_invocations"


def test_invalid_rollouts_are_refused_before_any_change(live: Client, tmp_path: Path) -> None:
    v2 = model(tmp_path, "2")
    with pytest.raises(cs.InvalidRequest, match="last step must be 100"):
        live.rollout(v2, "ro", steps=[10, 50], bake="1s")
    with pytest.raises(cs.InvalidRequest, match="shortest metrics window"):
        live.rollout(v2, "ro", steps=[10, 100], bake=0.5)
    with pytest.raises(cs.NotFound):
        live.rollout(v2, "nosuch", steps=[100], bake="1s")
    assert live.get_endpoint("ro").traffic == {"v1": 100}


RUNNER = """\
import sys
import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider, LocalConfig

client = Client(LocalProvider(LocalConfig(state_dir=sys.argv[1], drain_s=0.05)))
spec = cs.ModelSpec(name="ro", version="2", artifact=sys.argv[2], framework="custom")
gates = cs.Gates(min_invocations=8, max_p99_ratio=None)
client.rollout(spec, "ro", steps=[10, 50, 100], bake="600s", gates=gates)
"""


@pytest.fixture
def interrupted(live: Client, tmp_path: Path, state_dir: Path) -> Client:
    """A rollout started by another process, killed with SIGKILL while it bakes its first step."""
    v2 = model(tmp_path, "2")
    kill_while_baking(
        live, "ro", [sys.executable, "-c", textwrap.dedent(RUNNER), str(state_dir), v2.artifact]
    )
    return live


def test_killed_rollout_is_resumed_from_another_process(interrupted: Client) -> None:
    status = interrupted.rollout_status("ro")
    assert status is not None and status.outcome == "in_progress"
    assert interrupted.get_endpoint("ro").traffic == {"v1": 90, "v2": 10}
    report = interrupted.resume_rollout("ro", clock=TrafficClock(interrupted, "ro"))
    assert report.outcome == "completed", report.summary()
    assert report.gates.min_invocations == 8  # the gates it was started with
    assert interrupted.get_endpoint("ro").traffic == {"v2": 100}


def test_killed_rollout_is_aborted_from_another_process(interrupted: Client) -> None:
    report = interrupted.abort_rollout("ro")
    assert report.outcome == "aborted"
    assert interrupted.get_endpoint("ro").traffic == {"v1": 100}
    assert interrupted.rollout_status("ro") is None


def test_cli_rollout_status_abort_and_mistakes(
    interrupted: Client, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from cloudserve.cli import main

    monkeypatch.setenv("CLOUDSERVE_LOCAL__STATE_DIR", str(state_dir))
    monkeypatch.delenv("CLOUDSERVE_CONFIG", raising=False)
    monkeypatch.delenv("CLOUDSERVE_TARGET", raising=False)
    assert main(["rollout", "ro", "--status", "--json"]) == 0
    assert '"outcome": "in_progress"' in capsys.readouterr().out
    assert main(["rollout", "ro", "--steps", "10,50"]) == 2  # no artifact: a usage mistake
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ARTIFACT" in err
    assert main(["rollout", "ro", "--abort"]) == 0  # the abort itself succeeded
    assert "aborted" in capsys.readouterr().out
    assert main(["rollout", "ro", "--status"]) == 0
    assert "no rollout in progress on ro" in capsys.readouterr().out
    assert interrupted.get_endpoint("ro").traffic == {"v1": 100}


class ShiftedTraffic(TrafficClock):
    """Traffic far from the training data: every feature around 5 instead of 0."""

    def sleep(self, seconds: float) -> None:
        self.bakes += 1
        for i in range(self.n):
            self.client.predict(self.endpoint, [[5.0 + (i % 7) / 10, 5.0 - (i % 5) / 10]])


def test_drift_gate_rolls_back_on_shifted_inputs(client: Client, tmp_path: Path) -> None:
    import csv
    import random

    rng = random.Random(0)
    baseline = tmp_path / "train.csv"
    with baseline.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f0", "f1"])
        w.writerows([[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(500)])
    client.deploy(model(tmp_path, "1"), "ro", variant="v1", data_capture=True)
    report = client.rollout(
        model(tmp_path, "2"),
        "ro",
        steps=[50, 100],
        bake="1s",
        gates=gates(max_drift_psi=0.2, drift_baseline=str(baseline)),
        clock=ShiftedTraffic(client, "ro", n=80),
    )
    assert report.outcome == "rolled_back"
    gate = report.failed_gate
    assert gate is not None and gate.gate == "max_drift_psi"
    assert gate.observed is not None and gate.observed > 0.2


class LaggingLocal(LocalProvider):
    """The local provider with a cloud's habit: its metrics show a request only
    ``metrics_delay_s`` after it was served."""

    metrics_delay_s = 1.0

    def metrics(self, endpoint: str, window_s: float) -> cs.MetricsReport:
        from cloudserve.local import monitor

        self.recorder.flush()
        return monitor.metrics_report(
            self.db, endpoint, window_s, hide_newest_s=self.metrics_delay_s
        )


def test_each_bake_waits_out_the_metrics_delay_before_it_decides(
    state_dir: Path, tmp_path: Path
) -> None:
    """With metrics that lag by a second, a one-second bake read at once would see nothing and
    starve every step; the rollout waits the provider's delay, so the first bake decides."""
    client = Client(LaggingLocal(local_config(state_dir)))
    try:
        client.deploy(model(tmp_path, "1"), "ro", variant="v1")
        # real time (the metrics' delay is real time), 120 requests spread over each wait
        rows = [[float(i), 1.0] for i in range(120)]
        clock = SharedTrafficClock(WallClock(), client, "ro", rows, requests=120)
        report = client.rollout(
            model(tmp_path, "2"), "ro", steps=[50, 100], bake="1s", gates=gates(), clock=clock
        )
        assert report.outcome == "completed", report.summary()
        first = report.history[0]
        assert first.decision == "promote" and first.bake == 1, report.summary()
        assert first.settle_s == 1.0 and first.window_s >= 2.0
        assert first.new.invocations >= 8 and first.current.invocations >= 8
    finally:
        client.provider.close()
