"""The model registry on SageMaker: model package groups (one per model) and model packages.

SageMaker numbers packages 1, 2, 3 … by itself; the cloudserve version, framework and lineage
travel in ``CustomerMetadataProperties`` (values up to 256 characters each, so lineage is
stored one key per entry), and the approval status is the version's stage.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cloudserve.errors import NotFound
from cloudserve.resources import ModelVersion
from cloudserve.specs import ModelSpec
from cloudserve_sagemaker._aws import page_token

if TYPE_CHECKING:
    from cloudserve_sagemaker._provider import SageMakerProvider

__all__ = ["list_models", "register_model"]

VERSION_KEY, FRAMEWORK_KEY, LINEAGE_PREFIX = (
    "cloudserve:version",
    "cloudserve:framework",
    "lineage:",
)
MAX_VALUE = 256


def _metadata(model: ModelSpec, lineage: dict[str, Any]) -> dict[str, str]:
    meta = {VERSION_KEY: model.version, FRAMEWORK_KEY: model.framework or ""}
    for key, value in lineage.items():
        meta[f"{LINEAGE_PREFIX}{key}"[:128]] = json.dumps(value, default=str)[:MAX_VALUE]
    return meta


def _version(p: SageMakerProvider, arn: str) -> ModelVersion:
    d = p.sm("describe_model_package", ModelPackageName=arn)
    meta = d.get("CustomerMetadataProperties", {})
    container = (d.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
    lineage = {
        k.removeprefix(LINEAGE_PREFIX): json.loads(v)
        for k, v in meta.items()
        if k.startswith(LINEAGE_PREFIX)
    }
    return ModelVersion(
        name=d["ModelPackageGroupName"],
        version=meta.get(VERSION_KEY) or str(d.get("ModelPackageVersion")),
        provider=p.name,
        uri=container.get("ModelDataUrl"),
        framework=meta.get(FRAMEWORK_KEY) or None,
        created_at=d.get("CreationTime"),
        stage=d.get("ModelApprovalStatus"),
        lineage=lineage,
        raw=d,
    )


def _packages(p: SageMakerProvider, group: str) -> list[str]:
    arns, token = [], None
    while True:
        try:
            page = p.sm(
                "list_model_packages",
                ModelPackageGroupName=group,
                MaxResults=100,
                **page_token(token),
            )
        except NotFound:
            return []
        arns += [s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", [])]
        token = page.get("NextToken")
        if not token:
            return arns


def register_model(p: SageMakerProvider, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
    """Add ``model`` as a package of its group (made when missing); an already registered
    version is returned as it is."""
    for existing in list_models(p, model.name):
        if existing.version == model.version:
            return existing
    try:
        p.sm("describe_model_package_group", ModelPackageGroupName=model.name)
    except NotFound:
        p.sm(
            "create_model_package_group",
            retry=False,
            ModelPackageGroupName=model.name,
            ModelPackageGroupDescription=f"cloudserve model {model.name}",
            Tags=[{"Key": "cloudserve:managed", "Value": "true"}],
        )
    data_url = p._artifact_uri(model)
    container = p._container(model, data_url, gpu=False)
    created = p.sm(
        "create_model_package",
        retry=False,
        ModelPackageGroupName=model.name,
        ModelPackageDescription=f"{model.name} version {model.version}",
        InferenceSpecification={
            "Containers": [container],
            "SupportedContentTypes": ["application/json", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=str(lineage.get("approval", "PendingManualApproval")),
        CustomerMetadataProperties=_metadata(model, lineage),
    )
    return _version(p, created["ModelPackageArn"])


def list_models(p: SageMakerProvider, name: str | None = None) -> list[ModelVersion]:
    """Every package of the group ``name``, or of every group, oldest first."""
    if name is not None:
        groups = [name]
    else:
        pages = p.call(lambda: list(p.aws.sm.get_paginator("list_model_package_groups").paginate()))
        groups = [
            g["ModelPackageGroupName"]
            for page in pages
            for g in page.get("ModelPackageGroupSummaryList", [])
        ]
    return [_version(p, arn) for group in groups for arn in _packages(p, group)]
