"""Every route of the real server, over HTTP, for every framework."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cloudserve import codecs
from cloudserve.serving import BackgroundServer, load_model
from conftest import N_FEATURES, ROWS

VERTEX_PREDICT = "/v1/endpoints/123/deployedModels/456:predict"
VERTEX_HEALTH = "/v1/endpoints/123/deployedModels/456"


@pytest.fixture(scope="module")
def served(any_model_dir: Path) -> Iterator[tuple[BackgroundServer, list]]:
    """A server for the model plus the outputs load_model gives for ROWS in-process."""
    expected = load_model(any_model_dir).predict(ROWS)
    with BackgroundServer(
        any_model_dir, predict_route=VERTEX_PREDICT, health_route=VERTEX_HEALTH
    ) as srv:
        yield srv, expected


@pytest.fixture(scope="module")
def http(served: tuple[BackgroundServer, list]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].url, timeout=30) as client:
        yield client


def close(a: object, b: object) -> bool:
    x, y = np.ravel(np.asarray(a, dtype=float)), np.ravel(np.asarray(b, dtype=float))
    return x.shape == y.shape and np.allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "path", ["/ping", "/", "/live", "/ready", "/v2/health/live", "/v2/health/ready", VERTEX_HEALTH]
)
def test_health_routes_answer_200(http: httpx.Client, path: str):
    assert http.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/invocations", "/predict", "/score", VERTEX_PREDICT])
def test_predict_routes_return_the_in_process_outputs(http, served, path):
    r = http.post(path, json={"instances": ROWS, "parameters": {}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert close(r.json()["predictions"], served[1])


@pytest.mark.parametrize(
    "body",
    [
        ROWS,
        {"inputs": ROWS},
        {"data": ROWS},
        {"dataframe_split": {"data": ROWS}},
    ],
    ids=["plain-list", "inputs", "data", "dataframe_split"],
)
def test_json_request_shapes(http, served, body):
    r = http.post("/invocations", json=body)
    assert r.status_code == 200, r.text
    assert close(r.json()["predictions"], served[1])


def test_csv_in_csv_out(http, served):
    body = codecs.encode_instances(ROWS, "text/csv")
    r = http.post(
        "/invocations", content=body, headers={"content-type": "text/csv", "accept": "text/csv"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv"
    assert close(codecs.decode_predictions(r.content, "text/csv"), served[1])


def test_npy_in_npy_out(http, served):
    body = codecs.encode_instances(np.asarray(ROWS), codecs.NPY)
    r = http.post(
        "/invocations", content=body, headers={"content-type": codecs.NPY, "accept": codecs.NPY}
    )
    assert r.status_code == 200, r.text
    assert close(np.load(io.BytesIO(r.content)), served[1])


def test_v2_metadata_and_readiness(http, served):
    srv = served[0]
    name = srv.app.model.name
    server = http.get("/v2").json()
    assert server["name"] == "cloudserve"
    meta = http.get(f"/v2/models/{name}").json()
    assert meta["name"] == name
    assert meta["versions"] == [srv.app.model.version]
    assert meta["platform"] == srv.app.model.framework
    assert http.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}


def test_v2_infer_with_typed_tensor(http, served):
    srv = served[0]
    name = srv.app.model.name
    dtype = "FP32" if srv.app.model.dtype == "float32" else "FP64"
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "x",
                "shape": [len(ROWS), N_FEATURES],
                "datatype": dtype,
                "data": np.ravel(ROWS).tolist(),
            }
        ],
    }
    r = http.post(f"/v2/models/{name}/infer", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_name"] == name and doc["id"] == "req-1"
    out = doc["outputs"][0]
    assert out["shape"][0] == len(ROWS)
    assert close(np.reshape(out["data"], out["shape"]), served[1])
    versioned = http.post(f"/v2/models/{name}/versions/{srv.app.model.version}/infer", json=body)
    assert versioned.status_code == 200


def test_metrics_count_requests_by_route_and_status(http):
    http.post("/invocations", json={"instances": ROWS})
    text = http.get("/metrics").text
    assert 'cloudserve_requests_total{route="invocations",status="200"}' in text
    assert "cloudserve_request_latency_seconds_bucket" in text
    assert "cloudserve_batch_size_bucket" in text
    assert "cloudserve_queue_depth" in text
    assert "cloudserve_cache_hits_total" in text
