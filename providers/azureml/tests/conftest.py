import sys
from pathlib import Path

import pytest

# The harness module sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))

from azureml_harness import AzureMLHarness

from cloudserve.client import Client


@pytest.fixture
def harness_class() -> type[AzureMLHarness]:
    """The harness ``harness`` starts; a test module overrides this to use another one."""
    return AzureMLHarness


@pytest.fixture
def harness(tmp_path: Path, harness_class: type[AzureMLHarness]):
    """A fresh fake workspace per test (the real MLClient talks to it)."""
    h = harness_class()
    h.start(tmp_path)
    yield h
    h.stop()


@pytest.fixture
def client(harness: AzureMLHarness) -> Client:
    """A client of the provider under test, pointed at the fake."""
    return Client(harness.make_provider())


@pytest.fixture
def local_class_pickle(tmp_path: Path):
    """A model folder whose pickle imports a class from a module no distribution provides."""
    import pickle
    import types

    module = types.ModuleType("my_local_features")
    exec("class Scaler:\n    pass\n", module.__dict__)
    module.Scaler.__module__ = "my_local_features"
    sys.modules["my_local_features"] = module
    folder = tmp_path / "local-class"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps(module.Scaler()))
    yield folder
    del sys.modules["my_local_features"]
