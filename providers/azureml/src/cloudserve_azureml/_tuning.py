"""Hyperparameter tuning on Azure ML: a command job turned into a sweep job.

The training code (``TrainSpec.source_dir``, else the entrypoint's folder) is uploaded with
``code=`` together with ``cloudserve_trial.py`` (the source of
:mod:`cloudserve_azureml._trial_script`), which runs the script and logs every value of
``Objective.pattern`` it prints as the sweep's primary metric. Trials are the sweep's child
jobs: their parameters and metric come from the child jobs' properties (``hyperparameters``,
``score``), and the best trial is the best scored child.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import uuid
from pathlib import Path
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.resources import Trial, TuningJob
from cloudserve.specs import Choice, IntRange, LogUniform, TuningSpec, Uniform
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml._api import PROVIDER, AzureApi
from cloudserve_azureml._states import job_status
from cloudserve_azureml._validate import entry_path

__all__ = ["get_tuning_job", "search_space", "tune", "tuning_job"]

# Azure has no Hyperband sampler; its answer to "stop poor configurations early" is an early
# termination policy, so hyperband runs as random sampling with the configured policy always on.
SAMPLING = {"random": "random", "grid": "grid", "bayesian": "bayesian", "hyperband": "random"}
WRAPPER = pkg.TRIAL_WRAPPER_NAME
EXPERIMENT = "cloudserve-tuning"
IGNORE = shutil.ignore_patterns("__pycache__", ".git", ".venv", "*.pyc")


def search_space(spec: TuningSpec) -> dict[str, Any]:
    """cloudserve's parameters as Azure sweep distributions."""
    from azure.ai.ml import sweep

    out: dict[str, Any] = {}
    for name, param in spec.search_space.items():
        if isinstance(param, Uniform):
            out[name] = sweep.Uniform(min_value=param.low, max_value=param.high)
        elif isinstance(param, LogUniform):  # Azure draws exp(uniform(min, max))
            out[name] = sweep.LogUniform(
                min_value=math.log(param.low), max_value=math.log(param.high)
            )
        elif isinstance(param, Choice):
            out[name] = sweep.Choice(values=list(param.values))
        else:
            out[name] = _int_range(param, spec.strategy)
    return out


def _int_range(param: IntRange, strategy: str) -> Any:
    from azure.ai.ml import sweep

    if strategy == "grid":  # Azure's grid sampler takes choice only
        return sweep.Choice(values=list(range(param.low, param.high + 1, param.step)))
    if param.log:
        return sweep.QLogUniform(
            min_value=math.log(param.low), max_value=math.log(param.high), q=param.step
        )
    if param.low == 0 and param.step == 1 and strategy != "bayesian":
        return sweep.Randint(upper=param.high + 1)  # randint draws from [0, upper)
    return sweep.QUniform(min_value=param.low, max_value=param.high, q=param.step)


def early_termination(api: AzureApi, spec: TuningSpec) -> Any:
    """The policy for ``early_stopping`` (always on for hyperband), or None."""
    if not (spec.early_stopping or spec.strategy == "hyperband"):
        return None
    from azure.ai.ml import sweep

    kind = api.cfg.early_termination
    if kind == "bandit":
        return sweep.BanditPolicy(slack_factor=0.1, evaluation_interval=1, delay_evaluation=1)
    if kind == "median_stopping":
        return sweep.MedianStoppingPolicy(evaluation_interval=1, delay_evaluation=1)
    return sweep.TruncationSelectionPolicy(
        truncation_percentage=20, evaluation_interval=1, delay_evaluation=1
    )


def _code_dir(api: AzureApi, spec: TuningSpec, job_name: str) -> tuple[Path, list[str]]:
    """A copy of the training code with the wrapper beside it, and the trial's argv."""
    train = spec.train
    if train.command is not None:
        source = Path(train.source_dir or ".")
        argv = list(train.command)
    else:
        entry = entry_path(spec).resolve()
        source = Path(train.source_dir).resolve() if train.source_dir else entry.parent
        argv = ["python", str(entry.relative_to(source))]
    target = api.workdir / "tune" / job_name
    shutil.copytree(source, target, ignore=IGNORE)
    (target / WRAPPER).write_text(pkg.trial_wrapper())
    if argv[0] in ("python", "python3"):
        argv = argv[1:]  # the wrapper runs .py files with its own interpreter
    return target, argv


def _command_job(api: AzureApi, spec: TuningSpec, job_name: str) -> Any:
    from azure.ai.ml import Input, command
    from azure.ai.ml.entities import Environment

    code, argv = _code_dir(api, spec, job_name)
    parts = ["python", WRAPPER, *(shlex.quote(a) for a in argv)]
    for key, value in spec.train.hyperparameters.items():
        parts += [f"--{key}", shlex.quote(str(value))]
    inputs: dict[str, Any] = {}
    for key, path in spec.train.inputs.items():
        kind = "uri_file" if Path(path.split("?")[0]).suffix else "uri_folder"
        inputs[key] = Input(type=kind, path=path)
        parts += [f"--{key}", f"${{{{inputs.{key}}}}}"]
    for key in spec.search_space:
        inputs[key] = _default(spec.search_space[key])
        parts += [f"--{key}", f"${{{{inputs.{key}}}}}"]
    environment = api.cfg.training_environment or Environment(
        image=spec.train.image or api.cfg.environment_image,
        conda_file=None if spec.train.image else pkg.conda_file(_trial_requirements(api, code)),
    )
    return command(
        code=str(code),
        command=" ".join(parts),
        inputs=inputs,
        environment=environment,
        compute=api.cfg.compute,
        environment_variables={
            **spec.train.env,
            "CLOUDSERVE_METRIC": spec.objective.metric,
            "CLOUDSERVE_METRIC_REGEX": spec.objective.pattern,
        },
        experiment_name=EXPERIMENT,
    )


def _trial_requirements(api: AzureApi, code: Path) -> list[str]:
    """The trial environment's pip lines: MLflow (Azure records logged metrics through it) and
    every distribution the training code imports, pinned at the versions installed here."""
    scripts = [f for f in code.rglob("*.py") if f.name != WRAPPER]
    return [
        "mlflow",
        "azureml-mlflow",
        *pkg.script_requirements(scripts),
        *api.cfg.extra_requirements,
    ]


def _default(param: Any) -> Any:
    """A placeholder value of the right type (the sweep replaces it)."""
    if isinstance(param, Choice):
        return param.values[0]
    return param.low


def _sampling(spec: TuningSpec) -> Any:
    if spec.strategy in ("random", "hyperband") and spec.seed is not None:
        from azure.ai.ml.sweep import RandomSamplingAlgorithm

        return RandomSamplingAlgorithm(seed=spec.seed)
    return SAMPLING[spec.strategy]


def tune(api: AzureApi, spec: TuningSpec) -> TuningJob:
    """Submit the sweep (a named job that already exists is returned, not submitted again)."""
    job_name = spec.name or f"cs-sweep-{uuid.uuid4().hex[:12]}"
    if spec.name:
        try:
            return get_tuning_job(api, spec.name)
        except NotFound:
            pass
    trial = _command_job(api, spec, job_name)
    bound = trial(**search_space(spec))
    sweep_job = bound.sweep(
        primary_metric=spec.objective.metric,
        goal=spec.objective.goal,
        sampling_algorithm=_sampling(spec),
        compute=api.cfg.compute,
        early_termination_policy=early_termination(api, spec),
    )
    rounds = math.ceil(spec.max_trials / spec.parallel_trials)
    sweep_job.set_limits(
        max_total_trials=spec.max_trials,
        max_concurrent_trials=spec.parallel_trials,
        timeout=spec.train.max_runtime_s * rounds,
        trial_timeout=spec.train.max_runtime_s,
    )
    sweep_job.name = job_name
    sweep_job.experiment_name = EXPERIMENT  # .sweep() does not carry the command's over
    sweep_job.display_name = job_name
    sweep_job.tags = {**api.cfg.tags, "cloudserve": "true"}
    api.sdk(api.ml.jobs.create_or_update, sweep_job)
    return get_tuning_job(api, job_name)


def get_tuning_job(api: AzureApi, job_id: str) -> TuningJob:
    """The sweep's state, its trials (child jobs) and the best scored one."""
    job = api.sdk(api.ml.jobs.get, job_id)
    if job.type != "sweep":
        raise NotFound(f"{job_id} is a {job.type} job, not a sweep", provider=PROVIDER)
    return tuning_job(api, job)


def tuning_job(api: AzureApi, job: Any) -> TuningJob:
    """A sweep job the SDK returned, with its trials, as a :class:`TuningJob`."""
    job_id = job.name
    goal = str(job.objective.goal).lower() if job.objective else "maximize"
    children = api.sdk(lambda: list(api.ml.jobs.list(parent_job_name=job_id)))
    trials = [_trial(c) for c in children if c is not None]
    scored = [t for t in trials if t.value is not None]
    pick = max if goal.endswith("maximize") else min
    best = pick(scored, key=lambda t: t.value) if scored else None  # type: ignore[arg-type,return-value]
    return TuningJob(
        id=job.name,
        provider=PROVIDER,
        status=job_status(job.status),
        objective=job.objective.primary_metric if job.objective else "",
        goal="minimize" if goal.endswith("minimize") else "maximize",
        trials=trials,
        best_trial=best,
        message=(job.properties or {}).get("azureml.error"),
        raw=job,
    )


def _trial(child: Any) -> Trial:
    props = dict(child.properties or {})
    params = json.loads(props.get("hyperparameters") or "{}")
    score = props.get("score")
    return Trial(
        id=child.name,
        params={k.removeprefix("--").removeprefix("inputs."): v for k, v in params.items()},
        status=job_status(child.status),
        value=float(score) if score not in (None, "") else None,
        raw=child,
    )
