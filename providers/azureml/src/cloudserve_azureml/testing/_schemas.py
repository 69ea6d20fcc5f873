"""Every entity the fake stores goes through the SDK's own schema validation first.

The resource a PUT would store is read the way azure-ai-ml reads the service's answers (its REST
model, then the entity's ``_from_rest_object``), and that entity is loaded again through its
marshmallow schema (``Entity._load``), which is what ``load_online_endpoint(...)`` and friends
validate YAML with: required fields, types, enums and the name patterns the SDK knows. What the
SDK itself would refuse is a 400 from the fake, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

__all__ = ["schema_error"]


def _entities() -> dict[str, tuple[Any, Any]]:
    from azure.ai.ml._restclient.arm_ml_service import models as rest
    from azure.ai.ml.entities import (
        BatchEndpoint,
        Environment,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
    )

    return {
        "onlineendpoints": (rest.OnlineEndpoint, ManagedOnlineEndpoint),
        "onlineendpoints/deployments": (rest.OnlineDeployment, ManagedOnlineDeployment),
        "batchendpoints": (rest.BatchEndpoint, BatchEndpoint),
        "environments/versions": (rest.EnvironmentVersion, Environment),
        "models/versions": (rest.ModelVersion, Model),
    }


_CACHE: dict[str, tuple[Any, Any]] = {}


def schema_error(kind: str, resource: dict[str, Any]) -> str | None:
    """Why the SDK's schema refuses this resource, or None (kinds it has no schema for pass)."""
    if not _CACHE:
        _CACHE.update(_entities())
    found = _CACHE.get(kind)
    if found is None:
        return None
    rest_cls, entity_cls = found
    from azure.ai.ml.exceptions import ValidationException
    from marshmallow import ValidationError

    try:
        entity = entity_cls._from_rest_object(rest_cls(resource))
        entity_cls._load(data=entity._to_dict())
    except (ValidationError, ValidationException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
