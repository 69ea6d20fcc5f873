"""Endpoints of the local provider: state across processes, health, blue/green, replicas,
sticky routing, autoscaling, queued predictions and the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from local_helpers import local_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.errors import AlreadyExists, AuthError, NotFound
from cloudserve.local import LocalProvider
from cloudserve.local.endpoints import canary_weights
from cloudserve.local.router import pick_variant
from cloudserve.resources import EndpointStatus, JobStatus
from cloudserve.testing import make_sklearn_model, sample_rows, write_csv

ROWS = sample_rows(4)


def model(tmp: Path, version: str = "1", seed: int = 0) -> cs.ModelSpec:
    d = make_sklearn_model(tmp / f"model-v{version}-{seed}", version=version, seed=seed)
    return cs.ModelSpec(name="clf", version=version, artifact=str(d), framework="sklearn")


def live_pids(provider: LocalProvider, endpoint: str) -> list[int]:
    rows = provider.db.all("SELECT pid FROM workers WHERE endpoint = ?", (endpoint,))
    return [r["pid"] for r in rows if psutil.pid_exists(r["pid"])]


def kill(pid: int) -> None:
    """SIGKILL a worker and wait until it is gone (reaped, so it is not a zombie)."""
    proc = psutil.Process(pid)
    proc.kill()
    proc.wait(timeout=10)


def test_state_is_seen_from_a_new_process(client: Client, state_dir: Path, tmp_path: Path):
    client.deploy(model(tmp_path), "shared")
    script = (
        "import json, cloudserve as cs\n"
        "c = cs.connect('local')\n"
        "eps = c.list_endpoints()\n"
        f"out = c.predict('shared', {ROWS!r}).outputs\n"
        "print(json.dumps({'eps': [(e.name, e.status.value) for e in eps], 'out': out}))\n"
    )
    env = {**os.environ, "CLOUDSERVE_STATE_DIR": str(state_dir)}
    env.pop("CLOUDSERVE_CONFIG", None)
    env.pop("CLOUDSERVE_TARGET", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["eps"] == [["shared", "READY"]]
    assert seen["out"] == client.predict("shared", ROWS).outputs
    # the other process's requests are in this process's metrics
    assert client.metrics("shared", "1h").invocations >= 2
    cli = subprocess.run(
        [sys.executable, "-m", "cloudserve.cli", "endpoints", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "shared" in cli.stdout and "READY" in cli.stdout


def test_dead_worker_is_failed_then_restarted_or_deleted(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    m = model(tmp_path)
    client.deploy(m, "fragile")
    (pid,) = live_pids(provider, "fragile")
    kill(pid)
    ep = client.get_endpoint("fragile")
    assert ep.status is EndpointStatus.FAILED
    assert str(pid) in (ep.message or "")
    assert ep.variants[0].status is EndpointStatus.FAILED
    assert "fragile" in {
        e.name for e in client.list_endpoints() if e.status is EndpointStatus.FAILED
    }

    ep = provider.restart_endpoint("fragile")
    assert ep.status is EndpointStatus.READY
    assert len(client.predict("fragile", ROWS).outputs) == 4

    (pid2,) = live_pids(provider, "fragile")
    kill(pid2)
    assert client.get_endpoint("fragile").status is EndpointStatus.FAILED
    ep = client.deploy(m, "fragile")  # the same spec again restarts what died
    assert ep.status is EndpointStatus.READY
    assert pid2 not in live_pids(provider, "fragile")

    kill(live_pids(provider, "fragile")[0])
    client.delete_endpoint("fragile")
    with pytest.raises(NotFound):
        client.get_endpoint("fragile")


def test_worker_answers_map_through_the_http_table(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    client.deploy(model(tmp_path), "auth")
    provider.db.run("UPDATE endpoints SET token = ? WHERE name = ?", ("not-the-token", "auth"))
    with pytest.raises(AuthError) as info:
        client.predict("auth", ROWS)
    assert info.value.code == "401" and info.value.provider == "local"
    assert info.value.__cause__ is not None


def test_blue_green_drops_no_request_under_load(client: Client, tmp_path: Path):
    client.deploy(model(tmp_path, "1"), "bg")
    stop = threading.Event()
    seen: Counter[str] = Counter()
    errors: list[BaseException] = []

    def load() -> None:
        while not stop.is_set():
            try:
                seen[client.predict("bg", ROWS).model_version or "?"] += 1
            except BaseException as exc:  # any failed request fails the test
                errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while sum(seen.values()) < 20:
            time.sleep(0.05)
        ep = client.deploy(model(tmp_path, "2", seed=1), "bg")
        after = sum(seen.values())
        while sum(seen.values()) < after + 20:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen["1"] > 0 and seen["2"] > 0
    assert ep.traffic == {"v2": 100}
    assert client.predict("bg", ROWS).model_version == "2"


def test_replicas_run_as_separate_processes(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    ep = client.deploy(model(tmp_path), "wide", cs.Compute(replicas=2), wait=False)
    assert ep.status is EndpointStatus.CREATING
    deadline = time.monotonic() + 120
    while (ep := client.get_endpoint("wide")).status is not EndpointStatus.READY:
        assert ep.status is EndpointStatus.CREATING and time.monotonic() < deadline
        time.sleep(0.1)
    assert ep.variants[0].replicas == 2
    pids = live_pids(provider, "wide")
    assert len(set(pids)) == 2
    outs = {json.dumps(client.predict("wide", ROWS).outputs) for _ in range(6)}
    assert len(outs) == 1, "every replica serves the same model"


def test_sticky_routing_key_keeps_a_user_on_one_variant(client: Client, tmp_path: Path):
    client.deploy(model(tmp_path, "1"), "ab")
    client.deploy(model(tmp_path, "2", seed=1), "ab", traffic=50)
    for user in ("alice", "bob", "carol"):
        got = {
            client.predict("ab", ROWS, parameters={"routing_key": user}).variant for _ in range(5)
        }
        assert len(got) == 1
    users = {
        client.predict("ab", ROWS[:1], parameters={"routing_key": f"u{i}"}).variant
        for i in range(40)
    }
    assert users == {"v1", "v2"}


def test_router_weights():
    picks = Counter(pick_variant([("a", 80), ("b", 20), ("c", 0)]) for _ in range(4000))
    assert set(picks) == {"a", "b"}
    assert 0.7 < picks["a"] / 4000 < 0.9
    assert pick_variant([("a", 0)]) is None
    assert pick_variant([("b", 50), ("a", 50)], "k") == pick_variant([("a", 50), ("b", 50)], "k")
    assert canary_weights({"v1": 100}, "v2", 10) == {"v1": 90, "v2": 10}
    assert canary_weights({"a": 50, "b": 50}, "c", 33) == {"a": 34, "b": 33, "c": 33}
    assert sum(canary_weights({"a": 1, "b": 1, "c": 1}, "d", 0).values()) == 100


def test_autoscaling_adds_workers_under_load(state_dir: Path, tmp_path: Path):
    provider = LocalProvider(local_config(state_dir, autoscale_interval_s=0.2))
    client = Client(provider)
    try:
        compute = cs.Compute(replicas=1, min_replicas=1, max_replicas=2, autoscale_target=0.5)
        client.deploy(model(tmp_path), "elastic", compute)
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                client.predict("elastic", sample_rows(50))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while client.get_endpoint("elastic").variants[0].replicas < 2:
                assert time.monotonic() < deadline, "no scale-up under load"
                time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert len(live_pids(provider, "elastic")) == 2
    finally:
        provider.close()


def test_serverless_starts_on_demand_and_scales_to_zero(state_dir: Path, tmp_path: Path):
    fast = {"autoscale_interval_s": 0.2, "autoscale_window_s": 0.5, "scale_down_after_s": 0.5}
    provider = LocalProvider(local_config(state_dir, **fast))
    client = Client(provider)
    try:
        ep = client.deploy(model(tmp_path), "lambda", cs.Compute(serverless=True, replicas=0))
        assert ep.status is EndpointStatus.READY and ep.variants[0].replicas == 0
        assert live_pids(provider, "lambda") == []
        assert len(client.predict("lambda", ROWS).outputs) == 4  # cold start
        assert len(live_pids(provider, "lambda")) == 1
        deadline = time.monotonic() + 60
        while live_pids(provider, "lambda"):
            assert time.monotonic() < deadline, "the idle worker was not stopped"
            time.sleep(0.2)
        assert client.get_endpoint("lambda").status is EndpointStatus.READY
        assert len(client.predict("lambda", ROWS).outputs) == 4  # and again
        with pytest.raises(cs.InvalidRequest, match="memory"):
            client.deploy(
                model(tmp_path),
                "capped",
                cs.Compute(serverless=True, replicas=0, serverless_memory_mb=2048),
            )
    finally:
        provider.close()


def test_queued_prediction_is_served_and_fetched_from_another_client(
    client: Client, state_dir: Path, tmp_path: Path
):
    client.deploy(model(tmp_path), "queued")
    handles = [client.predict_async("queued", sample_rows(3, seed=i)) for i in range(5)]
    other = Client(LocalProvider(local_config(state_dir)))
    try:
        for i, h in enumerate(handles):
            done = other.get_async_result("queued", h.request_id).bind(other).wait(timeout=60)
            assert done.status is JobStatus.SUCCEEDED
            assert done.outputs == client.predict("queued", sample_rows(3, seed=i)).outputs
        with pytest.raises(NotFound):
            other.get_async_result("queued", "no-such-request")
        bad = client.predict_async("queued", [[1.0, 2.0]])
        with pytest.raises(cs.OperationFailed, match="InvalidRequest"):
            bad.wait(timeout=60)
        failed = client.get_async_result("queued", bad.request_id)
        assert failed.status is JobStatus.FAILED and "features" in (failed.error or "")
    finally:
        other.close()


def test_registry_hash_lineage_and_deploy_by_version(client: Client, tmp_path: Path):
    data = write_csv(tmp_path / "train.csv", sample_rows(300, seed=4))
    m = model(tmp_path, "7")
    mv = client.register_model(m, lineage={"training_data": str(data), "params": {"C": 1.0}})
    assert mv.content_hash and mv.content_hash.startswith("sha256:")
    assert mv.lineage["training_data_hash"].startswith("sha256:")
    assert Path(mv.lineage["baseline"]).is_file()
    assert Path(mv.uri).is_dir() and Path(mv.uri) != Path(m.artifact)
    assert client.register_model(m).content_hash == mv.content_hash  # same content: no-op
    other = cs.ModelSpec(
        name="clf",
        version="7",
        artifact=str(make_sklearn_model(tmp_path / "x", seed=9)),
        framework="sklearn",
    )
    with pytest.raises(AlreadyExists):
        client.register_model(other)
    assert [v.version for v in client.list_models("clf")] == ["7"]
    assert client.list_models("nope") == []


def test_plan_lists_the_local_steps_and_creates_nothing(client: Client, tmp_path: Path):
    spec = cs.DeploySpec(
        model=model(tmp_path),
        endpoint="planned",
        compute=cs.Compute(min_replicas=1, max_replicas=3),
    )
    plan = client.plan(spec)
    assert [c.operation for c in plan.calls] == [
        "stage_artifact",
        "start_workers",
        "switch_traffic",
        "start_agent",
    ]
    assert client.list_endpoints() == []
    with pytest.raises(cs.InvalidRequest, match="accelerator"):
        client.plan(
            spec.model_copy(update={"compute": cs.Compute(accelerator="T4", accelerator_count=1)})
        )


def test_the_client_validates_a_spec_once(state_dir: Path, tmp_path: Path):
    seen: list[str] = []

    class Counting(LocalProvider):
        def validate(self, spec):
            seen.append(type(spec).__name__)
            super().validate(spec)

    client = Client(Counting(local_config(state_dir)))
    client.plan(cs.DeploySpec(model=model(tmp_path), endpoint="once"))
    assert seen == ["DeploySpec"]
    client.provider.close()
