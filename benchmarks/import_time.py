"""How long ``import cloudserve`` takes, next to a bare interpreter start (``python -c pass``).

    python benchmarks/import_time.py [--runs 20]

Prints the medians and writes ``benchmarks/results/import_time.json`` with the machine it ran on.
The core import must stay light: it imports no cloud SDK, no server and no ML framework.
"""

from __future__ import annotations

import argparse
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


def median_run(code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bare = median_run("pass", args.runs)
    core = median_run("import cloudserve", args.runs)
    client = median_run("import cloudserve; cloudserve.connect", args.runs)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": args.runs,
        "python_-c_pass_s": round(bare, 4),
        "import_cloudserve_s": round(core, 4),
        "import_cost_s": round(core - bare, 4),
        "import_and_connect_attr_s": round(client, 4),
    }
    print(f"python -c pass      : {bare * 1000:7.1f} ms (median of {args.runs})")
    print(f"import cloudserve   : {core * 1000:7.1f} ms")
    print(f"cloudserve's own    : {(core - bare) * 1000:7.1f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
