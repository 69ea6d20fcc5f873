"""Metric-gated rollouts on Azure ML, the real MLClient against the fake workspace.

One clock is shared by the rollout, the provider (where its Azure Monitor windows end) and the
fake (where it stamps scoring requests): a bake advances it through the bake time while sending
real scoring requests through ``client.predict``, so one-minute bakes run without sleeping and
the per-deployment metrics the gates read are the fake's counts of those requests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from azureml_harness import fast_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.packed import pack
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve.testing.rollout import SimClock, TrafficClock
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml._packaging import deployment_name
from cloudserve_azureml._rollout import STATE
from cloudserve_azureml.testing import FakeAzureML

EP = "cs-ro"
START = 1_800_000_000.0  # a whole minute, so each one-minute bake fills one metric grain

MAX_VALUE = STATE.width
PREFIX = STATE.prefix


@pytest.fixture
def sim() -> SimClock:
    """The clock the fake stamps scoring with and the provider ends its windows on."""
    return SimClock(START)


@pytest.fixture
def fake(tmp_path: Path, sim: SimClock):
    with FakeAzureML(workdir=tmp_path / "fake", in_progress_polls=1, clock=sim.now) as f:
        yield f


@pytest.fixture
def live(fake: FakeAzureML, sim: SimClock, tmp_path: Path) -> Client:
    """An endpoint serving version 1 as variant v1, behind a client that shares the clock."""
    client = Client(AzureMLProvider(fast_config(fake), credential=fake.credential(), clock=sim.now))
    client.deploy(spec(tmp_path, "1"), EP, variant="v1")
    return client


@pytest.fixture
def clock(sim: SimClock, live: Client) -> TrafficClock:
    """The rollout's clock: a bake sends 200 predictions spread over its seconds."""
    return TrafficClock(sim, live, EP, [sample_rows(4)[0]], requests=200)


def spec(root: Path, version: str) -> cs.ModelSpec:
    directory = make_sklearn_model(root / f"model-v{version}", version=version)
    return cs.ModelSpec(name="cs-ro", version=version, artifact=str(directory), framework="sklearn")


def gates(**kw: object) -> cs.Gates:
    # no latency gate unless a test asks: the in-process model's p99 is not what these check
    return cs.Gates(**{"min_invocations": 10, "max_p99_ratio": None, **kw})  # type: ignore[arg-type]


def test_good_version_ends_at_100_with_the_old_deployment_gone(
    live: Client, fake: FakeAzureML, clock: TrafficClock, sim: SimClock, tmp_path: Path
) -> None:
    report = live.rollout(
        spec(tmp_path, "2"), EP, steps=[10, 50, 100], bake="1m", gates=gates(), clock=clock
    )
    assert report.outcome == "completed", report.summary()
    assert [s.weight for s in report.history if s.decision == "promote"] == [10, 50, 100]
    assert clock.bakes == 2 and sim.now() >= START + 120  # two one-minute bakes, no sleeping
    first = report.history[0]
    assert first.new.invocations >= 10 and first.current.invocations >= 100
    assert first.new.invocations + first.current.invocations == 200  # one bake's requests
    assert fake.traffic(EP) == {deployment_name("v2"): 100}
    assert [d["name"] for d in fake.deployments(EP)] == [deployment_name("v2")]
    assert live.rollout_status(EP) is None
    tags = fake.resource(f"onlineEndpoints/{EP}")["tags"]  # type: ignore[index]
    assert not [k for k in tags if k.startswith(PREFIX)]  # the state is cleared when it ends
    assert live.get_endpoint(EP).traffic == {"v2": 100}


def test_bake_below_azure_monitor_grain_is_refused_before_any_request(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    before = len(fake.requests_made())
    with pytest.raises(
        cs.InvalidRequest, match=r"shorter than azureml's shortest metrics window \(60s\)"
    ):
        live.rollout(spec(tmp_path, "2"), EP, steps=[10, 100], bake="30s")
    assert fake.requests_made()[before:] == []


def test_state_is_chunked_into_tags_azure_accepts(live: Client, fake: FakeAzureML) -> None:
    big = {"history": [{"n": i, "detail": f"figure {i * 7919 % 10007}"} for i in range(400)]}
    chunks = pack(big, MAX_VALUE)
    assert len(chunks) > 1 and all(len(c) <= MAX_VALUE for c in chunks)
    live.provider.put_rollout_state(EP, big)
    tags = fake.resource(f"onlineEndpoints/{EP}")["tags"]  # type: ignore[index]
    assert all(len(v) <= MAX_VALUE for v in tags.values())
    assert live.provider.get_rollout_state(EP) == big == STATE.read(tags)
    assert fake.traffic(EP) == {deployment_name("v1"): 100}  # recording it moved no traffic
    assert not [k for k in live.get_endpoint(EP).tags if k.startswith(PREFIX)]
    live.provider.put_rollout_state(EP, None)
    assert live.provider.get_rollout_state(EP) is None


def test_fake_refuses_a_tag_value_longer_than_azure_allows(live: Client, fake: FakeAzureML) -> None:
    provider = live.provider
    ep = provider.api.ml.online_endpoints.get(EP)  # type: ignore[attr-defined]
    ep.tags = {**(ep.tags or {}), "too-long": "x" * (MAX_VALUE + 1)}
    with pytest.raises(Exception, match="at most 256"):
        provider.api.ml.online_endpoints.begin_create_or_update(ep).result()  # type: ignore[attr-defined]


def test_delete_variant_refuses_one_that_takes_traffic(live: Client, fake: FakeAzureML) -> None:
    with pytest.raises(cs.InvalidRequest, match="still takes 100%"):
        live.provider.delete_variant(EP, "v1")
    with pytest.raises(cs.NotFound):
        live.provider.delete_variant(EP, "nosuch")
    assert [d["name"] for d in fake.deployments(EP)] == [deployment_name("v1")]


RUNNER = """\
import sys
sys.path.insert(0, sys.argv[2])
import cloudserve as cs
from azureml_harness import fast_config
from cloudserve.client import Client
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml.testing import FakeAzureML, FakeCredential, relay

fake = FakeAzureML()  # only for its names: every request goes to the parent's fake
with relay(sys.argv[1]):
    client = Client(AzureMLProvider(fast_config(fake), credential=FakeCredential()))
    spec = cs.ModelSpec(name="cs-ro", version="2", artifact=sys.argv[3], framework="sklearn")
    gates = cs.Gates(min_invocations=10, max_p99_ratio=None)
    client.rollout(spec, "cs-ro", steps=[10, 50, 100], bake="600s", gates=gates)
"""


@pytest.fixture
def interrupted(live: Client, fake: FakeAzureML, tmp_path: Path):
    """A rollout started by another process against the fake served over HTTP, killed with
    SIGKILL while it bakes its first step."""
    v2 = spec(tmp_path, "2")
    tests_dir = str(Path(__file__).parent)
    v2_dep = deployment_name("v2")
    with fake.serve_http() as address:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RUNNER), address, tests_dir, v2.artifact],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                state = live.provider.get_rollout_state(EP)
                if state and state.get("history") and fake.traffic(EP).get(v2_dep) == 10:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "the rollout process ended before it was killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return v2


def test_killed_rollout_is_resumed_and_finished_from_a_new_process(
    interrupted: cs.ModelSpec, live: Client, fake: FakeAzureML, clock: TrafficClock
) -> None:
    status = live.rollout_status(EP)
    assert status is not None and status.outcome == "in_progress" and status.step_index == 0
    assert fake.traffic(EP) == {deployment_name("v1"): 90, deployment_name("v2"): 10}
    report = live.resume_rollout(EP, clock=clock)
    assert report.outcome == "completed", report.summary()
    assert fake.traffic(EP) == {deployment_name("v2"): 100}
    assert [d["name"] for d in fake.deployments(EP)] == [deployment_name("v2")]
    assert live.rollout_status(EP) is None


def test_killed_rollout_is_aborted_from_a_new_process(
    interrupted: cs.ModelSpec, live: Client, fake: FakeAzureML
) -> None:
    report = live.abort_rollout(EP)
    assert report.outcome == "aborted"
    assert fake.traffic(EP) == {deployment_name("v1"): 100}
    assert [d["name"] for d in fake.deployments(EP)] == [deployment_name("v1")]
    assert live.rollout_status(EP) is None


def test_state_that_does_not_fit_the_tags_left_is_refused_before_any_change(
    live: Client, fake: FakeAzureML
) -> None:
    ep = fake.resource(f"onlineEndpoints/{EP}")
    assert ep is not None
    ep["tags"].update({f"team-{i}": "x" for i in range(48 - len(ep["tags"]))})
    big = {"history": [{"n": i, "detail": f"figure {i * 7919 % 10007}"} for i in range(400)]}
    before = len(fake.requests_made())
    with pytest.raises(cs.OperationFailed, match="Azure allows 50 tags"):
        live.provider.put_rollout_state(EP, big)
    assert {m for m, _ in fake.requests_made()[before:]} == {"GET"}  # read, never written
    assert live.provider.get_rollout_state(EP) is None
