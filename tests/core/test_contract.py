"""The provider contract the Client relies on: specs, overrides, validation, waits, drift."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import cloudserve as cs
from cloudserve import client as client_module
from cloudserve.errors import CloudServeError, InvalidRequest, InvalidSpec, UnsupportedOperation
from cloudserve.provider import Provider, WaitSettings
from cloudserve.registry import available, get_provider_class
from cloudserve.resources import BatchJob, JobStatus, TuningJob
from cloudserve.testing.memory import MemoryConfig, MemoryProvider

MODEL = cs.ModelSpec(name="m", artifact="x", framework="custom")


def test_a_bad_spec_field_is_an_invalid_request_naming_the_field():
    with pytest.raises(InvalidRequest, match="min_replicas \\(5\\) is greater") as info:
        cs.Compute(min_replicas=5, max_replicas=2)
    assert isinstance(info.value, CloudServeError)
    with pytest.raises(InvalidSpec) as info:
        cs.DeploySpec(model=MODEL, endpoint="e", compute={"replicas": -1})
    assert info.value.field == "compute.replicas"
    assert info.value.spec == "DeploySpec"
    assert "compute.replicas" in str(info.value)
    with pytest.raises(InvalidSpec) as info:
        cs.BatchSpec.model_validate({"model": MODEL, "input": "i", "output": "o", "batch_size": 0})
    assert info.value.field == "batch_size"
    with pytest.raises(InvalidSpec, match="endpoint"):
        cs.DeploySpec.model_validate_json('{"model": {"name": "m", "artifact": "x"}}')


def test_a_deploy_spec_with_overrides_is_refused():
    client = cs.Client(MemoryProvider(MemoryConfig(label="overrides")))
    spec = cs.DeploySpec(model=MODEL, endpoint="ep")
    for kwargs in (
        {"endpoint": "other"},
        {"compute": cs.Compute(replicas=2)},
        {"variant": "v9"},
        {"traffic": 10},
        {"data_capture": True},
        {"keep_on_failure": True},
    ):
        with pytest.raises(InvalidRequest, match=next(iter(kwargs))):
            client.deploy(spec, **kwargs)
    with pytest.raises(CloudServeError):
        client.get_endpoint("ep")
    assert client.deploy(spec).name == "ep"


def test_a_batch_spec_with_overrides_is_refused(tmp_path):
    client = cs.Client(MemoryProvider(MemoryConfig(label="batch-overrides")))
    spec = cs.BatchSpec(model=MODEL, input="in.csv", output="out")
    with pytest.raises(InvalidRequest, match="output"):
        client.batch_predict(spec, output="elsewhere")
    with pytest.raises(InvalidRequest, match="batch_size"):
        client.batch_predict(spec, batch_size=8)


class Counting(MemoryProvider):
    validated: list[str] = []

    def validate(self, spec: Any) -> None:
        type(self).validated.append(type(spec).__name__)
        super().validate(spec)


def test_each_operation_validates_its_spec_once(tmp_path):
    Counting.validated = []
    client = cs.Client(Counting(MemoryConfig(label="once")))
    client.deploy(MODEL, "once")
    client.plan(cs.DeploySpec(model=MODEL, endpoint="once"))
    src = tmp_path / "in.csv"
    src.write_text("a,b,c,d\n1,2,3,4\n")
    client.batch_predict(MODEL, src, tmp_path / "out")
    assert Counting.validated == ["DeploySpec", "DeploySpec", "BatchSpec"]


@pytest.mark.parametrize("name", sorted(available()))
def test_jobs_are_started_without_wait_arguments(name):
    """batch_predict and tune take the spec only; the Client and the job handles wait."""
    try:
        cls = get_provider_class(name)
    except CloudServeError:
        pytest.skip(f"provider {name} is not installed here")
    for method in ("batch_predict", "tune"):
        params = list(inspect.signature(getattr(cls, method)).parameters)
        assert params == ["self", "spec"], f"{name}.{method}{params}"
    assert "RefreshResult" in str(inspect.signature(cls.refresh_prices).return_annotation)


class Slow(MemoryProvider):
    """Jobs that never end, to see which timeout the waits use."""

    def get_batch_job(self, job_id: str) -> BatchJob:
        return BatchJob(
            id=job_id, provider=self.name, status=JobStatus.RUNNING, input="i", output="o"
        )

    def get_tuning_job(self, job_id: str) -> TuningJob:
        return TuningJob(
            id=job_id, provider=self.name, status=JobStatus.RUNNING, objective="m", goal="maximize"
        )


def test_one_default_timeout_for_every_job_wait(monkeypatch, tmp_path):
    timeouts: list[float] = []

    def fake_wait_for(poll: Any, *, timeout: float, **kwargs: Any) -> Any:
        timeouts.append(timeout)
        return poll().model_copy(update={"status": JobStatus.SUCCEEDED})

    monkeypatch.setattr(client_module, "wait_for", fake_wait_for)
    waits = WaitSettings(job_timeout_s=123.0)
    client = cs.Client(Slow(MemoryConfig(label="timeouts", waits=waits)))
    job = BatchJob(id="j", provider="memory", status=JobStatus.RUNNING, input="i", output="o")
    client._bind(job).wait()
    src = tmp_path / "in.csv"
    src.write_text("a,b,c,d\n1,2,3,4\n")
    client.batch_predict(MODEL, src, tmp_path / "out", wait=True)
    tuning = TuningJob(
        id="t", provider="memory", status=JobStatus.RUNNING, objective="m", goal="maximize"
    )
    client._bind(tuning).wait()
    client.wait_tuning(tuning)
    assert timeouts == [123.0, 123.0, 123.0, 123.0]


def test_drift_needs_the_drift_capability():
    class NoDrift(MemoryProvider):
        capabilities = MemoryProvider.capabilities - {cs.Capability.DRIFT}
        unsupported = {**MemoryProvider.unsupported, cs.Capability.DRIFT: "no drift maths"}

    provider = NoDrift(MemoryConfig(label="nodrift"))
    client = cs.Client(provider)
    client.deploy(MODEL, "nodrift")
    before = provider.service.requests
    with pytest.raises(UnsupportedOperation, match="no drift maths"):
        client.drift("nodrift", [[1.0, 2.0, 3.0, 4.0]] * 10)
    assert provider.service.requests == before


def test_the_base_provider_declares_the_contract():
    assert list(inspect.signature(Provider.batch_predict).parameters) == ["self", "spec"]
    assert list(inspect.signature(Provider.tune).parameters) == ["self", "spec"]
