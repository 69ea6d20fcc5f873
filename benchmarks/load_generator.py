"""How fast the load generator itself can go, and what latency it adds.

    python benchmarks/load_generator.py [--duration 3] [--rates 100,500,1000,2000]

Drives open-loop load at each rate against (a) a no-op Python callable and (b) a zero-delay
loopback HTTP server (stdlib, threaded), and records achieved throughput, the scheduler's worst
lag behind the arrival schedule, and p50/p99 latency. A rate where the lag grows past a few
milliseconds, or throughput falls short of the rate, is past what this machine can generate:
measure clouds well below it. Writes ``benchmarks/results/load_generator.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cloudserve as cs
from cloudserve.bench import run_load

RESULTS = Path(__file__).parent / "results" / "load_generator.json"
ROWS = [[1.0, 2.0, 3.0, 4.0]]


@contextmanager
def zero_delay_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"predictions": [0]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def measure(target: object, rate: float, duration: float) -> dict[str, object]:
    wl = cs.Workload(rps=rate, duration_s=duration, warmup_s=0.5, payload=ROWS)
    r = run_load(target, wl)
    return {
        "rate": rate,
        "requests": r.requests,
        "throughput_rps": r.throughput_rps,
        "max_send_lag_ms": r.max_send_lag_ms,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "errors": r.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rates", default="100,500,1000,2000")
    args = parser.parse_args()
    rates = [float(x) for x in args.rates.split(",")]
    results: dict[str, list[dict[str, object]]] = {"callable": [], "http": []}
    for rate in rates:
        results["callable"].append(measure(lambda rows: rows, rate, args.duration))
        with zero_delay_server() as url:
            results["http"].append(measure(url, rate, args.duration))
    for kind, rows in results.items():
        for row in rows:
            print(
                f"{kind:8} {row['rate']:>7.0f} req/s → {row['throughput_rps']:>8.1f} req/s, "
                f"lag ≤ {row['max_send_lag_ms']:.1f} ms, p50 {row['p50_ms']} ms, "
                f"p99 {row['p99_ms']} ms, errors {row['errors']}"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "duration_s": args.duration,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
