"""Pushing the serving image to a target's registry, logged in with the target's own SDK.

=============  ===============================================  ==========================
target         registry and image URI                           login
=============  ===============================================  ==========================
SageMaker      ECR ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO``  ``ecr.get_authorization_token``
                                                                (user ``AWS``); the
                                                                repository is created if absent
Vertex AI      Artifact Registry                                an OAuth access token as the
               ``LOCATION-docker.pkg.dev/PROJECT/REPO/NAME``    password of ``oauth2accesstoken``
Azure ML       the workspace's ACR ``NAME.azurecr.io/REPO``     the Azure AD token exchanged at
                                                                the registry's ``/oauth2/exchange``
                                                                for a refresh token (what
                                                                ``az acr login`` does)
=============  ===============================================  ==========================

The pushed URI is what the providers' container route deploys: :func:`record_serving_image`
writes it into the targets file as the target's ``serving_image``.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from cloudserve.config import Target
from cloudserve.errors import ConfigError, InvalidRequest

__all__ = [
    "ACR_USER",
    "RegistryLogin",
    "acr_login",
    "artifact_registry_login",
    "ecr_login",
    "ecr_repository",
    "push_image",
    "record_serving_image",
    "registry_for_target",
]

ACR_USER = "00000000-0000-0000-0000-000000000000"  # the user name ACR expects with a token
_ARM_SCOPE = "https://management.azure.com/.default"
_GCP_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class RegistryLogin:
    """What ``docker login`` / ``podman login`` needs."""

    registry: str
    username: str
    password: str = field(repr=False)


def ecr_login(ecr: Any) -> RegistryLogin:
    """Log in to ECR with ``get_authorization_token`` (a boto3 ``ecr`` client)."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = data["proxyEndpoint"]
    return RegistryLogin(urlparse(endpoint).netloc or endpoint, user, password)


def ecr_repository(ecr: Any, name: str) -> str:
    """The URI of ECR repository ``name``, created when it does not exist yet."""
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        found = ecr.create_repository(repositoryName=name)["repository"]
    return str(found["repositoryUri"])


def artifact_registry_login(location: str, credentials: Any) -> RegistryLogin:
    """Log in to Artifact Registry in ``location`` with google-auth ``credentials``' token."""
    from google.auth.transport.requests import Request

    credentials.refresh(Request())
    return RegistryLogin(f"{location}-docker.pkg.dev", "oauth2accesstoken", credentials.token)


def acr_login(login_server: str, credential: Any, *, tenant: str | None = None) -> RegistryLogin:
    """Log in to an Azure container registry: an Azure AD token (azure-identity ``credential``)
    exchanged for the registry's refresh token."""
    import requests

    token = credential.get_token(_ARM_SCOPE).token
    form = {"grant_type": "access_token", "service": login_server, "access_token": token}
    if tenant:
        form["tenant"] = tenant
    r = requests.post(f"https://{login_server}/oauth2/exchange", data=form, timeout=30)
    if r.status_code != 200:
        raise InvalidRequest(
            f"{login_server} refused the Azure AD token ({r.status_code}): {r.text[:200]}",
            code="registry_login_failed",
        )
    return RegistryLogin(login_server, ACR_USER, r.json()["refresh_token"])


def _vertex_credentials(cfg: Any) -> Any:
    if cfg.credentials == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(
            cfg.service_account_file, scopes=[_GCP_SCOPE]
        )
    import google.auth

    return google.auth.default(scopes=[_GCP_SCOPE])[0]


def _azure_credential(cfg: Any) -> Any:
    from azure import identity

    if cfg.credential == "service_principal":
        return identity.ClientSecretCredential(
            cfg.tenant_id, cfg.client_id, cfg.client_secret.get_secret_value()
        )
    return identity.DefaultAzureCredential()


def workspace_registry(cfg: Any, credential: Any) -> str:
    """The login server of an Azure ML workspace's container registry."""
    from azure.ai.ml import MLClient

    ml = MLClient(credential, cfg.subscription_id, cfg.resource_group, cfg.workspace)
    registry_id = ml.workspaces.get(cfg.workspace).container_registry
    if not registry_id:
        raise InvalidRequest(
            f"workspace {cfg.workspace} has no container registry yet (Azure creates it with "
            "the first image build); create one and attach it to the workspace",
            code="no_registry",
        )
    return f"{registry_id.rstrip('/').rsplit('/', 1)[-1].lower()}.azurecr.io"


def registry_for_target(target: Target, repository: str, tag: str) -> tuple[str, RegistryLogin]:
    """The image URI to push to for ``target`` and the login for its registry."""
    cfg: Any = target.config  # the provider's own config class, by ``target.provider``
    if target.provider == "sagemaker":
        import boto3

        session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
        endpoint = cfg.service_endpoints.get("ecr") or cfg.endpoint_url
        ecr = session.client("ecr", endpoint_url=endpoint)
        return f"{ecr_repository(ecr, repository)}:{tag}", ecr_login(ecr)
    if target.provider == "vertex":
        login = artifact_registry_login(cfg.location, _vertex_credentials(cfg))
        return f"{login.registry}/{cfg.project}/{repository}/cloudserve:{tag}", login
    if target.provider == "azureml":
        credential = _azure_credential(cfg)
        login = acr_login(workspace_registry(cfg, credential), credential)
        return f"{login.registry}/{repository}:{tag}", login
    raise InvalidRequest(
        f"target '{target.name}' ({target.provider}) has no image registry to push to",
        code="no_registry",
    )


def push_image(
    local: str,
    remote: str,
    *,
    engine: str,
    login: RegistryLogin | None = None,
    tls_verify: bool = True,
) -> None:
    """Tag ``local`` as ``remote`` and push it (after ``ENGINE login`` when given a login).

    ``tls_verify=False`` is for a plain-HTTP registry (a local one); Docker decides that from
    its own ``insecure-registries`` setting, Podman takes ``--tls-verify=false``.
    """
    tls = ["--tls-verify=false"] if engine == "podman" and not tls_verify else []
    if login is not None:
        _run(
            [
                engine,
                "login",
                *tls,
                "--username",
                login.username,
                "--password-stdin",
                login.registry,
            ],
            stdin=login.password,
            what=f"logging in to {login.registry}",
        )
    _run([engine, "tag", local, remote], what=f"tagging {local}")
    _run([engine, "push", *tls, remote], what=f"pushing {remote}")


def _run(argv: list[str], *, what: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise InvalidRequest(
            f"{what} failed ({argv[0]} exited {done.returncode}): {done.stderr.strip()[-500:]}",
            code="push_failed",
        )


def record_serving_image(file: Path, target: str, uri: str) -> None:
    """Set ``targets.TARGET.serving_image`` in a YAML targets file."""
    if file.suffix == ".toml":
        raise ConfigError(
            f'cannot rewrite a TOML targets file; add serving_image = "{uri}" to it',
            file=str(file),
            target=target,
            field="serving_image",
        )
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    block = (data.get("targets") or {}).get(target)
    if not isinstance(block, dict):
        raise ConfigError("no such target in the file", file=str(file), target=target)
    block["serving_image"] = uri
    file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
