"""What the framework route generates, checked without a workspace."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

from cloudserve.errors import InvalidRequest
from cloudserve.testing import make_sklearn_model
from cloudserve_azureml import AzureMLConfig
from cloudserve_azureml import _packaging as pkg


@pytest.mark.parametrize("script", ["_score_script.py", "_batch_script.py", "_trial_script.py"])
def test_uploaded_scripts_are_python_38_and_import_no_cloudserve(script):
    source = (Path(pkg.__file__).parent / script).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not any(
        name.startswith("cloudserve") and name != "cloudserve_handler" for name in imported
    )


def test_pins_drop_local_version_labels(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: "2.13.0+cpu" if d == "torch" else real(d)
    )
    assert pkg._pin("torch", "a pytorch model") == "torch==2.13.0"


def test_a_pickle_of_a_local_class_is_refused(local_class_pickle):
    with pytest.raises(InvalidRequest, match="my_local_features"):
        pkg.model_requirements(local_class_pickle, "sklearn")


def test_a_file_model_and_a_folder_model_get_the_same_pins(tmp_path):
    folder = make_sklearn_model(tmp_path / "m")
    assert pkg.model_requirements(folder, "sklearn") == pkg.model_requirements(
        folder / "model.joblib", None
    )


def test_extra_requirements_cannot_name_cloudserve():
    with pytest.raises(ValueError, match="package index"):
        AzureMLConfig(
            subscription_id="s",
            resource_group="r",
            workspace="w",
            extra_requirements=["cloudserve[sklearn]"],
        )
