import sys
from pathlib import Path

import pytest

# The harness module sits beside the tests; make it importable however pytest is invoked.
sys.path.insert(0, str(Path(__file__).parent))

from azureml_harness import AzureMLHarness

from cloudserve.client import Client


@pytest.fixture
def harness(tmp_path: Path):
    """A fresh fake workspace per test (the real MLClient talks to it)."""
    h = AzureMLHarness()
    h.start(tmp_path)
    yield h
    h.stop()


@pytest.fixture
def client(harness: AzureMLHarness) -> Client:
    """A client of the provider under test, pointed at the fake."""
    return Client(harness.make_provider())
