"""Hyperparameter tuning in the fake: StudySpec validation, parameter sampling, real trials.

A trial runs the job's Python package for real: the package tarball named in
``worker_pool_specs[0].python_package_spec.package_uris`` is taken from the fake bucket,
unpacked, and ``python -m <python_module> <args> --<param>=<value> …`` runs with
``CLOUD_ML_HP_METRIC_FILE`` set, as on Vertex. The trial's objective is the last value the
run wrote to that file (the format ``cloudml-hypertune`` writes). Bayesian search (the default
algorithm) is approximated by random search; grid search walks the grid in order.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cloudserve_vertex.testing._http import ApiError

if TYPE_CHECKING:
    from cloudserve_vertex.testing._service import FakeVertexService

GRID_SEARCH, LOG_SCALE = 2, 2
TRIAL_ACTIVE, TRIAL_SUCCEEDED, TRIAL_INFEASIBLE = 2, 4, 5
_KINDS = ("doubleValueSpec", "integerValueSpec", "categoricalValueSpec", "discreteValueSpec")


def validate_tuning_job(job: dict[str, Any]) -> None:
    """Reject what Vertex rejects at create time: bad StudySpec, counts, worker pools."""
    study = job.get("studySpec") or {}
    metrics = study.get("metrics") or []
    if len(metrics) != 1 or not metrics[0].get("metricId") or not metrics[0].get("goal"):
        raise ApiError(400, "study_spec.metrics needs exactly one metric with a goal")
    params = study.get("parameters") or []
    if not params:
        raise ApiError(400, "study_spec.parameters must not be empty")
    for p in params:
        kinds = [k for k in _KINDS if k in p]
        if len(kinds) != 1 or not p.get("parameterId"):
            raise ApiError(400, f"parameter {p.get('parameterId')!r} needs one value spec")
        spec = p[kinds[0]]
        if kinds[0] in ("doubleValueSpec", "integerValueSpec"):
            lo, hi = float(spec["minValue"]), float(spec["maxValue"])
            if lo > hi:
                raise ApiError(400, f"parameter {p['parameterId']}: min_value > max_value")
            if p.get("scaleType") == LOG_SCALE and lo <= 0:
                raise ApiError(400, f"parameter {p['parameterId']}: log scale needs min > 0")
        elif not spec.get("values"):
            raise ApiError(400, f"parameter {p['parameterId']}: values must not be empty")
    if int(job.get("maxTrialCount") or 0) < 1:
        raise ApiError(400, "max_trial_count must be positive")
    if int(job.get("parallelTrialCount") or 0) < 1:
        raise ApiError(400, "parallel_trial_count must be positive")
    pools = (job.get("trialJobSpec") or {}).get("workerPoolSpecs") or []
    if not pools or not (pools[0].get("pythonPackageSpec") or pools[0].get("containerSpec")):
        raise ApiError(400, "trial_job_spec.worker_pool_specs[0] needs a package or container")
    if not (pools[0].get("machineSpec") or {}).get("machineType"):
        raise ApiError(400, "worker_pool_specs[0].machine_spec.machine_type is required")


def _sample(param: dict[str, Any], rng: random.Random) -> Any:
    log = param.get("scaleType") == LOG_SCALE
    if "doubleValueSpec" in param or "integerValueSpec" in param:
        spec = param.get("doubleValueSpec") or param["integerValueSpec"]
        lo, hi = float(spec["minValue"]), float(spec["maxValue"])
        value = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
        return round(value) if "integerValueSpec" in param else value
    spec = param.get("categoricalValueSpec") or param["discreteValueSpec"]
    return rng.choice(spec["values"])


def _grid(params: list[dict[str, Any]]) -> list[list[Any]]:
    axes = []
    for p in params:
        if "integerValueSpec" in p:
            s = p["integerValueSpec"]
            axes.append(list(range(int(s["minValue"]), int(s["maxValue"]) + 1)))
        elif "doubleValueSpec" in p:
            raise ApiError(400, f"grid search cannot enumerate double {p['parameterId']}")
        else:
            axes.append(list((p.get("categoricalValueSpec") or p["discreteValueSpec"])["values"]))
    return [list(combo) for combo in itertools.product(*axes)]


def suggestions(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter sets the fake's 'study' proposes, one per trial."""
    study = job["studySpec"]
    params = study["parameters"]
    count = int(job["maxTrialCount"])
    seed = int(job["name"].rsplit("/", 1)[-1])
    if study.get("algorithm") == GRID_SEARCH:
        combos = _grid(params)[:count]
    else:
        rng = random.Random(seed)
        combos = [[_sample(p, rng) for p in params] for _ in range(count)]
    return [{p["parameterId"]: v for p, v in zip(params, combo, strict=True)} for combo in combos]


def run_trials(job: dict[str, Any], service: FakeVertexService) -> None:
    """Run every trial (``parallel_trial_count`` at a time) and record them on the job."""
    pool = job["trialJobSpec"]["workerPoolSpecs"][0]
    metric = job["studySpec"]["metrics"][0]["metricId"]
    package = pool.get("pythonPackageSpec")
    workdir = Path(tempfile.mkdtemp(prefix="trials-", dir=service.workdir))
    root = _unpack(package, service, workdir) if package else None
    proposals = suggestions(job)
    job["trials"] = [
        {"id": str(i + 1), "state": TRIAL_ACTIVE, "parameters": _params(p)}
        for i, p in enumerate(proposals)
    ]
    parallel = min(int(job["parallelTrialCount"]), len(proposals))
    with ThreadPoolExecutor(max_workers=parallel) as ex:
        results = list(
            ex.map(
                lambda t: _run_one(t, proposals[int(t["id"]) - 1], package, root, metric, workdir),
                job["trials"],
            )
        )
    job["trials"] = results
    if not any(t["state"] == TRIAL_SUCCEEDED for t in results):
        reason = results[0].get("infeasibleReason", "no trial succeeded")
        raise ApiError(400, f"all {len(results)} trials failed; first: {reason}")


def _params(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"parameterId": k, "value": v} for k, v in values.items()]


def _unpack(package: dict[str, Any], service: FakeVertexService, workdir: Path) -> Path:
    uris = package.get("packageUris") or []
    if not uris:
        raise ApiError(400, "python_package_spec.package_uris is empty")
    objects = service.gcs.read_uri(uris[0])
    if not objects:
        raise ApiError(400, f"package {uris[0]} not found")
    tar_path = workdir / "package.tar.gz"
    tar_path.write_bytes(objects[0].data)
    with tarfile.open(tar_path) as tar:
        tar.extractall(workdir / "package", filter="data")
    tops = [p for p in (workdir / "package").iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else workdir / "package"


def _run_one(
    trial: dict[str, Any],
    values: dict[str, Any],
    package: dict[str, Any] | None,
    root: Path | None,
    metric: str,
    workdir: Path,
) -> dict[str, Any]:
    from cloudserve_vertex.testing._service import now

    out = {**trial, "startTime": now()}
    if package is None or root is None:
        out.update(state=TRIAL_INFEASIBLE, infeasibleReason="the fake cannot run container images")
        return {**out, "endTime": now()}
    metric_file = workdir / f"trial-{trial['id']}.metrics"
    args = [*package.get("args", []), *(f"--{k}={v}" for k, v in values.items())]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "CLOUD_ML_HP_METRIC_FILE": str(metric_file),
        "CLOUD_ML_TRIAL_ID": trial["id"],
    }
    proc = subprocess.run(
        [sys.executable, "-m", package["pythonModule"], *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    value = _last_metric(metric_file, metric)
    if proc.returncode != 0 or value is None:
        reason = (proc.stderr or proc.stdout).strip()[-500:] or f"no {metric} was reported"
        out.update(state=TRIAL_INFEASIBLE, infeasibleReason=reason)
    else:
        out.update(
            state=TRIAL_SUCCEEDED,
            finalMeasurement={"stepCount": "1", "metrics": [{"metricId": metric, "value": value}]},
        )
    return {**out, "endTime": now()}


def _last_metric(path: Path, metric: str) -> float | None:
    if not path.exists():
        return None
    value = None
    for line in path.read_text().splitlines():
        if line.strip():
            record = orjson.loads(line)
            if metric in record:
                value = float(record[metric])
    return value
