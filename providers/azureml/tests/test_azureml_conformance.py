"""The shared conformance suite and the answers-parity checks, through the real azure-ai-ml
MLClient, against the fake (which runs the generated score.py and batch_score.py)."""

from azureml_harness import AzureMLHarness

from cloudserve.testing.suite import AnswersParityTests, ProviderConformance


class TestAzureMLConformance(AzureMLHarness, ProviderConformance):
    pass


class TestAzureMLParity(AzureMLHarness, AnswersParityTests):
    pass
