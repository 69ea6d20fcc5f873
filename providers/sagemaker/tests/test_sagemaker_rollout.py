"""Metric-gated rollouts on SageMaker: what is particular to it, real boto3 against the fake.

The shared behaviour (a good version promoted, a failing or slow one rolled back at the first
step, hold, a crashed rollout resumed or aborted, a short bake refused) is
``test_sagemaker_rollout_conformance``. Here: where the state lives (endpoint tags, within
SageMaker's tag limits), what ``delete_variant`` leaves behind, the per-variant CloudWatch series
the gates read, and a rollout process killed with SIGKILL.

One simulated clock is shared by the rollout, the provider (where its CloudWatch windows end)
and the fake (where it stamps each invocation's datapoints): a bake advances it while sending
real invocations, so one-minute bakes run without sleeping.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sagemaker_harness import fast_config, start_fake

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.packed import pack
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve.testing.rollout import SimClock, TrafficClock, kill_while_baking
from cloudserve_sagemaker import SageMakerProvider
from cloudserve_sagemaker._rollout import STATE
from cloudserve_sagemaker.testing import FakeSageMaker

EP = "cs-ro"

COUNT_TAG = STATE.count_tag
MAX_VALUE = STATE.width
PREFIX = STATE.prefix


@pytest.fixture
def sim() -> SimClock:
    return SimClock()


@pytest.fixture
def fake(tmp_path: Path, sim: SimClock) -> Iterator[FakeSageMaker]:
    f = start_fake(tmp_path, creating_polls=1, updating_polls=1, clock=sim.now)
    yield f
    f.stop()
    assert f.rejected() == [], "every request the provider sends passes the service model"


@pytest.fixture
def live(fake: FakeSageMaker, sim: SimClock, tmp_path: Path) -> Iterator[Client]:
    """An endpoint serving version 1 as variant v1, behind a client that shares the clock."""
    provider = SageMakerProvider(fast_config(fake), clock=sim.now)
    client = Client(provider)
    client.deploy(spec(tmp_path, "1"), EP, variant="v1")
    yield client
    provider.close()


def traffic(sim: SimClock, client: Client, requests: int = 150) -> TrafficClock:
    return TrafficClock(sim, client, EP, sample_rows(20, seed=7), requests=requests)


def spec(root: Path, version: str) -> cs.ModelSpec:
    directory = make_sklearn_model(root / f"model-v{version}", version=version)
    return cs.ModelSpec(
        name="churn", version=version, artifact=str(directory), framework="sklearn",
        tags={"team": "ml"},
    )  # fmt: skip


def gates(**kw: Any) -> cs.Gates:
    # no latency gate unless a test asks: the in-process model's p99 is not what these check
    return cs.Gates(**{"min_invocations": 8, "max_p99_ratio": None, **kw})


def variants(fake: FakeSageMaker) -> dict[str, float]:
    """Production variant → current weight, as DescribeEndpoint says."""
    ep = fake.client("sagemaker").describe_endpoint(EndpointName=EP)
    return {v["VariantName"]: v["CurrentWeight"] for v in ep["ProductionVariants"]}


def endpoint_tags(fake: FakeSageMaker) -> dict[str, str]:
    sm = fake.client("sagemaker")
    arn = sm.describe_endpoint(EndpointName=EP)["EndpointArn"]
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


def models_of(fake: FakeSageMaker) -> list[str]:
    return sorted(m["ModelName"] for m in fake.client("sagemaker").list_models()["Models"])


def test_good_version_ends_at_100_with_the_old_variant_gone(
    live: Client, fake: FakeSageMaker, sim: SimClock, tmp_path: Path
) -> None:
    seen: list[bool] = []
    start, clock = sim.now(), traffic(sim, live)
    report = live.rollout(
        spec(tmp_path, "2"),
        EP,
        steps=[10, 50, 100],
        bake="1m",
        gates=gates(),
        clock=clock,
        progress=lambda r: seen.append(COUNT_TAG in endpoint_tags(fake)),
    )
    assert report.outcome == "completed", report.summary()
    assert [s.weight for s in report.history if s.decision == "promote"] == [10, 50, 100]
    # two one-minute bakes, each followed by the 60 s metrics delay, no sleeping
    assert clock.bakes == 2 and sim.now() == start + 2 * (60 + 60)
    first = report.history[0]
    assert first.window_s == 60 + 60 and first.settle_s == 60
    assert first.new.invocations >= 8 and first.current.invocations > first.new.invocations
    assert first.new.invocations + first.current.invocations == 150  # one bake's requests
    assert variants(fake) == {"v2": 100.0}
    assert len(models_of(fake)) == 1 and models_of(fake)[0].startswith(f"{EP}-v2-")
    configs = fake.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]
    assert len(configs) == 1  # the configs made on the way were deleted
    assert True in seen  # the state was in the tags while it ran …
    tags = endpoint_tags(fake)
    assert not [k for k in tags if k.startswith(PREFIX)]  # … and is gone at the end
    assert tags["team"] == "ml"
    assert live.rollout_status(EP) is None
    assert live.get_endpoint(EP).traffic == {"v2": 100}


def test_bake_below_the_cloudwatch_period_is_refused_before_any_request(
    live: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    before = len(fake.requests())
    with pytest.raises(
        cs.InvalidRequest, match=r"shorter than sagemaker's shortest metrics window \(60s\)"
    ):
        live.rollout(spec(tmp_path, "2"), EP, steps=[10, 100], bake="30s")
    assert fake.requests()[before:] == []


def test_state_round_trips_through_tags_sagemaker_accepts(
    live: Client, fake: FakeSageMaker
) -> None:
    big = {"history": [{"n": i, "detail": f"figure {i * 7919 % 10007}"} for i in range(300)]}
    chunks = pack(big, MAX_VALUE)
    assert 1 < len(chunks) < 40 and all(len(c) <= MAX_VALUE for c in chunks)
    live.provider.put_rollout_state(EP, big)
    tags = endpoint_tags(fake)
    assert tags[COUNT_TAG] == str(len(chunks))
    assert live.provider.get_rollout_state(EP) == big == STATE.read(tags)
    other = SageMakerProvider(live.provider.config)  # another process reads the same state
    assert other.get_rollout_state(EP) == big
    assert variants(fake) == {"v1": 100.0}  # recording it changed no variant
    assert live.get_endpoint(EP).tags == {"team": "ml"}  # the state is not a user's tag
    small = {"new_variant": "v2", "steps": [10, 100]}
    live.provider.put_rollout_state(EP, small)  # a shorter state leaves no stale chunk
    assert len([k for k in endpoint_tags(fake) if k.startswith(PREFIX)]) == 2
    assert live.provider.get_rollout_state(EP) == small
    live.provider.put_rollout_state(EP, None)
    assert live.provider.get_rollout_state(EP) is None
    assert not [k for k in endpoint_tags(fake) if k.startswith(PREFIX)]


def test_state_that_does_not_fit_the_tags_left_is_refused_before_any_write(
    live: Client, fake: FakeSageMaker
) -> None:
    sm = fake.client("sagemaker")
    arn = sm.describe_endpoint(EndpointName=EP)["EndpointArn"]
    room = 50 - len(endpoint_tags(fake))
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "x"} for i in range(room - 3)])
    big = {"history": [{"n": i, "detail": f"figure {i * 7919 % 10007}"} for i in range(300)]}
    before = len(fake.requests())
    with pytest.raises(cs.OperationFailed, match="SageMaker allows 50 tags"):
        live.provider.put_rollout_state(EP, big)
    writes = {r.operation for r in fake.requests()[before:]} - {"DescribeEndpoint", "ListTags"}
    assert writes == set()  # read, never written
    assert live.provider.get_rollout_state(EP) is None


def test_fake_enforces_sagemakers_tag_limits(live: Client, fake: FakeSageMaker) -> None:
    sm = fake.client("sagemaker")
    arn = sm.describe_endpoint(EndpointName=EP)["EndpointArn"]
    with pytest.raises(Exception, match="ValidationException"):
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "long", "Value": "x" * (MAX_VALUE + 1)}])
    with pytest.raises(Exception, match="ValidationException"):
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "bad", "Value": "no {braces}"}])
    room = 50 - len(endpoint_tags(fake))
    with pytest.raises(Exception, match="at most 50 user tags"):
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "x"} for i in range(room + 1)])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ops"}])  # overwrites
    assert endpoint_tags(fake)["team"] == "ops"
    assert len(fake.rejected()) == 2
    fake.state.rejected.clear()  # refused on purpose


def test_delete_variant_refuses_one_with_traffic_or_the_last(
    live: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    with pytest.raises(cs.InvalidRequest, match="only production variant"):
        live.provider.delete_variant(EP, "v1")
    live.deploy(spec(tmp_path, "2"), EP, variant="v2", traffic=30)
    with pytest.raises(cs.InvalidRequest, match="still takes 30% of the traffic"):
        live.provider.delete_variant(EP, "v2")
    with pytest.raises(cs.NotFound, match="no variant 'nosuch'"):
        live.provider.delete_variant(EP, "nosuch")
    assert variants(fake) == {"v1": 70.0, "v2": 30.0}
    live.set_traffic(EP, {"v1": 0, "v2": 100})
    ep = live.provider.delete_variant(EP, "v1")
    assert ep.traffic == {"v2": 100}
    assert variants(fake) == {"v2": 100.0}
    assert len(models_of(fake)) == 1 and models_of(fake)[0].startswith(f"{EP}-v2-")


def test_delete_variant_keeps_the_other_variants_scaling_and_capture(
    live: Client, fake: FakeSageMaker, tmp_path: Path
) -> None:
    scaled = cs.Compute(min_replicas=1, max_replicas=3)
    live.deploy(spec(tmp_path, "2"), EP, scaled, variant="v2", traffic=50, data_capture=True)
    live.set_traffic(EP, {"v1": 0, "v2": 100})
    ep = live.provider.delete_variant(EP, "v1")
    assert [(v.name, v.min_replicas, v.max_replicas) for v in ep.variants] == [("v2", 1, 3)]
    aas = fake.client("application-autoscaling")
    targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == [f"endpoint/{EP}/variant/v2"]
    sm = fake.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=EP)["EndpointConfigName"]
    )
    assert config["DataCaptureConfig"]["EnableCapture"] is True


def test_degraded_variant_shows_in_its_own_cloudwatch_series(
    live: Client, fake: FakeSageMaker, sim: SimClock
) -> None:
    fake.degrade("v1", error_rate=0.5, latency_ms=200)
    traffic(sim, live, requests=20).sleep(60)
    report = live.provider.metrics(EP, 60)
    m = report.per_variant["v1"]
    assert m.invocations == 20 and m.errors == {"4xx": 0, "5xx": 10}
    assert m.p50_ms is not None and m.p50_ms >= 200
    assert report.invocations == 20
    sim.advance_to(sim.now() + 120)  # the next window holds none of it
    assert live.provider.metrics(EP, 60).per_variant["v1"].invocations == 0
    with pytest.raises(ValueError, match="error_rate"):
        fake.degrade("v1", error_rate=1.5)


RUNNER = """\
import sys
import cloudserve as cs
from cloudserve.client import Client
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider

config = SageMakerConfig.model_validate_json(sys.argv[1])
client = Client(SageMakerProvider(config))
spec = cs.ModelSpec(name="churn", version="2", artifact=sys.argv[2], framework="sklearn")
gates = cs.Gates(min_invocations=8, max_p99_ratio=None)
client.rollout(spec, "cs-ro", steps=[10, 50, 100], bake="600s", gates=gates)
"""


@pytest.fixture
def interrupted(live: Client, tmp_path: Path) -> Client:
    """A rollout started by another process against the fake over HTTP, killed with SIGKILL
    while it bakes its first step (its clock is the real one: it would sleep 600 s)."""
    v2 = spec(tmp_path, "2")
    config = live.provider.config.model_dump_json()
    argv = [sys.executable, "-c", textwrap.dedent(RUNNER), config, str(v2.artifact)]
    kill_while_baking(live, EP, argv)
    return live


def test_killed_rollout_is_resumed_and_finished_from_this_process(
    interrupted: Client, fake: FakeSageMaker, sim: SimClock
) -> None:
    status = interrupted.rollout_status(EP)
    assert status is not None and status.outcome == "in_progress" and status.step_index == 0
    assert variants(fake) == {"v1": 90.0, "v2": 10.0}
    report = interrupted.resume_rollout(EP, clock=traffic(sim, interrupted))
    assert report.outcome == "completed", report.summary()
    assert report.gates.min_invocations == 8  # the gates it was started with
    assert variants(fake) == {"v2": 100.0}
    assert interrupted.rollout_status(EP) is None


def test_killed_rollout_is_aborted_from_this_process(
    interrupted: Client, fake: FakeSageMaker
) -> None:
    report = interrupted.abort_rollout(EP)
    assert report.outcome == "aborted"
    assert variants(fake) == {"v1": 100.0}
    assert len(models_of(fake)) == 1 and models_of(fake)[0].startswith(f"{EP}-v1-")
    assert interrupted.rollout_status(EP) is None
