"""What the fake's batch transform and tuning jobs really do.

A transform job reads every object under its S3 input prefix, splits it into records
(``SplitType=Line``), sends them to the model container in mini-batches no larger than
``MaxPayloadInMB`` (``BatchStrategy=MultiRecord``) and writes ``<input>.out`` with the responses
joined by lines (``AssembleWith=Line``). A tuning job samples hyperparameters from its ranges
(honouring each range's scaling type, the strategy and ``RandomSeed``), runs the script-mode
training program from ``sagemaker_submit_directory`` once per trial, and reads the objective from
the output with the job's metric-definition regex — so trial values are real.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID

from cloudserve_sagemaker.testing._container import Container, ContainerError

__all__ = ["run_transform", "run_tuning", "sample_trials"]

TRIAL_TIMEOUT_S = 120


def run_transform(job: Any, container: Callable[[], Container]) -> str | None:
    """Transform the job's input into its output; the failure reason, or None on success."""
    from cloudserve_sagemaker.testing._service import _s3_get, _s3_put, s3_list

    source = job.transform_input["DataSource"]["S3DataSource"]["S3Uri"]
    content_type = job.transform_input.get("ContentType", "text/csv")
    split = job.transform_input.get("SplitType", "None")
    out_cfg = job.transform_output
    accept = out_cfg.get("Accept", "application/jsonlines")
    limit = int(float(job.max_payload_in_mb or 6) * 1024 * 1024)
    inputs = s3_list(source)
    if not inputs:
        return f"ClientError: no input objects under {source}"
    try:
        served = container()
        for uri in inputs:
            data = _s3_get(uri)
            records = [r for r in data.splitlines() if r.strip()] if split == "Line" else [data]
            batches = _mini_batches(records, limit, job.batch_strategy == "MultiRecord")
            parts = [served.invoke(b"\n".join(b) + b"\n", content_type, accept)[0] for b in batches]
            if out_cfg.get("AssembleWith") == "Line":
                parts = [p if p.endswith(b"\n") else p + b"\n" for p in parts]
            body = b"".join(parts)
            relative = uri[len(source.rstrip("/")) :].lstrip("/") or uri.rsplit("/", 1)[-1]
            _s3_put(f"{out_cfg['S3OutputPath'].rstrip('/')}/{relative}.out", body)
    except ContainerError as exc:
        return f"ClientError: See job logs for more information ({exc.message})"
    return None


def _mini_batches(records: list[bytes], limit: int, multi: bool) -> list[list[bytes]]:
    if not multi:
        return [[r] for r in records]
    batches: list[list[bytes]] = [[]]
    size = 0
    for r in records:
        if batches[-1] and size + len(r) + 1 > limit:
            batches.append([])
            size = 0
        batches[-1].append(r)
        size += len(r) + 1
    return batches


def _arn(region: str, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{DEFAULT_ACCOUNT_ID}:{kind}/{name}"


def _float_sample(rng: random.Random, lo: float, hi: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if scaling == "ReverseLogarithmic":
        return hi + lo - math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.uniform(lo, hi)


def sample_trials(config: dict[str, Any]) -> list[dict[str, str]]:
    """Hyperparameter sets for a tuning config: a grid for ``Grid``, seeded draws otherwise."""
    ranges = config.get("ParameterRanges", {})
    limit = int(config["ResourceLimits"]["MaxNumberOfTrainingJobs"])
    ints = ranges.get("IntegerParameterRanges", [])
    floats = ranges.get("ContinuousParameterRanges", [])
    cats = ranges.get("CategoricalParameterRanges", [])
    if config.get("Strategy") == "Grid":
        axes = [
            (r["Name"], [str(v) for v in range(int(r["MinValue"]), int(r["MaxValue"]) + 1)])
            for r in ints
        ]
        axes += [(r["Name"], list(r["Values"])) for r in cats]
        grid = itertools.product(*(values for _, values in axes))
        return [
            dict(zip([n for n, _ in axes], combo, strict=True))
            for combo in itertools.islice(grid, limit)
        ]
    rng = random.Random(config.get("RandomSeed", 0))
    trials = []
    for _ in range(limit):
        params: dict[str, str] = {}
        for r in ints:
            value = _float_sample(
                rng,
                float(r["MinValue"]),
                float(r["MaxValue"]) + 0.999,
                r.get("ScalingType", "Auto"),
            )
            params[r["Name"]] = str(min(int(value), int(r["MaxValue"])))
        for r in floats:
            params[r["Name"]] = repr(
                _float_sample(
                    rng, float(r["MinValue"]), float(r["MaxValue"]), r.get("ScalingType", "Auto")
                )
            )
        for r in cats:
            params[r["Name"]] = rng.choice(list(r["Values"]))
        trials.append(params)
    return trials


def _static(value: str) -> str:
    # The SageMaker SDK JSON-encodes script-mode hyperparameters ('"train.py"').
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def run_tuning(tuning: Any, workdir: Path, s3_get: Callable[[str], bytes]) -> list[dict[str, Any]]:
    """Run every trial of a tuning job; the ``TrainingJobSummaries`` SageMaker would list."""
    definition = tuning.training_job_definition or (tuning.training_job_definitions or [{}])[0]
    static = {k: _static(v) for k, v in definition.get("StaticHyperParameters", {}).items()}
    program = static.get("sagemaker_program")
    source = static.get("sagemaker_submit_directory")
    config = tuning.hyper_parameter_tuning_job_config
    objective = config["HyperParameterTuningJobObjective"]
    regex = next(
        (
            m["Regex"]
            for m in definition.get("AlgorithmSpecification", {}).get("MetricDefinitions", [])
            if m["Name"] == objective["MetricName"]
        ),
        None,
    )
    code_dir = workdir / "code"
    if source:
        code_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(s3_get(source)), mode="r:gz") as tar:
            tar.extractall(code_dir, filter="data")
    summaries = []
    for i, params in enumerate(sample_trials(config)):
        name = f"{tuning.hyper_parameter_tuning_job_name[:20]}-{i + 1:03d}-{uuid.uuid4().hex[:8]}"
        started = datetime.now(timezone.utc)
        value, reason = _train(code_dir, program, params, regex)
        summary: dict[str, Any] = {
            "TrainingJobName": name,
            "TrainingJobArn": _arn(tuning.region_name, "training-job", name),
            "TuningJobName": tuning.hyper_parameter_tuning_job_name,
            "CreationTime": started,
            "TrainingStartTime": started,
            "TrainingEndTime": datetime.now(timezone.utc),
            "TrainingJobStatus": "Completed" if reason is None else "Failed",
            "TunedHyperParameters": params,
            "ObjectiveStatus": "Succeeded" if value is not None else "Failed",
        }
        if value is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective["Type"],
                "MetricName": objective["MetricName"],
                "Value": value,
            }
        if reason:
            summary["FailureReason"] = reason
        summaries.append(summary)
    return summaries


def _train(
    code_dir: Path, program: str | None, params: dict[str, str], regex: str | None
) -> tuple[float | None, str | None]:
    if not program or not (code_dir / program).exists():
        return None, f"AlgorithmError: training program {program!r} not found in the source"
    args = [
        sys.executable,
        program,
        *itertools.chain.from_iterable((f"--{k}", v) for k, v in params.items()),
    ]
    try:
        done = subprocess.run(
            args, cwd=code_dir, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return None, "AlgorithmError: the trial ran past its time limit"
    if done.returncode != 0:
        return None, f"AlgorithmError: exit code {done.returncode}: {done.stderr.strip()[-300:]}"
    found = re.findall(regex, done.stdout) if regex else []
    if not found:
        return None, None
    last = found[-1]
    return float(last[0] if isinstance(last, tuple) else last), None
