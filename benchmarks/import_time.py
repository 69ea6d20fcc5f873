"""How long ``import cloudserve`` takes over a bare interpreter start, and where the time goes.

    python benchmarks/import_time.py [--runs 20]

Runs ``python -c pass`` and ``python -c "import cloudserve"`` alternately, ``--runs`` times each
in the same run (alternating, so a burst of other work on a shared machine hits both alike),
and reports the medians and their difference; the goal is at most 150 ms. Public names resolve
on first use, so it also times a first use of the typed API (``ModelSpec``, ``connect``). Then one
``python -X importtime -c "import cloudserve"`` says what the difference is spent on: the
slowest top-level imports (cumulative) and the sum per top-level package. Writes
``benchmarks/results/import_time.json`` with the machine and the load average.

The core import must stay light: no cloud SDK, no server, no ML framework, no pandas.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "import_time.json"
GOAL_MS = 150.0
FIRST_USE = "import cloudserve; cloudserve.ModelSpec; cloudserve.connect"
HEAVY = ("boto3", "botocore", "google", "azure", "pandas", "sklearn", "uvicorn", "torch")


def timed(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def importtime(module: str) -> dict[str, object]:
    """Parse ``-X importtime``: cumulative µs of top-level imports, and self time per package."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    top: list[tuple[int, str]] = []
    per_package: collections.Counter[str] = collections.Counter()
    loaded = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        head, cumulative_us, name = line.split("|")
        self_us = head.split(":", 1)[1]
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        name = name.strip()
        loaded.append(name)
        per_package[name.split(".")[0]] += int(self_us)
        if depth <= 1:  # cloudserve and what it imports directly
            top.append((int(cumulative_us), name))
    top.sort(reverse=True)
    return {
        "slowest_top_level_ms": {n: round(us / 1000, 1) for us, n in top[:15]},
        "self_time_per_package_ms": {
            p: round(us / 1000, 1) for p, us in per_package.most_common(15)
        },
        "modules_loaded": len(loaded),
        "heavy_modules_loaded": sorted({n for n in loaded if n.split(".")[0] in HEAVY}),
    }


def machine() -> dict[str, object]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    timed("import cloudserve")  # warm the file cache and the .pyc files first
    bare, core, first_use = [], [], []
    for _ in range(args.runs):
        bare.append(timed("pass"))
        core.append(timed("import cloudserve"))
        first_use.append(timed(FIRST_USE))
    bare_ms = statistics.median(bare) * 1000
    core_ms = statistics.median(core) * 1000
    first_use_ms = statistics.median(first_use) * 1000
    cost = core_ms - bare_ms
    breakdown = importtime("cloudserve")
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": args.runs,
        "python_-c_pass_ms": round(bare_ms, 1),
        "import_cloudserve_ms": round(core_ms, 1),
        "import_cost_ms": round(cost, 1),
        "goal_ms": GOAL_MS,
        # names resolve on first use: what the first use of the typed API adds (pydantic)
        "import_and_first_use_ms": round(first_use_ms, 1),
        "first_use_code": FIRST_USE,
        "meets_goal": cost <= GOAL_MS,
        "where_it_goes": breakdown,
    }
    print(f"python -c pass      : {bare_ms:7.1f} ms (median of {args.runs})")
    print(f"import cloudserve   : {core_ms:7.1f} ms")
    print(f"cloudserve's own    : {cost:7.1f} ms (goal <= {GOAL_MS:.0f} ms)")
    print(f"+ first use of the API: {first_use_ms - bare_ms:7.1f} ms over bare ({FIRST_USE})")
    print("slowest top-level imports (cumulative, one -X importtime run):")
    for name, ms in breakdown["slowest_top_level_ms"].items():  # type: ignore[union-attr]
        print(f"  {ms:7.1f} ms  {name}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
