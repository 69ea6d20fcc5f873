"""Config validation, lazy imports and provider discovery (no fake needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from cloudserve.errors import UnsupportedOperation
from cloudserve.provider import Capability
from cloudserve_vertex import VertexConfig, VertexProvider


def test_import_does_not_load_google_sdk() -> None:
    code = (
        "import sys, cloudserve_vertex as v;"
        "v.VertexConfig(project='p', staging_bucket='gs://b');"
        "heavy = [m for m in sys.modules if m.startswith(('google.cloud.aiplatform',"
        " 'google.api_core', 'google.auth', 'google.cloud.storage', 'grpc'))];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_entry_point_names_the_provider() -> None:
    from cloudserve.registry import get_provider_class

    assert get_provider_class("vertex") is VertexProvider


@pytest.mark.parametrize(
    "bad",
    [
        {"staging_bucket": "my-bucket"},
        {"credentials": "service_account"},
        {"api_endpoint": "127.0.0.1:8080"},
        {"labels": {"Team": "x"}},
        {"transport": "grpc", "api_endpoint": "http://127.0.0.1:1"},
        {"unknown": 1},
    ],
)
def test_config_rejects(bad: dict) -> None:
    with pytest.raises(ValidationError):
        VertexConfig(**{"project": "p", "staging_bucket": "gs://b", **bad})


def test_config_defaults() -> None:
    cfg = VertexConfig(project="p", staging_bucket="gs://b/")
    assert (cfg.location, cfg.credentials, cfg.transport) == ("us-central1", "default", "rest")
    assert cfg.bucket == "b" and cfg.max_request_mb == 1.5


def test_unsupported_raise_before_any_request() -> None:
    provider = VertexProvider(
        VertexConfig(
            project="p",
            staging_bucket="gs://b",
            credentials="anonymous",
            api_endpoint="http://127.0.0.1:9",
        )
    )
    with pytest.raises(UnsupportedOperation) as info:
        provider.predict_async("ep", [[1.0]])
    assert info.value.capability is Capability.ASYNC_PREDICT
    assert "batch" in info.value.reason
