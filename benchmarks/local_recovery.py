"""How long a local endpoint takes to serve again after ``kill -9`` of its only worker.

    python benchmarks/local_recovery.py [--repeat 5]

For each repeat, a one-worker endpoint (a small scikit-learn model) is deployed, its worker is
killed with SIGKILL, and two times are measured from the kill:

* ``agent``: until the endpoint's agent has a new worker answering (nobody calls the endpoint;
  the agent checks every ``supervise_interval_s``, 1 s by default);
* ``caller``: until a prediction succeeds for a caller that keeps calling (a call that finds no
  live worker starts one itself, under the endpoint's lock).

No manual ``restart_endpoint`` is made. Results go to
``benchmarks/results/local-recovery-<date>.{json,md}`` with the machine they were measured on.
Nothing here is asserted; the tests only check that the endpoint serves again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results"


def _kill(pid: int) -> None:
    psutil.Process(pid).kill()
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.005)


def _worker(provider, endpoint: str) -> int:
    (row,) = provider.db.all("SELECT pid FROM workers WHERE endpoint = ?", (endpoint,))
    return int(row["pid"])


def measure(repeat: int) -> list[dict[str, float]]:
    import cloudserve as cs
    from cloudserve.client import Client
    from cloudserve.errors import CloudServeError
    from cloudserve.local import LocalConfig, LocalProvider
    from cloudserve.testing import make_sklearn_model, sample_rows

    rows = sample_rows(4)
    out = []
    with tempfile.TemporaryDirectory(prefix="cs-recovery-") as tmp:
        work = Path(tmp)
        artifact = make_sklearn_model(work / "model")
        provider = LocalProvider(LocalConfig(state_dir=work / "state"))
        client = Client(provider)
        model = cs.ModelSpec(name="clf", artifact=str(artifact), framework="sklearn")
        try:
            client.deploy(model, "recover")
            for _ in range(repeat):
                old = _worker(provider, "recover")
                _kill(old)
                t0 = time.perf_counter()
                while True:  # the agent alone
                    rows_now = provider.db.all("SELECT pid FROM workers WHERE endpoint = 'recover'")
                    pids = [r["pid"] for r in rows_now]
                    if pids and old not in pids:
                        break
                    time.sleep(0.01)
                agent_s = time.perf_counter() - t0

                old = _worker(provider, "recover")
                _kill(old)
                t0 = time.perf_counter()
                while True:  # a caller that keeps calling
                    try:
                        client.predict("recover", rows)
                        break
                    except CloudServeError:
                        time.sleep(0.01)
                caller_s = time.perf_counter() - t0
                out.append({"agent_s": round(agent_s, 3), "caller_s": round(caller_s, 3)})
                print(out[-1], flush=True)
        finally:
            client.delete_endpoint("recover")
            client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()
    runs = measure(args.repeat)
    summary = {
        key: {
            "median": round(statistics.median(r[key] for r in runs), 3),
            "max": round(max(r[key] for r in runs), 3),
        }
        for key in ("agent_s", "caller_s")
    }
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 1) for x in load],
    }
    today = dt.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    record = {"date": today, "machine": machine, "runs": runs, "summary": summary}
    (RESULTS / f"local-recovery-{today}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# Local endpoint recovery after kill -9 of its only worker ({today})",
        "",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
        f"{machine['memory_gib']} GiB, {machine['platform']}, Python {machine['python']}; "
        f"load average at start {machine['load_average_at_start']}.",
        "Endpoint: one worker, scikit-learn LogisticRegression, default `LocalConfig` "
        "(`supervise_interval_s` 1 s).",
        "",
        "| measure | median s | max s |",
        "|---|---:|---:|",
        f"| agent replaces the worker (no calls) | {summary['agent_s']['median']} | "
        f"{summary['agent_s']['max']} |",
        f"| a caller that keeps calling is served again | {summary['caller_s']['median']} | "
        f"{summary['caller_s']['max']} |",
        "",
        f"{len(runs)} repeats. Most of either time is starting a Python process with the serving "
        "runtime and the model and waiting for its /ping; the agent adds up to one supervision "
        "interval.",
    ]
    (RESULTS / f"local-recovery-{today}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
