"""Every error the server answers, and that it keeps serving after each."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloudserve.serving import BackgroundServer
from conftest import N_FEATURES, ROWS, make_custom

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(sklearn_dir: Path) -> Iterator[httpx.Client]:
    """An sklearn server with a token and a small body limit."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    with (
        BackgroundServer(sklearn_dir, token=TOKEN, max_body_bytes=2000) as srv,
        httpx.Client(base_url=srv.url, headers=auth) as client,
    ):
        yield client


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["error"]
    return body


def test_missing_or_wrong_token_is_401_but_health_stays_public(guarded: httpx.Client):
    url = str(guarded.base_url)
    assert_error(httpx.post(f"{url}/invocations", json=ROWS), 401, "unauthorized")
    wrong = httpx.post(f"{url}/invocations", json=ROWS, headers={"authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(f"{url}/metrics"), 401, "unauthorized")
    assert httpx.get(f"{url}/ping").status_code == 200
    assert guarded.post("/invocations", json=ROWS).status_code == 200


def test_body_over_the_limit_is_413(guarded):
    big = {"instances": [[0.123456789] * N_FEATURES] * 100}
    assert_error(guarded.post("/invocations", json=big), 413, "payload_too_large")


def test_body_over_the_limit_without_content_length_is_413(guarded):
    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(200):
            yield b"[1, 2, 3, 4, 5, 6],"
        yield b"[1, 2, 3, 4, 5, 6]]}"

    r = guarded.post("/invocations", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_unsupported_content_type_is_415(guarded):
    r = guarded.post(
        "/invocations", content=b"<rows/>", headers={"content-type": "application/xml"}
    )
    assert_error(r, 415, "unsupported_media_type")


def test_unsupported_accept_is_406(guarded):
    r = guarded.post("/invocations", json=ROWS, headers={"accept": "application/xml"})
    assert_error(r, 406, "not_acceptable")


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "malformed_json", "malformed JSON"),
        (b'{"rows": [[1]]}', "bad_shape", "instances"),
        (b'{"instances": []}', "empty_input", "no rows"),
        (b'{"instances": [[1, 2]]}', "wrong_shape", "needs 6 features, got 2"),
        (b'{"instances": [[1, 2, 3, 4, 5, 6], [1, 2]]}', "wrong_shape", "row 1 has 2 values"),
        (
            b'{"instances": [["a", "b", "c", "d", "e", "f"]]}',
            "model_rejected_input",
            "could not convert string to float",
        ),
        (
            b'{"instances": [[1, 2, 3, 4, 5, 6]], "parameters": {"method": "fit"}}',
            "bad_parameters",
            "fit",
        ),
        (b"", "empty_body", "empty"),
    ],
    ids=[
        "malformed",
        "no-known-key",
        "empty-rows",
        "wrong-width",
        "ragged",
        "strings",
        "bad-method",
        "empty-body",
    ],
)
def test_bad_payload_is_400_naming_the_problem(guarded, body, code, words):
    r = guarded.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert words in assert_error(r, 400, code)["error"]


def test_v2_errors(guarded):
    assert_error(guarded.get("/v2/models/nope"), 404, "not_found")
    bad_type = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP99", "data": [0] * 6}]}
    assert_error(guarded.post("/v2/models/churn/infer", json=bad_type), 400, "bad_datatype")
    bad_shape = {"inputs": [{"name": "x", "shape": [2, 6], "datatype": "FP64", "data": [0] * 6}]}
    assert_error(guarded.post("/v2/models/churn/infer", json=bad_shape), 400, "bad_shape")
    assert_error(guarded.post("/v2/models/churn/infer", json={"inputs": []}), 400, "bad_shape")


def test_unknown_route_and_wrong_method(guarded):
    assert_error(guarded.get("/nope"), 404, "not_found")
    assert_error(guarded.get("/invocations"), 405, "method_not_allowed")
    assert_error(guarded.post("/ping"), 405, "method_not_allowed")
    assert guarded.post("/invocations", json=ROWS).status_code == 200


@pytest.fixture(scope="module")
def custom(custom_dir: Path) -> Iterator[httpx.Client]:
    with BackgroundServer(custom_dir) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client


def test_model_exception_is_500_with_error_id_and_server_keeps_serving(custom, caplog):
    r = custom.post("/invocations", json=[[666, 1]])
    body = assert_error(r, 500, "model_error")
    assert len(body["error_id"]) == 16
    assert "666" not in body["error"]  # details go to the log, not to the caller
    assert any(body["error_id"] in rec.getMessage() for rec in caplog.records)
    ok = custom.post("/invocations", json=[[1, 2]])
    assert ok.status_code == 200 and ok.json() == {"predictions": [3.5]}


def test_predictor_preprocess_error_is_400(custom):
    assert_error(custom.post("/invocations", json=[1, 2]), 400, "wrong_shape")


@pytest.fixture(scope="module")
def slow_dir(model_root: Path) -> Path:
    return make_custom(model_root / "slow", delay=0.3)


def _post_many(url: str, bodies: list) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(
            pool.map(lambda b: httpx.post(f"{url}/invocations", json=b, timeout=30), bodies)
        )


def test_concurrent_requests_are_batched_and_a_bad_one_fails_alone(slow_dir):
    with BackgroundServer(slow_dir, max_batch_size=64, max_wait_ms=50) as srv:
        bodies = [[[i, 1]] for i in range(8)] + [[[666, 0]]]
        responses = _post_many(srv.url, bodies)
        predictor = srv.app.model.predictor
    statuses = [r.status_code for r in responses]
    assert statuses[-1] == 500 and statuses[:-1] == [200] * 8
    assert [r.json()["predictions"] for r in responses[:-1]] == [[i + 1.5] for i in range(8)]
    assert max(predictor.batches) > 1  # some requests shared one model call


def test_batching_off_runs_one_request_per_call(slow_dir):
    with BackgroundServer(slow_dir, max_batch_size=1) as srv:
        responses = _post_many(srv.url, [[[i, 1], [i, 2]] for i in range(3)])
        predictor = srv.app.model.predictor
    assert all(r.status_code == 200 for r in responses)
    assert predictor.batches == [2, 2, 2]


def test_overload_sheds_with_503_and_retry_after(slow_dir):
    with BackgroundServer(slow_dir, max_batch_size=1, max_queue=1) as srv:
        responses = _post_many(srv.url, [[[i, 1]] for i in range(6)])
        metrics = httpx.get(f"{srv.url}/metrics").text
    shed = [r for r in responses if r.status_code == 503]
    assert shed, [r.status_code for r in responses]
    assert all(
        r.json()["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1 for r in shed
    )
    assert {r.status_code for r in responses} <= {200, 503}
    assert "cloudserve_shed_requests_total 0.0" not in metrics


def test_a_model_that_fails_to_load_is_reported(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(RuntimeError, match="failed to load"):
        BackgroundServer(tmp_path, ready_timeout=30).__enter__()
