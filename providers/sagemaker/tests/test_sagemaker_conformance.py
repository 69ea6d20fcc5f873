"""The shared conformance suite, through real boto3 over HTTP, against the moto-based fake."""

import pytest
from sagemaker_harness import SageMakerHarness

pytest.importorskip("moto", reason="the fake SageMaker is moto in server mode")

from cloudserve.testing.suite import AsyncTests, ProviderConformance
from cloudserve_sagemaker import AsyncInferenceSettings


class TestSageMakerConformance(SageMakerHarness, ProviderConformance):
    @pytest.mark.xfail(
        reason="SageMaker queues predictions only on endpoints deployed for asynchronous "
        "inference; TestSageMakerAsyncConformance runs this test with async_inference set",
        strict=True,
    )
    def test_async_predict(self, client, workdir, endpoint_name):  # type: ignore[no-untyped-def]
        AsyncTests.test_async_predict(self, client, workdir, endpoint_name)


class TestSageMakerAsyncConformance(SageMakerHarness, AsyncTests):
    """The async test on a target whose deploys create asynchronous endpoints."""

    config_overrides = {"async_inference": AsyncInferenceSettings()}
