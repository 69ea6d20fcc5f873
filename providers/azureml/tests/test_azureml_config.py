"""Config, packaging and fake checks that need no model runtime."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from cloudserve_azureml import AzureMLConfig
from cloudserve_azureml.testing import FakeAzureML


def test_import_loads_no_azure_module():
    code = "import sys, cloudserve_azureml; print(sorted(m for m in sys.modules if m.startswith('azure')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_service_principal_needs_its_fields_and_hides_the_secret():
    with pytest.raises(ValidationError):
        AzureMLConfig(
            subscription_id="s", resource_group="r", workspace="w", credential="service_principal"
        )
    cfg = AzureMLConfig(
        subscription_id="s",
        resource_group="r",
        workspace="w",
        credential="service_principal",
        tenant_id="t",
        client_id="c",
        client_secret="hunter2",
    )
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.model_dump_json()


def test_entry_point_names_the_provider():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="cloudserve.providers") if e.name == "azureml"]
    assert ep.value == "cloudserve_azureml:AzureMLProvider"


def test_fake_throttle_sends_retry_after_through_mlclient():
    from azure.core.exceptions import HttpResponseError

    with FakeAzureML() as fake:
        fake.inject("throttle", times=1, retry_after="7")
        with pytest.raises(HttpResponseError) as info:
            fake.ml_client().online_endpoints.get("nope")
        assert info.value.status_code == 429
        assert info.value.response.headers["Retry-After"] == "7"
