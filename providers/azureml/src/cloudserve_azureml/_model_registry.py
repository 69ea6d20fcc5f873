"""Model versions as Azure ML ``Model`` assets: registered once, never overwritten.

A deploy registers the version it needs with the ``cloudserve-endpoint`` tag (it goes when that
endpoint is deleted); ``register_model`` registers it untagged, with lineage as ``lineage.*``
tags, so it stays.
"""

from __future__ import annotations

import json
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.resources import ModelVersion
from cloudserve.specs import ModelSpec
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = [
    "TAG_OWNER",
    "delete_if_owned",
    "list_models",
    "model_version",
    "register",
    "register_model",
]

TAG_OWNER = "cloudserve-endpoint"
TAG_FRAMEWORK = "cloudserve-framework"


def _find(api: AzureApi, model: ModelSpec) -> Any:
    try:
        return api.sdk(api.ml.models.get, model.name, model.version)
    except NotFound:
        return None


def _create(api: AzureApi, model: ModelSpec, tags: dict[str, str]) -> Any:
    from azure.ai.ml.entities import Model

    tags = {**api.cfg.tags, **model.tags, **tags}
    if model.framework:
        tags[TAG_FRAMEWORK] = model.framework
    asset = Model(
        name=model.name,
        version=model.version,
        path=model.artifact,
        type="mlflow_model" if model.framework == "mlflow" else "custom_model",
        tags=tags,
    )
    return api.sdk(api.ml.models.create_or_update, asset)


def register(api: AzureApi, model: ModelSpec, *, owner: str | None, created: list[str]) -> str:
    """The ARM id of the model version, registered (and recorded in ``created``) when new."""
    found = _find(api, model)
    if found is not None:
        return str(found.id)
    registered = _create(api, model, {TAG_OWNER: owner} if owner else {})
    created.append(f"asset:{registered.id}")
    return str(registered.id)


def register_model(api: AzureApi, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
    """Register (or find) the model version, with lineage as tags."""
    found = _find(api, model)
    if found is None:
        tags = {f"lineage.{k}": json.dumps(v, default=str) for k, v in lineage.items()}
        found = _create(api, model, tags)
    return model_version(found)


def list_models(api: AzureApi, name: str | None = None) -> list[ModelVersion]:
    """Registered model versions (every model's, or one model's)."""
    if name is not None:
        try:
            items = api.sdk(lambda: list(api.ml.models.list(name=name)))
        except NotFound:
            return []
        return [model_version(m) for m in items]
    names = [m.name for m in api.sdk(lambda: list(api.ml.models.list()))]
    return [mv for n in names for mv in list_models(api, n)]


def delete_if_owned(api: AzureApi, model_id: str, endpoint: str) -> None:
    """Models a deploy registered for this endpoint go with it; registered ones stay."""
    parts = model_id.rstrip("/").split("/")
    try:
        model = api.sdk(api.ml.models.get, parts[-3], parts[-1])
    except NotFound:
        return
    if (model.tags or {}).get(TAG_OWNER) == endpoint:
        api.delete_asset(model_id)


def model_version(model: Any) -> ModelVersion:
    """The typed result of an Azure ``Model`` entity."""
    tags = dict(model.tags or {})
    lineage = {
        k[len("lineage.") :]: json.loads(v) for k, v in tags.items() if k.startswith("lineage.")
    }
    return ModelVersion(
        name=model.name,
        version=str(model.version),
        provider=PROVIDER,
        uri=model.path,
        framework=tags.get(TAG_FRAMEWORK),
        created_at=getattr(model.creation_context, "created_at", None),
        lineage=lineage,
        tags={k: v for k, v in tags.items() if not k.startswith("lineage.")},
        raw=model,
    )
