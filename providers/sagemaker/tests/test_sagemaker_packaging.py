"""What the framework and container routes send, and how a model's route is chosen.

Defects covered: 1 (the container could not find ``inference.py``: ``SAGEMAKER_SUBMIT_DIRECTORY``
was the S3 URI of ``model.tar.gz``), 2 (``code/requirements.txt`` asked for cloudserve), 3 (a pickle
from a newer scikit-learn / numpy was sent to an image that cannot load it).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sagemaker_harness import BUCKET, ROLE, SERVING_IMAGE, fast_config, start_fake

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest
from cloudserve.packaging import write_manifest
from cloudserve.specs import DeploySpec, ModelSpec
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve_sagemaker import SageMakerProvider
from cloudserve_sagemaker._packaging import libraries_of
from cloudserve_sagemaker.testing import FakeSageMaker

needs_template = pytest.mark.skipif(
    importlib.util.find_spec("cloudserve._handler") is None,
    reason="the core's handler template (cloudserve._handler) has not landed in this checkout",
)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeSageMaker]:
    f = start_fake(tmp_path)
    yield f
    f.stop()
    assert f.rejected() == []


def provider(fake: FakeSageMaker, **overrides: Any) -> SageMakerProvider:
    return SageMakerProvider(fast_config(fake, **overrides), target="aws")


def sklearn_model(tmp_path: Path, libraries: dict[str, str] | None = None) -> ModelSpec:
    """A model whose manifest records the libraries it was written with (as staging in that
    environment would); ``None`` leaves them to be read from the artifact."""
    directory = make_sklearn_model(tmp_path / "model")
    if libraries is not None:
        write_manifest(directory, framework="sklearn", version="1", libraries=libraries)
    return ModelSpec(name="churn", version="1", artifact=str(directory), framework="sklearn")


SKLEARN_121 = {"scikit-learn": "1.2.1", "source": "artifact"}


def tarball_of(fake: FakeSageMaker, container: dict[str, Any]) -> dict[str, bytes]:
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    data = fake.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def deployed_container(fake: FakeSageMaker, endpoint: str) -> dict[str, Any]:
    sm = fake.client("sagemaker")
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    )
    name = config["ProductionVariants"][0]["ModelName"]
    return dict(sm.describe_model(ModelName=name)["PrimaryContainer"])


# -- route selection ------------------------------------------------------------------------------


def test_versions_are_read_from_the_artifact(tmp_path: Path) -> None:
    import sklearn

    directory = make_sklearn_model(tmp_path / "m")
    found = libraries_of(directory, "sklearn", directory / "model.joblib")
    assert found == {"scikit-learn": sklearn.__version__, "source": "artifact"}
    import numpy as np

    (tmp_path / "arr.pkl").write_bytes(pickle.dumps(np.arange(3)))
    numpy_major = np.__version__.split(".")[0]
    found = libraries_of(tmp_path, "sklearn", tmp_path / "arr.pkl")
    assert found["numpy"] == f"{numpy_major}.*", "numpy 2 pickles name numpy._core"


def test_a_model_no_image_can_load_is_refused_naming_both_versions(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    import sklearn

    client = Client(provider(fake, serving_image=None))
    spec = sklearn_model(tmp_path)
    with pytest.raises(InvalidRequest) as info:
        client.deploy(spec, "churn")
    text = str(info.value)
    assert f"scikit-learn {sklearn.__version__}" in text
    assert "1.2-1 (scikit-learn 1.2.1, numpy 1.24.1" in text
    assert f"`cloudserve build-image {spec.artifact} --push aws`" in text
    assert fake.requests() == [], "refused before any request"


def test_plan_lists_the_build_and_push_step(fake: FakeSageMaker, tmp_path: Path) -> None:
    p = provider(fake, serving_image=None)
    spec = DeploySpec(model=sklearn_model(tmp_path), endpoint="churn")
    calls = p.plan(spec)
    assert calls[0].operation == "build-image --push"
    assert calls[0].params["command"].endswith("--push aws")
    assert [c.operation for c in calls[1:]] == [
        "PutObject",
        "CreateModel",
        "CreateEndpointConfig",
        "CreateEndpoint",
    ]
    assert fake.requests() == []


def test_the_target_serving_image_takes_what_no_prebuilt_image_loads(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    client = Client(provider(fake))
    spec = sklearn_model(tmp_path)
    client.deploy(spec, "churn")
    container = deployed_container(fake, "churn")
    assert container["Image"] == SERVING_IMAGE
    rows = sample_rows(3)
    from cloudserve.serving import load_model

    assert client.predict("churn", rows).outputs == load_model(spec.artifact).predict(rows)


def test_the_image_version_comes_from_the_recorded_versions(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    p = provider(fake, region="eu-west-3")
    route = p.prepare(sklearn_model(tmp_path, SKLEARN_121)).route
    assert route.kind == "framework"
    assert route.image == (
        "659782779980.dkr.ecr.eu-west-3.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )
    assert route.env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    older = sklearn_model(tmp_path, {"scikit-learn": "1.0.2", "source": "artifact"})
    assert p.prepare(older).route.image.endswith(":1.0-1-cpu-py3")
    numpy2 = sklearn_model(tmp_path, {"scikit-learn": "1.2.1", "numpy": "2.*"})
    assert p.prepare(numpy2).route.kind == "container", "no 1.2.1 image has numpy 2"


def test_xgboost_models_take_the_oldest_image_at_least_as_new(tmp_path: Path) -> None:
    from cloudserve_sagemaker._packaging import choose_route

    spec = ModelSpec(name="m", artifact=str(tmp_path), framework="xgboost")
    pick = lambda v: choose_route(  # noqa: E731
        spec, {"xgboost": v}, region="us-east-1", serving_image="img", target="aws"
    )
    assert pick("1.7.6").image.endswith("sagemaker-xgboost:1.7-1")
    assert pick("1.6.2").image.endswith("sagemaker-xgboost:1.7-1")
    assert pick("2.1.1").image.endswith("sagemaker-xgboost:3.0-5")
    assert pick("3.2.0").image == "img", "newer than every image: the container route"


# -- what the framework route sends (defects 1 and 2) ---------------------------------------------


@needs_template
def test_framework_route_layout_and_env(fake: FakeSageMaker, tmp_path: Path) -> None:
    client = Client(provider(fake))
    spec = sklearn_model(tmp_path, SKLEARN_121)
    client.deploy(spec, "churn")
    container = deployed_container(fake, "churn")
    assert container["Image"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    env = container["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    files = tarball_of(fake, container)
    assert {
        "model.joblib",
        "cloudserve.json",
        "code/inference.py",
        "code/cloudserve_handler.py",
    } <= set(files)
    assert not any(n.endswith("requirements.txt") for n in files), "nothing installed at start"
    for name in ("code/inference.py", "code/cloudserve_handler.py"):
        tree = ast.parse(files[name], feature_version=(3, 8))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert "cloudserve" not in imported, f"{name} imports cloudserve"
    manifest = json.loads(files["cloudserve.json"])
    assert manifest["libraries"]["scikit-learn"] == "1.2.1"
    rows = sample_rows(4)
    from cloudserve.serving import load_model

    assert client.predict("churn", rows).outputs == load_model(spec.artifact).predict(rows)


def test_code_at_the_tarball_root_with_an_s3_submit_directory_fails_the_ping_check(
    fake: FakeSageMaker, tmp_path: Path
) -> None:
    """The layout cloudserve used to send: code/inference.py inside model.tar.gz and the
    tarball's S3 URI as SAGEMAKER_SUBMIT_DIRECTORY. sagemaker-containers extracts that tarball
    into /opt/ml/code, where ``import inference`` finds nothing."""
    sm, s3 = fake.client("sagemaker"), fake.client("s3")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as t:
        for name, data in (("code/inference.py", b"def model_fn(d):\n    return d\n"),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key="old/model.tar.gz", Body=raw.getvalue())
    url = f"s3://{BUCKET}/old/model.tar.gz"
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    sm.create_model(
        ModelName="old",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": url,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": url},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName="old",
        ProductionVariants=[
            {
                "VariantName": "v1",
                "ModelName": "old",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="old", EndpointConfigName="old")
    d = sm.describe_endpoint(EndpointName="old")
    assert d["EndpointStatus"] == "Failed"
    assert (
        "ping health check" in d["FailureReason"]
        and "No module named 'inference'" in d["FailureReason"]
    )
