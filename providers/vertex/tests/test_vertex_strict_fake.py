"""The fake checks every request against Google's discovery documents, as the service does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloudserve_vertex.testing import FakeVertex
from cloudserve_vertex.testing._discovery import DiscoveryValidator
from cloudserve_vertex.testing._http import ApiError

PARENT = "projects/fake-project/locations/us-central1"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeVertex]:
    with FakeVertex(workdir=tmp_path / "fake").serve() as f:
        yield f


def _error(resp: requests.Response) -> dict:
    assert resp.status_code == 400, resp.text
    body = resp.json()["error"]
    assert body["status"] == "INVALID_ARGUMENT"
    return body


def test_an_unknown_field_is_refused(fake: FakeVertex) -> None:
    body = {"displayName": "ep", "trafficSplitt": {"0": 100}}
    resp = requests.post(f"{fake.url}/v1/{PARENT}/endpoints", json=body, timeout=10)
    assert 'Unknown name "trafficSplitt"' in _error(resp)["message"]
    nested = {"displayName": "m", "containerSpec": {"imageUri": "x", "prt": 1}}
    resp = requests.post(
        f"{fake.url}/v1/{PARENT}/models:upload", json={"model": nested}, timeout=10
    )
    assert "Unknown name \"prt\" at 'model.container_spec'" in _error(resp)["message"]
    assert fake.endpoints() == [] and fake.models() == []


def test_a_wrong_enum_value_is_refused(fake: FakeVertex) -> None:
    spec = {"machineType": "n1-standard-2", "acceleratorType": "NVIDIA_TESLA_T5"}
    body = {"displayName": "j", "jobSpec": {"workerPoolSpecs": [{"machineSpec": spec}]}}
    resp = requests.post(f"{fake.url}/v1/{PARENT}/customJobs", json=body, timeout=10)
    assert "NVIDIA_TESLA_T5" in _error(resp)["message"]
    spec["acceleratorType"] = 99  # numbers (enum-encoding=int) are checked against the enum
    resp = requests.post(f"{fake.url}/v1/{PARENT}/customJobs", json=body, timeout=10)
    assert "99" in _error(resp)["message"]
    query = {"filter": 'metric.type = "x"', "aggregation.perSeriesAligner": "ALIGN_SOMETIMES"}
    resp = requests.get(f"{fake.url}/v3/projects/fake-project/timeSeries", params=query, timeout=10)
    assert "ALIGN_SOMETIMES" in _error(resp)["message"]


def test_a_wrong_verb_or_path_is_refused(fake: FakeVertex) -> None:
    resp = requests.get(f"{fake.url}/v1/{PARENT}/endpoints/ep:predict", timeout=10)
    assert "GET is not allowed" in _error(resp)["message"]
    resp = requests.delete(f"{fake.url}/v1/{PARENT}/models:upload", timeout=10)
    assert "DELETE is not allowed" in _error(resp)["message"]
    resp = requests.post(f"{fake.url}/v1/{PARENT}/endpoints:frobnicate", json={}, timeout=10)
    assert "no method" in _error(resp)["message"]


def test_an_unknown_query_parameter_is_refused(fake: FakeVertex) -> None:
    resp = requests.get(f"{fake.url}/v1/{PARENT}/endpoints", params={"colour": "red"}, timeout=10)
    assert 'Unknown name "colour"' in _error(resp)["message"]
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _ in fake.rejected()] == [("GET", "endpoints")]


def test_what_the_rest_transport_sends_passes() -> None:
    """The shape the GAPIC REST transport uses: camelCase, int64 as strings, enums as numbers,
    the ``$alt`` system parameter, LRO polls at /ui/ (checked as /v1/)."""
    v = DiscoveryValidator.shipped("aiplatform.v1")
    body = (
        b'{"deployedModel": {"model": "projects/p/locations/l/models/m@1",'
        b' "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-4",'
        b' "acceleratorType": 5, "acceleratorCount": 1}, "minReplicaCount": 1,'
        b' "maxReplicaCount": "3"}}, "trafficSplit": {"0": 100}}'
    )
    method = v.check(
        "POST", f"/v1/{PARENT}/endpoints/ep:deployModel", {"$alt": "json;enum-encoding=int"}, body
    )
    assert method.id == "aiplatform.projects.locations.endpoints.deployModel"
    assert v.match("GET", f"/v1/{PARENT}/models/m:listVersions").id.endswith("listVersions")
    assert v.match("GET", f"/v1/{PARENT}/models/m@2").id.endswith("models.get")
    with pytest.raises(ApiError, match="min_replica_count"):
        v.check(
            "POST", f"/v1/{PARENT}/endpoints/ep:deployModel", {}, body.replace(b"1,", b'"one",', 1)
        )
