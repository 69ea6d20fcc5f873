"""Batch prediction on Azure ML: a batch endpoint per model, a model batch deployment per
version, one invocation per job.

The deployment runs ``batch_score.py`` (the source of :mod:`cloudserve_azureml._batch_script`)
with ``output_action: append_row``, so ``predictions.csv`` holds one line
``file,row,prediction,error`` per input row. Local input is uploaded as a data asset
(``uri_file`` for a file, ``uri_folder`` for a directory); an ``azureml://`` URI is passed as is.
A local ``output`` gets ``predictions.csv`` downloaded into it once the job has succeeded.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cloudserve.errors import CloudServeError, NotFound
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.specs import BatchSpec
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml._api import PROVIDER, AzureApi
from cloudserve_azureml._model_registry import register
from cloudserve_azureml._states import job_status
from cloudserve_azureml._validate import instance_type, is_datastore_uri

__all__ = ["JOB_PREFIX", "batch_job", "batch_predict", "get_batch_job"]

log = logging.getLogger("cloudserve.azureml")
T = TypeVar("T")

OUTPUT_FILE = "predictions.csv"
PROP_INPUT = "cloudserve.input"
PROP_OUTPUT = "cloudserve.output"
TAG_HASH = "cloudserve-spec-hash"
#: every batch job cloudserve starts is named ``csb-<hex>`` (``list_jobs`` looks for it)
JOB_PREFIX = "csb-"


def _settings_hash(api: AzureApi, spec: BatchSpec, instance_type: str) -> str:
    data = "|".join(
        str(v)
        for v in (
            spec.model.name,
            spec.model.version,
            spec.batch_size,
            spec.max_concurrency,
            spec.error_threshold,
            json.dumps(spec.parameters, sort_keys=True),
            spec.compute.replicas,
            instance_type,
            api.cfg.compute,
            api.cfg.batch_mini_batch_size,
            api.cfg.batch_max_retries,
            _env_requirements(spec),
            _script_version(),
        )
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _ensure_endpoint(api: AzureApi, name: str, tags: dict[str, str]) -> Any:
    from azure.ai.ml.entities import BatchEndpoint

    try:
        return api.sdk(api.ml.batch_endpoints.get, name)
    except NotFound:
        endpoint = BatchEndpoint(name=name, tags={**tags, "cloudserve": "true"})
        return _or_remove(
            lambda: api.lro(api.ml.batch_endpoints.begin_create_or_update, endpoint),
            lambda: api.lro(api.ml.batch_endpoints.begin_delete, name=name),
        )


def _or_remove(create: Callable[[], T], remove: Callable[[], Any]) -> T:
    """Run a create; if it fails, remove what it left (a Failed resource would be reused)."""
    try:
        return create()
    except CloudServeError:
        try:
            with contextlib.suppress(NotFound):
                remove()
        except CloudServeError as exc:
            log.warning("could not remove a failed batch resource: %s", exc)
        raise


def _ensure_deployment(api: AzureApi, spec: BatchSpec, endpoint: str) -> str:
    """Create or update the model's batch deployment; make it the endpoint's default."""
    dep_name = pkg.deployment_name(spec.model.variant_name)
    vm = instance_type(spec.compute)
    digest = _settings_hash(api, spec, vm)
    try:
        current = api.sdk(api.ml.batch_deployments.get, name=dep_name, endpoint_name=endpoint)
    except NotFound:
        current = None
    if current is None or (current.tags or {}).get(TAG_HASH) != digest:
        _put_deployment(api, spec, endpoint, dep_name, vm, digest)
    ep = api.sdk(api.ml.batch_endpoints.get, endpoint)
    defaults = ep.defaults
    current_default = (
        defaults.get("deployment_name")
        if isinstance(defaults, dict)
        else getattr(defaults, "deployment_name", None)
    )
    if current_default != dep_name:
        ep.defaults = {"deployment_name": dep_name}
        api.lro(api.ml.batch_endpoints.begin_create_or_update, ep)
    return dep_name


def _put_deployment(
    api: AzureApi,
    spec: BatchSpec,
    endpoint: str,
    dep_name: str,
    instance_type: str,
    digest: str,
) -> None:
    from azure.ai.ml.constants import BatchDeploymentOutputAction
    from azure.ai.ml.entities import (
        BatchRetrySettings,
        CodeConfiguration,
        Environment,
        ModelBatchDeployment,
        ModelBatchDeploymentSettings,
        ResourceConfiguration,
    )
    from azure.ai.ml.entities._assets import Code

    created: list[str] = []
    model_id = register(api, spec.model, owner=None, created=created)
    conda = pkg.conda_file([*_env_requirements(spec), *api.cfg.extra_requirements])
    env = api.sdk(
        api.ml.environments.create_or_update,
        Environment(
            name=pkg.asset_name("cs-batch", endpoint),
            version=pkg.content_version(conda, api.cfg.environment_image),
            image=api.cfg.environment_image,
            conda_file=conda,
        ),
    )
    code_dir = pkg.batch_code(api.workdir / f"batch-{endpoint}-{dep_name}")
    code = api.sdk(
        api.ml._code.create_or_update,
        Code(
            name=pkg.asset_name("cs-batch", endpoint, "score"),
            version=pkg.code_digest(code_dir),
            path=str(code_dir),
        ),
    )
    env_vars = {
        "CLOUDSERVE_BATCH_ROWS": str(spec.batch_size),
        "CLOUDSERVE_FRAMEWORK": spec.model.framework or pkg.detect(Path(spec.model.artifact or "")),
    }
    if spec.parameters:
        env_vars["CLOUDSERVE_BATCH_PARAMETERS"] = json.dumps(spec.parameters)
    deployment = ModelBatchDeployment(
        name=dep_name,
        endpoint_name=endpoint,
        model=model_id,
        environment=env.id,
        code_configuration=CodeConfiguration(code=code.id, scoring_script=pkg.BATCH_SCRIPT_NAME),
        compute=api.cfg.compute,
        resources=ResourceConfiguration(
            instance_count=max(spec.compute.replicas, 1), instance_type=instance_type
        ),
        settings=ModelBatchDeploymentSettings(
            mini_batch_size=api.cfg.batch_mini_batch_size,
            max_concurrency_per_instance=spec.max_concurrency,
            error_threshold=spec.error_threshold,
            output_action=BatchDeploymentOutputAction.APPEND_ROW,
            output_file_name=OUTPUT_FILE,
            retry_settings=BatchRetrySettings(max_retries=api.cfg.batch_max_retries, timeout=300),
            environment_variables=env_vars,
            logging_level="info",
        ),
        tags={
            **api.cfg.tags,
            "cloudserve-model": spec.model.name,
            "cloudserve-model-version": spec.model.version,
            TAG_HASH: digest,
        },
    )
    _or_remove(
        lambda: api.lro(api.ml.batch_deployments.begin_create_or_update, deployment),
        lambda: api.lro(
            api.ml.batch_deployments.begin_delete, name=dep_name, endpoint_name=endpoint
        ),
    )


def _input(api: AzureApi, spec: BatchSpec) -> Any:
    """The job input: an ``azureml://`` URI as is, a local file or folder uploaded."""
    from azure.ai.ml import Input
    from azure.ai.ml.constants import AssetTypes

    if is_datastore_uri(spec.input):
        kind = AssetTypes.URI_FILE if Path(spec.input).suffix else AssetTypes.URI_FOLDER
        return Input(type=kind, path=spec.input)
    local = Path(spec.input)
    data = _upload(api, local, AssetTypes.URI_FOLDER if local.is_dir() else AssetTypes.URI_FILE)
    return Input(type=data.type, path=data.id)


def _upload(api: AzureApi, local: Path, kind: str) -> Any:
    """The data asset of a local input, named for it and versioned by its content."""
    from azure.ai.ml.entities import Data

    digest = hashlib.sha256()
    for f in sorted(local.rglob("*")) if local.is_dir() else [local]:
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    name = pkg.asset_name("cs-batch-input", local.stem)
    version = digest.hexdigest()[:12]
    try:
        return api.sdk(api.ml.data.get, name, version)
    except NotFound:
        asset = Data(name=name, version=version, path=str(local), type=kind)
        return api.sdk(api.ml.data.create_or_update, asset)


def batch_predict(api: AzureApi, spec: BatchSpec) -> BatchJob:
    """Start the job (the endpoint and deployment are created or updated first)."""
    from azure.ai.ml import Output

    endpoint = pkg.batch_endpoint_name(spec.model.name)
    _ensure_endpoint(api, endpoint, dict(api.cfg.tags))
    dep_name = _ensure_deployment(api, spec, endpoint)
    job_input = _input(api, spec)
    job_name = f"{JOB_PREFIX}{uuid.uuid4().hex[:16]}"
    out_uri = (
        spec.output
        if is_datastore_uri(spec.output)
        else f"azureml://datastores/workspaceblobstore/paths/cloudserve/batch/{job_name}/"
    )
    # Azure documents properties in the invocation body, but not that it keeps them on the job of
    # a model deployment: this process also remembers where a local output goes.
    props = {PROP_INPUT: spec.input, PROP_OUTPUT: spec.output}
    api.batch_outputs[job_name] = spec.output
    # a POST: azure-core never repeats it, and neither does cloudserve (it starts a job)
    job = api.sdk(
        api.ml.batch_endpoints.invoke,
        endpoint_name=endpoint,
        deployment_name=dep_name,
        inputs={"input": job_input},
        outputs={"score": Output(type="uri_folder", path=out_uri)},
        job_name=job_name,
        params_override=[{"properties": props}],
    )
    return get_batch_job(api, job.name)


def get_batch_job(api: AzureApi, job_id: str) -> BatchJob:
    """The job's state; once it succeeded, its rows counted (and downloaded for a local output)."""
    job = api.sdk(api.ml.jobs.get, job_id)
    if job.type != "pipeline":  # a batch endpoint's jobs are pipeline jobs
        raise NotFound(f"{job_id} is a {job.type} job, not a batch job", provider=PROVIDER)
    return batch_job(api, job)


def batch_job(api: AzureApi, job: Any, *, fetch_output: bool = True) -> BatchJob:
    """A batch job the SDK returned, as a :class:`BatchJob`; ``fetch_output`` off (a listing)
    reads no ``predictions.csv``, so rows stay unknown."""
    props = dict(job.properties or {})
    status = job_status(job.status)
    out_uri = _output_uri(job)
    output = props.get(PROP_OUTPUT) or api.batch_outputs.get(job.name) or out_uri
    counts: dict[str, int | None] = {}
    if fetch_output and status is JobStatus.SUCCEEDED:
        text = _read_output(api, out_uri)
        if not is_datastore_uri(output):
            target = Path(output) / OUTPUT_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        counts = _count(text)
    return BatchJob(
        id=job.name,
        provider=PROVIDER,
        status=status,
        input=props.get(PROP_INPUT) or _input_uri(job),
        output=output,
        message=props.get("azureml.error"),
        created_at=getattr(job.creation_context, "created_at", None),
        raw=job,
        **counts,
    )


def _output_uri(job: Any) -> str:
    out = (job.outputs or {}).get("score")
    return str(getattr(out, "path", None) or "")


def _input_uri(job: Any) -> str:
    first = next(iter((job.inputs or {}).values()), None)
    return str(getattr(first, "path", None) or "")


def _count(text: str) -> dict[str, int | None]:
    """Rows from ``predictions.csv``: the script writes one line per input row."""
    lines = [r for r in csv.reader(io.StringIO(text)) if r]
    failed = sum(1 for r in lines if len(r) >= 4 and r[3])
    return {"rows_total": len(lines), "rows_succeeded": len(lines) - failed, "rows_failed": failed}


def _env_requirements(spec: BatchSpec) -> list[str]:
    """The batch environment's pip lines: Azure's batch runtime and the model's pins."""
    assert spec.model.artifact is not None  # validate_batch() guarantees it
    return [pkg.BATCH_RUNTIME, *pkg.model_requirements(spec.model.artifact, spec.model.framework)]


def _script_version() -> str:
    return pkg.content_version(pkg.handler_source(), pkg.batch_script_source())


def _read_output(api: AzureApi, uri: str) -> str:
    """``predictions.csv`` under a datastore folder URI, read through the datastore."""
    datastore, _, prefix = uri.split("datastores/", 1)[1].partition("/paths/")
    client = api.datastore_container(datastore)
    blob = f"{prefix.rstrip('/')}/{OUTPUT_FILE}".lstrip("/")
    return api.sdk(lambda: client.download_blob(blob).readall().decode())
