"""Deploy, predict, canary, autoscale, monitor, batch-score, tune and delete on SageMaker — offline.

Real boto3 talks HTTP to ``cloudserve_sagemaker.testing.FakeSageMaker`` (moto in server mode,
extended, every request checked against botocore's service model): the fake answers
``InvokeEndpoint`` by running the deployed model, transforms batch input for real and runs each
tuning trial's training script, so every number printed is real. Point the same code at AWS by
dropping the fake and ``endpoint_url`` and giving your own role and bucket.

A model trained with today's scikit-learn (≥ 1.3, numpy 2) cannot be unpickled by any prebuilt
SageMaker scikit-learn image, so it takes the **container route**: the cloudserve serving image,
built with the model's library versions and pushed to ECR by
``cloudserve build-image MODEL_DIR --push aws``, which sets the target's ``serving_image``.
Without one, ``deploy`` refuses before any call and says so — shown first below.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cloudserve as cs
from cloudserve.errors import InvalidRequest
from cloudserve.provider import WaitSettings
from cloudserve.testing import make_sklearn_model, sample_rows, write_csv
from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
from cloudserve_sagemaker.testing import FakeSageMaker

TRAIN_SCRIPT = """\
import argparse, math
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--depth", type=int)
a, _ = p.parse_known_args()
print(f"val_auc={1 - 0.1 * abs(math.log10(a.lr) + 2) - 0.02 * abs(a.depth - 6):.4f}")
"""


def main() -> None:
    # The fake checks signatures loosely, but botocore needs some credentials to sign with.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    work = Path(tempfile.mkdtemp(prefix="cs-sagemaker-example-"))
    with FakeSageMaker(creating_polls=2, updating_polls=2, workdir=work / "fake") as fake:
        fake.client("s3").create_bucket(Bucket="my-models")
        config = SageMakerConfig(
            region="us-east-1",
            role_arn="arn:aws:iam::123456789012:role/sagemaker-execution",
            bucket="my-models",
            endpoint_url=fake.url,  # drop this line to talk to AWS
            waits=WaitSettings(poll_interval_s=0.01, max_poll_interval_s=0.05),
        )
        client = cs.Client(SageMakerProvider(config, target="aws"))

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

        compute = cs.Compute(size="cpu.medium", replicas=1, min_replicas=1, max_replicas=4)
        try:
            client.deploy(v1, "churn-ep", compute, data_capture=True)
        except InvalidRequest as refused:
            print("framework route refused:", str(refused)[:120], "…")
            print("  fix:", str(refused)[str(refused).index("`cloudserve") :].split("`")[1])
        print(
            "plan:",
            [
                c.operation
                for c in client.provider.plan(cs.DeploySpec(model=v1, endpoint="churn-ep"))
            ],
        )
        # What `cloudserve build-image MODEL_DIR --push aws` records for the target:
        image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudserve-serving:sklearn-1"
        client = cs.Client(
            SageMakerProvider(config.model_copy(update={"serving_image": image}), target="aws")
        )
        ep = client.deploy(v1, "churn-ep", compute, data_capture=True)
        print("container route:", ep.variants[0].raw["config"]["ModelName"], "runs", image)
        print("deployed:", ep.status.value, ep.traffic, ep.variants[0].instance_type)
        rows = sample_rows(5)
        print("predict:", client.predict("churn-ep", rows).outputs)

        # Canary beside v1. Data capture belongs to the endpoint config, so each deploy says it.
        ep = client.deploy(v2, "churn-ep", traffic=20, data_capture=True)
        print("canary:", ep.traffic)
        print("v2 only:", client.predict("churn-ep", rows, variant="v2").outputs)
        print("traffic:", client.set_traffic("churn-ep", {"v1": 50, "v2": 50}).traffic)

        report = client.metrics("churn-ep", "1h")
        print(f"metrics: {report.invocations} requests, p50 {report.p50_ms:.3f} ms")
        client.predict("churn-ep", sample_rows(200, seed=3))  # traffic for the capture
        drift = client.drift("churn-ep", write_csv(work / "base.csv", sample_rows(300, seed=4)))
        print("drift flagged:", drift.flagged or "none")

        job = client.batch_predict(
            v1, write_csv(work / "in.csv", sample_rows(20, seed=2)), work / "out"
        )
        done = job.wait(timeout=60)
        print("batch:", done.status.value, done.rows_total, "rows ->", done.output)

        script = work / "train" / "train.py"
        script.parent.mkdir()
        script.write_text(TRAIN_SCRIPT)
        tuning = client.tune(
            cs.TuningSpec(
                train=cs.TrainSpec(entrypoint=str(script)),
                search_space={
                    "lr": cs.LogUniform(low=1e-4, high=1e-1),
                    "depth": cs.IntRange(low=2, high=10),
                },
                objective=cs.Objective(metric="val_auc"),
                max_trials=4,
                strategy="random",
                seed=7,
            )
        ).wait(timeout=120)
        best = tuning.best_trial
        assert best is not None
        print(f"tuning: {len(tuning.trials)} trials, best {best.value} with {best.params}")

        # what `cloudserve jobs list` and `cloudserve logs churn-ep` show: cloudserve's jobs,
        # newest first, and the last lines the endpoint's containers wrote to CloudWatch Logs
        for listed in client.list_jobs():
            print("job:", listed.id, type(listed).__name__, listed.status.value)
        for line in client.logs("churn-ep", tail=3):
            print("log:", line)

        mv = client.register_model(v2, lineage={"tuning_job": tuning.id})
        print("registered:", mv.name, mv.version, mv.stage)

        client.delete_endpoint("churn-ep")
        print("left in the fake after delete:", fake.leftovers() or "nothing")


if __name__ == "__main__":
    main()
