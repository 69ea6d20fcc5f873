"""Model Registry: uploading a model version (staging its artifact, choosing its route),
finding, listing and deleting versions.

A cloudserve model ``churn`` is the Vertex model whose id is ``churn``; each cloudserve version
is one registry version (``parent_model`` on upload), recognised by the label
``cloudserve-version`` and its ``version_description``. The route is recorded in the label
``cloudserve-route`` (``prebuilt`` / ``container``) and integer outputs in
``cloudserve-output=int``, so predict can shape requests and answers without a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cloudserve.errors import NotFound
from cloudserve.resources import ModelVersion
from cloudserve.specs import ModelSpec
from cloudserve.waiting import ProgressCallback
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex._api import VertexApi

__all__ = ["delete_version", "find_version", "list_models", "upload", "version_facts"]


def versions_of(api: VertexApi, name: str) -> list[Any]:
    from google.api_core import exceptions as gexc

    try:
        pager = api.rpc("model", "list_model_versions", name=api.model_path(name))
    except NotFound as exc:
        if isinstance(exc.__cause__, gexc.NotFound):
            return []
        raise
    return list(pager)


def find_version(api: VertexApi, model: ModelSpec) -> Any | None:
    wanted = pkg.label_value(model.version)
    for v in versions_of(api, model.name):
        if v.labels.get("cloudserve-version") == wanted and v.version_description == (
            model.version
        ):
            return v
    return None


def upload(
    api: VertexApi,
    model: ModelSpec,
    *,
    origin: str,
    endpoint: str | None,
    created: list[tuple[str, str]],
    progress: ProgressCallback | None,
    target: str,
) -> str:
    """Upload ``model`` as a registry version (once); returns ``models/ID@VERSION``.

    The route is chosen before anything is sent: ``InvalidRequest`` names the versions and the
    build/push command when only the container route fits and no ``serving_image`` is set.
    """
    from google.cloud import aiplatform_v1 as v1

    cfg = api.config
    prefix = f"{cfg.staging_prefix}/models/{api.resource_id(model.name)}/{model.version}"
    with pkg.tempdir() as tmp:
        route, directory = _route(api, model, Path(tmp), target)
        existing = find_version(api, model)
        if existing is not None:
            return f"{existing.name}@{existing.version_id}"
        if directory is not None:
            created.append(("artifacts", prefix))
            bucket = api.client("storage").bucket(cfg.bucket)
            for f in pkg.files_of(directory):
                blob = bucket.blob(f"{prefix}/{f.relative_to(directory).as_posix()}")
                api.call(blob.upload_from_filename, str(f))
            artifact_uri = f"gs://{cfg.bucket}/{prefix}"
        else:
            artifact_uri = model.artifact or ""
    extra = {
        **model.tags,
        "cloudserve-version": model.version,
        "cloudserve-origin": origin,
        "cloudserve-route": route.kind,
    }
    if route.facts is not None and route.facts.integer_outputs:
        extra["cloudserve-output"] = "int"
    labels = api.labels(extra)
    if endpoint:
        labels["cloudserve-endpoint"] = api.resource_id(endpoint)
    alias = pkg.label_value(model.variant_name).replace("_", "-").rstrip("-")
    body = v1.Model(
        display_name=model.name,
        artifact_uri=artifact_uri,
        container_spec=v1.ModelContainerSpec(**route.container_spec(dict(model.env))),
        labels=labels,
        version_aliases=[alias] if alias else [],
        version_description=model.version,
        **api.encryption(),
    )
    exists = bool(versions_of(api, model.name))
    parent = (
        {"parent_model": api.model_path(model.name)}
        if exists
        else {"model_id": api.resource_id(model.name)}
    )
    request = v1.UploadModelRequest(parent=api.parent, model=body, **parent)
    op = api.rpc("model", "upload_model", request=request, retry=False)
    result = api.wait_op(op, f"upload of model {model.name} v{model.version}", progress=progress)
    ref = f"{result.model}@{result.model_version_id}"
    created.append(("model", ref))
    return ref


def _route(
    api: VertexApi, model: ModelSpec, tmp: Path, target: str
) -> tuple[pkg.Route, Path | None]:
    """Stage a local artifact, inspect it and choose the route (no request is sent)."""
    cfg = api.config
    if not (model.artifact and model.is_local):
        return pkg.choose_route(
            model, None, location=cfg.location, serving_image=cfg.serving_image, target=target
        ), None
    directory = pkg.stage(model, tmp)
    facts = None if model.image else pkg.inspect_model(directory)
    route = pkg.choose_route(
        model, facts, location=cfg.location, serving_image=cfg.serving_image, target=target
    )
    if route.prebuilt and facts is not None:
        pkg.prepare_prebuilt(directory, facts)
    return route, directory


def plan_route(api: VertexApi, model: ModelSpec, target: str) -> pkg.Route:
    """The route a deploy of ``model`` would take (for plan and validation)."""
    with pkg.tempdir() as tmp:
        return _route(api, model, Path(tmp), target)[0]


def version_facts(api: VertexApi, ref: str) -> dict[str, Any]:
    """A model version's registry facts (cached: versions are immutable)."""
    if ref not in api.versions:
        m = api.rpc("model", "get_model", name=ref)
        labels = dict(m.labels)
        api.versions[ref] = {
            "name": m.display_name,
            "version": m.version_description or m.version_id,
            "labels": labels,
            "artifact_uri": m.artifact_uri,
            "route": labels.get("cloudserve-route", "container"),
            "integer_outputs": labels.get("cloudserve-output") == "int",
            "raw": m,
        }
    return api.versions[ref]


def feature_names(api: VertexApi, ref: str) -> list[str] | None:
    """The feature order recorded in the staged manifest of a version (read once)."""
    facts = version_facts(api, ref)
    if "feature_names" not in facts:
        names = None
        uri = facts["artifact_uri"]
        bucket_prefix = f"gs://{api.config.bucket}/"
        if uri.startswith(bucket_prefix):
            blob_name = f"{uri.removeprefix(bucket_prefix).rstrip('/')}/cloudserve.json"
            blob = api.client("storage").bucket(api.config.bucket).blob(blob_name)
            manifest = orjson.loads(api.call(blob.download_as_bytes))
            names = (manifest.get("signature") or {}).get("feature_names")
        facts["feature_names"] = names
    return facts["feature_names"]


def to_model_version(
    api: VertexApi, ref: str, lineage: dict[str, Any] | None = None
) -> ModelVersion:
    info = version_facts(api, ref)
    m = info["raw"]
    return ModelVersion(
        name=info["name"],
        version=info["version"],
        provider=api.name,
        uri=info["artifact_uri"] or None,
        framework=None,
        created_at=m.version_create_time or None,
        stage=",".join(a for a in m.version_aliases) or None,
        lineage=lineage or {},
        tags={k: v for k, v in info["labels"].items() if not k.startswith("cloudserve-")},
        raw=m,
    )


def list_models(api: VertexApi, name: str | None = None) -> list[ModelVersion]:
    if name is not None:
        return [to_model_version(api, f"{v.name}@{v.version_id}") for v in versions_of(api, name)]
    models = api.rpc(
        "model", "list_models", request={"parent": api.parent, "filter": api.managed_filter()}
    )
    out: list[ModelVersion] = []
    for m in models:
        out.extend(list_models(api, m.display_name))
    return out


def delete_prefix(api: VertexApi, prefix: str) -> None:
    client = api.client("storage")
    for blob in api.call(client.list_blobs, api.config.bucket, prefix=prefix + "/"):
        api.call(blob.delete)


def delete_version(api: VertexApi, ref: str) -> None:
    """Delete one model version (the whole model when it is the last) and its staged files.

    Only called after every ``UndeployModel`` operation on it has completed: a version with
    deployed models cannot be deleted (DeleteModelVersion), and the registry drops the
    reference when the undeploy operation finishes.
    """
    from google.api_core import exceptions as gexc

    model = ref.split("@", 1)[0]
    try:
        versions = list(api.rpc("model", "list_model_versions", name=model))
    except NotFound as exc:
        if isinstance(exc.__cause__, gexc.NotFound):
            return
        raise
    target = next((v for v in versions if f"{v.name}@{v.version_id}" == ref), None)
    if target is None or target.deployed_models:
        return
    if len(versions) == 1:
        op = api.rpc("model", "delete_model", name=model, retry=False)
    else:
        op = api.rpc("model", "delete_model_version", name=ref, retry=False)
    api.wait_op(op, f"deletion of model {ref}")
    api.versions.pop(ref, None)
    uri = target.artifact_uri
    bucket_prefix = f"gs://{api.config.bucket}/{api.config.staging_prefix}/models/"
    if uri.startswith(bucket_prefix):
        delete_prefix(api, uri.removeprefix(f"gs://{api.config.bucket}/").rstrip("/"))


def uploaded_for(api: VertexApi, endpoint: str) -> list[str]:
    """Versions a deploy to ``endpoint`` uploaded (retired variants included)."""
    label = api.label_filter("cloudserve-endpoint", api.resource_id(endpoint))
    models = api.rpc(
        "model", "list_models", request={"parent": api.parent, "filter": api.managed_filter()}
    )
    out: list[str] = []
    for m in models:
        versions = api.rpc(
            "model", "list_model_versions", request={"name": m.name, "filter": label}
        )
        out.extend(f"{v.name}@{v.version_id}" for v in versions)
    return out


def delete_if_deployed_by_us(api: VertexApi, ref: str) -> None:
    from google.api_core import exceptions as gexc

    try:
        origin = version_facts(api, ref)["labels"].get("cloudserve-origin")
    except NotFound as exc:
        if isinstance(exc.__cause__, gexc.NotFound):
            return
        raise
    if origin == "deploy":
        delete_version(api, ref)
