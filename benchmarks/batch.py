"""Local batch prediction vs plain ``model.predict`` on the whole DataFrame.

    python benchmarks/batch.py [--rows 100000 1000000] [--workers 2] [--repeat 1]

The recorded results were made with ``--rows 100000 1000000 10000000 --repeat 2``.

For each size, a CSV of 8 numeric features is scored two ways, each in its own process tree:

* ``in-process``: ``pd.read_csv`` of the whole file, ``model.predict`` on the whole DataFrame,
  ``to_csv`` of the predictions — the ceiling a single process reaches with everything in memory;
* ``local batch``: ``client.batch_predict(...)`` on the local provider (streamed in chunks, worker
  processes, part files, resumable), from submit to SUCCEEDED.

Throughput is rows per second of wall time; peak memory is the highest summed RSS of the
process tree, sampled every 20 ms. Results go to ``benchmarks/results/batch-<date>.{json,md}``
with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

RESULTS = Path(__file__).parent / "results"
N_FEATURES = 8

IN_PROCESS = """
import sys, joblib, pandas as pd
model = joblib.load(sys.argv[1] + "/model.joblib")
frame = pd.read_csv(sys.argv[2])
pd.DataFrame({"prediction": model.predict(frame)}).to_csv(sys.argv[3], index_label="row")
"""


class PeakRss:
    """Samples the summed RSS of a process and its descendants until stopped."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        continue
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def make_model(work: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cloudserve.packaging import write_manifest

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5000, N_FEATURES)), columns=[f"f{i}" for i in range(8)])
    y = (x["f0"] + x["f1"] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    d = work / "model"
    d.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, d / "model.joblib")
    write_manifest(d, framework="sklearn")
    return d


def make_input(work: Path, rows: int) -> Path:
    path = work / f"in-{rows}.csv"
    rng = np.random.default_rng(rows)
    with path.open("w") as fh:
        fh.write(",".join(f"f{i}" for i in range(N_FEATURES)) + "\n")
    step = 200_000  # written in pieces so that making the input does not need it all in memory
    for start in range(0, rows, step):
        n = min(step, rows - start)
        block = pd.DataFrame(rng.normal(size=(n, N_FEATURES)).round(6))
        block.to_csv(path, mode="a", header=False, index=False)
    return path


def run_in_process(model_dir: Path, src: Path, work: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", IN_PROCESS, str(model_dir), str(src), str(work / "ceiling.csv")]
    )
    sampler = PeakRss(proc.pid)
    proc.wait()
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError("the in-process baseline failed")
    return elapsed, sampler.stop()


def run_local_batch(model_dir: Path, src: Path, work: Path, workers: int) -> tuple[float, int]:
    import cloudserve as cs
    from cloudserve.local import LocalConfig

    client = cs.connect(LocalConfig(state_dir=work / "state"))
    model = cs.ModelSpec(name="bench", artifact=str(model_dir), framework="sklearn")
    out = work / f"out-{src.stem}"
    t0 = time.perf_counter()
    job = client.batch_predict(model, src, out, max_concurrency=workers)
    sampler = PeakRss(job.raw["pid"])
    while not job.status.is_terminal:
        time.sleep(0.02)
        job = client.get_batch_job(job.id)
    elapsed = time.perf_counter() - t0
    peak = sampler.stop()
    client.close()
    if job.status is not cs.JobStatus.SUCCEEDED:
        raise RuntimeError(f"batch job failed: {job.message}")
    return elapsed, peak


def machine() -> dict[str, object]:
    import sklearn

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "scikit_learn": sklearn.__version__,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is kept")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    info = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="cs-batch-bench-") as tmp:
        work = Path(tmp)
        model_dir = make_model(work)
        for rows in args.rows:
            src = make_input(work, rows)
            ceiling = min(run_in_process(model_dir, src, work) for _ in range(args.repeat))
            batch = min(
                run_local_batch(model_dir, src, work / f"r{i}", args.workers)
                for i in range(args.repeat)
            )
            row = {
                "rows": rows,
                "input_mb": round(src.stat().st_size / 2**20, 1),
                "in_process_s": round(ceiling[0], 2),
                "in_process_rows_per_s": round(rows / ceiling[0]),
                "in_process_peak_mb": round(ceiling[1] / 2**20),
                "local_batch_s": round(batch[0], 2),
                "local_batch_rows_per_s": round(rows / batch[0]),
                "local_batch_peak_mb": round(batch[1] / 2**20),
                "throughput_ratio": round(ceiling[0] / batch[0], 2),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    if not args.no_save:
        save(info, results, args.workers)


def save(info: dict[str, object], results: list[dict[str, object]], workers: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.date.today().isoformat()
    doc = {"date": stamp, "machine": info, "workers": workers, "results": results}
    (RESULTS / f"batch-{stamp}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"# Local batch vs in-process predict ({stamp})",
        "",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['memory_gib']} GiB, "
        f"{info['platform']}, Python {info['python']}, pandas {info['pandas']}, "
        f"scikit-learn {info['scikit_learn']}; "
        f"load average at start {info['load_average_at_start']}.",
        f"Model: StandardScaler + LogisticRegression, {N_FEATURES} float features, CSV in and out. "
        f"Local batch: {workers} worker processes, default chunk size.",
        "",
        "| rows | input MB | in-process s | in-process rows/s | in-process peak MB "
        "| local batch s | local batch rows/s | local batch peak MB "
        "| local/in-process throughput |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['input_mb']} | {r['in_process_s']} | "
            f"{r['in_process_rows_per_s']:,} | {r['in_process_peak_mb']} | {r['local_batch_s']} | "
            f"{r['local_batch_rows_per_s']:,} | {r['local_batch_peak_mb']} | "
            f"{r['throughput_ratio']} |"
        )
    lines += [
        "",
        "Local batch time runs from submit to SUCCEEDED and includes starting the runner and its "
        "workers (forkserver-started, each loading the model), hashing the input for the job's "
        "plan, counting rows for the progress bar, writing, fsyncing and hashing part files, and "
        "verifying and assembling them. Peak memory is the summed RSS of each process tree "
        "(runner + forkserver + workers for local batch; shared library pages are counted once "
        "per process, so it overstates). The local figure is mostly the fixed cost of several "
        "Python processes with pandas and scikit-learn loaded; it stays flat as the input grows, "
        "while the in-process figure grows with it. Compare runs only at a similar load average.",
    ]
    (RESULTS / f"batch-{stamp}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
