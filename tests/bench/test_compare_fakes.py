"""``compare`` against the cloud providers' offline fakes, teardown checked in the fakes' state.

Each cloud's case skips when its provider package is not installed. The fakes score with an
injected model (a fixed latency, then faults), so the runs are deterministic.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.pricing import PriceOverrides

ROWS = [[1.0, 2.0, 3.0, 4.0]]


class ScriptedModel:
    """Sums each row after ``delay_s``; from call ``fail_from`` on, raises ``fail_with``."""

    def __init__(self, delay_s: float = 0.003, fail_from: int | None = None,
                 fail_with: type[BaseException] = RuntimeError):  # fmt: skip
        self.delay_s, self.fail_from, self.fail_with = delay_s, fail_from, fail_with
        self.calls = 0

    def predict(self, instances):
        self.calls += 1
        if self.fail_from is not None and self.calls >= self.fail_from:
            raise self.fail_with("injected scoring failure")
        time.sleep(self.delay_s)
        return [sum(r) for r in instances]


@pytest.fixture
def azure(tmp_path: Path):
    pytest.importorskip("cloudserve_azureml.testing", reason="cloudserve-azureml not installed")
    from cloudserve_azureml import AzureMLConfig, AzureMLProvider
    from cloudserve_azureml.testing import FakeAzureML

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"scored by the injected model")
    scripted = ScriptedModel()

    with FakeAzureML(workdir=tmp_path / "fake", load_model=lambda _path: scripted) as fake:
        config = AzureMLConfig(
            subscription_id=fake.subscription_id,
            resource_group=fake.resource_group,
            workspace=fake.workspace,
            region="eastus",
            sdk_polling_interval_s=0.01,
        )
        client = cs.Client(AzureMLProvider(config, credential=fake.credential()), target="azure")
        model = cs.ModelSpec(name="churn", artifact=str(model_dir), framework="sklearn")
        yield fake, client, model, scripted


def _compare(client, model):
    return cs.compare(
        [client],
        model,
        cs.Workload(rps=20, duration_s=1.0, warmup_s=0.2, payload=ROWS),
        compute=cs.Compute(size="cpu.medium"),
        slo_p99_ms=500,
        overrides=PriceOverrides(),
    )


def test_compare_on_the_azure_fake(azure):
    fake, client, model, _ = azure
    (r,) = _compare(client, model).results
    assert r.error is None, r.error
    assert r.provider == "azureml" and r.instance_type == "Standard_DS3_v2"
    assert r.hourly == pytest.approx(0.293) and r.cost_per_1k is not None
    assert r.load is not None and r.load.ok == 20 and r.load.p50_ms >= 3
    assert r.server_p99_ms is not None and r.slo_met is (r.load.p99_ms <= 500)
    assert r.torn_down and fake.leftovers() == []


def test_failure_mid_run_on_the_azure_fake_still_tears_down(azure):
    fake, client, model, scripted = azure
    scripted.fail_from = 10  # the cold-start probe and a few requests succeed, then 5xx
    (r,) = _compare(client, model).results
    assert r.load is not None and r.load.error_count >= 10
    assert r.slo_met is False
    assert r.torn_down and fake.leftovers() == []


def test_ctrl_c_on_the_azure_fake_tears_down(azure):
    fake, client, model, scripted = azure
    scripted.fail_from, scripted.fail_with = 6, KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        _compare(client, model)
    assert fake.leftovers() == []
