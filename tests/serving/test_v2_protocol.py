"""The Open Inference Protocol as Triton's own HTTP client speaks it, with its defaults.

``tritonclient.http`` sends inputs as binary tensor data (``Inference-Header-Content-Length``)
and asks for binary outputs unless told otherwise.
"""

from __future__ import annotations

import struct
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.serving import BackgroundServer, load_model
from cloudserve.serving._v2 import parse_infer_request
from conftest import ROWS

httpclient = pytest.importorskip(
    "tritonclient.http", reason="tritonclient[http] is a test dependency"
)


def _client(url: str):
    return httpclient.InferenceServerClient(url.removeprefix("http://"))


def test_tritonclient_defaults_get_the_models_predictions(any_model_dir: Path):
    expected = load_model(any_model_dir).predict(ROWS)
    with BackgroundServer(any_model_dir, max_batch_size=1, model_name="m") as srv:
        client = _client(srv.url)
        meta = client.get_model_metadata("m")
        (spec,) = meta["inputs"]
        rows = np.asarray(ROWS, dtype=httpclient.triton_to_np_dtype(spec["datatype"]))
        tensor = httpclient.InferInput(spec["name"], list(rows.shape), spec["datatype"])
        tensor.set_data_from_numpy(rows)  # binary_data=True by default
        result = client.infer("m", [tensor])
        assert result.get_response()["model_name"] == "m"
        output = result.get_output("output-0")
        assert "binary_data_size" in output["parameters"]  # the answer came back binary
        assert np.allclose(result.as_numpy("output-0"), np.asarray(expected), rtol=1e-6)
        # metadata describes what infer returned (it said BYTES while infer sent INT64); a
        # custom predictor of unknown input width can be described only after one infer
        after = client.get_model_metadata("m")["outputs"][0]
        before = meta["outputs"][0] if load_model(any_model_dir).n_features else after
        for described in (before, after):
            assert described["datatype"] == output["datatype"]
            assert described["shape"][1:] == output["shape"][1:]


def test_metadata_before_any_infer_matches_infer(sklearn_dir: Path):
    with BackgroundServer(sklearn_dir, max_batch_size=1) as srv:
        client = _client(srv.url)
        meta = client.get_model_metadata("churn")
        tensor = httpclient.InferInput("input", [len(ROWS), len(ROWS[0])], "FP64")
        tensor.set_data_from_numpy(np.asarray(ROWS, dtype=np.float64), binary_data=False)
        wanted = [httpclient.InferRequestedOutput("output-0", binary_data=False)]
        result = client.infer("churn", [tensor], outputs=wanted)
        output = result.get_output("output-0")
        assert output["datatype"] == meta["outputs"][0]["datatype"] == "INT64"
        assert output["data"] == load_model(sklearn_dir).predict(ROWS)


def test_repository_index_lists_the_model(sklearn_dir: Path):
    with BackgroundServer(sklearn_dir, model_name="churn-v2") as srv:
        index = _client(srv.url).get_model_repository_index()
    assert index == [{"name": "churn-v2", "version": "7", "state": "READY"}]


def test_binary_request_with_a_bad_header_length_is_a_400(sklearn_dir: Path):
    body = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 6],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 48},
                }
            ]
        }
    )
    payload = body + np.zeros(6).tobytes()
    with BackgroundServer(sklearn_dir) as srv:
        too_long = httpx.post(
            f"{srv.url}/v2/models/churn/infer",
            content=payload,
            headers={"Inference-Header-Content-Length": str(len(payload) + 1)},
        )
        short_data = httpx.post(
            f"{srv.url}/v2/models/churn/infer",
            content=payload[:-8],
            headers={"Inference-Header-Content-Length": str(len(body))},
        )
        ok = httpx.post(
            f"{srv.url}/v2/models/churn/infer",
            content=payload,
            headers={"Inference-Header-Content-Length": str(len(body))},
        )
    assert too_long.status_code == 400 and too_long.json()["code"] == "bad_header_length"
    assert short_data.status_code == 400 and "binary_data_size 48" in short_data.json()["error"]
    assert ok.status_code == 200 and ok.json()["outputs"][0]["datatype"] == "INT64"


def test_unknown_requested_output_is_a_400(sklearn_dir: Path):
    doc = {
        "inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": [0.0] * 6}],
        "outputs": [{"name": "probabilities"}],
    }
    with BackgroundServer(sklearn_dir) as srv:
        r = httpx.post(f"{srv.url}/v2/models/churn/infer", json=doc)
    assert r.status_code == 400
    assert "probabilities" in r.json()["error"]


def test_binary_bytes_tensors_are_length_prefixed():
    def request(words: list[bytes], shape: int) -> tuple[bytes, str]:
        data = b"".join(struct.pack("<I", len(w)) + w for w in words)
        tensor = {"name": "colour", "shape": [shape], "datatype": "BYTES"}
        tensor["parameters"] = {"binary_data_size": len(data)}
        header = orjson.dumps({"inputs": [tensor]})
        return header + data, str(len(header))

    _, [(name, array)] = parse_infer_request(*request([b"red", b"", b"blue"], 3))
    assert name == "colour" and array.tolist() == ["red", "", "blue"]
    with pytest.raises(InvalidRequest, match="2 BYTES elements for a shape of 3"):
        parse_infer_request(*request([b"red", b""], 3))


def test_serve_command_takes_a_model_name(custom_dir: Path):
    import subprocess
    import sys

    from test_process import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudserve.cli",
            "serve",
            str(custom_dir),
            "--port",
            str(port),
            "--model-name",
            "summer",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/v2/models/summer/ready").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
