"""``compare`` against the cloud providers' offline fakes, teardown checked in the fakes' state.

Each cloud's case skips when its provider package is not installed. The fakes score with an
injected model (a fixed latency, then faults), so the runs are deterministic.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.pricing import PriceOverrides

ROWS = [[0.1, -1.2, 0.3, 2.0], [1.0, 0.5, -0.5, 0.0]]


class ScriptedModel:
    """Sums each row after ``delay_s``; from call ``fail_from`` on, raises RuntimeError."""

    def __init__(self, delay_s: float = 0.003, fail_from: int | None = None):
        self.delay_s, self.fail_from = delay_s, fail_from
        self.calls = 0

    def predict(self, instances):
        self.calls += 1
        if self.fail_from is not None and self.calls >= self.fail_from:
            raise RuntimeError("injected scoring failure")
        time.sleep(self.delay_s)
        return [sum(r) for r in instances]


def _model_dir(tmp_path: Path) -> Path:
    pytest.importorskip("sklearn", reason="the cloud fakes' model needs scikit-learn")
    from cloudserve.testing import make_sklearn_model

    return make_sklearn_model(tmp_path / "model")


@contextmanager
def _azure(tmp_path: Path, scripted: ScriptedModel):
    pytest.importorskip("cloudserve_azureml.testing", reason="cloudserve-azureml not installed")
    from cloudserve_azureml import AzureMLConfig, AzureMLProvider
    from cloudserve_azureml.testing import FakeAzureML

    with FakeAzureML(workdir=tmp_path / "fake", load_model=lambda _path: scripted) as fake:
        config = AzureMLConfig(
            subscription_id=fake.subscription_id,
            resource_group=fake.resource_group,
            workspace=fake.workspace,
            region="eastus",
            sdk_polling_interval_s=0.01,
        )
        client = cs.Client(AzureMLProvider(config, credential=fake.credential()), target="azure")
        # the framework route runs the generated score.py: fail the scoring connections instead
        yield fake, client, lambda: fake.inject("reset_scoring", times=1000)


@contextmanager
def _vertex(tmp_path: Path, scripted: ScriptedModel):
    pytest.importorskip("cloudserve_vertex.testing", reason="cloudserve-vertex not installed")
    from cloudserve_vertex import VertexProvider
    from cloudserve_vertex.testing import FakeVertex

    with FakeVertex(workdir=tmp_path / "fake", load_model=lambda _path: scripted) as fake:
        client = cs.Client(VertexProvider(fake.config()), target="gcp")
        yield fake, client, lambda: setattr(scripted, "fail_from", scripted.calls + 5)


@contextmanager
def _sagemaker(tmp_path: Path, _scripted: ScriptedModel):
    # The SageMaker fake serves the real artifact (no injected model): a fault injected into
    # the fake's runtime API makes the next predictions fail instead.
    pytest.importorskip("cloudserve_sagemaker.testing", reason="cloudserve-sagemaker not installed")
    from cloudserve.provider import RetrySettings, WaitSettings
    from cloudserve_sagemaker import SageMakerConfig, SageMakerProvider
    from cloudserve_sagemaker.testing import FakeSageMaker

    fake = FakeSageMaker(workdir=tmp_path / "fake").start()
    try:
        fake.client("s3").create_bucket(Bucket="cs-bench")
        config = SageMakerConfig(
            region=fake.region,
            role_arn="arn:aws:iam::123456789012:role/cloudserve",
            bucket="cs-bench",
            endpoint_url=fake.url,
            # today's scikit-learn pickles take the container route: the pushed serving image
            serving_image=f"123456789012.dkr.ecr.{fake.region}.amazonaws.com/cloudserve:bench",
            retry=RetrySettings(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01),
            waits=WaitSettings(poll_interval_s=0.001, max_poll_interval_s=0.01),
        )
        client = cs.Client(SageMakerProvider(config), target="aws")
        yield fake, client, lambda: fake.inject("unavailable", times=30)
    finally:
        fake.stop()


# cloud → (fake factory, instance type and hourly price of cpu.medium from the catalog)
CLOUDS = {
    "azureml": (_azure, "Standard_DS3_v2", 0.293),
    "sagemaker": (_sagemaker, "ml.m5.xlarge", 0.23),
    "vertex": (_vertex, "n1-standard-4", 0.219),
}


@pytest.fixture(params=sorted(CLOUDS))
def cloud(request, tmp_path: Path, monkeypatch):
    # Dummy AWS credentials, so botocore signs requests to the fake and never looks for real ones.
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ):
        monkeypatch.setenv(var, value)
    factory, instance, hourly = CLOUDS[request.param]
    model = cs.ModelSpec(name="churn", artifact=str(_model_dir(tmp_path)), framework="sklearn")
    with factory(tmp_path, ScriptedModel()) as (fake, client, arm_failure):
        yield fake, client, model, arm_failure, (request.param, instance, hourly)


def _compare(client, model, status=None):
    return cs.compare(
        [client],
        model,
        cs.Workload(rps=20, duration_s=1.0, warmup_s=0.2, payload=ROWS),
        compute=cs.Compute(size="cpu.medium"),
        slo_p99_ms=500,
        overrides=PriceOverrides(),
        status=status,
    )


def test_compare_on_a_cloud_fake(cloud):
    fake, client, model, _, (provider, instance, hourly) = cloud
    (r,) = _compare(client, model).results
    assert r.error is None, r.error
    assert r.provider == provider and r.instance_type == instance
    assert r.hourly == pytest.approx(hourly) and r.cost_per_1k is not None
    assert r.load is not None and r.load.ok == 20
    assert r.server_p99_ms is not None and r.slo_met is (r.load.p99_ms <= 500)
    assert r.torn_down and fake.leftovers() == []


def test_failure_mid_run_on_a_cloud_fake_still_tears_down(cloud):
    fake, client, model, arm_failure, _ = cloud

    def fail_once_loaded(message: str) -> None:
        if "driving" in message:
            arm_failure()  # from here on, predictions fail with 5xx

    (r,) = _compare(client, model, fail_once_loaded).results
    assert r.load is not None and r.load.error_count >= 5
    assert r.slo_met is False
    assert r.torn_down and fake.leftovers() == []


def test_ctrl_c_on_a_cloud_fake_tears_down(cloud):
    fake, client, model, _, _ = cloud

    def interrupt_once_deployed(message: str) -> None:
        # The user presses Ctrl-C once the endpoint exists, as the load is about to start.
        if "driving" in message:
            assert fake.leftovers(), "the endpoint exists at this point"
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cs.compare(
            [client],
            model,
            cs.Workload(rps=20, duration_s=1.0, payload=ROWS),
            compute=cs.Compute(size="cpu.medium"),
            overrides=PriceOverrides(),
            status=interrupt_once_deployed,
        )
    assert fake.leftovers() == []
