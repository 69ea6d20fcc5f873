"""Local batch prediction with TorchScript and ONNX models: a row the model cannot take is a
failed row with the model's reason, and the job goes on with the rest."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_helpers import local_config

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.local import LocalProvider
from cloudserve.packaging import write_manifest
from cloudserve.resources import JobStatus

VOCABULARY = 10  # ids 0..9; a row holding 50 is out of range for both models
BAD_ROWS = {5, 31}


@pytest.fixture
def batch_client(state_dir: Path) -> Iterator[Client]:
    provider = LocalProvider(local_config(state_dir, batch_chunk_rows=20))
    yield Client(provider)
    provider.close()


def torch_ids_model(directory: Path) -> cs.ModelSpec:
    """A scripted embedding lookup: each row of 3 ids scores the sum of their embeddings."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the torch extra)")

    class Scores(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(VOCABULARY, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embedding(x).sum(dim=(1, 2))

    directory.mkdir()
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still widely shipped
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Scores()), str(directory / "model.pt"))
    write_manifest(directory, framework="pytorch", signature={"dtype": "int64"})
    return cs.ModelSpec(name="ids", artifact=str(directory), framework="pytorch")


def onnx_ids_model(directory: Path) -> cs.ModelSpec:
    """An ONNX graph that looks each id up in a table of 10 weights and sums the row."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.arange(VOCABULARY, dtype=np.float32), "table")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "x"], ["w"]),
            helper.make_node("ReduceSum", ["w", "axes"], ["y"], keepdims=0),
        ],
        "ids",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", "F"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        [table, numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir()
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    return cs.ModelSpec(name="ids", artifact=str(directory), framework="onnx")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (torch_ids_model, "index out of range in self"),
        (onnx_ids_model, "indices element out of data bounds, idx=50"),
    ],
    ids=["torch", "onnx"],
)
def test_a_row_the_model_cannot_take_is_a_failed_row_with_its_reason(
    batch_client: Client, tmp_path: Path, make, reason: str
):
    rng = np.random.default_rng(3)
    rows = rng.integers(0, VOCABULARY, size=(40, 3))
    rows[sorted(BAD_ROWS), 1] = 50
    src = tmp_path / "in.csv"
    src.write_text("a,b,c\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    spec = make(tmp_path / "model")
    job = batch_client.batch_predict(spec, src, tmp_path / "out", batch_size=8).wait(timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job
    assert (job.rows_total, job.rows_succeeded, job.rows_failed) == (40, 38, 2)
    with Path(job.error_file).open() as fh:
        errors = list(csv.DictReader(fh))
    assert {int(e["row"]) for e in errors} == BAD_ROWS
    assert all(reason in e["error"] for e in errors), errors
    # one line each, in the model's words: no TorchScript traceback in the error file
    assert not any("Traceback" in e["error"] or "\n" in e["error"] for e in errors), errors
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        predictions = list(csv.DictReader(fh))
    assert [int(p["row"]) for p in predictions] == sorted(set(range(40)) - BAD_ROWS)
