"""Environment capture: the image pins every package the artifact needs."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.packaging import read_manifest, stage_model
from cloudserve.serving._capture import capture_requirements, pickle_modules
from cloudserve.serving._image import write_build_context


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    return x, (x[:, 0] > 0).astype(int)


def _joblib(model: object, directory: Path) -> Path:
    import joblib

    directory.mkdir()
    joblib.dump(model, directory / "model.joblib")
    return directory


@pytest.fixture
def xgb_classifier_dir(tmp_path: Path) -> Path:
    xgb = pytest.importorskip("xgboost")
    return _joblib(xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(*_xy()), tmp_path / "xgbc")


@pytest.fixture
def lgbm_classifier_dir(tmp_path: Path) -> Path:
    lgb = pytest.importorskip("lightgbm")
    model = lgb.LGBMClassifier(n_estimators=3, min_child_samples=5, verbose=-1).fit(*_xy())
    return _joblib(model, tmp_path / "lgbmc")


@pytest.mark.parametrize(
    ("fixture", "dist"),
    [("xgb_classifier_dir", "xgboost"), ("lgbm_classifier_dir", "lightgbm")],
)
def test_a_pickled_estimator_pins_the_library_it_imports(
    fixture: str, dist: str, request: pytest.FixtureRequest, tmp_path: Path
):
    """A joblib-pickled XGBClassifier / LGBMClassifier once got no xgboost / lightgbm line."""
    model_dir = request.getfixturevalue(fixture)
    context = write_build_context(model_dir, tmp_path / "ctx")
    assert context.framework == "sklearn"
    lines = (tmp_path / "ctx" / "requirements.txt").read_text().split()
    assert f"{dist}=={metadata.version(dist)}" in lines
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in lines
    # LightGBM's wheel loads the system's OpenMP runtime (the image failed with "libgomp.so.1:
    # cannot open shared object file"); XGBoost's bundles its own.
    assert ("libgomp1" in context.dockerfile.read_text()) == (dist == "lightgbm")


def test_pickle_modules_reads_names_without_running_anything(tmp_path: Path):
    marker = tmp_path / "ran"
    evil = tmp_path / "model.pkl"
    # GLOBAL os.system, then REDUCE: unpickling for real would run the command.
    evil.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    assert pickle_modules(evil) == {"os"}
    assert not marker.exists()


def test_a_module_that_is_not_installed_cannot_be_pinned(tmp_path: Path):
    model_dir = tmp_path / "ghost"
    model_dir.mkdir()
    # GLOBAL ghost_pkg.models Thing, EMPTY_TUPLE, NEWOBJ, STOP
    (model_dir / "model.pkl").write_bytes(b"\x80\x02cghost_pkg.models\nThing\n)\x81.")
    assert pickle_modules(model_dir / "model.pkl") == {"ghost_pkg.models"}
    staged = stage_model(model_dir, tmp_path / "staged", framework="sklearn")
    with pytest.raises(InvalidRequest, match=r"ghost_pkg\.models") as err:
        capture_requirements(staged, read_manifest(staged), ["scikit-learn"])
    assert err.value.code == "unpinnable_module"


def test_a_pickle_of_main_objects_is_refused_with_the_reason(tmp_path: Path):
    model_dir = tmp_path / "main"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes(b"\x80\x02c__main__\nMyModel\n)\x81.")
    staged = stage_model(model_dir, tmp_path / "staged", framework="sklearn")
    with pytest.raises(InvalidRequest, match="__main__"):
        capture_requirements(staged, read_manifest(staged), ["scikit-learn"])


def test_an_mlflow_model_keeps_its_own_requirements(tmp_path: Path, sklearn_dir: Path):
    model_dir = tmp_path / "mlflow-model"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes((sklearn_dir / "model.joblib").read_bytes())
    (model_dir / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.5.2\n"
    )
    (model_dir / "requirements.txt").write_text(
        "mlflow==2.17.0\ncloudpickle==3.1.0\nnumpy==1.26.4\nscikit-learn==1.5.2\n"
    )
    context = write_build_context(model_dir, tmp_path / "ctx")
    lines = (tmp_path / "ctx" / "requirements.txt").read_text().split()
    assert {"cloudpickle==3.1.0", "scikit-learn==1.5.2", "mlflow==2.17.0"} <= set(lines)
    assert "numpy==1.26.4" in lines  # the model's pin wins over the runtime's own
    assert not any(line.startswith("numpy==") and line != "numpy==1.26.4" for line in lines)
    assert context.framework == "sklearn"
