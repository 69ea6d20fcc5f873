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
    d.mkdir(parents=True)
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


def test_a_model_fault_on_the_container_route_is_a_500_not_the_callers_fault(
    harness: AzureMLHarness, tmp_path: Path
) -> None:
    """The runtime image answers a predictor's own failure with 500 (only bad input is a 4xx);
    Azure wraps it in a 424 carrying that status."""
    model = custom_model(tmp_path)
    (Path(model.artifact) / "summer.py").write_text(  # type: ignore[arg-type]
        "from cloudserve.serving import Predictor\n\n"
        "class Summer(Predictor):\n"
        "    def load(self, path):\n        pass\n\n"
        "    def predict(self, rows):\n"
        "        if any(r[0] < 0 for r in rows):\n"
        "            raise RuntimeError('the model broke')\n"
        "        return [sum(r) for r in rows]\n"
    )
    fake = harness.fake
    provider = AzureMLProvider(fast_config(fake, serving_image=IMAGE), credential=fake.credential())
    client = Client(provider)
    client.deploy(model, "cs-img")
    assert client.predict("cs-img", [[1.0, 2.0]]).outputs == [3.0]
    with pytest.raises(cs.CloudServeError) as broke:
        client.predict("cs-img", [[-1.0, 2.0]])
    assert not isinstance(broke.value, cs.InvalidRequest)
    assert broke.value.code == "500"  # the container's status, as Azure forwards it
    assert fake.scoring_requests()[-1].status == 424


def test_the_runtime_finds_the_model_as_the_runtime_image_does(tmp_path: Path) -> None:
    """``AZUREML_MODEL_DIR`` with something other than one model folder is refused with the
    runtime image's own message (``resolve_azureml_model_dir``)."""
    from cloudserve_azureml.testing._container import RuntimeContainer

    mount = tmp_path / "azureml-models" / "summer" / "1"
    for name in ("a", "b"):
        custom_model(mount / name)
    with pytest.raises(cs.InvalidRequest, match="neither a model nor one model folder"):
        RuntimeContainer(mount, None)
    folder = tmp_path / "one" / "azureml-models" / "summer" / "1"
    custom_model(folder)  # one folder: the folder model, found inside it
    assert RuntimeContainer(folder, None).score({}, b'{"instances": [[1, 2]]}')[0] == 200
