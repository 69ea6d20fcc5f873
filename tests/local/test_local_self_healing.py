"""Local endpoints heal themselves and survive races: dead workers are replaced by the
endpoint's agent, ports are leased, deploys and deletes from several processes run one after
the other, orphans are swept, the state file is private and a damaged one is reported."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from local_helpers import local_config, processes_of

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.errors import CloudServeError, NotFound, Throttled
from cloudserve.local import LocalProvider
from cloudserve.local.store import StateCorrupt, StateDB
from cloudserve.local.supervisor import ProcessRef
from cloudserve.packaging import write_manifest
from cloudserve.resources import EndpointStatus
from cloudserve.testing import make_sklearn_model, sample_rows

ROWS = sample_rows(3)


def model(tmp: Path, version: str = "1") -> cs.ModelSpec:
    d = tmp / f"model-v{version}"
    if not d.exists():
        make_sklearn_model(d, version=version)
    return cs.ModelSpec(name="clf", version=version, artifact=str(d), framework="sklearn")


def worker_pids(provider: LocalProvider, endpoint: str) -> list[int]:
    rows = provider.db.all("SELECT pid FROM workers WHERE endpoint = ?", (endpoint,))
    return [r["pid"] for r in rows]


def kill9(pid: int) -> None:
    psutil.Process(pid).kill()
    with pytest.raises(psutil.NoSuchProcess):
        for _ in range(200):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)  # dead; its parent reaps it
            time.sleep(0.05)


def wait_serving(client: Client, endpoint: str, timeout: float = 120) -> float:
    """Seconds until a prediction succeeds again (no call but predict is made)."""
    start = time.monotonic()
    while True:
        try:
            if len(client.predict(endpoint, ROWS).outputs) == len(ROWS):
                return time.monotonic() - start
        except CloudServeError:
            pass
        assert time.monotonic() - start < timeout, f"{endpoint} did not serve again"
        time.sleep(0.1)


def wait_for(condition, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_agent_replaces_a_killed_worker_without_any_call(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    client.deploy(model(tmp_path), "phoenix")
    (pid,) = worker_pids(provider, "phoenix")
    kill9(pid)

    def replaced() -> bool:
        pids = worker_pids(provider, "phoenix")
        return len(pids) == 1 and pids[0] != pid and psutil.pid_exists(pids[0])

    wait_for(replaced, what="the agent to start a new worker")  # no predict, no restart call
    assert client.get_endpoint("phoenix").status is EndpointStatus.READY
    assert len(client.predict("phoenix", ROWS).outputs) == 3


def test_a_caller_of_a_dead_worker_gets_an_answer(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    client.deploy(model(tmp_path), "lazarus")
    (pid,) = worker_pids(provider, "lazarus")
    kill9(pid)
    assert len(client.predict("lazarus", ROWS).outputs) == 3  # heals on the way
    assert pid not in worker_pids(provider, "lazarus")


def test_a_dead_serverless_worker_does_not_block_the_next_cold_start(
    state_dir: Path, tmp_path: Path
):
    provider = LocalProvider(local_config(state_dir, scale_down_after_s=3600))
    client = Client(provider)
    try:
        client.deploy(model(tmp_path), "lambda", cs.Compute(serverless=True, replicas=0))
        assert len(client.predict("lambda", ROWS).outputs) == 3  # a cold start
        (pid,) = worker_pids(provider, "lambda")
        kill9(pid)
        assert len(client.predict("lambda", ROWS).outputs) == 3  # the dead row is skipped
        assert pid not in worker_pids(provider, "lambda")
    finally:
        provider.close()


def test_an_autoscaled_variant_is_kept_at_min_replicas(state_dir: Path, tmp_path: Path):
    provider = LocalProvider(local_config(state_dir, scale_down_after_s=3600))
    client = Client(provider)
    try:
        client.deploy(
            model(tmp_path), "elastic", cs.Compute(replicas=2, min_replicas=2, max_replicas=3)
        )
        first = worker_pids(provider, "elastic")
        assert len(first) == 2
        kill9(first[0])

        def healed() -> bool:
            live = [p for p in worker_pids(provider, "elastic") if psutil.pid_exists(p)]
            return first[0] not in worker_pids(provider, "elastic") and len(live) == 2

        wait_for(healed, what="min_replicas live workers again")
        ep = client.get_endpoint("elastic")
        assert ep.status is EndpointStatus.READY and ep.variants[0].replicas == 2
    finally:
        provider.close()


def _free_range(width: int = 40) -> tuple[int, int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    lo = min(max(base, 20000), 60000)
    return lo, lo + width


def test_port_range_with_several_replicas(state_dir: Path, tmp_path: Path):
    lo, hi = _free_range()
    provider = LocalProvider(local_config(state_dir, port_range=(lo, hi)))
    client = Client(provider)
    try:
        ep = client.deploy(model(tmp_path), "ranged", cs.Compute(replicas=3))
        assert ep.status is EndpointStatus.READY and ep.variants[0].replicas == 3
        ports = [r["port"] for r in provider.db.all("SELECT port FROM workers")]
        assert len(set(ports)) == 3 and all(lo <= p <= hi for p in ports)
        for _ in range(6):
            assert len(client.predict("ranged", ROWS).outputs) == 3
    finally:
        provider.close()


RACER = """
import json, sys, time
from cloudserve.client import Client
from cloudserve.errors import CloudServeError
from cloudserve.local import LocalConfig, LocalProvider
import cloudserve as cs

config, action, artifact, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = Client(LocalProvider(LocalConfig.model_validate_json(config)))
late = time.time() - start_at  # > 0: this interpreter was not ready in time
while time.time() < start_at:
    time.sleep(0.001)
try:
    if action == "deploy":
        m = cs.ModelSpec(name="clf", artifact=artifact, framework="sklearn")
        client.deploy(m, "race")
    else:
        client.delete_endpoint("race")
    print(json.dumps({"ok": True, "late": late}))
except CloudServeError as exc:
    print(json.dumps({"ok": False, "late": late, "error": f"{type(exc).__name__}: {exc}"}))
client.close()
"""


def race(state_dir: Path, tmp_path: Path, actions: list[str], offsets: list[float]) -> list[dict]:
    config = local_config(state_dir).model_dump_json()
    artifact = model(tmp_path).artifact
    padding = Path(str(artifact)) / "padding.bin"  # staging takes long enough to overlap
    if not padding.exists():
        padding.write_bytes(os.urandom(32 * 2**20))
    start_at = time.time() + 12.0  # both interpreters are up and waiting by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, config, action, str(artifact), str(start_at + offset)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for action, offset in zip(actions, offsets, strict=True)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["late"] < 0 for r in results), f"an interpreter started late: {results}"
    return results


def owned_processes(provider: LocalProvider) -> set[int]:
    """Workers and agents of endpoints that exist (a worker row of a deleted endpoint is an
    orphan too: no list or delete sees it)."""
    pids = {
        r["pid"]
        for r in provider.db.all(
            "SELECT pid FROM workers WHERE endpoint IN (SELECT name FROM endpoints)"
        )
    }
    pids |= {r["agent_pid"] for r in provider.db.all("SELECT agent_pid FROM endpoints")}
    return pids


def assert_no_orphans(provider: LocalProvider, state_dir: Path) -> None:
    def clean() -> bool:
        return {p.pid for p in processes_of(state_dir)} <= owned_processes(provider)

    wait_for(clean, timeout=30, what="no process that no row owns")


def test_two_processes_deploying_one_endpoint(
    client: Client, provider: LocalProvider, state_dir: Path, tmp_path: Path
):
    results = race(state_dir, tmp_path, ["deploy", "deploy"], [0.0, 0.0])
    assert all(r["ok"] for r in results), results
    ep = client.get_endpoint("race")
    assert ep.status is EndpointStatus.READY and ep.variants[0].replicas == 1
    assert len(client.predict("race", ROWS).outputs) == 3
    assert_no_orphans(provider, state_dir)


@pytest.mark.parametrize("delete_after", [0.0, 0.8, 2.0])
def test_a_delete_during_a_deploy_leaves_a_working_endpoint_or_nothing(
    client: Client, provider: LocalProvider, state_dir: Path, tmp_path: Path, delete_after: float
):
    results = race(state_dir, tmp_path, ["deploy", "delete"], [0.0, delete_after])
    assert results[1]["ok"], results
    try:
        ep = client.get_endpoint("race")
    except NotFound:
        ep = None
    if ep is not None:
        assert ep.status is EndpointStatus.READY
        assert len(client.predict("race", ROWS).outputs) == 3
    assert_no_orphans(provider, state_dir)


def test_orphan_workers_are_swept(client: Client, provider: LocalProvider, tmp_path: Path):
    client.deploy(model(tmp_path), "lost")
    (pid,) = worker_pids(provider, "lost")
    provider.db.run("DELETE FROM workers WHERE pid = ?", (pid,))  # a row lost, a worker left
    assert pid in provider.sweep_orphans()
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")


def test_delete_from_another_process_does_not_wait_for_zombies(state_dir: Path, tmp_path: Path):
    config = local_config(state_dir).model_dump_json()
    artifact = model(tmp_path).artifact
    holder = subprocess.Popen(  # deploys, then keeps running without reaping its children
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "import cloudserve as cs\n"
            "from cloudserve.client import Client\n"
            "from cloudserve.local import LocalConfig, LocalProvider\n"
            "c = Client(LocalProvider(LocalConfig.model_validate_json(sys.argv[1])))\n"
            "c.deploy(cs.ModelSpec(name='clf', artifact=sys.argv[2], framework='sklearn'), 'z')\n"
            "print('deployed', flush=True)\n"
            "time.sleep(600)\n",
            config,
            str(artifact),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "deployed"
        provider = LocalProvider(local_config(state_dir))
        start = time.monotonic()
        provider.delete_endpoint("z")  # waits up to 10 s for a worker that does not exit
        took = time.monotonic() - start
        provider.close()
        # the workers exit on SIGTERM at once but stay zombies of the holder; a delete that
        # waited for them to vanish took the whole grace period plus the kill wait (15 s)
        assert took < 8, f"delete took {took:.1f}s"
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_process_refs_stay_right_in_a_forked_child(
    client: Client, provider: LocalProvider, tmp_path: Path
):
    client.deploy(model(tmp_path), "forked")
    (row,) = provider.db.all("SELECT pid, ctime FROM workers WHERE endpoint = 'forked'")
    ref = ProcessRef(row["pid"], row["ctime"])
    assert ref.alive()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.write(write, b"1" if ref.alive() else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1", "a forked child sees the live worker as dead"


SLOW = """
import time
from cloudserve.serving import Predictor

class Slow(Predictor):
    def predict(self, batch):
        time.sleep(0.5)
        return [0.0 for _ in batch]
"""


def test_max_concurrency_answers_throttled(client: Client, tmp_path: Path):
    d = tmp_path / "slow"
    d.mkdir()
    (d / "slow.py").write_text(SLOW)
    write_manifest(d, framework="custom", predictor="slow:Slow")
    m = cs.ModelSpec(name="slow", artifact=str(d), framework="custom")
    client.deploy(m, "capped", cs.Compute(max_concurrency=1))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.predict("capped", [[1.0]])
        except CloudServeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors, "twelve concurrent requests on max_concurrency=1 were all served"
    assert all(isinstance(e, Throttled) for e in errors), errors


def test_state_is_private(provider: LocalProvider, state_dir: Path):
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_state_file_is_one_line_naming_it(tmp_path: Path, damage: str):
    state = tmp_path / "damaged"
    StateDB(state).close()
    db_file = state / "state.db"
    for extra in state.glob("state.db-*"):
        extra.unlink()
    db_file.write_bytes(b"this is not a database " * 100 if damage == "garbage" else b"")
    with pytest.raises(StateCorrupt) as info:
        LocalProvider(local_config(state)).list_endpoints()
    assert str(db_file) in str(info.value) and "\n" not in str(info.value)
    env = {**os.environ, "CLOUDSERVE_STATE_DIR": str(state)}
    env.pop("CLOUDSERVE_CONFIG", None)
    env.pop("CLOUDSERVE_TARGET", None)
    cli = subprocess.run(
        [sys.executable, "-m", "cloudserve.cli", "endpoints"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode != 0
    assert "Traceback" not in cli.stderr and str(db_file) in cli.stderr + cli.stdout
