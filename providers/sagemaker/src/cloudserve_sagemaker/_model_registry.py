r"""The model registry on SageMaker: model package groups (one per model) and model packages.

SageMaker numbers packages 1, 2, 3 … by itself; the cloudserve version, framework and lineage
travel in ``CustomerMetadataProperties``, and the approval status is the version's stage.

That map is strict: at most 50 entries, keys up to 128 and values of 1–256 characters, both
matching ``[\p{L}\p{Z}\p{N}_.:/=+\-@]*`` (no quotes, braces or commas, so no JSON text). A
lineage value is therefore stored as its JSON text in standard base64 (whose alphabet the
pattern allows), split over ``lineage<i>:<key>`` entries of at most 256 characters; empty
values are not sent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from typing import Any

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve.resources import ModelVersion
from cloudserve.specs import ModelSpec
from cloudserve_sagemaker._api import Api, page_token
from cloudserve_sagemaker._models import model_container, prepare_model, upload_artifact

__all__ = ["list_models", "register_model"]

VERSION_KEY, FRAMEWORK_KEY = "cloudserve:version", "cloudserve:framework"
MAX_KEY, MAX_VALUE, MAX_ENTRIES = 128, 256, 50
_LINEAGE = re.compile(r"^lineage(\d+):(.+)$")
_ALLOWED = re.compile(r"^[\w\s.:/=+\-@]*$")


def _metadata(model: ModelSpec, lineage: dict[str, Any]) -> dict[str, str]:
    """``CustomerMetadataProperties`` for ``model`` and its lineage; InvalidRequest (before any
    call) when the lineage cannot fit SageMaker's limits."""
    meta = {VERSION_KEY: model.version}
    if model.framework:
        meta[FRAMEWORK_KEY] = model.framework
    for key, value in lineage.items():
        text = base64.b64encode(json.dumps(value, default=str).encode()).decode()
        chunks = [text[i : i + MAX_VALUE] for i in range(0, len(text), MAX_VALUE)]
        for i, chunk in enumerate(chunks):
            name = f"lineage{i}:{key}"
            if len(name) > MAX_KEY or not _ALLOWED.match(name):
                raise InvalidRequest(
                    f"lineage key '{key}' cannot be a SageMaker metadata key (at most "
                    f"{MAX_KEY - 10} characters of letters, digits, spaces and _.:/=+-@)",
                    provider="sagemaker",
                )
            meta[name] = chunk
    if len(meta) > MAX_ENTRIES:
        raise InvalidRequest(
            f"the lineage needs {len(meta)} metadata entries; SageMaker keeps at most "
            f"{MAX_ENTRIES} per model package (256 characters each)",
            provider="sagemaker",
        )
    return meta


def _lineage(meta: dict[str, str]) -> dict[str, Any]:
    """The lineage read back from the metadata (text that is not ours is kept as it is)."""
    parts: dict[str, dict[int, str]] = defaultdict(dict)
    for name, chunk in meta.items():
        found = _LINEAGE.match(name)
        if found:
            parts[found.group(2)][int(found.group(1))] = chunk
    lineage: dict[str, Any] = {}
    for key, chunks in parts.items():
        text = "".join(chunks[i] for i in sorted(chunks))
        try:
            lineage[key] = json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            lineage[key] = text
    return lineage


def _version(p: Api, arn: str) -> ModelVersion:
    d = p.sm("describe_model_package", ModelPackageName=arn)
    meta = d.get("CustomerMetadataProperties", {})
    container = (d.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
    lineage = _lineage(meta)
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


def _packages(p: Api, group: str) -> list[str]:
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


def register_model(p: Api, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
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
    prepared = prepare_model(p, model)
    container = model_container(model, prepared, upload_artifact(p, model, prepared))
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


def list_models(p: Api, name: str | None = None) -> list[ModelVersion]:
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
