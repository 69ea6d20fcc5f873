"""The shared conformance suite, through the real azure-ai-ml MLClient, against the fake."""

from azureml_harness import AzureMLHarness

from cloudserve.testing.suite import ProviderConformance


class TestAzureMLConformance(AzureMLHarness, ProviderConformance):
    pass
