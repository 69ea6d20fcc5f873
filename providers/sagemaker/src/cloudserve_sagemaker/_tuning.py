"""Hyperparameter tuning as a SageMaker tuning job running script-mode training.

The training script (and its source directory) is packed as ``sourcedir.tar.gz`` in S3 and run
by the framework's training container through the ``sagemaker_program`` /
``sagemaker_submit_directory`` hyperparameters, the way the SageMaker Python SDK does it. Search
space → parameter ranges with scaling types; strategy, objective with its metric-definition
regex, budget and early stopping map one to one. Trials are the tuning job's training jobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.resources import JobStatus, Trial, TuningJob
from cloudserve.sizes import resolve_instance
from cloudserve.specs import Choice, IntRange, LogUniform, TuningSpec, Uniform
from cloudserve_sagemaker import _naming as names
from cloudserve_sagemaker import _packaging as pkg
from cloudserve_sagemaker._api import Api, page_token
from cloudserve_sagemaker._images import image_uri
from cloudserve_sagemaker._states import JOB_STATES as STATES

__all__ = ["describe_tuning", "parameter_ranges", "start_tuning", "validate_tuning"]

STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "grid": "Grid", "hyperband": "Hyperband"}
MAX_CATEGORICAL = 30
# The training image version when TrainSpec.framework_version is not given.
TRAINING_DEFAULTS = {"sklearn": "1.2-1", "xgboost": "1.7-1", "pytorch": "2.1"}
TUNING_NAME_LIMIT = 32


def validate_tuning(spec: TuningSpec) -> None:
    """Reject tuning specs SageMaker cannot run."""
    if spec.train.entrypoint is None:
        raise InvalidRequest(
            "SageMaker script-mode tuning needs train.entrypoint; a bare command needs its "
            "own training image (TrainSpec(image=...)) and is not supported yet",
            provider="sagemaker",
        )
    if spec.strategy == "hyperband" and spec.early_stopping:
        raise InvalidRequest(
            "Hyperband stops trials by itself; early_stopping must be off with it",
            provider="sagemaker",
        )
    if spec.seed is not None and spec.seed < 0:
        raise InvalidRequest(
            f"seed: SageMaker's RandomSeed is a non-negative integer, not {spec.seed}",
            provider="sagemaker",
        )
    grid = spec.strategy == "grid"
    for name, param in spec.search_space.items():
        if isinstance(param, IntRange) and (grid or param.step != 1):
            count = (param.high - param.low) // param.step + 1
            if count > MAX_CATEGORICAL:
                why = "grid search" if grid else "a stepped integer range"
                raise InvalidRequest(
                    f"search_space.{name}: {why} sends every value as a categorical range, which "
                    f"SageMaker caps at {MAX_CATEGORICAL} values ({count} here)",
                    provider="sagemaker",
                )
        if isinstance(param, Choice) and len(param.values) > MAX_CATEGORICAL:
            raise InvalidRequest(
                f"search_space.{name}: at most {MAX_CATEGORICAL} choices "
                f"({len(param.values)} here)",
                provider="sagemaker",
            )


def parameter_ranges(spec: TuningSpec) -> dict[str, list[dict[str, Any]]]:
    """The search space as SageMaker ``ParameterRanges`` (grid search: all categorical)."""
    ranges: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [],
        "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    grid = spec.strategy == "grid"
    for name, p in spec.search_space.items():
        if isinstance(p, Uniform | LogUniform):
            scaling = "Logarithmic" if isinstance(p, LogUniform) else "Linear"
            ranges["ContinuousParameterRanges"].append(
                {
                    "Name": name,
                    "MinValue": str(p.low),
                    "MaxValue": str(p.high),
                    "ScalingType": scaling,
                }
            )
        elif isinstance(p, IntRange) and p.step == 1 and not grid:
            ranges["IntegerParameterRanges"].append(
                {
                    "Name": name,
                    "MinValue": str(p.low),
                    "MaxValue": str(p.high),
                    "ScalingType": "Logarithmic" if p.log else "Linear",
                }
            )
        elif isinstance(p, IntRange):
            values = [str(v) for v in range(p.low, p.high + 1, p.step)]
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": values})
        else:
            assert isinstance(p, Choice)
            ranges["CategoricalParameterRanges"].append(
                {"Name": name, "Values": [_text(v) for v in p.values]}
            )
    return {k: v for k, v in ranges.items() if v}


def _text(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def training_image(framework: str, version: str | None, region: str, *, gpu: bool) -> str:
    """The framework's *training* image (tuning trials are training jobs; the inference images
    have no training toolkit), from the SDK's table."""
    chosen = version or TRAINING_DEFAULTS.get(framework, "")
    return image_uri(framework, chosen, region, scope="training", processor="gpu" if gpu else "cpu")


def _upload_inputs(p: Api, spec: TuningSpec, name: str) -> list[dict[str, Any]]:
    channels = []
    for channel, where in spec.train.inputs.items():
        uri = where
        if "://" not in where:
            uri = p.call(
                p.aws.upload_path, Path(where), p.cfg.s3_uri("tuning", name, "input", channel)
            )
        channels.append(
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
    return channels


def start_tuning(p: Api, spec: TuningSpec) -> TuningJob:
    """Upload the code and inputs, create the tuning job; returns at once."""
    train = spec.train
    assert train.entrypoint is not None
    name = (
        spec.name[:TUNING_NAME_LIMIT] if spec.name else names.job_name("t", "", TUNING_NAME_LIMIT)
    )
    entry = Path(train.entrypoint)
    source_dir = Path(train.source_dir) if train.source_dir else None
    code = pkg.source_tarball(entry, source_dir)
    code_uri = p.cfg.s3_uri("tuning", name, "sourcedir.tar.gz")
    p.call(p.aws.put, code_uri, code)
    program = entry.relative_to(source_dir).as_posix() if source_dir else entry.name
    c = train.compute
    choice = resolve_instance(p.name, c.size, c.instance_type)
    image = train.image or training_image(
        train.framework or "sklearn",
        train.framework_version,
        p.cfg.region,
        gpu=(c.instance_type or (choice.instance_type if choice else "")).startswith(
            ("ml.g", "ml.p")
        ),
    )
    static = {k: _text(v) for k, v in train.hyperparameters.items()}
    static |= {
        "sagemaker_program": json.dumps(program),
        "sagemaker_submit_directory": json.dumps(code_uri),
        "sagemaker_region": json.dumps(p.cfg.region),
    }
    definition: dict[str, Any] = {
        "StaticHyperParameters": static,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": spec.objective.metric, "Regex": spec.objective.pattern}],
        },
        "RoleArn": p.cfg.role_arn,
        "OutputDataConfig": {"S3OutputPath": p.cfg.s3_uri("tuning", name, "output")},
        "ResourceConfig": {
            "InstanceType": c.instance_type or (choice.instance_type if choice else ""),
            "InstanceCount": max(1, c.replicas),
            "VolumeSizeInGB": 10,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": train.max_runtime_s},
        "Environment": dict(train.env),
    }
    channels = _upload_inputs(p, spec, name)
    if channels:
        definition["InputDataConfig"] = channels
    if p.cfg.vpc is not None:
        definition["VpcConfig"] = {
            "Subnets": p.cfg.vpc.subnets,
            "SecurityGroupIds": p.cfg.vpc.security_group_ids,
        }
    if p.cfg.kms_key_id:
        definition["OutputDataConfig"]["KmsKeyId"] = p.cfg.kms_key_id
    config: dict[str, Any] = {
        "Strategy": STRATEGIES[spec.strategy],
        "HyperParameterTuningJobObjective": {
            "Type": "Maximize" if spec.objective.goal == "maximize" else "Minimize",
            "MetricName": spec.objective.metric,
        },
        "ResourceLimits": {
            "MaxNumberOfTrainingJobs": spec.max_trials,
            "MaxParallelTrainingJobs": spec.parallel_trials,
        },
        "ParameterRanges": parameter_ranges(spec),
        "TrainingJobEarlyStoppingType": "Auto" if spec.early_stopping else "Off",
    }
    if spec.seed is not None:
        config["RandomSeed"] = spec.seed
    p.sm(
        "create_hyper_parameter_tuning_job",
        retry=False,
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig=config,
        TrainingJobDefinition=definition,
        Tags=names.tags(p.cfg.tags),
    )
    return describe_tuning(p, name)


def _typed(params: dict[str, str], ranges: dict[str, Any]) -> dict[str, Any]:
    ints = {r["Name"] for r in ranges.get("IntegerParameterRanges", [])}
    floats = {r["Name"] for r in ranges.get("ContinuousParameterRanges", [])}
    out: dict[str, Any] = {}
    for k, v in params.items():
        out[k] = int(v) if k in ints else float(v) if k in floats else v
    return out


def _trial(summary: dict[str, Any], ranges: dict[str, Any]) -> Trial:
    metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return Trial(
        id=summary["TrainingJobName"],
        params=_typed(summary.get("TunedHyperParameters", {}), ranges),
        status=STATES.get(summary.get("TrainingJobStatus", ""), JobStatus.RUNNING),
        value=float(metric["Value"]) if "Value" in metric else None,
        message=summary.get("FailureReason") or None,
        raw=summary,
    )


def describe_tuning(p: Api, job_id: str) -> TuningJob:
    """The job, its training jobs as trials and the best one."""
    d = p.sm("describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=job_id)
    config = d["HyperParameterTuningJobConfig"]
    ranges = config.get("ParameterRanges", {})
    summaries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = p.sm(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            HyperParameterTuningJobName=job_id,
            MaxResults=100,
            **page_token(token),
        )
        summaries += page.get("TrainingJobSummaries", [])
        token = page.get("NextToken")
        if not token:
            break
    trials = [_trial(s, ranges) for s in summaries]
    best_raw = d.get("BestTrainingJob")
    best = next((t for t in trials if best_raw and t.id == best_raw.get("TrainingJobName")), None)
    objective = config["HyperParameterTuningJobObjective"]
    return TuningJob(
        id=job_id,
        provider=p.name,
        status=STATES.get(d["HyperParameterTuningJobStatus"], JobStatus.RUNNING),
        objective=objective["MetricName"],
        goal="maximize" if objective["Type"] == "Maximize" else "minimize",
        trials=trials,
        best_trial=best,
        message=d.get("FailureReason") or None,
        raw=d,
    )
