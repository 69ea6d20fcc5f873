"""Registry logins for ``build-image --push``, each through its cloud's real SDK against a fake."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from cloudserve.config import resolve_target, validate_block
from cloudserve.errors import ConfigError, InvalidRequest
from cloudserve.serving._registry import (
    ACR_USER,
    acr_login,
    artifact_registry_login,
    ecr_login,
    ecr_repository,
    record_serving_image,
    registry_for_target,
    workspace_registry,
)
from cloudserve.testing.fakes import request_body

TOKEN_URI = "https://oauth2.googleapis.com/token"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_ecr_login_uses_get_authorization_token(aws_env: None):
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        ecr = boto3.client("ecr", region_name="eu-west-1")
        uri = ecr_repository(ecr, "cloudserve")
        assert ecr_repository(ecr, "cloudserve") == uri  # found, not created twice
        assert len(ecr.describe_repositories()["repositories"]) == 1
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        login = ecr_login(ecr)
    assert uri == f"{login.registry}/cloudserve"
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-west-1\.amazonaws\.com", login.registry)
    assert (login.username, login.password) == tuple(base64.b64decode(token).decode().split(":", 1))
    assert login.password not in repr(login)


def test_sagemaker_target_pushes_to_its_ecr(aws_env: None):
    pytest.importorskip("cloudserve_sagemaker")
    moto = pytest.importorskip("moto")
    target = validate_block(
        "aws",
        {
            "provider": "sagemaker",
            "region": "us-west-2",
            "role_arn": "arn:aws:iam::123456789012:role/sm",
            "bucket": "models",
        },
    )
    with moto.mock_aws():
        remote, login = registry_for_target(target, "churn-runtime", "3")
    assert remote == f"{login.registry}/churn-runtime:3"
    assert login.username == "AWS" and ".dkr.ecr.us-west-2." in login.registry


def test_artifact_registry_login_is_an_access_token_for_oauth2accesstoken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("cloudserve_vertex")
    responses = pytest.importorskip("responses")
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "cid",
                "client_secret": "secret",
                "refresh_token": "refresh-1",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    target = validate_block(
        "gcp",
        {
            "provider": "vertex",
            "project": "proj-1",
            "location": "europe-west4",
            "staging_bucket": "gs://stage",
        },
    )
    with responses.RequestsMock() as rs:
        rs.add(
            responses.POST,
            TOKEN_URI,
            json={"access_token": "ya29.fake-token", "expires_in": 3600, "token_type": "Bearer"},
        )
        remote, login = registry_for_target(target, "runtime", "7")
        sent = parse_qs(request_body(rs.calls[0].request).decode())
    assert sent["grant_type"] == ["refresh_token"] and sent["refresh_token"] == ["refresh-1"]
    assert (login.registry, login.username, login.password) == (
        "europe-west4-docker.pkg.dev",
        "oauth2accesstoken",
        "ya29.fake-token",
    )
    assert remote == "europe-west4-docker.pkg.dev/proj-1/runtime/cloudserve:7"


def test_artifact_registry_login_with_explicit_credentials():
    responses = pytest.importorskip("responses")
    from google.oauth2.credentials import Credentials

    creds = Credentials(
        None, refresh_token="r", client_id="c", client_secret="s", token_uri=TOKEN_URI
    )
    with responses.RequestsMock() as rs:
        rs.add(responses.POST, TOKEN_URI, json={"access_token": "tok", "expires_in": 60})
        assert artifact_registry_login("us", creds).password == "tok"


class _Credential:
    """An azure-identity style credential that hands out a fixed Azure AD token."""

    def get_token(self, *scopes: str, **kwargs):
        from azure.core.credentials import AccessToken

        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken("aad-token", 4102444800)


def test_acr_login_exchanges_the_aad_token_of_the_workspace_registry():
    pytest.importorskip("azure.ai.ml")
    responses = pytest.importorskip("responses")
    cfg = validate_block(
        "azure",
        {
            "provider": "azureml",
            "subscription_id": "sub-1",
            "resource_group": "rg",
            "workspace": "ws",
        },
    ).config
    registry_id = (
        "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/"
        "WsRegistry01"
    )
    workspace = {
        "id": "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "name": "ws",
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": "eastus",
        "properties": {"friendlyName": "ws", "containerRegistry": registry_id},
    }
    exchanged: list[dict] = []

    def exchange(request):
        form = {k: v[0] for k, v in parse_qs(request_body(request).decode()).items()}
        exchanged.append(form)
        if form != {
            "grant_type": "access_token",
            "service": "wsregistry01.azurecr.io",
            "access_token": "aad-token",
        }:
            return 400, {}, json.dumps({"errors": [{"code": "UNSUPPORTED", "message": "bad form"}]})
        return 200, {}, json.dumps({"refresh_token": "acr-refresh-token"})

    with responses.RequestsMock() as rs:
        rs.add(
            responses.GET,
            re.compile(
                r"https://management\.azure\.com/subscriptions/sub-1/resourceGroups/rg/providers/"
                r"Microsoft\.MachineLearningServices/workspaces/ws\?api-version=.+"
            ),
            json=workspace,
        )
        rs.add_callback(
            responses.POST, "https://wsregistry01.azurecr.io/oauth2/exchange", callback=exchange
        )
        server = workspace_registry(cfg, _Credential())
        login = acr_login(server, _Credential())
        assert len(exchanged) == 1
        rs.replace(
            responses.POST,
            "https://wsregistry01.azurecr.io/oauth2/exchange",
            status=401,
            body="unauthorized",
        )
        with pytest.raises(InvalidRequest, match="refused the Azure AD token"):
            acr_login(server, _Credential())
    assert (login.registry, login.username, login.password) == (
        "wsregistry01.azurecr.io",
        ACR_USER,
        "acr-refresh-token",
    )


def test_pushed_uri_is_recorded_as_the_targets_serving_image(tmp_path: Path):
    pytest.importorskip("cloudserve_vertex")
    file = tmp_path / "cloudserve.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "default": "gcp",
                "targets": {
                    "gcp": {
                        "provider": "vertex",
                        "project": "p",
                        "staging_bucket": "gs://b",
                    }
                },
            }
        )
    )
    uri = "us-central1-docker.pkg.dev/p/cloudserve/cloudserve:3"
    record_serving_image(file, "gcp", uri)
    assert resolve_target("gcp", path=file).config.serving_image == uri
    with pytest.raises(ConfigError, match="no such target"):
        record_serving_image(file, "aws", uri)


def test_a_target_without_a_registry_is_named():
    with pytest.raises(InvalidRequest, match="target 'local' \\(local\\) has no image registry"):
        registry_for_target(resolve_target("local"), "cloudserve", "1")
