"""Jobs in the fake: batch-endpoint invocations and sweep jobs with child trials.

A job moves ``NotStarted`` → ``Queued`` → ``Running`` over ``job_polls`` reads of it (each GET of
the job, or listing its children, is one read), then does its work and ends:

- a **batch job** runs the deployment's own uploaded scoring script under the batch contract:
  ``init()`` once with the model mounted at ``AZUREML_MODEL_DIR`` the way Azure mounts it, then
  ``run(mini_batch)`` per ``miniBatchSize`` input files, each returned item one line of
  ``predictions.csv`` (``append_row``); a ``run()`` that raises fails its files, and more
  failed files than ``errorThreshold`` fail the job;
- a **sweep job** starts one wave of up to ``maxConcurrentTrials`` child trials per read, each
  running the trial command (the user's training script, as a subprocess) with parameters sampled
  from the search space, and reads the primary metric from its output; the best child is
  recorded on the parent as Azure does (``best_child_run_id``, ``score``).

``POST …/jobs/{name}/cancel`` (``jobs.begin_cancel``) moves a job that has not ended to
``CancelRequested``; its next read makes it ``Canceled``, with every trial not yet ended. A job
that has ended is left as it is.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudserve_azureml.testing._container import EntryScript
from cloudserve_azureml.testing._images import build_error

if TYPE_CHECKING:
    from cloudserve_azureml.testing._service import FakeAzureMLService

TERMINAL = {"Completed", "Failed", "Canceled"}
DEFAULT_METRIC_REGEX = r"\s*[=:]\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
PLACEHOLDER = re.compile(r"\$\{\{\s*(search_space|inputs)\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass
class JobState:
    """What the fake tracks about a job beyond its stored ARM resource."""

    name: str
    kind: str  # "batch" or "sweep"
    polls_left: int
    deployment_key: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)


class FakeJobs:
    """Batch and sweep jobs of one fake workspace (called with the service lock held)."""

    def __init__(self, service: FakeAzureMLService, job_polls: int):
        self.service = service
        self.job_polls = job_polls
        self.states: dict[str, JobState] = {}

    # -- creation --------------------------------------------------------------------------

    def invoke_batch(self, endpoint_key: str, deployment: str | None, body: dict) -> dict:
        """A batch endpoint invocation: store the job, answer with it."""
        s = self.service
        endpoint = s.get(endpoint_key)
        assert endpoint is not None
        props = body.get("properties") or {}
        dep_name = deployment or (endpoint["properties"].get("defaults") or {}).get(
            "deploymentName"
        )
        dep_key = f"{endpoint_key}/deployments/{dep_name}"
        if not dep_name or s.get(dep_key) is None:
            raise LookupError(f"batch endpoint {endpoint['name']} has no deployment {dep_name}")
        name = props.get("name") or props.get("jobName") or f"batchjob-{uuid.uuid4().hex[:12]}"
        inputs = {
            k: {"jobInputType": _io_type(v.get("jobInputType")), "uri": v.get("uri")}
            for k, v in (props.get("inputData") or {}).items()
        }
        out_uri = f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/score/"
        outputs = {"score": {"jobOutputType": "uri_folder", "uri": out_uri}}
        for key, out in (props.get("outputData") or {}).items():
            outputs[key] = {"jobOutputType": _io_type(out.get("jobOutputType")), "uri": out["uri"]}
        res = s._store(
            f"jobs/{name}",
            {
                "properties": {
                    "jobType": "Pipeline",
                    "status": "NotStarted",
                    "displayName": name,
                    "experimentName": endpoint["name"],
                    "properties": {
                        **{k: str(v) for k, v in (props.get("properties") or {}).items()},
                        "azureml.batchrun": "true",
                        "azureml.deploymentname": dep_name,
                        "azureml.endpointname": endpoint["name"],
                    },
                    "tags": {},
                    "jobs": {},
                    "settings": {},
                    "inputs": inputs,
                    "outputs": outputs,
                }
            },
        )
        self.states[name.lower()] = JobState(
            name, "batch", self.job_polls, deployment_key=s.norm(dep_key)
        )
        return res

    def put_job(self, res: dict[str, Any], old: dict[str, Any] | None) -> None:
        """A job PUT through ARM (a sweep starts its life here; other jobs are just stored)."""
        props = res["properties"]
        if old is not None and res["name"].lower() in self.states:
            props["status"] = old["properties"].get("status")  # a re-PUT keeps its progress
            return
        props["status"] = "NotStarted"
        if props.get("jobType") == "Sweep":
            env = self.service._asset((props.get("trial") or {}).get("environmentId") or "")
            conda = ((env or {}).get("properties") or {}).get("condaFile")
            error = build_error(conda) if conda and self.service.resolve_environments else None
            if error is not None:  # Azure builds the trial image first: the sweep fails
                return _fail(props, error)
            state = JobState(res["name"], "sweep", self.job_polls)
            state.pending = self._sample(props)
            self.states[res["name"].lower()] = state

    # -- progress ----------------------------------------------------------------------------

    def read(self, name: str) -> None:
        """One read of a job: move it one step on."""
        state = self.states.get(name.lower())
        res = self.service.get(f"jobs/{name}")
        if state is None or res is None:
            return
        props = res["properties"]
        if props.get("status") in TERMINAL:
            return
        if props.get("status") == "CancelRequested":
            props["status"] = "Canceled"
            for trial in state.trials:
                child = self.service.get(f"jobs/{trial}")
                if child is not None and child["properties"].get("status") not in TERMINAL:
                    child["properties"]["status"] = "Canceled"
            return
        if state.polls_left > 0:
            state.polls_left -= 1
            props["status"] = "Queued" if props["status"] == "NotStarted" else "Running"
            return
        props["status"] = "Running"
        if state.kind == "batch":
            self._run_batch(state, res)
        else:
            self._sweep_wave(state, res)

    def cancel(self, name: str) -> bool:
        """Ask a job to stop; False when it had already ended (it is left as it is)."""
        res = self.service.get(f"jobs/{name}")
        assert res is not None
        props = res["properties"]
        if props.get("status") in TERMINAL:
            return False
        props["status"] = "CancelRequested"
        return True

    # -- batch -------------------------------------------------------------------------------

    def _run_batch(self, state: JobState, job: dict[str, Any]) -> None:
        s = self.service
        props = job["properties"]
        assert state.deployment_key is not None
        dep = s.get(state.deployment_key)
        if dep is None:
            return _fail(props, "the batch deployment was deleted while the job ran")
        dprops = dep["properties"]
        workdir = s.workdir / "jobs" / job["name"]  # type: ignore[operator]
        try:
            files = self._input_files(props["inputs"], workdir / "inputs")
            script = self._entry_script(dep, workdir)
        except Exception as exc:  # the job fails the way Azure reports a setup error
            return _fail(props, f"{type(exc).__name__}: {exc}")
        size = int(dprops.get("miniBatchSize") or 10)
        lines: list[str] = []
        failed: list[str] = []
        for start in range(0, len(files), size):
            batch = [str(f) for f in files[start : start + size]]
            try:
                lines.extend(str(line) for line in script.run_mini_batch(batch))
            except Exception as exc:  # run() raised: every file of the mini-batch failed
                failed.extend(f"{Path(f).name}: {type(exc).__name__}: {exc}" for f in batch)
        threshold = int(dprops.get("errorThreshold", -1))
        if threshold >= 0 and len(failed) > threshold:
            return _fail(props, f"{len(failed)} failed items exceed errorThreshold {threshold}")
        out_uri = props["outputs"]["score"]["uri"]
        out_name = dprops.get("outputFileName") or "predictions.csv"
        prefix, _ = s.datastore_blobs(out_uri)
        payload = "".join(line + "\n" for line in lines).encode()
        s.blobs.put(s.storage_account, s.container, f"{prefix}/{out_name}".lstrip("/"), payload)
        props["properties"]["azureml.failed_items"] = str(len(failed))
        props["status"] = "Completed"

    def _input_files(self, inputs: dict[str, Any], dest: Path) -> list[Path]:
        files: list[Path] = []
        for key, spec in inputs.items():
            root = self._download_input(spec, dest / key)
            files += [root] if root.is_file() else [f for f in root.rglob("*") if f.is_file()]
        return sorted(files)

    def _resolve_data_uri(self, ref: str) -> str:
        """A datastore URI from a datastore URI, a data asset's ARM id or ``azureml:name:ver``."""
        if ref.startswith("azureml://"):
            return ref
        asset = self.service._asset(ref)
        m = re.match(r"^azureml:([^:/@]+):([^/]+)$", ref)
        if asset is None and m:
            asset = self.service.get(f"data/{m.group(1)}/versions/{m.group(2)}")
        if asset is None:
            raise FileNotFoundError(f"data asset {ref} was not found")
        return str(asset["properties"]["dataUri"])

    def _entry_script(self, dep: dict[str, Any], workdir: Path) -> Any:
        """The deployment's uploaded scoring script, initialised under the mounted model."""
        code = dep["properties"].get("codeConfiguration") or {}
        asset = self.service._asset(code.get("codeId") or "")
        if asset is None:
            raise LookupError("the batch deployment has no code asset")
        model_dir = self.service.mount_deployment_model(dep, workdir / "mount")
        self.service.materialize_code(asset, workdir / "code")
        script = workdir / "code" / code.get("scoringScript", "batch_score.py")
        env = dict(dep["properties"].get("environmentVariables") or {})
        return EntryScript(script, model_dir, env)

    # -- sweep -------------------------------------------------------------------------------

    def _sample(self, props: dict[str, Any]) -> list[dict[str, Any]]:
        """The trials' parameters: the grid, or draws from the space (random; bayesian too)."""
        space = props.get("searchSpace") or {}
        limits = props.get("limits") or {}
        total = int(limits.get("maxTotalTrials") or 1)
        algo = (props.get("samplingAlgorithm") or {}).get("samplingAlgorithmType", "Random")
        if algo.lower() == "grid":
            names = sorted(space)
            grid = itertools.product(*(space[n][1][0] for n in names))
            return [dict(zip(names, values, strict=True)) for values in grid][:total]
        seed = (props.get("samplingAlgorithm") or {}).get("seed")
        rng = self.service.rng if seed is None else random.Random(seed)
        return [{n: _draw(rng, expr) for n, expr in space.items()} for _ in range(total)]

    def _sweep_wave(self, state: JobState, job: dict[str, Any]) -> None:
        props = job["properties"]
        limits = props.get("limits") or {}
        wave = int(limits.get("maxConcurrentTrials") or 1)
        start = len(state.trials)
        batch = state.pending[:wave]
        # The wave's trials run at once, as maxConcurrentTrials allows on Azure.
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            names = pool.map(
                lambda ip: self._run_trial(job, start + ip[0], ip[1]), enumerate(batch)
            )
            state.trials.extend(names)
        del state.pending[:wave]
        if not state.pending:
            self._finish_sweep(state, job)

    def _run_trial(self, parent: dict[str, Any], index: int, params: dict[str, Any]) -> str:
        s = self.service
        props = parent["properties"]
        trial = props.get("trial") or {}
        name = f"{parent['name']}_{index}"
        workdir = s.workdir / "jobs" / name  # type: ignore[operator]
        status, score, log = "Failed", None, ""
        try:
            code = s._asset(trial.get("codeId") or "")
            if code is None:
                raise LookupError("the trial has no code asset")
            s.materialize_code(code, workdir / "code")
            argv = self._trial_argv(
                trial.get("command", ""), params, props.get("inputs") or {}, workdir
            )
            limit = _seconds((props.get("limits") or {}).get("trialTimeout")) or 600
            env = {**os.environ, **(trial.get("environmentVariables") or {})}
            done = subprocess.run(
                argv,
                cwd=workdir / "code",
                env=env,
                capture_output=True,
                text=True,
                timeout=limit,
            )
            log = done.stdout + done.stderr
            score = _metric(log, props, env)
            status = "Completed" if done.returncode == 0 else "Failed"
        except Exception as exc:  # a trial that cannot start fails alone, like on Azure
            log += f"{type(exc).__name__}: {exc}"
        run_props = {"hyperparameters": json.dumps(params), "azureml.log": log[-2000:]}
        if score is not None:
            run_props["score"] = repr(score)
        s._store(
            f"jobs/{name}",
            {
                "properties": {
                    "jobType": "Command",
                    "status": status,
                    "displayName": name,
                    "experimentName": props.get("experimentName"),
                    "parentJobName": parent["name"],
                    "properties": run_props,
                    "command": trial.get("command"),
                    "codeId": trial.get("codeId"),
                    "environmentId": trial.get("environmentId"),
                    "computeId": props.get("computeId"),
                    "tags": {},
                }
            },
        )
        return name

    def _trial_argv(
        self, command: str, params: dict[str, Any], inputs: dict[str, Any], workdir: Path
    ) -> list[str]:
        def fill(match: re.Match[str]) -> str:
            kind, key = match.group(1), match.group(2)
            if kind == "search_space":
                return shlex.quote(str(params[key]))
            spec = inputs.get(key) or {}
            if "uri" in spec:  # a data input: downloaded for the trial, like a mounted input
                return shlex.quote(str(self._download_input(spec, workdir / "inputs" / key)))
            return shlex.quote(str(spec.get("value", "")))

        argv = shlex.split(PLACEHOLDER.sub(fill, command))
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the trial runs in the fake's own interpreter
        return argv

    def _download_input(self, spec: dict[str, Any], dest: Path) -> Path:
        uri = self._resolve_data_uri(spec["uri"])
        prefix, blobs = self.service.datastore_blobs(uri)
        if not blobs:
            raise FileNotFoundError(f"no data under {spec['uri']}")
        for name, data in blobs.items():
            target = dest / (name[len(prefix) :].lstrip("/") or Path(name).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if "file" in str(spec.get("jobInputType", "")).lower():
            return dest / Path(next(iter(blobs))).name
        return dest

    def _finish_sweep(self, state: JobState, job: dict[str, Any]) -> None:
        props = job["properties"]
        goal = ((props.get("objective") or {}).get("goal") or "maximize").lower()
        scored = []
        for name in state.trials:
            child = self.service.get(f"jobs/{name}")
            value = (child or {}).get("properties", {}).get("properties", {}).get("score")
            if value is not None:
                scored.append((float(value), name))
        if scored:
            best = (max if goal == "maximize" else min)(scored)
            props["properties"]["best_child_run_id"] = best[1]
            props["properties"]["score"] = repr(best[0])
        completed = any(
            (self.service.get(f"jobs/{n}") or {}).get("properties", {}).get("status") == "Completed"
            for n in state.trials
        )
        if completed:
            props["status"] = "Completed"
        else:
            _fail(props, "every trial failed")

    def children(self, parent: str) -> list[dict[str, Any]]:
        """The child runs of a job, in run-history shape."""
        self.read(parent)
        state = self.states.get(parent.lower())
        if state is None:
            return []
        runs = []
        for number, name in enumerate(state.trials, start=1):
            child = self.service.get(f"jobs/{name}")
            if child is None:
                continue
            p = child["properties"]
            runs.append(
                {
                    "runId": name,
                    "runNumber": number,
                    "parentRunId": state.name,
                    "rootRunId": state.name,
                    "experimentId": p.get("experimentName"),
                    "status": p["status"],
                    "displayName": name,
                    "properties": p.get("properties") or {},
                    "tags": p.get("tags") or {},
                    "createdUtc": child["systemData"]["createdAt"],
                    "runType": "azureml.scriptrun",
                }
            )
        return runs


def _io_type(wire: str | None) -> str:
    return {"urifile": "uri_file", "urifolder": "uri_folder"}.get(
        (wire or "").replace("_", "").lower(), "uri_folder"
    )


def _fail(props: dict[str, Any], message: str) -> None:
    props["status"] = "Failed"
    props.setdefault("properties", {})["azureml.error"] = message


def _draw(rng: Any, expr: list[Any]) -> Any:
    """One value of an Azure search-space expression (``["loguniform", [-9, -2]]``)."""
    kind, args = expr[0].lower(), expr[1]
    if kind == "choice":
        return rng.choice(args[0])
    if kind == "randint":
        return rng.randrange(int(args[0]))
    if kind == "uniform":
        return rng.uniform(args[0], args[1])
    if kind == "loguniform":
        return math.exp(rng.uniform(args[0], args[1]))
    if kind == "quniform":
        low, high, q = args
        value = min(max(round(rng.uniform(low, high) / q) * q, low), high)
        # integral bounds and step give integers (what an integer hyperparameter needs)
        return int(value) if all(float(v).is_integer() for v in args) else float(value)
    if kind == "qloguniform":
        low, high, q = args
        value = round(math.exp(rng.uniform(low, high)) / q) * q
        return int(value) if float(q).is_integer() else float(value)
    raise ValueError(f"the fake cannot sample {expr[0]}")


def _metric(log: str, props: dict[str, Any], env: dict[str, str]) -> float | None:
    """The last value of the primary metric the trial printed."""
    metric = (props.get("objective") or {}).get("primaryMetric", "")
    regex = env.get("CLOUDSERVE_METRIC_REGEX") or (re.escape(metric) + DEFAULT_METRIC_REGEX)
    values = [float(m.group(1)) for m in re.finditer(regex, log)]
    return values[-1] if values else None


def _seconds(iso: str | None) -> float | None:
    """Seconds of an ISO-8601 duration such as ``PT10M`` or ``PT1H30M5S``."""
    if not iso:
        return None
    m = re.match(r"^P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?$", iso)
    if not m:
        return None
    d, h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + sec
