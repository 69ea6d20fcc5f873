"""Shadow variants on Azure ML, the real MLClient against the fake workspace.

``deploy(..., shadow=N)`` sets the endpoint's ``mirror_traffic``; the fake scores about that share
of the requests that name no deployment a second time on the mirror deployment (off the caller's
path, the answer discarded), and both deployments' ``score.py`` write their request log through the
data collector — which the shadow report joins by the request id cloudserve put in each body.
The shared ``ShadowConformance`` (``test_azureml_rollout_conformance.py``) checks the report
itself (agreement of an identical and of a different model, promotion); these check what is
Azure's: the mirror settings, the request log, its batching, and Azure's rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
from azureml_harness import fast_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve_azureml import AzureMLProvider
from cloudserve_azureml._packaging import deployment_name
from cloudserve_azureml.testing import FakeAzureML

EP = "cs-sh"
V1, V2, V3 = (deployment_name(v) for v in ("v1", "v2", "v3"))


@pytest.fixture
def fake(tmp_path: Path):
    with FakeAzureML(workdir=tmp_path / "fake", in_progress_polls=1, seed=7) as f:
        yield f


@pytest.fixture
def client(fake: FakeAzureML) -> Client:
    return Client(AzureMLProvider(fast_config(fake), credential=fake.credential()))


def spec(root: Path, version: str, *, flipped: bool = False) -> cs.ModelSpec:
    """Version ``version`` of one model; ``flipped`` answers the opposite class."""
    directory = make_sklearn_model(root / f"model-v{version}", version=version)
    if flipped:
        model = joblib.load(directory / "model.joblib")
        model.coef_, model.intercept_ = -model.coef_, -model.intercept_
        joblib.dump(model, directory / "model.joblib")
    return cs.ModelSpec(name=EP, version=version, artifact=str(directory), framework="sklearn")


@pytest.fixture
def live(client: Client, tmp_path: Path) -> Client:
    """``EP`` serving version 1 as variant v1."""
    client.deploy(spec(tmp_path, "1"), EP, variant="v1")
    return client


def changes(fake: FakeAzureML, since: int) -> list[tuple[str, str]]:
    return [(m, u) for m, u in fake.requests_made()[since:] if m != "GET"]


def served(fake: FakeAzureML, deployment: str) -> int:
    return sum(r.deployment == deployment for r in fake.scoring_requests())


def traffic(client: Client, fake: FakeAzureML, n: int, *, first: int = 0) -> None:
    """``n`` one-row requests to ``EP``, then the mirrored copies settled."""
    for i in range(first, first + n):
        client.predict(EP, sample_rows(1, seed=i))
    fake.settle_mirror()


@pytest.fixture
def shadowed(live: Client, tmp_path: Path) -> Client:
    """``EP`` with version 2 (the same model) as variant v2, mirrored half the requests."""
    live.deploy(spec(tmp_path, "2"), EP, variant="v2", shadow=50)
    return live


def test_production_answers_are_unchanged_and_about_the_share_is_mirrored(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    v1 = spec(tmp_path, "1")
    model = joblib.load(Path(v1.artifact) / "model.joblib")  # type: ignore[arg-type]
    ep = live.deploy(spec(tmp_path, "2"), EP, variant="v2", shadow=20)
    assert ep.traffic == {"v1": 100, "v2": 0}
    assert ep.variant("v2").shadow == 20 and ep.variant("v1").shadow == 0
    props = fake.resource(f"onlineEndpoints/{EP}")["properties"]  # type: ignore[index]
    assert props["mirrorTraffic"] == {V2: 20} and props["traffic"] == {V1: 100}
    # the live deployment was updated in place to write the request log the report joins
    (d1,) = [d for d in fake.deployments(EP) if d["name"] == V1]
    assert d1["properties"]["environmentVariables"]["CLOUDSERVE_REQUEST_LOG"] == "1"
    assert "cloudserve_requests" in d1["properties"]["dataCollector"]["collections"]
    n = 150
    for i in range(n):
        rows = sample_rows(2, seed=i)
        pred = live.predict(EP, rows)
        assert pred.variant == "v1"
        assert pred.outputs == model.predict(rows).tolist()
    fake.settle_mirror()
    mirrored = served(fake, V2)
    # binomial(150, 0.2): mean 30, sd 4.9 — only the far tails fail (seeded, so it never flakes)
    assert 12 <= mirrored <= 52, mirrored
    report = live.shadow_report(EP, window="1h")
    assert report.shadow_variant == "v2"
    assert report.mirrored == mirrored == report.both_answered
    assert report.agreement_rate == 1.0 and report.disagreements == []
    assert report.shadow_errors == 0 and report.production_errors == 0
    assert report.production_p50_ms is not None and report.shadow_p50_ms is not None
    assert fake.rejected() == []
    # the environment version v1 used before its request log was turned on went with it
    live.delete_endpoint(EP)
    assert fake.leftovers() == []


def test_request_log_survives_the_collector_batching_requests(
    shadowed: Client, fake: FakeAzureML
) -> None:
    live = shadowed
    traffic(live, fake, 20)
    prefix = f"modelDataCollector/{EP}/{V1}/cloudserve_requests/"
    blobs = [
        b
        for b in fake.service.blobs.under(
            fake.service.storage_account, fake.service.container, prefix
        ).values()
    ]
    records = [json.loads(line) for b in blobs for line in b.decode().splitlines() if line]
    rows = [row for r in records for row in r["data"]]
    assert len(rows) == 20 and len({r["request_id"] for r in rows}) == 20
    assert any(len(r["data"]) > 1 for r in records)  # one record, several requests' rows
    assert len(live.shadow_report(EP).disagreements) == 0


def test_requests_that_name_a_deployment_are_not_mirrored(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    live.deploy(spec(tmp_path, "2"), EP, variant="v2", shadow=50)
    for i in range(30):
        assert live.predict(EP, sample_rows(1, seed=i), variant="v1").variant == "v1"
    fake.settle_mirror()
    assert served(fake, V2) == 0 and live.shadow_report(EP).mirrored == 0


def test_invalid_shadows_are_refused_before_anything_changes(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    v2 = spec(tmp_path, "2")
    before = len(fake.requests_made())
    with pytest.raises(cs.InvalidRequest, match="at most 50%"):
        live.deploy(v2, EP, variant="v2", shadow=60)
    with pytest.raises(cs.InvalidRequest, match="takes no traffic"):
        live.deploy(v2, EP, variant="v2", traffic=10, shadow=10)
    assert fake.requests_made()[before:] == []  # refused by validation alone
    with pytest.raises(cs.InvalidRequest, match="live or mirrored traffic, not both"):
        live.deploy(v2, EP, variant="v1", shadow=10)
    with pytest.raises(cs.InvalidRequest, match="does not exist"):
        live.deploy(v2, "cs-none", variant="v2", shadow=10)
    assert changes(fake, before) == []
    live.deploy(v2, EP, variant="v2", shadow=10)
    before = len(fake.requests_made())
    with pytest.raises(cs.InvalidRequest, match="one deployment"):
        live.deploy(spec(tmp_path, "3"), EP, variant="v3", shadow=10)
    assert changes(fake, before) == []
    assert [d["name"] for d in fake.deployments(EP)] == [V1, V2]
    assert fake.rejected() == []


def test_same_shadow_again_is_a_no_op_and_a_new_share_only_moves_the_mirror(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    v2 = spec(tmp_path, "2")
    live.deploy(v2, EP, variant="v2", shadow=20)
    before = len(fake.requests_made())
    live.deploy(v2, EP, variant="v2", shadow=20)
    assert changes(fake, before) == []
    ep = live.deploy(v2, EP, variant="v2", shadow=40)
    assert ep.variant("v2").shadow == 40
    assert [u for _, u in changes(fake, before) if "/deployments/" in u] == []


def test_promoting_the_shadow_ends_mirroring(shadowed: Client, fake: FakeAzureML) -> None:
    live = shadowed
    traffic(live, fake, 20)
    mirrored = live.shadow_report(EP).mirrored
    assert mirrored > 0
    ep = live.set_traffic(EP, {"v1": 0, "v2": 100})
    assert ep.variant("v2").shadow == 0 and ep.traffic == {"v1": 0, "v2": 100}
    assert not fake.resource(f"onlineEndpoints/{EP}")["properties"]["mirrorTraffic"]  # type: ignore[index]
    traffic(live, fake, 20, first=100)
    assert {r.deployment for r in fake.scoring_requests()[-20:]} == {V2}
    assert served(fake, V1) == 20 and live.shadow_report(EP).mirrored == mirrored
    live.provider.delete_variant(EP, "v1")
    assert [d["name"] for d in fake.deployments(EP)] == [V2]
    assert fake.rejected() == []


def test_deleting_the_shadow_ends_mirroring_first(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    live.deploy(spec(tmp_path, "2"), EP, variant="v2", shadow=20)
    ep = live.provider.delete_variant(EP, "v2")
    assert [v.name for v in ep.variants] == ["v1"]
    assert not fake.resource(f"onlineEndpoints/{EP}")["properties"]["mirrorTraffic"]  # type: ignore[index]
    assert fake.rejected() == []


def test_fake_refuses_the_mirror_settings_azure_refuses(
    live: Client, fake: FakeAzureML, tmp_path: Path
) -> None:
    live.deploy(spec(tmp_path, "2"), EP, variant="v2", traffic=0)
    live.deploy(spec(tmp_path, "3"), EP, variant="v3", traffic=0)
    ml = live.provider.api.ml  # type: ignore[attr-defined]
    bad = [
        ({V2: 60}, "at most 50"),
        ({V2: 10, V3: 10}, "one deployment only"),
        ({V1: 10}, "live or mirrored traffic, not both"),
        ({"nosuch": 10}, "do not exist"),
    ]
    for mirror, why in bad:
        ep = ml.online_endpoints.get(EP)
        ep.mirror_traffic = mirror
        with pytest.raises(Exception, match=why):
            ml.online_endpoints.begin_create_or_update(ep).result()
    assert len(fake.rejected()) == len(bad)
    assert all(w in r[2] for (_, w), r in zip(bad, fake.rejected(), strict=True))
    assert fake.resource(f"onlineEndpoints/{EP}")["properties"].get("mirrorTraffic") in ({}, None)  # type: ignore[index]


def test_image_served_variants_cannot_take_part_in_a_shadow(
    fake: FakeAzureML, tmp_path: Path
) -> None:
    """A container-route deployment writes no request log: neither side may be one."""
    from test_azureml_serving_image import IMAGE, custom_model

    client = Client(
        AzureMLProvider(fast_config(fake, serving_image=IMAGE), credential=fake.credential())
    )
    client.deploy(custom_model(tmp_path), EP, variant="v1")  # served by the image
    before = len(fake.requests_made())
    with pytest.raises(cs.InvalidRequest, match="served by an image"):
        client.deploy(spec(tmp_path, "2"), EP, variant="v2", shadow=10)
    with pytest.raises(cs.InvalidRequest, match="writes none"):
        client.deploy(custom_model(tmp_path / "other"), EP, variant="v2", shadow=10)
    assert changes(fake, before) == [] and fake.rejected() == []
