"""Deploy, predict, canary, monitor and delete on Azure ML — against the offline fake.

The real azure-ai-ml MLClient talks HTTP to ``cloudserve_azureml.testing.FakeAzureML``; the
fake scores requests by running the deployed scikit-learn model, so the outputs are real.
Point the same code at a real workspace by dropping the fake and the ``credential`` argument.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cloudserve as cs
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve_azureml import AzureMLConfig, AzureMLProvider
from cloudserve_azureml.testing import FakeAzureML


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cs-azureml-example-"))
    with FakeAzureML(in_progress_polls=2, workdir=work / "fake") as fake:
        config = AzureMLConfig(
            subscription_id=fake.subscription_id,
            resource_group=fake.resource_group,
            workspace=fake.workspace,
            region="eastus",
            sdk_polling_interval_s=0.01,  # the SDK's default is 30 s per poll
        )
        client = cs.Client(AzureMLProvider(config, credential=fake.credential()))

        v1 = cs.ModelSpec(
            name="churn",
            version="1",
            framework="sklearn",
            artifact=str(make_sklearn_model(work / "m1", version="1")),
        )
        v2 = cs.ModelSpec(
            name="churn",
            version="2",
            framework="sklearn",
            artifact=str(make_sklearn_model(work / "m2", version="2", seed=1)),
        )

        ep = client.deploy(v1, "churn-ep", cs.Compute(size="cpu.medium"))
        print("deployed:", ep.status.value, ep.traffic, ep.variants[0].instance_type)
        rows = sample_rows(5)
        print("predict:", client.predict("churn-ep", rows).outputs)

        ep = client.deploy(v2, "churn-ep", traffic=20)  # canary beside v1
        print("canary:", ep.traffic, "| fake sees:", fake.traffic("churn-ep"))
        print("v2 only:", client.predict("churn-ep", rows, variant="v2").outputs)

        report = client.metrics("churn-ep", "1h")
        print(f"metrics: {report.invocations} requests, p50 {report.p50_ms:.2f} ms")

        client.delete_endpoint("churn-ep")
        print("left in the workspace:", fake.leftovers())
        assert fake.leftovers() == []


if __name__ == "__main__":
    main()
