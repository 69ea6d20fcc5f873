"""Moving clouds is one flag: ``plan ./model -t aws -t gcp -t azure`` from one model directory.

The framework is detected once in the core from the artifact (``cloudserve.json``, else the
model file) and handed to every provider in the spec, so each plans its own route.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.client import with_detected_framework
from cloudserve.registry import available

CLOUDS = {"aws": "sagemaker", "gcp": "vertex", "azure": "azureml"}
CONFIG = """
targets:
  aws:   {provider: sagemaker, region: us-east-1, role_arn: "arn:aws:iam::123456789012:role/sm", bucket: my-models}
  gcp:   {provider: vertex, project: my-proj, location: us-central1, staging_bucket: "gs://my-models"}
  azure: {provider: azureml, subscription_id: "00000000-0000-0000-0000-000000000000", resource_group: rg, workspace: ws}
"""
AWS_OFFLINE = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@pytest.fixture
def model_dirs(tmp_path: Path) -> dict[str, Path]:
    pytest.importorskip("sklearn")
    from cloudserve.testing import make_sklearn_model

    described = make_sklearn_model(tmp_path / "model")  # with cloudserve.json
    bare = tmp_path / "bare"  # only the model file: detected by its type
    bare.mkdir()
    shutil.copy(described / "model.joblib", bare / "model.joblib")
    return {"manifest": described, "file only": bare}


@pytest.mark.parametrize("which", ["manifest", "file only"])
def test_plan_on_three_clouds_from_one_model_directory(cli, tmp_path, model_dirs, which):
    missing = [p for p in CLOUDS.values() if p not in available()]
    if missing:
        pytest.skip(f"provider packages not installed: {missing}")
    (tmp_path / "cloudserve.yaml").write_text(CONFIG)
    model = model_dirs[which]
    args = ["plan", str(model), "-t", "aws", "-t", "gcp", "-t", "azure"]
    run = cli(*args, "--json", extra_env=AWS_OFFLINE)
    assert run.code == 0, run.stderr
    plans = json.loads(run.stdout)
    assert [p["target"] for p in plans] == list(CLOUDS)
    assert [p["provider"] for p in plans] == list(CLOUDS.values())
    for plan in plans:
        assert plan["route"] in ("framework", "container"), plan
        assert plan["calls"], plan
    # SageMaker chooses its route from the versions the model was written with; a container
    # route without a serving_image configured starts with the build/push step
    aws = plans[0]
    if aws["route"] == "container":
        first = aws["calls"][0]
        assert first["operation"] == "build-image --push", aws["calls"]
        assert "--push aws" in first["params"]["command"]
    text = cli(*args, extra_env=AWS_OFFLINE)
    assert text.code == 0, text.stderr
    for target, provider in CLOUDS.items():
        assert f"plan for {target} ({provider}) · " in text.stdout and " route" in text.stdout
    if aws["route"] == "container":
        assert f"step 1: cloudserve build-image {model} --push aws" in text.stdout


def test_the_core_detects_the_framework_once_for_every_provider(model_dirs):
    for model_dir in model_dirs.values():
        spec = cs.DeploySpec(
            model=cs.ModelSpec(name="churn", artifact=str(model_dir)), endpoint="e"
        )
        assert with_detected_framework(spec).model.framework == "sklearn"
    # what the user named, an image, or a cloud URI is left alone
    named = cs.ModelSpec(name="m", artifact=str(model_dirs["file only"]), framework="xgboost")
    image = cs.ModelSpec(name="m", image="registry.example/m:1")
    remote = cs.ModelSpec(name="m", artifact="s3://bucket/model.tar.gz")
    for model in (named, image, remote):
        spec = cs.DeploySpec(model=model, endpoint="e")
        assert with_detected_framework(spec) is spec


def test_local_plan_names_its_route(cli, model_dirs):
    run = cli("plan", str(model_dirs["file only"]), "--json")
    assert run.code == 0, run.stderr
    (plan,) = json.loads(run.stdout)
    assert plan["provider"] == "local" and plan["route"] == "local runtime"
