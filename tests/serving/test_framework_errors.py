"""TorchScript and ONNX models: rows they cannot take are the caller's 400, their own faults a 500.

The corpus (``bad_inputs/torch-*``, ``onnx-*``) holds the wrong width, rank and dtype sent to
models that declare no width; these tests hold the other side of the rule — a model broken
inside is still a 500 with an error id and no traceback in the answer — and what the 400 says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.serving import BackgroundServer, load_model
from conftest import LogWatch

ROW6 = [[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]]


@pytest.fixture(scope="module")
def clients(
    torch_models: dict[str, Path], onnx_models: dict[str, Path]
) -> Iterator[dict[str, httpx.Client]]:
    dirs = {"torch-linear": torch_models["linear"], "torch-checks": torch_models["checks"]}
    dirs |= {"torch-broken": torch_models["broken"], "torch-singular": torch_models["singular"]}
    dirs |= {"onnx-dynamic": onnx_models["dynamic"], "onnx-unshaped": onnx_models["unshaped"]}
    dirs |= {"onnx-broken": onnx_models["broken"], "onnx-bad_index": onnx_models["bad_index"]}
    with ExitStack() as stack:
        urls = {name: stack.enter_context(BackgroundServer(d)).url for name, d in dirs.items()}
        yield {
            name: stack.enter_context(httpx.Client(base_url=url, timeout=30))
            for name, url in urls.items()
        }


def _refused(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "model_rejected_input" and len(body["error_id"]) == 16, body
    assert "Traceback" not in body["error"] and ".py" not in body["error"], body
    return body["error"]


def _failed(r: httpx.Response) -> None:
    assert r.status_code == 500, r.text
    body = r.json()
    assert body["code"] == "model_error" and len(body["error_id"]) == 16, body
    assert "Traceback" not in r.text and "weights" not in r.text and "singular" not in r.text
    assert "Reshape" not in r.text and "Gather" not in r.text


@pytest.mark.parametrize(
    ("model", "bad", "good", "words"),
    [
        (
            "torch-linear",
            [[1.0, 2.0, 3.0]],
            ROW6,
            "mat1 and mat2 shapes cannot be multiplied (1x3 and 6x2)",
        ),
        (
            "torch-checks",
            [[1.0, 2.0]],
            [[1.0, 2.0, 3.0]],
            "rows need 3 columns: age, income, tenure",
        ),
        (
            "onnx-dynamic",
            [[1.0, 2.0]],
            ROW6,
            "the MatMul node failed: Compute MatMul dimension mismatch",
        ),
        (
            "onnx-unshaped",
            [[1.0, 2.0]],
            ROW6,
            "the MatMul node failed: Compute MatMul dimension mismatch",
        ),
    ],
)
def test_rows_the_model_cannot_take_are_a_400_in_its_words(
    clients, log_watch: LogWatch, model: str, bad: list, good: list, words: str
):
    error = _refused(clients[model].post("/invocations", json=bad))
    assert error == f"the model rejected the input: {words}"
    assert log_watch.tracebacks() == []
    assert clients[model].post("/invocations", json=good).status_code == 200


@pytest.mark.parametrize(
    "model", ["torch-broken", "torch-singular", "onnx-broken", "onnx-bad_index"]
)
def test_a_model_broken_inside_is_a_500_with_an_error_id(clients, log_watch: LogWatch, model: str):
    r = clients[model].post("/invocations", json=ROW6)
    _failed(r)
    # the traceback is in the server's log, under the id the caller got
    logged = [rec for rec in log_watch.records if r.json()["error_id"] in rec.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info, logged
    assert clients[model].get("/ping").status_code == 200


def test_in_process_predict_raises_the_same_invalid_request(torch_models, onnx_models):
    for directory in (torch_models["linear"], onnx_models["dynamic"]):
        with pytest.raises(InvalidRequest) as caught:
            load_model(directory).predict([[1.0, 2.0, 3.0]])
        assert caught.value.code == "model_rejected_input"
    with pytest.raises(Exception, match="weights file was truncated") as broken:
        load_model(torch_models["broken"]).predict(ROW6)
    assert not isinstance(broken.value, InvalidRequest)
