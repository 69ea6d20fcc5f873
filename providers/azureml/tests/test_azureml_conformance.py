"""The shared conformance suite, through the real azure-ai-ml MLClient, against the fake."""

import pytest
from azureml_harness import AzureMLHarness

pytest.importorskip("cloudserve.serving", reason="the fake scores through cloudserve.serving")

from cloudserve.testing.suite import ProviderConformance


class TestAzureMLConformance(AzureMLHarness, ProviderConformance):
    pass
