"""SageMaker ``Model`` objects: a model spec staged, its route chosen, its tarball uploaded and
its ``PrimaryContainer`` built (see ``_packaging`` for what goes in them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.specs import ModelSpec
from cloudserve_sagemaker import _packaging as pkg
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._packaging import Route, StagedModel

__all__ = [
    "ENV_NAME",
    "ENV_VERSION",
    "Prepared",
    "model_container",
    "prepare_model",
    "upload_artifact",
]

ENV_NAME, ENV_VERSION = "CLOUDSERVE_MODEL_NAME", "CLOUDSERVE_MODEL_VERSION"


@dataclass(frozen=True)
class Prepared:
    """A model ready to send: its route and, for a local artifact, the staged files."""

    route: Route
    staged: StagedModel | None


def prepare_model(api: Api, model: ModelSpec) -> Prepared:
    """Stage the model and choose its route (no request is sent); InvalidRequest naming the
    versions and the build/push command when no route can serve it."""
    if not model.is_local:
        # The framework route needs cloudserve's handler inside model.tar.gz, which is
        # only built from a local artifact; a packed remote tarball needs an image.
        image = model.image or api.cfg.serving_image
        if image is None:
            raise InvalidRequest(
                f"{model.artifact} is already packed, so it needs the container route: "
                f"`{pkg.build_command(model, api.target)}` (or ModelSpec(image=...)); "
                "the framework route packs a local model directory",
                provider=api.name,
            )
        return Prepared(Route("container", image, "a packed remote artifact"), None)
    staged = pkg.stage(model)
    route = pkg.choose_route(
        model,
        staged.libraries,
        region=api.cfg.region,
        serving_image=api.cfg.serving_image,
        target=api.target,
    )
    return Prepared(route, staged)


def upload_artifact(api: Api, model: ModelSpec, prepared: Prepared) -> str:
    """Where the model's ``model.tar.gz`` is: uploaded once per content hash."""
    assert model.artifact is not None
    if prepared.staged is None:
        return model.artifact
    data = pkg.build_model_tarball(prepared.staged, prepared.route)
    digest = hashlib.sha256(data).hexdigest()
    uri = api.cfg.s3_uri("models", model.name, model.version, digest[:16], "model.tar.gz")
    if not api.call(api.aws.exists, uri):
        api.call(api.aws.put, uri, data)
    return uri


def model_container(model: ModelSpec, prepared: Prepared, data_url: str) -> dict[str, Any]:
    """The ``PrimaryContainer`` of a model: the route's image, the tarball, the env."""
    env = {**model.env, ENV_NAME: model.name, ENV_VERSION: model.version}
    return {
        "Image": prepared.route.image,
        "ModelDataUrl": data_url,
        "Environment": {**env, **prepared.route.env},
    }
