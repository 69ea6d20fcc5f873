"""Serving throughput, tail latency and overload, cloudserve against its HTTP ceiling and its peers.

    python benchmarks/serving.py [--duration 10] [--overload-duration 60] [--only a,b] [--no-peers]

Everything is measured in ONE run on one machine, so the ratios are side by side:

- ``ceiling_same_stack``: a constant answer from the same stack cloudserve runs on (uvicorn +
  httptools + uvloop with cloudserve's connection protocol); ``ceiling_uvicorn``: the same on
  plain uvicorn; ``cloudserve``: ``python -m cloudserve.serving`` with its defaults;
- the peers, each in its own benchmark venv under ``.venv-bench/<name>`` (created here, never
  the project's environment): ``mlflow`` (``mlflow models serve``), ``mlserver``
  (``mlserver_sklearn``, one process), ``kserve`` (a ``kserve.Model`` on ``ModelServer``),
  ``litserve`` (a ``LitAPI``) and ``bentoml`` (a ``@bentoml.service``). A venv that fails to
  install is recorded with pip's last lines and the run goes on.

One model (StandardScaler + LogisticRegression on 20 features; every venv fits it from the same
data with its own scikit-learn, so no pickle crosses versions), one row per request. The server
is pinned to CPU 0 and every load generator to CPU 1 (``taskset``); all run with one worker.

Closed loop: ``wrk -t1`` at c=16 and c=64. Open loop: ``openloop.c`` next to this file (built
here with gcc; why C is said where it is built): a fixed arrival schedule over keep-alive
connections, latency measured from each request's *intended* send time so queueing in the
generator counts; requests unanswered at the end count with their age. Its own ceiling is
measured against ``openloop --sink`` (a C server that answers at once), and it is also shown
driving the ceiling app at 2x cloudserve's saturation. For every run the CPU time of the server
(with its children) and of the generator is recorded: a ratio only counts when the generator's
core was not the limit.

Overload: the open-loop generator offers 2x cloudserve's saturation (its closed-loop c=64 rate
measured by the same generator) over 1,000 connections for ``--overload-duration`` seconds; it
records good answers vs the saturation throughput, 503s and whether each had Retry-After, the
admitted p99 (from the intended send time, and from the actual send) vs the saturation p99,
and the server's RSS every 5 s.

Results: ``benchmarks/results/serving-<date>.json`` and ``.md``, with the machine, the versions,
and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
VENVS = ROOT / ".venv-bench"
N_FEATURES = 20
SERVER_CPU, LOADGEN_CPU = "0", "1"
ROW = [round(0.1 * i - 1.0, 3) for i in range(N_FEATURES)]
# Open-loop connections at overload, as in the scenario (wrk2, 1,000 connections).
OPEN_CONNS = 1000
SHED_RATE = 20000.0  # req/s offered to a server refusing everything, to price a refusal

# -- the open-loop load generator ------------------------------------------------------------------
# A small C program (openloop.c next to this file: epoll, HTTP/1.1 keep-alive, a fixed send
# schedule, latency from the intended send time, counts per status and of Retry-After), compiled
# here with the machine's gcc into a cache directory. Why not something ready-made: wrk2 is not
# in Debian and only Debian and PyPI packages may be used here (autocannon is npm); the asyncio
# generator this script had could not hold its schedule at 1,000 connections on one core (it
# sent 7-9k of 15k req/s at 13% of its core). The C one dispatches 32k req/s over 1,000
# connections with about 0.4 of a core, and ``--sink`` (a C server answering at once) measures
# its own ceiling without a Python server in the way.
GENERATOR_SOURCE = Path(__file__).with_name("openloop.c")
GENERATOR_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudserve"


def generator_binary() -> Path:
    """The compiled generator, built once per version of its source."""
    source = GENERATOR_SOURCE.read_bytes()
    binary = GENERATOR_CACHE / f"openloop-{hashlib.sha256(source).hexdigest()[:16]}"
    if not binary.exists():
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise RuntimeError("the open-loop generator needs a C compiler: apt-get install gcc")
        GENERATOR_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(f"{binary.name}.{os.getpid()}")
        subprocess.run(
            [gcc, "-O2", "-Wall", "-o", str(tmp), str(GENERATOR_SOURCE)],
            check=True,
            capture_output=True,
        )
        tmp.replace(binary)
    return binary


def _request(url: str, body: bytes) -> tuple[str, str, bytes]:
    """(host, port, the whole HTTP request) for a POST of ``body`` to ``url``."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


def _loadgen_argv(
    url: str, body: bytes, conns: int, rate: float | None, warmup: float, duration: float
) -> tuple[list[str], bytes]:
    host, port, request = _request(url, body)
    rate_arg = "closed" if rate is None else f"{rate:.1f}"
    argv = [str(generator_binary()), host, port, rate_arg, str(conns), str(warmup), str(duration)]
    return argv, request


# -- measuring -------------------------------------------------------------------------------------


def _tree_cpu(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _tree_rss_mib(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return round(
        sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20, 1
    )


def _run_pinned(argv: list[str], *, stdin: bytes = b"", timeout: float) -> tuple[str, float]:
    """Run a generator pinned to its core; its output and the CPU seconds it used."""
    proc = subprocess.Popen(
        ["taskset", "-c", LOADGEN_CPU, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return out, usage.ru_utime + usage.ru_stime


def wrk(url: str, body: bytes, conns: int, duration: float, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency", "-s", str(script), url]
    t0 = time.perf_counter()
    out, cpu = _run_pinned(argv, timeout=duration + 60)
    wall = time.perf_counter() - t0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pcts = {
        q: _ms(v, unit)
        for q, v, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = re.search(r"(\d+) requests in", out)
    n = int(requests.group(1)) if requests else 0
    bad_share = (int(non2xx.group(1)) / n) if (non2xx and n) else 0.0
    return {
        "rps": rps,
        "good_rps": round(rps * (1 - bad_share), 1),
        "requests": int(requests.group(1)) if requests else None,
        "p50_ms": pcts.get("50"),
        "p99_ms": pcts.get("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
        "generator_cpu_share": round(cpu / wall, 3),
    }


def _ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def loadgen(
    url: str, body: bytes, conns: int, rate: float | None, warmup: float, duration: float
) -> dict[str, Any]:
    """One open-loop (``rate`` req/s) or closed-loop (``rate=None``) run of the C generator."""
    argv, request = _loadgen_argv(url, body, conns, rate, warmup, duration)
    out, _ = _run_pinned(argv, stdin=request, timeout=warmup + duration + 60)
    return json.loads(out.strip().splitlines()[-1])


# -- servers ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    """A server to measure: how to start it on a port, and what to send it."""

    name: str
    argv: Callable[[int], list[str]]
    path: str
    body: bytes
    health: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


class Running:
    def __init__(self, target: Target, log: Path):
        self.target = target
        self.port = _free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *target.argv(self.port)],
            env={**os.environ, **target.env},
            cwd=target.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}{target.path}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited with {self.proc.returncode}")
            try:
                url = f"http://127.0.0.1:{self.port}{self.target.health}"
                if httpx.get(url, timeout=2).status_code == 200:
                    r = httpx.post(
                        self.url,
                        content=self.target.body,
                        timeout=10,
                        headers={"content-type": "application/json"},
                    )
                    if r.status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.target.name} not ready after {timeout} s")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


# -- peer venvs ------------------------------------------------------------------------------------

PEERS: dict[str, list[str]] = {
    "mlflow": ["mlflow", "scikit-learn", "joblib"],
    "mlserver": ["mlserver", "mlserver-sklearn", "scikit-learn", "joblib"],
    "kserve": ["kserve", "scikit-learn", "joblib"],
    "litserve": ["litserve", "scikit-learn", "joblib"],
    "bentoml": ["bentoml", "scikit-learn", "joblib"],
}
PEER_VERSIONS = {
    "mlflow": "mlflow",
    "mlserver": "mlserver",
    "kserve": "kserve",
    "litserve": "litserve",
    "bentoml": "bentoml",
}


def peer_venv(name: str) -> tuple[Path | None, str]:
    """The peer's venv python (created on first use), or None and why it could not be made."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = "\n".join(PEERS[name])
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python, ""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *PEERS[name]],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if pip.returncode != 0:
        return None, "pip install failed: " + " | ".join(pip.stderr.strip().splitlines()[-5:])
    stamp.write_text(wanted)
    return python, ""


def _version(python: Path, dist: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


FIT = textwrap.dedent(
    """
    import sys, joblib, numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    data = np.load(sys.argv[1])
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(data["x"], data["y"]),
                sys.argv[2])
    if len(sys.argv) > 3:
        import mlflow.sklearn
        mlflow.sklearn.save_model(joblib.load(sys.argv[2]), sys.argv[3])
    """
)

# A model whose own work is the bottleneck (~60 us of BLAS per row: 20 -> 1024 -> 1024 -> 2),
# for the overload run where refusing a request frees the server for the rest. Trained for a few
# epochs only: its answers do not matter here, its cost does.
FIT_HEAVY = textwrap.dedent(
    """
    import sys, warnings, joblib, numpy as np
    from sklearn.neural_network import MLPClassifier
    warnings.simplefilter("ignore")
    data = np.load(sys.argv[1])
    model = MLPClassifier(hidden_layer_sizes=(1024, 1024), max_iter=3, random_state=0)
    joblib.dump(model.fit(data["x"], data["y"]), sys.argv[2])
    """
)

CEILING_SAME_STACK = textwrap.dedent(
    """
    import sys, uvicorn
    from cloudserve.serving._http import make_protocol
    from cloudserve.serving._settings import ServerSettings

    BODY = b'{"predictions":[0]}'
    TYPE = [(b"content-type", b"application/json")]
    HEADERS = [*TYPE, (b"content-length", b"19")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            await receive()
        respond = scope.get("extensions", {}).get("cloudserve", {}).get("respond")
        if respond is not None:  # the same one-write answer cloudserve uses
            respond(200, TYPE, BODY)
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})

    def answer(exchange, headers, body):  # cloudserve's fast path, answering a constant
        exchange.respond(200, TYPE, BODY)

    s = ServerSettings(model_dir=".")
    mode = sys.argv[2]
    same = mode != "plain"
    fast = (lambda url, method: answer if method == b"POST" else None) if mode == "fast" else None
    http = make_protocol(idle_timeout_s=s.idle_timeout_s, header_timeout_s=s.header_timeout_s,
                         body_timeout_s=s.body_timeout_s, max_header_bytes=s.max_header_bytes,
                         fast=fast, max_body_bytes=s.max_body_bytes) \\
        if same else "httptools"
    # as cloudserve's server does once its model is loaded: move the imports out of the
    # collector's way (without it this app's full collections walk them: c=16 p99 ~13 ms)
    import gc
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http=http,
                lifespan="off", access_log=False, log_level="warning", proxy_headers=False,
                server_header=not same)
    """
)

KSERVE_APP = textwrap.dedent(
    """
    import os, joblib, numpy as np
    from kserve import Model, ModelServer

    class Sk(Model):
        def __init__(self, name):
            super().__init__(name)
            self.model = joblib.load(os.environ["BENCH_MODEL"])
            self.ready = True

        def predict(self, payload, headers=None):
            return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}

    if __name__ == "__main__":
        ModelServer(http_port=int(os.environ["BENCH_PORT"]), workers=1, enable_grpc=False).start(
            [Sk("m")]
        )
    """
)

LITSERVE_APP = textwrap.dedent(
    """
    import os, joblib, numpy as np
    import litserve as ls

    class Api(ls.LitAPI):
        def setup(self, device):
            self.model = joblib.load(os.environ["BENCH_MODEL"])

        def decode_request(self, request):
            return np.asarray(request["instances"])

        def predict(self, x):
            return self.model.predict(x).tolist()

        def encode_response(self, output):
            return {"predictions": output}

    if __name__ == "__main__":
        ls.LitServer(Api(), accelerator="cpu", workers_per_device=1).run(
            port=int(os.environ["BENCH_PORT"]), generate_client_file=False
        )
    """
)

BENTOML_APP = textwrap.dedent(
    """
    import os, joblib, numpy as np
    import bentoml

    @bentoml.service(workers=1)
    class Sk:
        def __init__(self):
            self.model = joblib.load(os.environ["BENCH_MODEL"])

        @bentoml.api
        def predict(self, instances: list[list[float]]) -> dict:
            return {"predictions": self.model.predict(np.asarray(instances)).tolist()}
    """
)


def make_data(workdir: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, N_FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.25 * x[:, 2] > 0).astype(int)
    path = workdir / "train.npz"
    np.savez(path, x=x, y=y)
    return path


def fit_with(python: Path, data: Path, out: Path, mlflow_dir: Path | None = None) -> None:
    args = [str(python), "-c", FIT, str(data), str(out)]
    if mlflow_dir is not None:
        args.append(str(mlflow_dir))
    subprocess.run(args, check=True, capture_output=True)


def own_targets(workdir: Path, data: Path) -> list[Target]:
    from cloudserve.packaging import write_manifest

    cs_dir = workdir / "cloudserve-model"
    cs_dir.mkdir()
    fit_with(Path(sys.executable), data, cs_dir / "model.joblib")
    write_manifest(cs_dir, framework="sklearn", version="1")
    ceiling = workdir / "ceiling.py"
    ceiling.write_text(CEILING_SAME_STACK)
    body = json.dumps({"instances": [ROW]}).encode()
    cs = [sys.executable, "-m", "cloudserve.serving", "--model-dir", str(cs_dir)]
    return [
        Target(
            "ceiling_same_stack",
            lambda p: [sys.executable, str(ceiling), str(p), "same"],
            "/invocations",
            body,
            "/",
        ),
        Target(
            "ceiling_fast_path",
            lambda p: [sys.executable, str(ceiling), str(p), "fast"],
            "/invocations",
            body,
            "/",
        ),
        Target(
            "ceiling_uvicorn",
            lambda p: [sys.executable, str(ceiling), str(p), "plain"],
            "/invocations",
            body,
            "/",
        ),
        Target(
            "cloudserve",
            lambda p: [*cs, "--port", str(p), "--log-level", "warning"],
            "/invocations",
            body,
            "/ping",
        ),
    ]


def heavy_target(workdir: Path, data: Path) -> Target:
    """cloudserve serving the model-bound MLP (one BLAS thread: the server has one core)."""
    from cloudserve.packaging import write_manifest

    model = workdir / "cloudserve-heavy"
    model.mkdir()
    subprocess.run(
        [sys.executable, "-c", FIT_HEAVY, str(data), str(model / "model.joblib")],
        check=True,
        capture_output=True,
    )
    write_manifest(model, framework="sklearn", version="1")
    argv = [sys.executable, "-m", "cloudserve.serving", "--model-dir", str(model)]
    return Target(
        "cloudserve_heavy",
        lambda p: [*argv, "--port", str(p), "--log-level", "warning"],
        "/invocations",
        json.dumps({"instances": [ROW]}).encode(),
        "/ping",
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def peer_target(name: str, python: Path, workdir: Path, data: Path) -> Target:
    home = workdir / name
    home.mkdir()
    bin_dir = python.parent
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BENCH_MODEL": str(home / "model.joblib"),
    }
    instances = json.dumps({"instances": [ROW]}).encode()
    if name == "mlflow":
        fit_with(python, data, home / "model.joblib", home / "mlflow-model")
        return Target(
            name,
            lambda p: [
                str(bin_dir / "mlflow"),
                "models",
                "serve",
                "-m",
                str(home / "mlflow-model"),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(p),
                "-w",
                "1",
            ],
            "/invocations",
            instances,
            "/ping",
            env,
        )
    fit_with(python, data, home / "model.joblib")
    if name == "mlserver":
        (home / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": "m",
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": "v1"},
                }
            )
        )
        v2 = {"inputs": [{"name": "x", "shape": [1, N_FEATURES], "datatype": "FP64", "data": ROW}]}

        def mlserver_argv(p: int) -> list[str]:
            (home / "settings.json").write_text(
                json.dumps(
                    {
                        "host": "127.0.0.1",
                        "http_port": p,
                        "grpc_port": _free_port(),
                        "metrics_port": _free_port(),
                        "parallel_workers": 0,
                    }
                )
            )
            return [str(bin_dir / "mlserver"), "start", str(home)]

        return Target(
            name,
            mlserver_argv,
            "/v2/models/m/infer",
            json.dumps(v2).encode(),
            "/v2/health/ready",
            env,
        )
    scripts = {"kserve": KSERVE_APP, "litserve": LITSERVE_APP, "bentoml": BENTOML_APP}
    (home / "service.py").write_text(scripts[name])

    def with_port(argv: Callable[[int], list[str]]) -> Callable[[int], list[str]]:
        def build(p: int) -> list[str]:
            env["BENCH_PORT"] = str(p)
            return argv(p)

        return build

    if name == "kserve":
        return Target(
            name,
            with_port(lambda p: [str(python), str(home / "service.py")]),
            "/v1/models/m:predict",
            instances,
            "/v1/models/m",
            env,
            home,
        )
    if name == "litserve":
        return Target(
            name,
            with_port(lambda p: [str(python), str(home / "service.py")]),
            "/predict",
            instances,
            "/health",
            env,
            home,
        )
    return Target(
        name,
        with_port(
            lambda p: [
                str(bin_dir / "bentoml"),
                "serve",
                "service:Sk",
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
            ]
        ),
        "/predict",
        instances,
        "/readyz",
        env,
        home,
    )


# -- the run ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import httptools
    import numpy
    import sklearn
    import uvicorn
    import uvloop

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "server_cpu": SERVER_CPU,
        "generator_cpu": LOADGEN_CPU,
        "versions": {
            "uvicorn": uvicorn.__version__,
            "httptools": httptools.__version__,
            "uvloop": uvloop.__version__,
            "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__,
            "wrk": wrk_version.strip(),
        },
    }


def measure(target: Target, args: argparse.Namespace, workdir: Path, logs: Path) -> dict[str, Any]:
    server = Running(target, logs / f"{target.name}.log")
    try:
        server.wait_ready()
        out: dict[str, Any] = {}
        for c in (16, 64):
            wrk(server.url, target.body, c, 2, workdir)  # warm-up
            cpu0, t0 = _tree_cpu(server.proc.pid), time.perf_counter()
            r = wrk(server.url, target.body, c, args.duration, workdir)
            r["server_cpu_share"] = round(
                (_tree_cpu(server.proc.pid) - cpu0) / (time.perf_counter() - t0), 3
            )
            out[f"c{c}"] = r
            print(f"  {target.name} c={c}: {r}", flush=True)
        return out
    finally:
        server.stop()


def paired(
    cs: Target, ceilings: list[Target], args: argparse.Namespace, workdir: Path, logs: Path
) -> dict[str, Any]:
    """cloudserve and the ceiling app running side by side, measured in alternation.

    On a shared machine the CPU left to the server changes from one minute to the next; ratios
    of runs taken seconds apart, repeated, are what can be trusted. Each round runs wrk on the
    ceiling then on cloudserve at c=16 and c=64; the ratios are the medians over the rounds.
    Also recorded: each server's CPU time per request, whose ratio does not depend on how much
    CPU the server got.
    """
    servers = {t.name: Running(t, logs / f"{t.name}-paired.log") for t in (*ceilings, cs)}
    rounds: list[dict[str, Any]] = []
    try:
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():
            wrk(server.url, server.target.body, 64, 2, workdir)  # warm-up
        for _ in range(args.rounds):
            row: dict[str, Any] = {}
            for c in (16, 64):
                for name, server in servers.items():
                    cpu0, t0 = _tree_cpu(server.proc.pid), time.perf_counter()
                    r = wrk(server.url, server.target.body, c, args.round_duration, workdir)
                    used = _tree_cpu(server.proc.pid) - cpu0
                    r["server_cpu_share"] = round(used / (time.perf_counter() - t0), 3)
                    r["server_cpu_us_per_request"] = round(
                        1e6 * used / max(1.0, r["rps"] * args.round_duration), 1
                    )
                    row[f"{name}_c{c}"] = r
            rounds.append(row)
            print(
                f"  round {len(rounds)}: "
                + ", ".join(
                    f"{k} {v['good_rps']:.0f} req/s p99 {v['p99_ms']} ms" for k, v in row.items()
                ),
                flush=True,
            )
    finally:
        for server in servers.values():
            server.stop()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    out: dict[str, Any] = {"rounds": rounds}
    for ceiling in ceilings:
        # against the same-stack ASGI app (the ceiling) without a suffix
        suffix = "" if ceiling.name == "ceiling_same_stack" else f"_vs_{ceiling.name}"
        for c in (16, 64):
            a, b = f"cloudserve_c{c}", f"{ceiling.name}_c{c}"
            out[f"c{c}_rps_ratio{suffix}"] = round(
                median([r[a]["good_rps"] / r[b]["good_rps"] for r in rounds]), 3
            )
            out[f"c{c}_p99_ratio{suffix}"] = round(
                median([r[a]["p99_ms"] / r[b]["p99_ms"] for r in rounds]), 2
            )
            out[f"c{c}_cpu_per_request_ratio{suffix}"] = round(
                median(
                    [
                        r[b]["server_cpu_us_per_request"] / r[a]["server_cpu_us_per_request"]
                        for r in rounds
                    ]
                ),
                3,
            )
    return out


SLOW_PREDICTOR = textwrap.dedent(
    """
    import time
    from cloudserve.serving import Predictor

    class Stuck(Predictor):
        def predict(self, batch):
            time.sleep(600)
            return [0 for _ in batch]
    """
)


def shed_cost(workdir: Path, logs: Path, body: bytes, duration: float) -> dict[str, Any]:
    """CPU time the server spends refusing one request, with every request refused.

    A model stuck in its first batch and ``--max-queue 1``: once one request waits, every new
    one is shed on arrival. Compared with the CPU time of an answered request, this says what
    share of the server's capacity a 503 costs, which bounds the good answers at overload.
    """
    import httpx

    from cloudserve.packaging import write_manifest

    model = workdir / "stuck-model"
    model.mkdir()
    (model / "stuck.py").write_text(SLOW_PREDICTOR)
    write_manifest(model, framework="custom", predictor="stuck:Stuck")
    target = Target(
        "cloudserve_all_shed",
        lambda p: [
            sys.executable,
            "-m",
            "cloudserve.serving",
            "--model-dir",
            str(model),
            "--port",
            str(p),
            "--max-queue",
            "1",
            "--log-level",
            "warning",
        ],
        "/invocations",
        body,
        "/ping",
    )
    server = Running(target, logs / "shed-cost.log")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{server.port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        stuck = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        for sock in stuck:  # one in the model, one waiting: the queue is full
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        time.sleep(1)
        cpu0, t0 = _tree_cpu(server.proc.pid), time.perf_counter()
        r = wrk(server.url, body, 64, duration, workdir)
        used = _tree_cpu(server.proc.pid) - cpu0
        r["server_cpu_share"] = round(used / (time.perf_counter() - t0), 3)
        r["server_cpu_us_per_503"] = round(1e6 * used / max(1.0, r["rps"] * duration), 1)
        # as at overload: 1,000 connections, open loop, at a rate the server refuses in full
        # (each request is then its own event: a refusal costs more than in a closed loop)
        cpu0 = _tree_cpu(server.proc.pid)
        o = loadgen(server.url, body, OPEN_CONNS, SHED_RATE, 0, duration)
        used = _tree_cpu(server.proc.pid) - cpu0
        refused = o["statuses"].get("503", 0)
        r["open_c1000"] = {
            "offered_rps": o["offered_rps"],
            "statuses": o["statuses"],
            "server_cpu_us_per_503": round(1e6 * used / max(1, refused), 1),
        }
        for sock in stuck:
            sock.close()
        return r
    finally:
        server.stop()


def _closed(server: Running, body: bytes, conns: int, duration: float) -> dict[str, Any]:
    """A closed-loop run of the C generator, with the server's CPU time per answer."""
    cpu0, t0 = _tree_cpu(server.proc.pid), time.perf_counter()
    r = loadgen(server.url, body, conns, None, 0, duration)
    used = _tree_cpu(server.proc.pid) - cpu0
    r["server_cpu_share"] = round(used / (time.perf_counter() - t0), 3)
    r["server_cpu_us_per_answer"] = round(1e6 * used / max(1.0, r["good_rps"] * duration), 1)
    return r


def overload(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Saturation (closed loop, c=64 and 1,000 connections), then 2x that rate, open loop."""
    out: dict[str, Any] = {}
    server = Running(target, logs / f"{target.name}-overload.log")
    try:
        server.wait_ready()
        loadgen(server.url, target.body, 64, None, 2, 3)  # warm-up
        sat = _closed(server, target.body, 64, args.duration)
        out["saturation_closed_c64"] = sat
        print(f"  {target.name} saturation: {sat}", flush=True)
        # the same closed loop over the overload's 1,000 connections: what they cost by
        # themselves, whoever answers (the ceiling apps are measured the same way)
        out["saturation_closed_c1000"] = _closed(server, target.body, OPEN_CONNS, args.duration)
        print(f"  {target.name} c=1000: {out['saturation_closed_c1000']}", flush=True)
        rate = 2 * sat["good_rps"]
        rss: list[tuple[float, float]] = []
        cpu0 = _tree_cpu(server.proc.pid)
        argv, request = _loadgen_argv(
            server.url, target.body, OPEN_CONNS, rate, 5, args.overload_duration
        )
        gen = subprocess.Popen(
            ["taskset", "-c", LOADGEN_CPU, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert gen.stdin is not None
        gen.stdin.write(request)
        gen.stdin.close()
        t0 = time.perf_counter()
        time.sleep(5.5)  # the warm-up: RSS is counted from the start of the measured minute
        while gen.poll() is None:
            rss.append((round(time.perf_counter() - t0, 1), _tree_rss_mib(server.proc.pid)))
            time.sleep(5)
        res = json.loads(gen.stdout.read().decode().strip().splitlines()[-1])  # type: ignore[union-attr]
        res["server_cpu_share"] = round(
            (_tree_cpu(server.proc.pid) - cpu0) / (time.perf_counter() - t0), 3
        )
        measured = [m for t, m in rss if t <= 5.5 + args.overload_duration]
        res["rss_mib"] = rss
        res["rss_growth"] = round(measured[-1] / measured[0] - 1, 4) if len(measured) > 1 else None
        out["overload_2x"] = res
        print(f"  {target.name} overload: {res}", flush=True)
    finally:
        server.stop()
    return out


def generator_reach(
    rate: float,
    path: str,
    body: bytes,
    args: argparse.Namespace,
    logs: Path,
    ceilings: list[Target],
) -> dict[str, Any]:
    """The generator's own ceiling: ``rate`` against a C server that answers at once (nothing
    else in the way); and the ceiling apps over 1,000 connections, closed loop and at ``rate``."""
    out: dict[str, Any] = {}
    port = _free_port()
    sink = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(generator_binary()), "--sink", str(port), "60"],
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        url = f"http://127.0.0.1:{port}{path}"
        out["generator_vs_sink"] = loadgen(url, body, OPEN_CONNS, rate, 2, args.duration)
        print(f"  generator at {rate:.0f} req/s against the sink: {out['generator_vs_sink']}")
    finally:
        sink.kill()
        sink.wait(10)
    for ceiling in ceilings:
        server = Running(ceiling, logs / f"{ceiling.name}-generator.log")
        try:
            server.wait_ready()
            closed = _closed(server, ceiling.body, 64, args.duration)
            many = _closed(server, ceiling.body, OPEN_CONNS, args.duration)
            at_rate = loadgen(server.url, ceiling.body, OPEN_CONNS, rate, 2, args.duration)
            out[ceiling.name] = {"closed_c64": closed, "closed_c1000": many, "open_c1000": at_rate}
            print(f"  {ceiling.name}: c=64 {closed['good_rps']}, c=1000 {many['good_rps']}")
        finally:
            server.stop()
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--overload-duration", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=3, help="paired cloudserve/ceiling rounds")
    p.add_argument("--round-duration", type=float, default=5.0)
    p.add_argument("--only", default="", help="comma-separated targets (default: all)")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--no-overload", action="store_true")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))
    started = datetime.now(timezone.utc)
    doc: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "settings": {
            "duration_s": a.duration,
            "overload_duration_s": a.overload_duration,
            "payload": f"one row of {N_FEATURES} floats per request",
            "workers": 1,
        },
        "closed_loop": {},
        "peers": {},
    }
    with tempfile.TemporaryDirectory(prefix="cloudserve-bench-") as tmp:
        workdir = Path(tmp)
        logs = workdir / "logs"
        logs.mkdir()
        data = make_data(workdir)
        targets = own_targets(workdir, data)
        if not a.no_peers:
            for name in PEERS:
                if only and name not in only:
                    continue
                python, why = peer_venv(name)
                if python is None:
                    doc["peers"][name] = {"error": why}
                    print(f"{name}: {why}", flush=True)
                    continue
                doc["peers"][name] = {
                    "version": _version(python, PEER_VERSIONS[name]),
                    "scikit-learn": _version(python, "scikit-learn"),
                }
                try:
                    targets.append(peer_target(name, python, workdir, data))
                except subprocess.CalledProcessError as exc:
                    doc["peers"][name]["error"] = f"could not fit the model: {exc.stderr!r}"[-500:]
        for target in targets:
            if only and target.name not in only:
                continue
            print(target.name, flush=True)
            try:
                doc["closed_loop"][target.name] = measure(target, a, workdir, logs)
            except Exception as exc:  # a peer that will not start is recorded, the run goes on
                log = (logs / f"{target.name}.log").read_text(errors="replace")[-1500:]
                doc["closed_loop"][target.name] = {"error": f"{exc}", "log_tail": log}
                print(f"  {target.name} failed: {exc}\n{log}", flush=True)
        by_name = {t.name: t for t in targets}
        phases: list[tuple[str, Callable[[], Any]]] = []
        if not only or "cloudserve" in only:
            cs, ceiling = by_name["cloudserve"], by_name["ceiling_same_stack"]
            ceilings = [ceiling, by_name["ceiling_fast_path"]]
            phases.append(("paired", lambda: paired(cs, ceilings, a, workdir, logs)))
            if not a.no_overload:
                heavy = heavy_target(workdir, data)
                phases.append(("shed_cost", lambda: shed_cost(workdir, logs, cs.body, a.duration)))
                phases.append(("overload", lambda: overload(cs, a, logs)))
                phases.append(("overload_heavy", lambda: overload(heavy, a, logs)))

                def reach() -> dict[str, Any]:
                    sat = doc.get("overload", {}).get("saturation_closed_c64", {})
                    rate = 2 * sat.get("good_rps", 20000.0)
                    return generator_reach(rate, cs.path, cs.body, a, logs, ceilings)

                phases.append(("generator", reach))
        for key, run in phases:
            print(key, flush=True)
            try:
                doc[key] = run()
            except Exception as exc:  # recorded; the other phases and the file still happen
                doc[key] = {"error": repr(exc)}
            print(f"  {key}: {str(doc[key])[:300]}", flush=True)
    doc["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["acceptance"] = acceptance(doc)
    write(doc, started)


def acceptance(doc: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance figures, as ratios from this one run."""
    res = doc["closed_loop"]
    out: dict[str, Any] = {}
    phases = ("paired", "shed_cost", "overload", "overload_heavy", "generator")
    ok = {k: doc[k] for k in phases if k in doc}
    errors = {k: v["error"] for k, v in ok.items() if "error" in v}
    if errors:
        out["errors"] = errors
    good = {k: v for k, v in ok.items() if k not in errors}
    paired_ok, shed_ok = good.get("paired"), good.get("shed_cost")
    if paired_ok:
        out["paired_medians"] = {k: v for k, v in paired_ok.items() if k != "rounds"}
    cs, ceil = res.get("cloudserve", {}), res.get("ceiling_same_stack", {})
    for name in ("ceiling_same_stack", "ceiling_fast_path"):
        ceil = res.get(name, {})
        suffix = "" if name == "ceiling_same_stack" else "_fast_path"
        for c in ("c16", "c64"):
            if c in cs and c in ceil:
                ratio = round(cs[c]["good_rps"] / ceil[c]["good_rps"], 3)
                out[f"{c}_rps_vs_ceiling{suffix}"] = ratio
        if "c64" in cs and "c64" in ceil:
            out[f"c64_p99_vs_ceiling{suffix}"] = round(
                cs["c64"]["p99_ms"] / ceil["c64"]["p99_ms"], 2
            )
    # the same-stack ceiling's own tail can be heavier than plain uvicorn's; the stricter check
    plain = res.get("ceiling_uvicorn", {})
    if "c64" in cs and "c64" in plain:
        out["c64_p99_vs_ceiling_uvicorn"] = round(cs["c64"]["p99_ms"] / plain["c64"]["p99_ms"], 2)
    refusal = (shed_ok or {}).get("open_c1000", {}).get("server_cpu_us_per_503")
    for key, label in (("overload", "light"), ("overload_heavy", "heavy")):
        ov = good.get(key)
        if not ov:
            continue
        sat, many, over = (
            ov["saturation_closed_c64"],
            ov["saturation_closed_c1000"],
            ov["overload_2x"],
        )
        o: dict[str, Any] = {
            "saturation_rps": sat["good_rps"],
            "saturation_p99_ms": sat["p99_ms"],
            "closed_c1000_vs_c64": round(many["good_rps"] / sat["good_rps"], 3),
            "offered_rps": over["offered_rps"],
            "sent_vs_offered": round(over["sent_rps"] / over["offered_rps"], 3),
            "good_vs_saturation": round(over["good_rps"] / sat["good_rps"], 3),
            "non_200_that_are_503_with_retry_after": round(
                over["shed_503_with_retry_after"]
                / max(1, sum(v for k, v in over["statuses"].items() if k != "200")),
                3,
            ),
            "admitted_p99_vs_saturation_p99": round(over["p99_ms"] / sat["p99_ms"], 2),
            "admitted_p99_from_send_vs_saturation_p99": round(
                over["p99_from_send_ms"] / sat["p99_ms"], 2
            ),
            "unanswered": over["unanswered"],
            "rss_growth": over["rss_growth"],
            "generator_cpu_share": over["generator_cpu_share"],
        }
        if refusal:
            # What a 503 costs (over 1,000 connections, as at overload) against an answer at
            # saturation bounds the good answers at 2x: with every request answered or refused,
            # g + rho * (2S - g) <= S, so g / S <= (1 - 2 rho) / (1 - rho), and 0 from rho = 0.5.
            rho = refusal / sat["server_cpu_us_per_answer"]
            o["cpu_of_a_503_vs_an_answer"] = round(rho, 3)
            o["good_vs_saturation_bound"] = (
                round((1 - 2 * rho) / (1 - rho), 3) if rho < 0.5 else 0.0
            )
        out[f"overload_{label}"] = o
    gen = good.get("generator")
    if gen:
        cap = gen["generator_vs_sink"]
        out["generator_sent_vs_offered_against_sink"] = round(
            cap["sent_rps"] / cap["offered_rps"], 3
        )
        out["generator_cpu_share_against_sink"] = cap["generator_cpu_share"]
        for name in ("ceiling_same_stack", "ceiling_fast_path"):
            if name in gen:
                c = gen[name]
                out[f"{name}_closed_c1000_vs_c64"] = round(
                    c["closed_c1000"]["good_rps"] / c["closed_c64"]["good_rps"], 3
                )
    out["holds"] = _holds(out)
    return out


def _holds(out: dict[str, Any]) -> dict[str, bool | None]:
    """Each acceptance item of the issue, true/false from this run (None: not measured)."""
    pm = out.get("paired_medians", {})

    def check(value: Any, ok: Callable[[Any], bool]) -> bool | None:
        return None if value is None else bool(ok(value))

    holds = {
        "c16_rps_ge_0.75_of_ceiling": check(pm.get("c16_rps_ratio"), lambda v: v >= 0.75),
        "c64_rps_ge_0.75_of_ceiling": check(pm.get("c64_rps_ratio"), lambda v: v >= 0.75),
        "c64_p99_le_3x_ceiling": check(pm.get("c64_p99_ratio"), lambda v: v <= 3),
        "c16_rps_ge_0.75_of_ceiling_fast_path": check(
            pm.get("c16_rps_ratio_vs_ceiling_fast_path"), lambda v: v >= 0.75
        ),
        "c64_rps_ge_0.75_of_ceiling_fast_path": check(
            pm.get("c64_rps_ratio_vs_ceiling_fast_path"), lambda v: v >= 0.75
        ),
        "c64_p99_le_3x_ceiling_fast_path": check(
            pm.get("c64_p99_ratio_vs_ceiling_fast_path"), lambda v: v <= 3
        ),
        "c64_p99_le_3x_ceiling_uvicorn": check(
            out.get("c64_p99_vs_ceiling_uvicorn"), lambda v: v <= 3
        ),
        "generator_reached_2x_light": check(
            out.get("generator_sent_vs_offered_against_sink"), lambda v: v >= 0.98
        ),
    }
    for label in ("light", "heavy"):
        o = out.get(f"overload_{label}", {})
        holds |= {
            f"overload_{label}_good_ge_0.8_of_saturation": check(
                o.get("good_vs_saturation"), lambda v: v >= 0.8
            ),
            f"overload_{label}_rest_503_with_retry_after": check(
                o.get("non_200_that_are_503_with_retry_after"),
                lambda v, o=o: v == 1.0 and o.get("unanswered") == 0,
            ),
            f"overload_{label}_admitted_p99_le_2x_saturation": check(
                o.get("admitted_p99_vs_saturation_p99"), lambda v: v <= 2
            ),
            f"overload_{label}_rss_growth_le_10pct": check(o.get("rss_growth"), lambda v: v <= 0.1),
            f"overload_{label}_generator_sent_what_it_offered": check(
                o.get("sent_vs_offered"), lambda v: v >= 0.98
            ),
        }
    return holds


def write(doc: dict[str, Any], started: datetime) -> None:
    RESULTS.mkdir(exist_ok=True)
    base = RESULTS / f"serving-{started:%Y-%m-%d-%H%M}"  # several runs a day: keep each
    base.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    m = doc["machine"]
    lines = [
        f"# Serving benchmark, {doc['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; "
        f"server pinned to CPU {m['server_cpu']}, generators to CPU {m['generator_cpu']}. "
        f"Versions: {m['versions']}. Load average before {doc['load_average_before']}, "
        f"after {doc['load_average_after']} (the machine was shared).",
        "",
        "Closed loop, `wrk -t1`, one row of 20 floats per request, one server worker; req/s "
        "counts 2xx answers only; "
        "CPU shares are CPU-seconds per wall second of the server (with children) and of wrk.",
        "",
        "| server | c=16 req/s | c=16 p99 ms | c=64 req/s | c=64 p99 ms | server CPU | wrk CPU "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in doc["closed_loop"].items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:120]} | | | | | | |")
            continue
        a, b = r["c16"], r["c64"]
        errs = a["non_2xx"] + a["socket_errors"] + b["non_2xx"] + b["socket_errors"]
        lines.append(
            f"| {name} | {a['good_rps']:.0f} | {a['p99_ms']} | "
            f"{b['good_rps']:.0f} | {b['p99_ms']} | "
            f"{a['server_cpu_share']}/{b['server_cpu_share']} | "
            f"{a['generator_cpu_share']}/{b['generator_cpu_share']} | {errs} |"
        )
    lines += ["", "Peers: " + ", ".join(f"{k} {v}" for k, v in doc["peers"].items()), ""]
    for key in ("shed_cost", "overload", "overload_heavy", "generator"):
        if key in doc:
            lines += [f"## {key}", "", "```json", json.dumps(doc[key], indent=1), "```", ""]
    lines += ["## Acceptance ratios", "", "```json", json.dumps(doc["acceptance"], indent=1), "```"]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
