"""Hyperparameter tuning on Vertex AI: the trial package, the StudySpec, trials back.

The training script is packed into a source distribution whose ``__main__`` runs it with the
trial's ``--name=value`` arguments and reports the objective where ``cloudml-hypertune`` would.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import orjson

from cloudserve.errors import InvalidRequest
from cloudserve.resources import Trial, TuningJob
from cloudserve.specs import Choice, IntRange, LogUniform, TrainSpec, TuningSpec, Uniform
from cloudserve_vertex._api import VertexApi
from cloudserve_vertex._states import job_status, trial_status

__all__ = ["TRAINER_MODULE", "get", "start", "study_spec", "trainer_package"]

_STRATEGIES = {"bayesian": 0, "grid": 2, "random": 3}

_TRIAL_MAIN = '''\
"""Run the user's training script, find the objective in its output, report it to Vertex.

Vertex AI reads trial metrics from the file cloudml-hypertune writes
($CLOUD_ML_HP_METRIC_FILE, default /tmp/hypertune/output.metrics); this writes the same
JSON lines, so no extra dependency is needed in the training image.
"""
import json, os, re, subprocess, sys, time
from pathlib import Path

here = Path(__file__).parent
cfg = json.loads((here / "config.json").read_text())


def whole(arg):
    # Vertex passes discrete values as doubles ("--depth=8.0"); integer parameters get "8".
    name, sep, value = arg.partition("=")
    if sep and name.lstrip("-") in cfg["integers"]:
        try:
            return name + "=" + str(int(float(value)))
        except ValueError:
            return arg
    return arg


proc = subprocess.Popen(
    [sys.executable, str(here / "src" / cfg["entrypoint"]), *map(whole, sys.argv[1:])],
    cwd=here / "src", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    env={**os.environ, **cfg["env"]},
)
value = None
for line in proc.stdout:
    sys.stdout.write(line)
    m = re.search(cfg["regex"], line)
    if m:
        value = float(m.group(1))
code = proc.wait()
if value is not None:
    path = Path(os.environ.get("CLOUD_ML_HP_METRIC_FILE", "/tmp/hypertune/output.metrics"))
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"timestamp": time.time(), "trial": os.environ.get("CLOUD_ML_TRIAL_ID", "0"),
              cfg["metric"]: str(value), "global_step": "0"}
    with path.open("a") as fh:
        fh.write(json.dumps(record) + "\\n")
sys.exit(code)
'''

_SETUP = """\
from setuptools import setup
setup(name="cloudserve_trainer", version="0.0.0", packages=["cloudserve_trainer"],
      package_data={"cloudserve_trainer": ["config.json", "src/*", "src/**/*"]},
      install_requires=%s)
"""

TRAINER_MODULE = "cloudserve_trainer"


def trainer_package(
    train: TrainSpec, metric: str, regex: str, integers: list[str] | None = None
) -> bytes:
    """A source distribution (``.tar.gz``) running ``train``'s script as a trial.

    The script (and ``source_dir``, when given) sits in ``cloudserve_trainer/src/``; the
    package's ``__main__`` runs it with the trial's ``--name=value`` arguments and reports
    the objective found by ``regex``.
    """
    if train.entrypoint is None:
        raise InvalidRequest("Vertex tuning runs a script: give TrainSpec(entrypoint=…)")
    entry = Path(train.entrypoint)
    source = Path(train.source_dir) if train.source_dir else entry.parent
    if not (source / entry.name).exists() and not entry.exists():
        raise InvalidRequest(f"training script {entry} does not exist")
    root = "cloudserve_trainer-0.0.0"
    files: dict[str, bytes] = {
        f"{root}/setup.py": (_SETUP % "[]").encode(),
        f"{root}/{TRAINER_MODULE}/__init__.py": b"",
        f"{root}/{TRAINER_MODULE}/__main__.py": _TRIAL_MAIN.encode(),
        f"{root}/{TRAINER_MODULE}/config.json": orjson.dumps(
            {
                "entrypoint": entry.name,
                "metric": metric,
                "regex": regex,
                "env": train.env,
                "integers": sorted(integers or []),
            }
        ),
    }
    if train.source_dir:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(source).as_posix()
                files[f"{root}/{TRAINER_MODULE}/src/{rel}"] = path.read_bytes()
    files.setdefault(f"{root}/{TRAINER_MODULE}/src/{entry.name}", entry.read_bytes())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def study_spec(spec: TuningSpec) -> dict[str, Any]:
    """The ``StudySpec``: metric, parameter specs (IntRange with a step → discrete values)."""
    params = []
    for name, p in spec.search_space.items():
        entry: dict[str, Any] = {"parameter_id": name}
        if isinstance(p, Uniform):
            entry.update(double_value_spec={"min_value": p.low, "max_value": p.high}, scale_type=1)
        elif isinstance(p, LogUniform):
            entry.update(double_value_spec={"min_value": p.low, "max_value": p.high}, scale_type=2)
        elif isinstance(p, IntRange):
            if p.step == 1:
                entry.update(
                    integer_value_spec={"min_value": p.low, "max_value": p.high},
                    scale_type=2 if p.log else 1,
                )
            else:
                values = [float(v) for v in range(p.low, p.high + 1, p.step)]
                entry.update(discrete_value_spec={"values": values})
        elif isinstance(p, Choice):
            entry.update(categorical_value_spec={"values": [str(v) for v in p.values]})
        params.append(entry)
    return {
        "metrics": [
            {
                "metric_id": spec.objective.metric,
                "goal": 1 if spec.objective.goal == "maximize" else 2,
            }
        ],
        "parameters": params,
        "algorithm": _STRATEGIES[spec.strategy],
    }


def start(api: VertexApi, spec: TuningSpec) -> TuningJob:
    from google.cloud import aiplatform_v1 as v1

    cfg = api.config
    integers = [n for n, p in spec.search_space.items() if isinstance(p, IntRange)]
    package = trainer_package(spec.train, spec.objective.metric, spec.objective.pattern, integers)
    name = f"{cfg.staging_prefix}/training/{int(time.time() * 1000)}/trainer.tar.gz"
    blob = api.client("storage").bucket(cfg.bucket).blob(name)
    api.call(blob.upload_from_string, package, content_type="application/gzip")
    args = [f"--{k}={v}" for k, v in spec.train.hyperparameters.items()]
    pool = {
        "machine_spec": api.machine(spec.train.compute),
        "replica_count": 1,
        "python_package_spec": {
            "executor_image_uri": spec.train.image or cfg.training_image,
            "package_uris": [f"gs://{cfg.bucket}/{name}"],
            "python_module": TRAINER_MODULE,
            "args": args,
        },
    }
    job = v1.HyperparameterTuningJob(
        display_name=spec.name or f"cs-tune-{int(time.time())}",
        study_spec=study_spec(spec),
        max_trial_count=spec.max_trials,
        parallel_trial_count=spec.parallel_trials,
        trial_job_spec={
            "worker_pool_specs": [pool],
            **({"network": cfg.network} if cfg.network else {}),
            **({"service_account": cfg.service_account} if cfg.service_account else {}),
        },
        labels=api.labels(),
        **api.encryption(),
    )
    created = api.rpc(
        "job",
        "create_hyperparameter_tuning_job",
        parent=api.parent,
        hyperparameter_tuning_job=job,
        retry=False,
    )
    return to_tuning(api, created)


def get(api: VertexApi, job_id: str) -> TuningJob:
    job = api.rpc(
        "job",
        "get_hyperparameter_tuning_job",
        name=f"{api.parent}/hyperparameterTuningJobs/{job_id}",
    )
    return to_tuning(api, job)


def _integer_parameters(job: Any) -> set[str]:
    """Integer parameters: integer specs, and discrete specs whose values are all whole
    (cloudserve sends an ``IntRange`` with a step as discrete doubles)."""
    out = set()
    for p in job.study_spec.parameters:
        if "integer_value_spec" in p or (
            "discrete_value_spec" in p
            and all(float(v).is_integer() for v in p.discrete_value_spec.values)
        ):
            out.add(p.parameter_id)
    return out


def to_tuning(api: VertexApi, job: Any) -> TuningJob:
    metric = job.study_spec.metrics[0]
    goal = "maximize" if int(metric.goal) == 1 else "minimize"
    integers = _integer_parameters(job)
    trials = [_to_trial(t, integers) for t in job.trials]
    scored = [t for t in trials if t.value is not None]
    pick = max if goal == "maximize" else min
    best = pick(scored, key=lambda t: t.value or 0.0) if scored else None
    return TuningJob(
        id=job.name.rsplit("/", 1)[-1],
        provider=api.name,
        status=job_status(job.state),
        objective=metric.metric_id,
        goal=goal,
        trials=trials,
        best_trial=best,
        message=job.error.message or None,
        raw=job,
    )


def _to_trial(t: Any, integers: set[str]) -> Trial:
    from google.protobuf import json_format

    params = {}
    for p in t.parameters:
        value = json_format.MessageToDict(p._pb).get("value")
        # protobuf Values carry every number as a double; integer parameters come back whole.
        params[p.parameter_id] = int(float(value)) if p.parameter_id in integers else value
    values = [m.value for m in t.final_measurement.metrics]
    return Trial(
        id=t.id,
        params=params,
        status=trial_status(t.state),
        value=values[0] if values else None,
        message=t.infeasible_reason or None,
        raw=t,
    )
