"""Batch prediction as a SageMaker batch transform job.

A local input is uploaded; a CSV with a header goes as JSON Lines records, so each value keeps
its column whatever the header's order (``SplitType=Line`` would send a header line to the model
as a record, in the first mini-batch only); records go to the container in ``MultiRecord``
mini-batches of at most ``max_payload_mb``, ``max_concurrency`` at a time (their product within
SageMaker's 100 MB), and outputs are assembled one line per record (``AssembleWith=Line``) as
``<input>.out``. A local output path is filled once the job succeeds. Where the local paths are
is kept in the job's tags, so ``get_batch_job`` works from any process.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.sizes import resolve_instance
from cloudserve.specs import BatchSpec
from cloudserve_sagemaker import _naming as names
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._models import model_container, prepare_model, upload_artifact
from cloudserve_sagemaker._states import JOB_STATES as STATES
from cloudserve_sagemaker._validate import has_local_storage

__all__ = ["describe_transform", "start_transform", "validate_batch"]

CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/jsonlines"}
INPUT_TAG, OUTPUT_TAG, MODEL_TAG = "cloudserve:input", "cloudserve:output", "cloudserve:batch-model"
TRANSFORM_LIMIT_MB = 100
PARAMETERS_ENV = "CLOUDSERVE_BATCH_PARAMETERS"


def validate_batch(spec: BatchSpec) -> None:
    """Reject batch specs a transform job cannot run."""
    if spec.resolved_format not in CONTENT_TYPES:
        raise InvalidRequest(
            "batch transform splits inputs by line: use CSV or JSON Lines, "
            f"not {spec.resolved_format}",
            provider="sagemaker",
        )
    if spec.max_concurrency * max(1, int(spec.max_payload_mb)) > TRANSFORM_LIMIT_MB:
        raise InvalidRequest(
            f"max_concurrency × max_payload_mb must stay within {TRANSFORM_LIMIT_MB} MB "
            f"({spec.max_concurrency} × {spec.max_payload_mb})",
            provider="sagemaker",
        )
    if spec.error_threshold != -1:
        raise InvalidRequest(
            "transform jobs have no error threshold: the job fails on the first failed mini-batch",
            provider="sagemaker",
        )
    for where in (spec.input, spec.output):
        if "://" in where and not where.startswith("s3://"):
            raise InvalidRequest(
                f"{where} must be a local path or an s3:// URI", provider="sagemaker"
            )
    if "://" not in spec.input and not Path(spec.input).exists():
        raise InvalidRequest(f"batch input {spec.input} does not exist", provider="sagemaker")


def _cell(text: str) -> Any:
    if text.strip() == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return None  # "nan" is a missing value, and JSON has no NaN
    return (
        int(number)
        if number.is_integer() and "." not in text and "e" not in text.lower()
        else number
    )


def _has_header(first_line: str) -> bool:
    cells = next(csv.reader([first_line]), [])
    return bool(cells) and not any(isinstance(_cell(c), int | float) for c in cells)


def _csv_as_records(path: Path, data: bytes) -> bytes:
    """A CSV file with a header as JSON Lines records (``{"column": value}`` a line).

    ``SplitType=Line`` hands the container lines, so a header would reach only the first
    mini-batch (and as a record); named records keep every value with its column, whatever the
    header's order, and blanks become null."""
    if path.suffix.lower() != ".csv":
        return data
    rows = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    header = next(rows, None)
    if not header:
        return data
    lines = (
        json.dumps(dict(zip(header, (_cell(v) for v in row), strict=False)))
        for row in rows
        if any(v.strip() for v in row)
    )
    return "".join(f"{line}\n" for line in lines).encode()


def _first_line(path: Path) -> str:
    files = sorted(p for p in path.rglob("*.csv") if p.is_file()) if path.is_dir() else [path]
    if not files:
        return ""
    with files[0].open(encoding="utf-8-sig", errors="replace") as fh:
        return fh.readline()


def start_transform(p: Api, spec: BatchSpec) -> BatchJob:
    """Upload what is local, create the model and the transform job; returns at once."""
    name = names.job_name("batch", spec.model.name)
    prepared = prepare_model(p, spec.model)
    container = model_container(spec.model, prepared, upload_artifact(p, spec.model, prepared))
    model_name = names.trim(f"{name}-model")
    p.sm(
        "create_model",
        retry=False,
        ModelName=model_name,
        ExecutionRoleArn=p.cfg.role_arn,
        PrimaryContainer=container,
        Tags=names.tags(p.cfg.tags),
    )
    source = spec.input
    content_type = CONTENT_TYPES[spec.resolved_format]
    if "://" not in source:
        named = content_type == "text/csv" and _has_header(_first_line(Path(source)))
        if named:
            content_type = CONTENT_TYPES["jsonl"]
        source = p.call(
            p.aws.upload_path,
            Path(source),
            p.cfg.s3_uri("batch", name, "input"),
            transform=_csv_as_records if named else None,
        )
    output = (
        spec.output if spec.output.startswith("s3://") else p.cfg.s3_uri("batch", name, "output")
    )
    c = spec.compute
    choice = resolve_instance(p.name, c.size, c.instance_type)
    tags = {
        **p.cfg.tags,
        INPUT_TAG: spec.input[:256],
        OUTPUT_TAG: spec.output[:256],
        MODEL_TAG: model_name,
    }
    params: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": spec.max_concurrency,
        "MaxPayloadInMB": max(1, int(spec.max_payload_mb)),
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": content_type,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": output,
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": c.instance_type or (choice.instance_type if choice else ""),
            "InstanceCount": max(1, c.replicas),
        },
        "Tags": names.tags(tags),
    }
    if spec.parameters:
        # A transform job sends no per-request parameters: both routes answer a request
        # without any with this job-level default (the generated handler, and the serving
        # image's ServerSettings.default_parameters).
        params["Environment"] = {PARAMETERS_ENV: json.dumps(spec.parameters)}
    if p.cfg.kms_key_id:
        params["TransformOutput"]["KmsKeyId"] = p.cfg.kms_key_id
        if not has_local_storage(params["TransformResources"]["InstanceType"]):
            params["TransformResources"]["VolumeKmsKeyId"] = p.cfg.kms_key_id
    p.sm("create_transform_job", retry=False, **params)
    return describe_transform(p, name)


def describe_transform(p: Api, job_id: str) -> BatchJob:
    """The job's state; on success the outputs are downloaded to a local output path, and once
    it has ended the model cloudserve made for it is deleted."""
    d = p.sm("describe_transform_job", TransformJobName=job_id)
    tags = {
        t["Key"]: t["Value"]
        for t in p.sm("list_tags", ResourceArn=d["TransformJobArn"]).get("Tags", [])
    }
    status = STATES.get(d["TransformJobStatus"], JobStatus.RUNNING)
    output = tags.get(OUTPUT_TAG, d["TransformOutput"]["S3OutputPath"])
    rows = None
    if status is JobStatus.SUCCEEDED and not output.startswith("s3://"):
        files = p.call(p.aws.download_prefix, d["TransformOutput"]["S3OutputPath"], Path(output))
        rows = sum(1 for f in files for line in f.read_bytes().splitlines() if line.strip())
    if status.is_terminal and MODEL_TAG in tags:
        p.quiet_delete("delete_model", ModelName=tags[MODEL_TAG])
    return BatchJob(
        id=job_id,
        provider=p.name,
        status=status,
        input=tags.get(INPUT_TAG, d["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]),
        output=output,
        rows_total=rows,
        rows_succeeded=rows,
        rows_failed=0 if rows is not None else None,
        message=d.get("FailureReason") or None,
        created_at=d.get("CreationTime"),
        ended_at=d.get("TransformEndTime") if status.is_terminal else None,
        raw=d,
    )
