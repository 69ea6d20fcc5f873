"""The container route's image on Azure ML: the target's ``serving_image`` (recorded by
``cloudserve build-image --push``) serves a model ``score.py`` cannot load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from azureml_harness import AzureMLHarness, fast_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.config import resolve_target
from cloudserve.packaging import write_manifest
from cloudserve.serving._registry import record_serving_image
from cloudserve_azureml import AzureMLConfig, AzureMLProvider

IMAGE = "fakeacr.azurecr.io/cloudserve:3"


def custom_model(root: Path) -> cs.ModelSpec:
    d = root / "custom"
    d.mkdir()
    (d / "summer.py").write_text(
        "from cloudserve.serving import Predictor\n\n"
        "class Summer(Predictor):\n"
        "    def load(self, path):\n        pass\n\n"
        "    def predict(self, rows):\n        return [sum(r) for r in rows]\n"
    )
    write_manifest(d, framework="custom", version="1", predictor="summer:Summer")
    return cs.ModelSpec(name="summer", version="1", artifact=str(d), framework="custom")


def test_model_without_framework_route_and_no_serving_image_is_refused_before_any_request(
    harness: AzureMLHarness, client: Client, tmp_path: Path
) -> None:
    before = len(harness.fake.requests_made())
    with pytest.raises(cs.InvalidRequest, match=r"cloudserve build-image .*custom --push azureml"):
        client.deploy(custom_model(tmp_path), "cs-img")
    assert harness.fake.requests_made()[before:] == []


def test_the_targets_serving_image_serves_it_on_the_container_route(
    harness: AzureMLHarness, tmp_path: Path
) -> None:
    fake = harness.fake
    provider = AzureMLProvider(fast_config(fake, serving_image=IMAGE), credential=fake.credential())
    spec = cs.DeploySpec(model=custom_model(tmp_path), endpoint="cs-img")
    assert provider.route(spec) == "container"
    client = Client(provider)
    client.deploy(spec.model, "cs-img")
    (dep,) = fake.deployments("cs-img")
    env = fake.service._asset(dep["properties"]["environmentId"])
    assert env["properties"]["image"] == IMAGE
    assert env["properties"]["inferenceConfig"]["scoringRoute"]["path"] == "/score"
    assert not dep["properties"].get("codeConfiguration")  # no score.py on this route
    # the fake runs cloudserve's runtime on the mounted model, as the image does
    assert client.predict("cs-img", [[1.0, 2.0]]).outputs == [3.0]
    # a scikit-learn model still takes the framework route
    sk = cs.DeploySpec(model=harness.model_spec(tmp_path), endpoint="cs-img")
    assert provider.route(sk) == "framework"


def test_a_pushed_uri_is_recorded_in_an_azureml_target(tmp_path: Path) -> None:
    file = tmp_path / "cloudserve.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "targets": {
                    "azure": {
                        "provider": "azureml",
                        "subscription_id": "00000000-0000-0000-0000-000000000000",
                        "resource_group": "rg",
                        "workspace": "ws",
                    }
                }
            }
        )
    )
    record_serving_image(file, "azure", IMAGE)
    config = resolve_target("azure", path=file).config
    assert isinstance(config, AzureMLConfig) and config.serving_image == IMAGE
