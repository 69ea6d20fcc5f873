"""Load errors say what is actually wrong with the artifact, and what to do about it."""

from __future__ import annotations

import sys

import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import stage_model, write_manifest
from cloudserve.serving import load_model

PREDICTOR = """
from cloudserve.serving import Predictor


class Summer(Predictor):
    def load(self, path):
        pass

    def predict(self, rows):
        return [sum(r) for r in rows]
"""


def test_a_pickle_importing_a_missing_module_names_that_module(tmp_path, monkeypatch):
    joblib = pytest.importorskip("joblib")
    code = tmp_path / "code"
    code.mkdir()
    (code / "cs_gone_features.py").write_text("class Scaler:\n    factor = 2\n")
    monkeypatch.syspath_prepend(str(code))
    import cs_gone_features

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    joblib.dump(cs_gone_features.Scaler(), model_dir / "model.joblib")
    write_manifest(model_dir, framework="sklearn")
    # the module that saved the model is not installed where it is served
    del sys.modules["cs_gone_features"]
    (code / "cs_gone_features.py").unlink()
    with pytest.raises(ImportError) as info:
        load_model(model_dir)
    message = str(info.value)
    assert "'cs_gone_features'" in message and "cloudserve[sklearn]" not in message


def test_a_torch_save_state_dict_says_it_is_not_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.save(torch.nn.Linear(3, 1).state_dict(), model_dir / "model.pt")
    write_manifest(model_dir, framework="pytorch")
    with pytest.raises(InvalidRequest) as info:
        load_model(model_dir)
    message = str(info.value)
    assert "not a TorchScript module" in message and "torch.jit.script" in message
    assert "corrupted" not in message


def test_a_custom_model_without_a_manifest_says_what_the_manifest_needs(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "summer.py").write_text(PREDICTOR)
    for attempt in (
        lambda: load_model(model_dir),
        lambda: stage_model(model_dir, tmp_path / "staged", framework="custom"),
    ):
        with pytest.raises(InvalidRequest) as info:
            attempt()
        message = str(info.value)
        assert "predictor='summer:CLASS'" in message and "write_manifest" in message
    # …and once the manifest names the class, the same directory serves
    write_manifest(model_dir, framework="custom", predictor="summer:Summer")
    assert load_model(model_dir).predict([[1, 2], [3, 4]]) == [3, 7]
