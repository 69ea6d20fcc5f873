"""Route selection: a prebuilt container only when one can load and serve the artifact."""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import pytest

from cloudserve.client import Client
from cloudserve.errors import InvalidRequest
from cloudserve.packaging import write_manifest
from cloudserve.specs import Compute, DeploySpec, ModelSpec
from cloudserve.testing import make_sklearn_model
from cloudserve_vertex import VertexProvider
from cloudserve_vertex import _packaging as pkg
from cloudserve_vertex.testing import FakeVertex


def test_the_prebuilt_table_is_the_sdks() -> None:
    from google.cloud.aiplatform.constants import prediction

    sdk: dict[str, set[str]] = {"sklearn": set(), "xgboost": set()}
    for uri in prediction.SKLEARN_CONTAINER_URIS + prediction.XGBOOST_CONTAINER_URIS:
        m = re.search(r"/(sklearn|xgboost)-cpu\.(\d+)-(\d+):latest$", uri)
        assert m, uri
        sdk[m[1]].add(f"{m[2]}.{m[3]}")
    assert {k: set(v) for k, v in pkg.PREBUILT.items()} == sdk


@pytest.mark.parametrize(
    ("framework", "version", "tag"),
    [
        ("sklearn", "0.20.4", "sklearn-cpu.0-20"),
        ("sklearn", "0.24.2", "sklearn-cpu.0-24"),
        ("sklearn", "1.4.2", "sklearn-cpu.1-4"),
        ("sklearn", "1.5.2", "sklearn-cpu.1-5"),
        ("sklearn", "1.6.1", "sklearn-cpu.1-6"),
        ("xgboost", "0.82", "xgboost-cpu.0-82"),
        ("xgboost", "0.90", "xgboost-cpu.0-90"),
        ("xgboost", "1.6.2", "xgboost-cpu.1-6"),
        ("xgboost", "2.1.4", "xgboost-cpu.2-1"),
    ],
)
def test_the_image_follows_the_version_that_wrote_the_model(framework, version, tag) -> None:
    image = pkg.prebuilt_image(framework, version, "europe-west4")
    assert image == f"europe-docker.pkg.dev/vertex-ai/prediction/{tag}:latest"


@pytest.mark.parametrize(("framework", "version"), [("sklearn", "1.7.0"), ("xgboost", "3.0.2")])
def test_no_prebuilt_image_past_the_table(framework, version) -> None:
    assert pkg.prebuilt_image(framework, version, "us-central1") is None


def _spec(directory: Path, framework: str = "sklearn") -> DeploySpec:
    model = ModelSpec(name="churn", version="1", artifact=str(directory), framework=framework)
    return DeploySpec(model=model, endpoint="ep", compute=Compute())


def test_a_model_no_prebuilt_container_loads_is_refused_before_any_request(
    fake: FakeVertex, tmp_path: Path
) -> None:
    import sklearn

    provider = VertexProvider(fake.config(serving_image=None), target="gcp")
    with pytest.raises(InvalidRequest) as info:
        Client(provider).deploy(_spec(make_sklearn_model(tmp_path / "m")))
    message = str(info.value)
    major_minor = ".".join(sklearn.__version__.split(".")[:2])
    assert (
        f"sklearn {sklearn.__version__}" in message and major_minor not in pkg.PREBUILT["sklearn"]
    )
    assert "0.20–1.6" in message
    assert "`cloudserve build-image --push gcp`" in message
    assert fake.requests_made() == [], "refused before any request"


def test_an_xgboost_3_bst_takes_the_container_route(fake: FakeVertex, tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=y), 3)
    directory = tmp_path / "xgb"
    directory.mkdir()
    booster.save_model(str(directory / "model.bst"))
    write_manifest(directory, framework="xgboost")
    assert pkg.xgboost_file_version(directory / "model.bst") == ".".join(
        xgb.__version__.split(".")[:2]
    )
    provider = VertexProvider(fake.config(serving_image=None))
    with pytest.raises(InvalidRequest, match=r"XGBoost 3 model loads in the 2\.1 container"):
        Client(provider).deploy(_spec(directory, "xgboost"))
    assert fake.requests_made() == []
    ep = Client(VertexProvider(fake.config())).deploy(_spec(directory, "xgboost"))
    [version] = fake.model_versions("churn")
    assert version["labels"]["cloudserve-route"] == "container"
    rows = x[:4].tolist()
    assert ep.predict(rows).outputs == pytest.approx(booster.predict(xgb.DMatrix(x[:4])).tolist())


def test_a_pipeline_selecting_columns_by_name_needs_the_container_route(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    pipe = Pipeline(
        [
            ("cols", ColumnTransformer([("s", StandardScaler(), ["a", "b"])])),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, [0, 1, 0, 1])
    directory = tmp_path / "pipe"
    directory.mkdir()
    joblib.dump(pipe, directory / "model.joblib")
    facts = pkg.inspect_model(directory)
    assert facts.blocker and "selects columns by name" in facts.blocker
    assert facts.feature_names == ["a", "b"] and facts.integer_outputs
    model = ModelSpec(
        name="p", artifact=str(directory), framework="sklearn", framework_version="1.5"
    )
    route = pkg.choose_route(model, facts, location="us-central1", serving_image="img", target="t")
    assert (route.kind, route.image) == ("container", "img")


def test_plan_lists_the_build_and_push_step(fake: FakeVertex, tmp_path: Path) -> None:
    provider = VertexProvider(fake.config(serving_image=None), target="gcp")
    calls = provider.plan(_spec(make_sklearn_model(tmp_path / "m")))
    assert calls[0].params == {"command": "cloudserve build-image --push gcp"}
    assert [c.operation for c in calls][1:] == [
        "objects.insert",
        "ModelService.UploadModel",
        "EndpointService.CreateEndpoint",
        "EndpointService.DeployModel",
    ]
    assert fake.requests_made() == []
