"""Local hyperparameter tuning on Optuna, with the training run as a subprocess.

Each trial runs the ``TrainSpec`` entrypoint (a Python script, run with this interpreter) or
``command`` with the trial's hyperparameters as ``--name value`` arguments and as
``CLOUDSERVE_HP_<NAME>`` environment variables, plus:

==============================  ===========================================================
``CLOUDSERVE_MODEL_DIR``        where the script saves its model (kept as the trial artifact)
``CLOUDSERVE_METRICS_FILE``     a JSON Lines file the script may append ``{"<metric>": v}`` to
``CLOUDSERVE_TRIAL_ID``         the trial number
``CLOUDSERVE_INPUT_<CHANNEL>``  each ``TrainSpec.inputs`` entry (``train`` → ``..._TRAIN``)
==============================  ===========================================================

The objective is read from the metrics file or from stdout lines matched by the objective's
regex (the way SageMaker metric definitions work). Every value seen is an intermediate value;
with ``early_stopping`` (or ``strategy="hyperband"``) a trial whose intermediate values fall
behind is pruned: its process is stopped and it ends CANCELLED. The last value is the trial's
result. Strategies: ``random``, ``grid`` (every combination of the discrete space, up to
``max_trials``), ``bayesian`` (TPE) and ``hyperband`` (TPE with Hyperband pruning).
``parallel_trials`` trials run at once. Each trial keeps its log and artifacts under
``<state>/tuning/<job>/trial-NNN/``. The runner is
``python -m cloudserve.local.tuning --config JSON --job ID``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cloudserve.errors import AlreadyExists, InvalidRequest, NotFound
from cloudserve.local.config import LocalConfig
from cloudserve.local.locks import RunnerBusy, runner_lock
from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.local.supervisor import ProcessRef, python_module, runner_main, spawn, tail
from cloudserve.resources import JobStatus, Trial, TuningJob
from cloudserve.specs import Choice, IntRange, LogUniform, ModelSpec, TuningSpec, Uniform

__all__ = ["best_model", "read_job", "run", "submit"]

POLL_S = 0.1


def _suggest(trial: Any, name: str, param: Any) -> Any:
    if isinstance(param, Uniform):
        return trial.suggest_float(name, param.low, param.high)
    if isinstance(param, LogUniform):
        return trial.suggest_float(name, param.low, param.high, log=True)
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    assert isinstance(param, Choice)
    return trial.suggest_categorical(name, param.values)


def _grid(spec: TuningSpec) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for name, p in spec.search_space.items():
        if isinstance(p, IntRange):
            grid[name] = list(range(p.low, p.high + 1, p.step))
        elif isinstance(p, Choice):
            grid[name] = list(p.values)
    return grid


def _study(spec: TuningSpec) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = spec.seed
    if spec.strategy == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    elif spec.strategy == "grid":
        sampler = optuna.samplers.GridSampler(_grid(spec), seed=seed)
    else:
        startup = max(2, min(10, spec.max_trials // 3))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if spec.strategy == "hyperband":
        pruner: Any = optuna.pruners.HyperbandPruner()
    elif spec.early_stopping:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    else:
        pruner = optuna.pruners.NopPruner()
    return optuna.create_study(direction=spec.objective.goal, sampler=sampler, pruner=pruner)


def _argv(spec: TuningSpec) -> list[str]:
    train = spec.train
    if train.command:
        return list(train.command)
    assert train.entrypoint is not None
    entry = train.entrypoint
    if train.source_dir and not Path(entry).is_absolute():
        entry = str(Path(train.source_dir) / entry)
    return [sys.executable, entry] if entry.endswith(".py") else [entry]


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


class TrialRun:
    """One training subprocess: feeds intermediate values to Optuna and prunes on request."""

    def __init__(self, runner: Runner, trial: Any):
        self.runner, self.trial = runner, trial
        self.dir = runner.work / f"trial-{trial.number:03d}"
        self.model_dir = self.dir / "model"
        self.metrics_file = self.dir / "metrics.jsonl"
        self.log = self.dir / "train.log"
        self.values: list[float] = []
        self._metrics_pos = 0

    def command(self, params: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        spec = self.runner.spec
        hp = {**spec.train.hyperparameters, **params}
        argv = _argv(spec) + [x for k, v in hp.items() for x in (f"--{k}", str(v))]
        env = {
            **os.environ,
            **spec.train.env,
            "PYTHONUNBUFFERED": "1",
            "CLOUDSERVE_MODEL_DIR": str(self.model_dir),
            "CLOUDSERVE_METRICS_FILE": str(self.metrics_file),
            "CLOUDSERVE_TRIAL_ID": str(self.trial.number),
        }
        env.update({f"CLOUDSERVE_HP_{_env_name(k)}": str(v) for k, v in hp.items()})
        env.update({f"CLOUDSERVE_INPUT_{_env_name(k)}": v for k, v in spec.train.inputs.items()})
        return argv, env

    def _seen(self, value: float) -> bool:
        """Report an intermediate value; True when Optuna says prune."""
        step = len(self.values)
        self.values.append(value)
        self.trial.report(value, step)
        self.runner.save_trial(self.trial.number, intermediate=self.values)
        return bool(self.trial.should_prune())

    def _metrics_lines(self) -> list[float]:
        if not self.metrics_file.exists():
            return []
        with self.metrics_file.open("rb") as fh:
            fh.seek(self._metrics_pos)
            data = fh.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._metrics_pos += len(complete)
        out = []
        metric = self.runner.spec.objective.metric
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                record = loads(line)
                if isinstance(record, dict) and metric in record:
                    out.append(float(record[metric]))
        return out

    def run(self, params: dict[str, Any]) -> float:
        import optuna

        self.model_dir.mkdir(parents=True, exist_ok=True)
        argv, env = self.command(params)
        pattern = re.compile(self.runner.spec.objective.pattern)
        lines: queue.Queue[str | None] = queue.Queue()
        deadline = time.monotonic() + self.runner.spec.train.max_runtime_s
        with self.log.open("w") as log:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=self.runner.spec.train.source_dir or None,
            )
            reader = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
            reader.start()
            ended = False
            while not ended:
                values: list[float] = []
                try:
                    line = lines.get(timeout=POLL_S)
                    while line is not None:
                        log.write(line)
                        m = pattern.search(line)
                        if m:
                            values.append(float(m.group(1)))
                        line = lines.get_nowait()
                    ended = line is None
                except queue.Empty:
                    pass  # nothing printed in this poll; check the metrics file and the clock
                values += self._metrics_lines()
                for v in values:
                    if self._seen(v):
                        _stop(proc)
                        log.write(f"\n[cloudserve] pruned at step {len(self.values) - 1}\n")
                        raise optuna.TrialPruned(f"pruned at step {len(self.values) - 1}")
                if time.monotonic() > deadline:
                    _stop(proc)
                    raise RuntimeError(
                        f"exceeded max_runtime_s={self.runner.spec.train.max_runtime_s}"
                    )
            code = proc.wait()
            for v in self._metrics_lines():
                self._seen(v)
        if code != 0:
            raise RuntimeError(f"training exited with code {code}: {tail(self.log, 5)}")
        if not self.values:
            raise RuntimeError(
                f"the training never reported {self.runner.spec.objective.metric} "
                f"(regex {self.runner.spec.objective.pattern!r}, or the metrics file)"
            )
        return self.values[-1]


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Runner:
    """Runs one tuning job in this process."""

    def __init__(self, db: StateDB, job_id: str):
        row = db.one("SELECT * FROM tuning_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"tuning job {job_id} does not exist", provider="local")
        self.db, self.job_id = db, job_id
        self.spec = TuningSpec.model_validate_json(row["spec"])
        self.work = db.state_dir / "tuning" / job_id
        self.work.mkdir(parents=True, exist_ok=True)

    def save_trial(self, number: int, **fields: Any) -> None:
        """Update a trial's row (``intermediate`` and ``params`` are stored as JSON)."""
        for key in ("intermediate", "params"):
            if key in fields:
                fields[key] = dumps(fields[key])
        if "status" in fields:
            fields["status"] = fields["status"].value
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.run(
            f"UPDATE trials SET {sets} WHERE job = ? AND number = ?",
            (*fields.values(), self.job_id, number),
        )

    def objective(self, trial: Any) -> float:
        import optuna

        params = {name: _suggest(trial, name, p) for name, p in self.spec.search_space.items()}
        run = TrialRun(self, trial)
        self.db.run(
            "INSERT OR REPLACE INTO trials(job, number, params, status, log)"
            " VALUES (?, ?, ?, ?, ?)",
            (self.job_id, trial.number, dumps(params), JobStatus.RUNNING.value, str(run.log)),
        )
        try:
            value = run.run(params)
        except optuna.TrialPruned as exc:
            self.save_trial(trial.number, status=JobStatus.CANCELLED, message=str(exc))
            raise
        except Exception as exc:
            self.save_trial(trial.number, status=JobStatus.FAILED, message=str(exc)[:2000])
            raise
        artifact = str(run.model_dir) if any(run.model_dir.iterdir()) else None
        self.save_trial(trial.number, status=JobStatus.SUCCEEDED, value=value, artifact=artifact)
        return value

    def run(self) -> None:
        with runner_lock(self.work, f"tuning job {self.job_id}"):
            self._run()

    def _run(self) -> None:
        self.db.run(
            "UPDATE tuning_jobs SET status = ? WHERE id = ?", (JobStatus.RUNNING.value, self.job_id)
        )
        study = _study(self.spec)
        n_trials = self.spec.max_trials
        if self.spec.strategy == "grid":
            n_trials = min(n_trials, len(list(itertools.product(*_grid(self.spec).values()))))
        study.optimize(
            self.objective,
            n_trials=n_trials,
            n_jobs=self.spec.parallel_trials,
            catch=(Exception,),
        )
        ok = self.db.one(
            "SELECT COUNT(*) AS n FROM trials WHERE job = ? AND status = ?",
            (self.job_id, JobStatus.SUCCEEDED.value),
        )
        succeeded = ok is not None and ok["n"] > 0
        self.db.run(
            "UPDATE tuning_jobs SET status = ?, message = ?, ended_at = ? WHERE id = ?",
            (
                (JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED).value,
                None if succeeded else "no trial reported the objective; see the trial logs",
                now(),
                self.job_id,
            ),
        )


def run(config: LocalConfig, job_id: str) -> None:
    """Run a job in this process (what the runner process does)."""
    db = StateDB(config.state_dir.expanduser().resolve())
    try:
        Runner(db, job_id).run()
    except RunnerBusy as exc:
        print(f"{exc}; this runner exits", flush=True)
    except Exception as exc:
        db.run(
            "UPDATE tuning_jobs SET status = ?, message = ?, ended_at = ? WHERE id = ?",
            (JobStatus.FAILED.value, f"{type(exc).__name__}: {exc}", now(), job_id),
        )
        raise


# -- the provider side ---------------------------------------------------------------------


def submit(db: StateDB, config: LocalConfig, spec: TuningSpec) -> str:
    """Record the job and start its runner; returns the job id."""
    train = spec.train
    if train.image:
        raise InvalidRequest(
            "the local provider runs training as a subprocess; TrainSpec.image is not used "
            "(give an entrypoint or a command)",
            provider="local",
        )
    if train.entrypoint and not train.command:
        entry = Path(train.source_dir or ".") / train.entrypoint
        if not Path(train.entrypoint).is_file() and not entry.is_file():
            raise InvalidRequest(
                f"training entrypoint not found: {train.entrypoint}", provider="local"
            )
    job_id = spec.name or f"tune-{uuid.uuid4().hex[:12]}"
    text = spec.model_dump_json()
    existing = db.one("SELECT spec FROM tuning_jobs WHERE id = ?", (job_id,))
    if existing is not None:
        if existing["spec"] == text:
            return job_id
        raise AlreadyExists(f"tuning job {job_id} exists with another spec", provider="local")
    db.run(
        "INSERT INTO tuning_jobs(id, spec, status, created_at) VALUES (?, ?, ?, ?)",
        (job_id, text, JobStatus.PENDING.value, now()),
    )
    ref = spawn(
        python_module(
            "cloudserve.local.tuning", "--config", config.model_dump_json(), "--job", job_id
        ),
        log=db.state_dir / "tuning" / job_id / "runner.log",
    )
    db.run("UPDATE tuning_jobs SET pid = ?, ctime = ? WHERE id = ?", (ref.pid, ref.ctime, job_id))
    return job_id


def _trial(row: Any) -> Trial:
    return Trial(
        id=str(row["number"]),
        params=loads(row["params"]) or {},
        status=JobStatus(row["status"]),
        value=row["value"],
        intermediate=loads(row["intermediate"]) or [],
        artifact=row["artifact"],
        log=row["log"],
        message=row["message"],
        raw=dict(row),
    )


def read_job(db: StateDB, job_id: str) -> TuningJob:
    """The job, its trials and the best finished trial; a dead runner makes it FAILED."""
    row = db.one("SELECT * FROM tuning_jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"tuning job {job_id} does not exist", provider="local")
    spec = TuningSpec.model_validate_json(row["spec"])
    trials = [
        _trial(r) for r in db.all("SELECT * FROM trials WHERE job = ? ORDER BY number", (job_id,))
    ]
    scored = [t for t in trials if t.status is JobStatus.SUCCEEDED and t.value is not None]
    pick = max if spec.objective.goal == "maximize" else min
    best = pick(scored, key=lambda t: t.value) if scored else None  # type: ignore[arg-type,return-value]
    status, message = JobStatus(row["status"]), row["message"]
    if not status.is_terminal and row["pid"] and not ProcessRef(row["pid"], row["ctime"]).alive():
        status, message = JobStatus.FAILED, "the tuning runner process died"
    return TuningJob(
        id=job_id,
        provider="local",
        status=status,
        objective=spec.objective.metric,
        goal=spec.objective.goal,
        trials=trials,
        best_trial=best,
        message=message,
        raw=dict(row),
    )


def best_model(
    job: TuningJob, *, name: str, version: str | None, framework: str | None
) -> tuple[ModelSpec, dict[str, Any]]:
    """The best trial's artifact as a ModelSpec, and the lineage to register it with."""
    best = job.best_trial
    if best is None or not best.artifact:
        raise InvalidRequest(
            f"tuning job {job.id} has no finished trial with a saved model "
            "(the script saves it to $CLOUDSERVE_MODEL_DIR)",
            provider="local",
        )
    spec = TuningSpec.model_validate_json(job.raw["spec"])
    data = next(iter(spec.train.inputs.values()), None)
    lineage: dict[str, Any] = {
        "tuning_job": job.id,
        "trial": best.id,
        "hyperparameters": {**spec.train.hyperparameters, **best.params},
        "metrics": {job.objective: best.value},
    }
    if data:
        lineage["training_data"] = data
    model = ModelSpec(
        name=name,
        version=version or f"{job.id}-t{best.id}",
        artifact=best.artifact,
        framework=framework,
    )
    return model, lineage


def main(argv: list[str] | None = None) -> None:
    """Entry point of the runner process."""
    runner_main("cloudserve.local.tuning", run, argv)


if __name__ == "__main__":
    main()
