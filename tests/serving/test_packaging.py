"""Manifests, framework detection, MLflow directories and staging."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import (
    Manifest,
    archive_model,
    detect_framework,
    read_manifest,
    stage_model,
    write_manifest,
)
from cloudserve.serving import load_model
from conftest import ROWS

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.{flavor}
  {flavor}:
    {key}: {file}
signature:
  inputs: '[{columns}]'
"""


def test_manifest_round_trip(tmp_path: Path):
    written = write_manifest(
        tmp_path, framework="scikit-learn", version=3, signature={"n_features": 4}
    )
    assert written.framework == "sklearn"
    read = read_manifest(tmp_path)
    assert read == written and isinstance(read, Manifest)
    assert read.version == "3" and read.signature.n_features == 4


def test_unknown_framework_and_bad_manifest_are_rejected(tmp_path: Path):
    with pytest.raises(InvalidRequest, match="unknown framework"):
        write_manifest(tmp_path, framework="tensorflow")
    (tmp_path / "cloudserve.json").write_text('{"framework": 3}')
    with pytest.raises(InvalidRequest, match="not a valid manifest"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("fixture", ["sklearn_dir", "xgboost_dir", "onnx_dir", "torch_dir"])
def test_framework_is_detected_from_the_files(request, tmp_path: Path, fixture: str):
    src = request.getfixturevalue(fixture)
    bare = tmp_path / "bare"
    shutil.copytree(src, bare, ignore=shutil.ignore_patterns("cloudserve.json"))
    expected = {
        "sklearn_dir": "sklearn",
        "xgboost_dir": "xgboost",
        "onnx_dir": "onnx",
        "torch_dir": "pytorch",
    }
    assert detect_framework(bare) == expected[fixture]
    model_file = next(p for p in bare.iterdir())
    assert detect_framework(model_file) == expected[fixture]


def test_xgboost_json_is_told_apart_from_other_json(xgboost_dir: Path, tmp_path: Path):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(xgboost_dir / "model.ubj"))
    booster.save_model(str(tmp_path / "booster.json"))
    assert detect_framework(tmp_path) == "xgboost"
    assert load_model(tmp_path).predict(ROWS) == load_model(xgboost_dir).predict(ROWS)
    (tmp_path / "booster.json").write_text('{"hello": 1}')
    with pytest.raises(InvalidRequest, match="cannot tell the framework"):
        detect_framework(tmp_path)


def test_mlflow_sklearn_directory_with_signature(sklearn_dir: Path, tmp_path: Path):
    shutil.copy(sklearn_dir / "model.joblib", tmp_path / "model.pkl")
    columns = ", ".join(f'{{"type": "double", "name": "f{i}"}}' for i in range(6))
    (tmp_path / "MLmodel").write_text(
        MLMODEL.format(flavor="sklearn", key="pickled_model", file="model.pkl", columns=columns)
    )
    manifest = read_manifest(tmp_path)
    assert manifest.framework == "sklearn"
    assert manifest.signature.feature_names == [f"f{i}" for i in range(6)]
    model = load_model(tmp_path)
    records = [{f"f{i}": v for i, v in enumerate(row)} for row in ROWS]
    assert model.predict(records) == load_model(sklearn_dir).predict(ROWS)


@pytest.mark.parametrize(
    ("flavor", "fixture", "file"),
    [("xgboost", "xgboost_dir", "model.ubj"), ("onnx", "onnx_dir", "model.onnx")],
)
def test_mlflow_xgboost_and_onnx_flavors(
    request, tmp_path: Path, flavor: str, fixture: str, file: str
):
    src = request.getfixturevalue(fixture)
    shutil.copy(src / file, tmp_path / file)
    (tmp_path / "MLmodel").write_text(
        MLMODEL.format(flavor=flavor, key="data", file=file, columns="")
    )
    assert detect_framework(tmp_path) == flavor
    assert load_model(tmp_path).predict(ROWS) == load_model(src).predict(ROWS)


def test_mlflow_flavor_we_cannot_serve(tmp_path: Path):
    (tmp_path / "MLmodel").write_text(
        MLMODEL.format(flavor="tensorflow", key="data", file="x", columns="")
    )
    with pytest.raises(InvalidRequest, match="tensorflow"):
        read_manifest(tmp_path)


def test_stage_and_archive(onnx_dir: Path, sklearn_dir: Path, tmp_path: Path):
    staged = stage_model(onnx_dir / "model.onnx", tmp_path / "staged", version="9", name="reg")
    manifest = read_manifest(staged)
    assert (manifest.framework, manifest.version, manifest.name) == ("onnx", "9", "reg")
    restaged = stage_model(sklearn_dir, tmp_path / "staged", version="8")
    assert read_manifest(restaged).name == "churn" and not (restaged / "model.onnx").exists()
    tar = archive_model(restaged, tmp_path / "out" / "model.tar.gz")
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == ["cloudserve.json", "model.joblib"]
    with pytest.raises(InvalidRequest, match="does not exist"):
        stage_model(tmp_path / "missing", tmp_path / "x")


def test_a_named_framework_wins_over_the_file_suffix(torch_dir: Path, tmp_path: Path):
    odd = tmp_path / "weights.bin"
    odd.write_bytes((torch_dir / "model.pt").read_bytes())
    staged = stage_model(odd, tmp_path / "staged", framework="torchscript", version="2")
    manifest = read_manifest(staged)
    assert (manifest.framework, manifest.artifact) == ("pytorch", "weights.bin")
    assert load_model(staged).predict(ROWS) == load_model(torch_dir).predict(ROWS)


def test_skops_file_loads_without_pickle(sklearn_dir: Path, tmp_path: Path):
    skops_io = pytest.importorskip("skops.io", reason="skops is not installed")
    import joblib

    skops_io.dump(joblib.load(sklearn_dir / "model.joblib"), tmp_path / "model.skops")
    assert load_model(tmp_path).predict(ROWS) == load_model(sklearn_dir).predict(ROWS)


def test_custom_predictor_manifest_errors(tmp_path: Path):
    write_manifest(tmp_path, framework="custom")
    with pytest.raises(InvalidRequest, match="module:Class"):
        load_model(tmp_path)
    write_manifest(tmp_path, framework="custom", predictor="nowhere:Thing")
    with pytest.raises(InvalidRequest, match="does not exist"):
        load_model(tmp_path)
    (tmp_path / "plain.py").write_text("class Thing:\n    pass\n")
    write_manifest(tmp_path, framework="custom", predictor="plain:Thing")
    with pytest.raises(InvalidRequest, match=r"not a cloudserve\.serving\.Predictor"):
        load_model(tmp_path)


def test_in_process_predict_accepts_rows_records_and_arrays(sklearn_dir: Path):
    import numpy as np

    model = load_model(sklearn_dir)
    expected = model.predict(ROWS)
    assert model.predict(np.asarray(ROWS)) == expected
    assert len(expected) == len(ROWS)
    assert model.predict(ROWS, {"method": "predict_proba"})[0][0] == pytest.approx(
        1 - model.predict(ROWS, {"method": "predict_proba"})[0][1]
    )
    assert (model.manifest.framework, model.version, model.name) == ("sklearn", "7", "churn")
