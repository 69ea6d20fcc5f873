"""Pure checks of a spec against Azure ML's limits, before any request (no SDK)."""

from __future__ import annotations

from pathlib import Path

from cloudserve.errors import InvalidRequest
from cloudserve.sizes import resolve_instance
from cloudserve.specs import BatchSpec, Compute, DeploySpec, IntRange, LogUniform, TuningSpec
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml._api import PROVIDER
from cloudserve_azureml._config import AzureMLConfig

__all__ = [
    "entry_path",
    "instance_type",
    "is_datastore_uri",
    "validate_batch",
    "validate_deploy",
    "validate_tuning",
]


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, provider=PROVIDER)


def instance_type(compute: Compute) -> str:
    """The Azure instance type of a compute request (an unknown size fails here)."""
    choice = resolve_instance(PROVIDER, compute.size, compute.instance_type)
    return compute.instance_type if choice is None else choice.instance_type  # type: ignore[return-value]


def is_datastore_uri(value: str) -> bool:
    """Whether a batch input/output names a datastore path rather than a local one."""
    return value.startswith("azureml://")


def validate_deploy(cfg: AzureMLConfig, spec: DeploySpec, target: str | None = None) -> None:
    """Reject what a managed online deployment cannot honour."""
    if not pkg.valid_name(spec.endpoint):
        raise _bad(
            "endpoint: Azure endpoint names are 3–32 characters, a letter first, then "
            f"letters, digits and '-', not ending in '-': '{spec.endpoint}'"
        )
    if spec.compute.accelerator and not spec.compute.instance_type:
        raise _bad("Azure instance types include their GPU: pick a gpu.* size or an instance_type")
    if spec.model.artifact is None:
        raise _bad("Azure ML needs a model artifact to register, also on the container route")
    instance_type(spec.compute)
    image = pkg.container_image(spec.model, cfg.serving_image, target)  # no route: refused here
    if spec.shadow:
        _validate_shadow(spec, image)


#: Azure's cap on an endpoint's mirrored traffic, in total (safe rollout: "mirror traffic")
MAX_MIRROR = 50


def _validate_shadow(spec: DeploySpec, image: str | None) -> None:
    """What Azure's ``mirror_traffic`` allows, and what cloudserve's shadow report needs."""
    if spec.shadow > MAX_MIRROR:
        raise _bad(
            f"shadow={spec.shadow}: Azure mirrors at most {MAX_MIRROR}% of an endpoint's"
            " traffic (mirror_traffic)"
        )
    if image:
        raise _bad(
            "shadow: the shadow report reads the request log cloudserve's score.py writes; a"
            f" variant served by an image ({image}) writes none — deploy it with the framework"
            " route (no image, no serving_image for this model)"
        )


def validate_batch(cfg: AzureMLConfig, spec: BatchSpec) -> None:
    """Reject what an Azure batch deployment cannot honour."""
    if cfg.compute is None:
        raise _bad(
            "batch deployments run on a compute cluster: set `compute` in the azureml target"
        )
    if spec.model.artifact is None:
        raise _bad(
            "Azure batch scoring needs a model artifact (the container route is online-only)"
        )
    if spec.resolved_format == "parquet":
        raise _bad("the Azure batch scoring script reads CSV and JSON Lines, not Parquet")
    if "max_payload_mb" in spec.model_fields_set:
        raise _bad("Azure batch jobs read files, there is no request payload to limit")
    if spec.compute.autoscaling or spec.compute.serverless:
        raise _bad("a batch deployment runs a fixed instance_count (compute.replicas)")
    if not is_datastore_uri(spec.input) and not Path(spec.input).exists():
        raise _bad(f"batch input {spec.input} is neither an azureml:// URI nor a local path")
    if "://" in spec.output and not is_datastore_uri(spec.output):
        raise _bad(f"batch output {spec.output} must be a local path or an azureml:// URI")
    instance_type(spec.compute)


def entry_path(spec: TuningSpec) -> Path:
    """The training entrypoint as a local path (relative to ``source_dir`` when given)."""
    entry = Path(spec.train.entrypoint or "")
    if spec.train.source_dir and not entry.is_absolute():
        return Path(spec.train.source_dir) / entry
    return entry


def validate_tuning(cfg: AzureMLConfig, spec: TuningSpec) -> None:
    """Reject what an Azure sweep cannot honour."""
    train = spec.train
    if cfg.compute is None:
        raise _bad("sweep trials run on a compute cluster: set `compute` in the azureml target")
    if "compute" in train.model_fields_set:
        raise _bad(
            "trials run on the target's `compute` cluster; its VM size is set on the cluster"
        )
    if train.command is not None and train.source_dir is None:
        raise _bad("a training `command` needs `source_dir`: the folder uploaded as the job's code")
    if train.entrypoint is not None and not entry_path(spec).is_file():
        raise _bad(f"training entrypoint {train.entrypoint} is not a local file")
    if spec.strategy == "bayesian":
        for name, param in spec.search_space.items():
            if isinstance(param, LogUniform) or (isinstance(param, IntRange) and param.log):
                raise _bad(
                    f"Azure Bayesian sampling takes choice, uniform and quniform only; '{name}' "
                    "is log-scaled: use strategy='random'"
                )
        if spec.early_stopping:
            raise _bad("Azure Bayesian sampling does not support early termination")
        if spec.seed is not None:
            raise _bad("Azure Bayesian sampling takes no seed")
    if spec.strategy == "grid" and spec.seed is not None:
        raise _bad("grid sampling is exhaustive and takes no seed")
