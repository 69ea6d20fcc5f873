"""Request decoding cost: ``codecs.decode_request`` against the least work a server can do.

    python benchmarks/codecs.py [--repeat 2000]

For each body shape the time of one decode (median of ``--repeat`` runs, after a warm-up) is
compared with a floor: ``orjson.loads`` + ``numpy.asarray`` for JSON, ``csv`` + ``float`` for
CSV — what any decoder must do. Shapes: 1 and 64 rows of 8 numbers as JSON rows (the fast path),
the same as records in another key order (named columns, reordered), as CSV with a header, and
64 Titanic-style records with text and blanks (the mixed path). Results go to
``benchmarks/results/codecs-<date>.{json,md}`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import orjson

from cloudserve import codecs

RESULTS = Path(__file__).parent / "results"
NAMES = [f"f{i}" for i in range(8)]


def _rows(n: int) -> list[list[float]]:
    return np.random.default_rng(0).normal(size=(n, 8)).round(6).tolist()


def _records(rows: list[list[float]]) -> list[dict[str, float]]:
    return [dict(reversed(list(zip(NAMES, r, strict=True)))) for r in rows]


def _csv(rows: list[list[float]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(NAMES[::-1])
    writer.writerows(r[::-1] for r in rows)
    return buf.getvalue().encode()


def _titanic(n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(1)
    return [
        {
            "Embarked": str(rng.choice(["S", "C", "Q", ""])),
            "Fare": round(float(rng.uniform(5, 100)), 2),
            "Age": None if rng.random() < 0.2 else float(rng.integers(1, 70)),
            "Sex": str(rng.choice(["male", "female"])),
            "Pclass": int(rng.integers(1, 4)),
        }
        for _ in range(n)
    ]


def _json_floor(body: bytes) -> object:
    doc = orjson.loads(body)
    return np.asarray(doc["instances"] if isinstance(doc, dict) else doc)


def _csv_floor(body: bytes) -> object:
    lines = list(csv.reader(io.StringIO(body.decode())))[1:]
    return np.asarray([[float(c) for c in line] for line in lines])


def _median_us(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(min(repeat, 50)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    titanic_names = ["Pclass", "Sex", "Age", "Fare", "Embarked"]
    cases = [
        ("1 row, JSON rows", orjson.dumps({"instances": _rows(1)}), "application/json", None),
        ("64 rows, JSON rows", orjson.dumps({"instances": _rows(64)}), "application/json", None),
        (
            "64 rows, JSON records, keys reordered",
            orjson.dumps({"instances": _records(_rows(64))}),
            "application/json",
            NAMES,
        ),
        ("64 rows, CSV with a reordered header", _csv(_rows(64)), "text/csv", NAMES),
        (
            "64 Titanic records, text and blanks",
            orjson.dumps({"instances": _titanic(64)}),
            "application/json",
            titanic_names,
        ),
    ]
    results = []
    for label, body, kind, names in cases:
        decode_us = _median_us(partial(codecs.decode_request, body, kind, names), args.repeat)
        floor = _csv_floor if kind == "text/csv" else _json_floor
        floor_us = _median_us(partial(floor, body), args.repeat) if "Titanic" not in label else None
        results.append(
            {
                "case": label,
                "bytes": len(body),
                "decode_us": round(decode_us, 1),
                "floor_us": None if floor_us is None else round(floor_us, 1),
                "ratio": None if floor_us is None else round(decode_us / floor_us, 2),
            }
        )
        print(json.dumps(results[-1]))
    _record(results, args.repeat)


def _record(results: list[dict[str, object]], repeat: int) -> None:
    day = dt.date.today().isoformat()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{platform.platform()}, Python {sys.version.split()[0]}, numpy {np.__version__}; "
        f"load average at start {[round(x, 1) for x in os.getloadavg()]}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"codecs-{day}.json").write_text(
        json.dumps(
            {"date": day, "machine": machine, "repeat": repeat, "results": results}, indent=1
        )
        + "\n"
    )
    lines = [
        f"# Request decoding (`codecs.decode_request`) ({day})",
        "",
        f"Machine: {machine}. Median of {repeat} decodes per case.",
        "",
        "| body | bytes | decode µs | floor µs | decode / floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        floor = "–" if r["floor_us"] is None else r["floor_us"]
        ratio = "–" if r["ratio"] is None else r["ratio"]
        lines.append(f"| {r['case']} | {r['bytes']} | {r['decode_us']} | {floor} | {ratio} |")
    lines += [
        "",
        "The floor is `orjson.loads` + `numpy.asarray` (JSON) or `csv` + `float` (CSV), with no "
        "validation, no names and no error messages. The mixed Titanic body has no floor: it needs "
        "per-cell work (text, blanks, per-column typing) by design.",
        "",
    ]
    (RESULTS / f"codecs-{day}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
