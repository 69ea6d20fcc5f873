"""Shadow traffic, then a metric-gated rollout and an automatic rollback on SageMaker — offline.

Real boto3 talks HTTP to ``cloudserve_sagemaker.testing.FakeSageMaker``, which answers every
invocation with the deployed model, mirrors a share of them to a shadow variant
(``ShadowProductionVariants``), captures both answers, and publishes CloudWatch datapoints
stamped with a simulated clock. The provider ends its metric windows on the same clock and the
rollout's bakes advance it while sending real traffic, so one-minute bakes take a second.
On AWS: drop the fake, ``endpoint_url`` and ``clock``, and bake for real (``bake="5m"``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cloudserve as cs
from cloudserve.provider import WaitSettings
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve.testing.rollout import SimClock, TrafficClock
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
from cloudserve_sagemaker.testing import FakeSageMaker

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudserve-serving:sklearn-1"


def model(work: Path, version: str, seed: int = 0) -> cs.ModelSpec:
    directory = make_sklearn_model(work / f"m{version}", version=version, seed=seed)
    return cs.ModelSpec(name="churn", version=version, framework="sklearn", artifact=str(directory))


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # botocore signs with something
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    work = Path(tempfile.mkdtemp(prefix="cs-sagemaker-rollout-"))
    sim = SimClock()
    with FakeSageMaker(workdir=work / "fake", clock=sim.now) as fake:
        fake.client("s3").create_bucket(Bucket="my-models")
        config = SageMakerConfig(
            region="us-east-1",
            role_arn="arn:aws:iam::123456789012:role/sagemaker-execution",
            bucket="my-models",
            endpoint_url=fake.url,
            serving_image=IMAGE,  # what `cloudserve build-image MODEL --push aws` records
            waits=WaitSettings(poll_interval_s=0.01, max_poll_interval_s=0.05),
        )
        client = cs.Client(SageMakerProvider(config, target="aws", clock=sim.now))
        client.deploy(model(work, "1"), "churn", variant="v1")

        # 1. Shadow: a fifth of the requests also go to v2; callers only ever see v1's answers.
        ep = client.deploy(model(work, "2", seed=1), "churn", variant="v2", shadow=20)
        print("shadow:", {v.name: (v.weight, v.shadow) for v in ep.variants})
        for row in sample_rows(100, seed=3):
            client.predict("churn", [row])
        report = client.shadow_report("churn", window="1h")
        print(f"mirrored {report.mirrored} of {report.production_invocations},"
              f" agreement {report.agreement_rate:.0%}")  # fmt: skip
        client.provider.delete_variant("churn", "v2")  # the shadow goes; mirroring ends
        sim.advance_to(sim.now() + 300)  # time passes: the rollout's windows start clean

        # 2. A rollout of v2: 10 % → 50 % → 100 %, each step gated on CloudWatch's figures.
        gates = cs.Gates(max_error_rate=0.02, min_invocations=10, max_p99_ratio=None)
        traffic = TrafficClock(sim, client, "churn", sample_rows(20, seed=7), requests=150)
        done = client.rollout(model(work, "2", seed=1), "churn", steps=[10, 50, 100],
                              bake="1m", gates=gates, clock=traffic)  # fmt: skip
        for step in done.history:
            print(f"  {step.weight:>3}%: new {step.new.invocations} requests,"
                  f" current {step.current.invocations} -> {step.decision}")  # fmt: skip
        print("rollout:", done.summary())

        # 3. v3 fails a fifth of its requests: rolled back at the first step, v3 removed.
        fake.degrade("v3", error_rate=0.2)
        failed = client.rollout(model(work, "3", seed=2), "churn", steps=[10, 100], bake="1m",
                                gates=gates, clock=traffic)  # fmt: skip
        print("rollout:", failed.summary())
        print("serving:", client.get_endpoint("churn").traffic)
        client.delete_endpoint("churn")


if __name__ == "__main__":
    main()
