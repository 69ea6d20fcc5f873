"""Metric-gated rollouts on Vertex AI against the strict fake, through the real GAPIC clients.

Time is simulated: the fake stamps predictions with a clock the test owns, the provider ends its
Cloud Monitoring windows on the same clock, and the rollout's clock sends real traffic through
``client.predict`` when it "sleeps" through a bake — so a bake of one minute takes a second.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from vertex_harness import churn_model

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.testing import sample_rows
from cloudserve.testing.rollout import kill_while_baking
from cloudserve_vertex import VertexProvider
from cloudserve_vertex._rollout import LABEL, object_name
from cloudserve_vertex.testing import FakeVertex


class SimTime:
    """A clock that moves only when told. It starts far from the wall clock (November 2023), so
    a metric or log read that used the real time instead of the shared clock would see nothing."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        return self.t


class TrafficClock:
    """The rollout's clock: a bake advances the simulated time, then sends ``n`` predictions
    (landing inside the window the rollout reads next)."""

    def __init__(self, sim: SimTime, client: Client, endpoint: str, n: int = 150):
        self.sim, self.client, self.endpoint, self.n = sim, client, endpoint, n
        self.bakes = 0

    def now(self) -> float:
        return self.sim.now()

    def sleep(self, seconds: float) -> None:
        self.bakes += 1
        self.sim.t += seconds
        rows = sample_rows(1)
        for _ in range(self.n):
            with contextlib.suppress(cs.CloudServeError):  # what the gates are meant to see
                self.client.predict(self.endpoint, rows)


@pytest.fixture
def sim() -> SimTime:
    return SimTime()


@pytest.fixture
def fake(tmp_path: Path, sim: SimTime) -> Iterator[FakeVertex]:
    with FakeVertex(workdir=tmp_path / "fake", operation_polls=1, clock=sim.now).serve() as f:
        yield f
        assert f.rejected() == [], "every request fits the discovery document"


@pytest.fixture
def client(fake: FakeVertex, sim: SimTime) -> Iterator[Client]:
    provider = VertexProvider(fake.config())
    provider.clock = sim.now  # metrics windows end on the simulated clock
    yield Client(provider)
    provider.close()


@pytest.fixture
def live(client: Client, tmp_path: Path) -> Client:
    client.deploy(churn_model(tmp_path, "1"), "ro", variant="v1")
    return client


def gates(**kw: object) -> cs.Gates:
    # no latency gate unless a test asks: a shared machine's p99 is not what these tests check
    return cs.Gates(**{"min_invocations": 8, "max_p99_ratio": None, **kw})


def test_good_version_is_promoted_and_old_deployed_model_undeployed(
    live: Client, fake: FakeVertex, sim: SimTime, tmp_path: Path
) -> None:
    seen: list[int] = []
    report = live.rollout(
        churn_model(tmp_path, "2"),
        "ro",
        steps=[10, 50, 100],
        bake="1m",
        gates=gates(),
        clock=TrafficClock(sim, live, "ro"),
        progress=lambda r: seen.append(
            len(fake.objects(fake.staging_bucket, "cloudserve/rollouts/"))
        ),
    )
    assert report.outcome == "completed", report.summary()
    assert [s.weight for s in report.history if s.decision == "promote"] == [10, 50, 100]
    first = report.history[0]
    assert first.window_s == 60 + 180 and first.settle_s == 180  # the bake, then the metrics delay
    assert first.new.invocations >= 8 and first.current.invocations > first.new.invocations
    ep = fake.endpoint("ro")
    assert ep is not None
    assert [d["displayName"] for d in ep["deployedModels"]] == ["v2"]  # v1 undeployed
    assert fake.traffic("ro") == {"v2": 100}
    assert LABEL not in (ep.get("labels") or {})
    assert fake.objects(fake.staging_bucket, "cloudserve/rollouts/") == []
    assert 1 in seen  # the state object existed while it ran
    assert live.rollout_status("ro") is None


def test_short_bake_and_private_endpoints_are_refused_before_any_request(
    live: Client, fake: FakeVertex, tmp_path: Path
) -> None:
    v2 = churn_model(tmp_path, "2")
    before = len(fake.requests_made())
    with pytest.raises(cs.InvalidRequest, match="shortest metrics window"):
        live.rollout(v2, "ro", steps=[10, 100], bake="30s")
    assert fake.requests_made()[before:] == []
    private = Client(VertexProvider(fake.config(network="projects/1/global/networks/vpc")))
    before = len(fake.requests_made())
    with pytest.raises(cs.UnsupportedOperation, match="public endpoint"):
        private.rollout(v2, "ro", steps=[10, 100], bake="1m")
    assert fake.requests_made()[before:] == []
    assert fake.traffic("ro") == {"v1": 100}


def test_state_is_recorded_with_the_endpoint(live: Client, fake: FakeVertex) -> None:
    provider = live.provider
    assert provider.get_rollout_state("ro") is None
    provider.put_rollout_state("ro", {"new_variant": "V2.Canary", "steps": [10, 100]})
    ep = fake.endpoint("ro")
    assert ep is not None and ep["labels"][LABEL] == "v2-canary"
    assert ep["labels"]["managed-by"] == "cloudserve"  # other labels kept
    uri = f"{fake.staging_bucket}/{object_name(provider.api, 'ro')}"
    assert orjson.loads(fake.read_object(uri))["steps"] == [10, 100]
    # another process (a new provider) reads the same state
    other = VertexProvider(live.provider.config)
    assert other.get_rollout_state("ro") == {"new_variant": "V2.Canary", "steps": [10, 100]}
    assert "cloudserve-rollout" not in live.get_endpoint("ro").tags
    provider.put_rollout_state("ro", None)
    assert provider.get_rollout_state("ro") is None
    assert LABEL not in (fake.endpoint("ro") or {}).get("labels", {})
    with pytest.raises(KeyError):
        fake.read_object(uri)
    other.close()


def test_a_label_whose_state_object_is_gone_is_reported(live: Client, fake: FakeVertex) -> None:
    provider = live.provider
    provider.put_rollout_state("ro", {"new_variant": "v2"})
    bucket = fake.staging_bucket.removeprefix("gs://")
    assert fake.service.gcs.delete_prefix(bucket, object_name(provider.api, "ro")) == 1
    with pytest.raises(cs.OperationFailed, match=r"state object .* is missing"):
        provider.get_rollout_state("ro")
    provider.put_rollout_state("ro", None)  # clearing still works: the label goes
    assert provider.get_rollout_state("ro") is None


def test_degraded_deployed_model_shows_in_its_own_series(
    live: Client, fake: FakeVertex, sim: SimTime
) -> None:
    fake.degrade("v1", error_rate=0.5, latency_ms=200)
    TrafficClock(sim, live, "ro", n=20).sleep(60)
    m = live.provider.metrics("ro", 60).per_variant["v1"]
    assert m.invocations >= 20 and m.errors == {"5xx": m.invocations // 2}
    assert m.p50_ms is not None and m.p50_ms >= 200
    with pytest.raises(ValueError, match="error_rate"):
        fake.degrade("v1", error_rate=1.5)


RUNNER = """\
import sys
import cloudserve as cs
from cloudserve.client import Client
from cloudserve_vertex import VertexProvider, VertexConfig

config = VertexConfig.model_validate_json(sys.argv[1])
client = Client(VertexProvider(config))
spec = cs.ModelSpec(name="churn", version="2", artifact=sys.argv[2], framework="sklearn")
gates = cs.Gates(min_invocations=8, max_p99_ratio=None)
client.rollout(spec, "ro", steps=[10, 50, 100], bake="600s", gates=gates)
"""


@pytest.fixture
def interrupted(live: Client, fake: FakeVertex, tmp_path: Path) -> Client:
    """A rollout started by another process against the fake over HTTP, killed with SIGKILL
    while it bakes its first step (its clock is the real one: it sleeps 600 s)."""
    v2 = churn_model(tmp_path, "2")
    config = live.provider.config.model_dump_json()
    kill_while_baking(
        live, "ro", [sys.executable, "-c", textwrap.dedent(RUNNER), config, str(v2.artifact)]
    )
    return live


def test_killed_rollout_is_resumed_from_another_process(
    interrupted: Client, fake: FakeVertex, sim: SimTime
) -> None:
    status = interrupted.rollout_status("ro")
    assert status is not None and status.outcome == "in_progress"
    assert fake.traffic("ro") == {"v1": 90, "v2": 10}
    report = interrupted.resume_rollout("ro", clock=TrafficClock(sim, interrupted, "ro"))
    assert report.outcome == "completed", report.summary()
    assert report.gates.min_invocations == 8  # the gates it was started with
    assert fake.traffic("ro") == {"v2": 100}
    assert [d["displayName"] for d in (fake.endpoint("ro") or {})["deployedModels"]] == ["v2"]


def test_killed_rollout_is_aborted_from_another_process(
    interrupted: Client, fake: FakeVertex
) -> None:
    report = interrupted.abort_rollout("ro")
    assert report.outcome == "aborted"
    assert fake.traffic("ro") == {"v1": 100}
    assert interrupted.rollout_status("ro") is None


class ShiftedTraffic(TrafficClock):
    """Traffic far from the training data: every feature around 5 instead of 0."""

    def sleep(self, seconds: float) -> None:
        self.bakes += 1
        self.sim.t += seconds
        for row in sample_rows(self.n, shift=5.0, seed=self.bakes):
            self.client.predict(self.endpoint, [row])


def test_drift_gate_reads_the_request_log_of_the_step_window(
    client: Client, fake: FakeVertex, sim: SimTime, tmp_path: Path
) -> None:
    baseline = tmp_path / "train.csv"
    rows = sample_rows(500, seed=7)
    baseline.write_text("f0,f1,f2,f3\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    client.deploy(churn_model(tmp_path, "1"), "ro", variant="v1", data_capture=True)
    report = client.rollout(
        churn_model(tmp_path, "2"),
        "ro",
        steps=[50, 100],
        bake="1m",
        gates=gates(max_drift_psi=0.2, drift_baseline=str(baseline)),
        clock=ShiftedTraffic(sim, client, "ro", n=60),
    )
    assert report.outcome == "rolled_back", report.summary()
    gate = report.failed_gate
    assert gate is not None and gate.gate == "max_drift_psi"
    assert gate.observed is not None and gate.observed > 0.2
    assert fake.traffic("ro") == {"v1": 100}
