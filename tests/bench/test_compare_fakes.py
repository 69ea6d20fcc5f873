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

ROWS = [[1.0, 2.0, 3.0, 4.0]]


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
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"scored by the injected model")
    return model_dir


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
        yield fake, cs.Client(AzureMLProvider(config, credential=fake.credential()), target="azure")


@contextmanager
def _vertex(tmp_path: Path, scripted: ScriptedModel):
    pytest.importorskip("cloudserve_vertex.testing", reason="cloudserve-vertex not installed")
    from cloudserve_vertex import VertexProvider
    from cloudserve_vertex.testing import FakeVertex

    with FakeVertex(workdir=tmp_path / "fake", load_model=lambda _path: scripted) as fake:
        yield fake, cs.Client(VertexProvider(fake.config()), target="gcp")


# cloud → (fake factory, instance type and hourly price of cpu.medium from the catalog)
CLOUDS = {
    "azureml": (_azure, "Standard_DS3_v2", 0.293),
    "vertex": (_vertex, "n1-standard-4", 0.219),
}


@pytest.fixture(params=sorted(CLOUDS))
def cloud(request, tmp_path: Path):
    factory, instance, hourly = CLOUDS[request.param]
    scripted = ScriptedModel()
    model = cs.ModelSpec(name="churn", artifact=str(_model_dir(tmp_path)), framework="sklearn")
    with factory(tmp_path, scripted) as (fake, client):
        yield fake, client, model, scripted, (request.param, instance, hourly)


def _compare(client, model):
    return cs.compare(
        [client],
        model,
        cs.Workload(rps=20, duration_s=1.0, warmup_s=0.2, payload=ROWS),
        compute=cs.Compute(size="cpu.medium"),
        slo_p99_ms=500,
        overrides=PriceOverrides(),
    )


def test_compare_on_a_cloud_fake(cloud):
    fake, client, model, _, (provider, instance, hourly) = cloud
    (r,) = _compare(client, model).results
    assert r.error is None, r.error
    assert r.provider == provider and r.instance_type == instance
    assert r.hourly == pytest.approx(hourly) and r.cost_per_1k is not None
    assert r.load is not None and r.load.ok == 20 and r.load.p50_ms >= 3
    assert r.server_p99_ms is not None and r.slo_met is (r.load.p99_ms <= 500)
    assert r.torn_down and fake.leftovers() == []


def test_failure_mid_run_on_a_cloud_fake_still_tears_down(cloud):
    fake, client, model, scripted, _ = cloud
    scripted.fail_from = 10  # the cold-start probe and a few requests succeed, then 5xx
    (r,) = _compare(client, model).results
    assert r.load is not None and r.load.error_count >= 10
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
