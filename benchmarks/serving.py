"""Serving throughput and latency: cloudserve vs MLflow's scoring server vs a plain FastAPI app.

    python benchmarks/serving.py [--duration 5] [--concurrency 1,16,64]

One model (a scikit-learn StandardScaler + LogisticRegression pipeline on 20 numeric features),
one payload (``{"instances": [[20 floats]]}``, one row per request) and one closed-loop load
generator running in its own process (asyncio + uvloop over raw keep-alive sockets, so the client
costs as little CPU as possible). Measured, each at every concurrency:

- ``in_process``: ``load_model(...).predict(row)`` in a loop, no HTTP — the ceiling per request
  (and ``in_process_64_row_batches``: rows/s predicting 64 rows a call — the batching ceiling);
- ``cloudserve_batching_off``: ``python -m cloudserve.serving --batch-size 1``;
- ``cloudserve_batching_on``: the default adaptive batching (64 rows, 2 ms);
- ``mlflow``: ``mlflow models serve --env-manager local`` (MLflow's own FastAPI/uvicorn server);
- ``fastapi``: a hand-written FastAPI handler (pydantic body, ``model.predict``) on uvicorn.

Every server runs one worker process. MLflow and FastAPI live only in the benchmark venv
``.venv-bench`` (created on first run: ``python -m venv .venv-bench`` then
``.venv-bench/bin/pip install mlflow scikit-learn==<same as .venv> fastapi uvicorn[standard]``),
never in the project's own environment. Results go to ``benchmarks/results/serving-<date>.json``
and ``.md`` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BENCH_VENV = ROOT / ".venv-bench"
N_FEATURES = 20
FASTAPI_APP = textwrap.dedent(
    """
    import sys
    import joblib
    import numpy as np
    from fastapi import FastAPI
    from pydantic import BaseModel

    model = joblib.load(sys.argv[1])
    app = FastAPI()

    class Request(BaseModel):
        instances: list[list[float]]

    @app.post("/invocations")
    def predict(req: Request):
        return {"predictions": model.predict(np.asarray(req.instances)).tolist()}

    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                    loop="uvloop", http="httptools", access_log=False)
    """
)


# -- the load generator (runs in its own process) -------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending the same request over and over."""

    def __init__(self, request: bytes, record: Any) -> None:
        self.request, self.record = request, record
        self.buf = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def send(self) -> None:
        self.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower() + b"\r\n"
            status = int(head[9:12])
            at = head.find(b"content-length:")
            if at >= 0:
                size = end + 4 + int(head[at + 15 : head.find(b"\r\n", at)])
            else:  # chunked: the body ends with the zero-length chunk
                last = self.buf.find(b"\r\n0\r\n\r\n", end)
                size = last + 7 if last >= 0 else len(self.buf) + 1
            if len(self.buf) < size:
                return
            self.buf = self.buf[size:]
            if self.record(status, time.perf_counter() - self.sent):
                self.send()
            else:
                assert self.transport is not None
                self.transport.close()
                self.done.set_result(None)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive(
    host: str, port: int, path: str, body: bytes, conc: int, warmup: float, duration: float
) -> dict[str, Any]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration
    latencies: list[float] = []
    errors = 0

    def record(status: int, latency: float) -> bool:
        nonlocal errors
        now = time.perf_counter()
        if now >= measure_from:
            if status == 200:
                latencies.append(latency)
            else:
                errors += 1
        return now < stop_at

    loop = asyncio.get_running_loop()
    conns = [
        (await loop.create_connection(lambda: _Conn(request, record), host, port))[1]
        for _ in range(conc)
    ]
    await asyncio.gather(*(c.done for c in conns))
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float | None:
        return round(latencies[min(n - 1, int(q * n))] * 1000, 3) if n else None

    return {
        "requests": n,
        "errors": errors,
        "rps": round(n / duration, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def loadgen_main(argv: list[str]) -> None:
    """``serving.py --loadgen URL CONC WARMUP DURATION``: print one JSON result line."""
    url, conc, warmup, duration = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    body = sys.stdin.buffer.read()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(
        json.dumps(asyncio.run(_drive(host, int(port), "/" + path, body, conc, warmup, duration)))
    )


# -- servers ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def ensure_bench_venv() -> Path:
    """The benchmark venv with MLflow and FastAPI; created on first use."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        import sklearn

        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "mlflow",
                f"scikit-learn=={sklearn.__version__}",
                "fastapi",
                "uvicorn[standard]",
            ],
            check=True,
        )
    return python


def make_model(workdir: Path, bench_python: Path) -> tuple[Path, Path]:
    """The sklearn pipeline as a cloudserve directory and as an MLflow model directory."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cloudserve.packaging import write_manifest

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, N_FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.25 * x[:, 2] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    cs_dir = workdir / "cloudserve-model"
    cs_dir.mkdir()
    joblib.dump(model, cs_dir / "model.joblib")
    write_manifest(cs_dir, framework="sklearn", version="1")
    mlflow_dir = workdir / "mlflow-model"
    save = (
        "import sys, joblib, mlflow.sklearn; "
        "mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2])"
    )
    subprocess.run(
        [str(bench_python), "-c", save, str(cs_dir / "model.joblib"), str(mlflow_dir)], check=True
    )
    return cs_dir, mlflow_dir


def server_commands(
    cs_dir: Path, mlflow_dir: Path, workdir: Path, bench_python: Path
) -> dict[str, Any]:
    """name -> (argv builder taking a port, predict path, health path)."""
    fastapi_file = workdir / "fastapi_app.py"
    fastapi_file.write_text(FASTAPI_APP)
    cs = [
        sys.executable,
        "-m",
        "cloudserve.serving",
        "--model-dir",
        str(cs_dir),
        "--log-level",
        "warning",
    ]
    mlflow = str(bench_python.parent / "mlflow")
    return {
        "cloudserve_batching_off": (
            lambda p: [*cs, "--port", str(p), "--batch-size", "1"],
            "/invocations",
            "/ping",
        ),
        "cloudserve_batching_on": (lambda p: [*cs, "--port", str(p)], "/invocations", "/ping"),
        "mlflow": (
            lambda p: [
                mlflow,
                "models",
                "serve",
                "-m",
                str(mlflow_dir),
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "-p",
                str(p),
                "--workers",
                "1",
            ],
            "/invocations",
            "/ping",
        ),
        "fastapi": (
            lambda p: [str(bench_python), str(fastapi_file), str(cs_dir / "model.joblib"), str(p)],
            "/invocations",
            "/docs",
        ),
    }


def run_loadgen(url: str, body: bytes, conc: int, warmup: float, duration: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--loadgen", url, str(conc), str(warmup), str(duration)],
        input=body,
        capture_output=True,
        check=True,
        timeout=warmup + duration + 120,
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def in_process(cs_dir: Path, row: list[float], duration: float, rows: int = 1) -> dict[str, Any]:
    """The ceiling: predict ``rows`` rows per call in a loop, in this process, without HTTP.

    ``rps`` counts rows per second, so ``rows=64`` is the ceiling batching can approach.
    """
    from cloudserve.serving import load_model

    model = load_model(cs_dir)
    batch = [row] * rows
    latencies = []
    stop = time.perf_counter() + duration
    while time.perf_counter() < stop:
        t = time.perf_counter()
        model.predict(batch)
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n * rows,
        "errors": 0,
        "rps": round(n * rows / duration, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 3),
        "p99_ms": round(latencies[int(0.99 * n)] * 1000, 3),
    }


def machine() -> dict[str, Any]:
    import numpy
    import sklearn

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "scikit_learn": sklearn.__version__,
        # Other work on the machine skews every figure; the 1-minute load average says how much.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    if sys.argv[1:2] == ["--loadgen"]:
        loadgen_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument("--only", default="", help="comma-separated subset of targets")
    a = p.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    bench_python = ensure_bench_venv()
    row = [round(0.1 * i - 1.0, 3) for i in range(N_FEATURES)]
    body = json.dumps({"instances": [row]}).encode()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cs_dir, mlflow_dir = make_model(workdir, bench_python)
        only = set(filter(None, a.only.split(",")))
        if not only or "in_process" in only:
            results["in_process"] = {"1": in_process(cs_dir, row, a.duration)}
            results["in_process_64_row_batches"] = {"64": in_process(cs_dir, row, a.duration, 64)}
            print("in_process", results["in_process"], results["in_process_64_row_batches"])
        for name, (argv, predict, health) in server_commands(
            cs_dir, mlflow_dir, workdir, bench_python
        ).items():
            if only and name not in only:
                continue
            port = _free_port()
            # mlflow starts `uvicorn` by name: the bench venv's bin must be on PATH.
            env = {**os.environ, "PATH": f"{bench_python.parent}{os.pathsep}{os.environ['PATH']}"}
            proc = subprocess.Popen(
                argv(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                _wait_http(f"http://127.0.0.1:{port}{health}", proc)
                url = f"http://127.0.0.1:{port}{predict}"
                results[name] = {
                    str(c): run_loadgen(url, body, c, a.warmup, a.duration) for c in levels
                }
                print(name, results[name], flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    write_results(results, a, levels, bench_python)


def _versions(bench_python: Path) -> dict[str, str]:
    code = (
        "import mlflow, fastapi, uvicorn; "
        "print(mlflow.__version__, fastapi.__version__, uvicorn.__version__)"
    )
    out = subprocess.run(
        [str(bench_python), "-c", code], capture_output=True, text=True, check=True
    )
    mlflow, fastapi, uvicorn = out.stdout.split()
    return {"mlflow": mlflow, "fastapi": fastapi, "uvicorn (bench venv)": uvicorn}


def write_results(
    results: dict[str, Any], a: argparse.Namespace, levels: list[int], bench_python: Path
) -> None:
    stamp = datetime.now(timezone.utc)
    doc = {
        "date": stamp.isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": _versions(bench_python),
        "settings": {
            "duration_s": a.duration,
            "warmup_s": a.warmup,
            "concurrency": levels,
            "payload": f"one row of {N_FEATURES} floats per request",
            "workers": 1,
        },
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    base = RESULTS / f"serving-{stamp:%Y-%m-%d}"
    base.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    m = doc["machine"]
    lines = [
        f"# Serving benchmark, {doc['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}. "
        f"Versions: {doc['versions']}. Load average at the end: {m['load_average_1m_at_end']}.",
        f"Closed loop, {a.duration:g} s per point after {a.warmup:g} s warm-up, one row of "
        f"{N_FEATURES} floats per request, one server worker, load generator in its own process.",
        "",
        "| target | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, by_conc in results.items():
        for conc, r in by_conc.items():
            lines.append(
                f"| {name} | {conc} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
            )
    lines += ["", *_verdict(results, levels)]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _verdict(results: dict[str, Any], levels: list[int]) -> list[str]:
    out = []
    on, off, ml = (
        results.get(k) for k in ("cloudserve_batching_on", "cloudserve_batching_off", "mlflow")
    )
    for c in (str(c) for c in levels if c >= 16):
        for label, mine in (("batching on", on), ("batching off", off)):
            if mine and ml:
                ratio = mine[c]["rps"] / max(ml[c]["rps"], 1e-9)
                p99 = "no worse" if mine[c]["p99_ms"] <= ml[c]["p99_ms"] else "WORSE"
                verdict = f"{ratio:.1f}x MLflow req/s, p99 {p99}"
                out.append(f"- concurrency {c}: cloudserve ({label}) = {verdict}.")
        if on and off:
            ratio = on[c]["rps"] / max(off[c]["rps"], 1e-9)
            out.append(f"- concurrency {c}: batching on = {ratio:.1f}x batching off.")
    return out


if __name__ == "__main__":
    main()
