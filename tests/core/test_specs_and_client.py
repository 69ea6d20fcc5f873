from __future__ import annotations

import sys

import numpy as np
import pytest

import cloudserve as cs
from cloudserve.client import as_rows, parse_window, validate_weights
from cloudserve.errors import InvalidRequest, InvalidSpec, ProviderNotFound, UnsupportedOperation
from cloudserve.registry import available, get_provider_class, register, unregister
from cloudserve.sizes import SIZES, resolve_instance, sizes_for
from cloudserve.testing.memory import MemoryConfig, MemoryProvider


def test_compute_bounds():
    assert cs.Compute(replicas=2, min_replicas=1, max_replicas=4).autoscaling
    assert cs.Compute(replicas=2).replica_range == (2, 2)
    with pytest.raises(InvalidSpec, match="greater than max_replicas"):
        cs.Compute(min_replicas=3, max_replicas=2)
    with pytest.raises(InvalidSpec, match="must lie in"):
        cs.Compute(replicas=5, min_replicas=1, max_replicas=4)


def test_model_spec_rules():
    with pytest.raises(InvalidSpec, match="artifact, an image"):
        cs.ModelSpec(name="m")
    with pytest.raises(InvalidSpec):
        cs.ModelSpec(name="bad name!", artifact="x")
    m = cs.ModelSpec(name="m", version="1.2", artifact="s3://b/k")
    assert not m.is_local and m.variant_name == "v1-2"


def test_tuning_spec_rules():
    train = cs.TrainSpec(entrypoint="train.py")
    with pytest.raises(InvalidSpec, match="exceeds max_trials"):
        cs.TuningSpec(
            train=train,
            search_space={"a": cs.IntRange(low=1, high=3)},
            objective=cs.Objective(metric="m"),
            max_trials=2,
            parallel_trials=3,
        )
    with pytest.raises(InvalidSpec, match="continuous"):
        cs.TuningSpec(
            train=train,
            search_space={"a": cs.Uniform(low=0, high=1)},
            objective=cs.Objective(metric="m"),
            strategy="grid",
        )
    with pytest.raises(InvalidSpec):
        cs.TrainSpec(entrypoint="a.py", command=["python", "a.py"])
    spec = cs.TuningSpec.model_validate(
        {
            "train": {"entrypoint": "t.py"},
            "objective": {"metric": "auc"},
            "search_space": {"lr": {"kind": "loguniform", "low": 0.001, "high": 0.1}},
        }
    )
    assert isinstance(spec.search_space["lr"], cs.LogUniform)


def test_objective_default_regex():
    import re

    pat = cs.Objective(metric="val_auc").pattern
    assert re.search(pat, "epoch 3 val_auc=0.913").group(1) == "0.913"
    assert re.search(pat, "val_auc: 1e-3").group(1) == "1e-3"


def test_workload_modes():
    assert cs.Workload().mode == "open" and cs.Workload().rps == 10
    assert cs.Workload(concurrency=8).mode == "closed"


def test_parse_window():
    assert parse_window("90s") == 90 and parse_window("15m") == 900
    assert parse_window("1h") == 3600 and parse_window("7d") == 604800 and parse_window(30) == 30
    with pytest.raises(InvalidRequest):
        parse_window("soon")


def test_validate_weights():
    assert validate_weights({"a": 90, "b": 10}) == {"a": 90, "b": 10}
    for bad in ({}, {"a": 90}, {"a": 110, "b": -10}, {"a": 50.5, "b": 49.5}):
        with pytest.raises(InvalidRequest):
            validate_weights(bad)


def test_as_rows():
    import pandas as pd

    assert as_rows(np.ones((2, 3))) == [[1.0] * 3] * 2
    assert as_rows(pd.DataFrame({"a": [1], "b": [2]})) == [{"a": 1, "b": 2}]
    with pytest.raises(InvalidRequest):
        as_rows([])
    with pytest.raises(InvalidRequest):
        as_rows("1,2,3")


def test_sizes_table_and_resolution():
    assert resolve_instance("sagemaker", "cpu.small").instance_type == "ml.m5.large"
    assert resolve_instance("vertex", "gpu.t4").accelerator_separate
    assert resolve_instance("azureml", "cpu.small", "Standard_F4s_v2") is None
    with pytest.raises(InvalidRequest, match="known sizes"):
        resolve_instance("sagemaker", "cpu.huge")
    with pytest.raises(InvalidRequest, match="no L4"):
        resolve_instance("azureml", "gpu.l4")
    assert set(sizes_for("sagemaker")) == set(SIZES)


def test_registry_is_lazy_and_hints(monkeypatch):
    before = set(sys.modules)
    names = available()
    assert "local" in names
    assert not {m for m in set(sys.modules) - before if m.startswith("cloudserve_")}
    with pytest.raises(ProviderNotFound) as info:
        get_provider_class("nosuch")
    assert info.value.install_hint is None
    register(MemoryProvider)
    try:
        assert get_provider_class("memory") is MemoryProvider
    finally:
        unregister("memory")


def test_known_but_missing_provider_says_what_to_install(monkeypatch):
    from cloudserve import registry

    monkeypatch.setattr(registry, "_entry_points", lambda: {"sagemaker": "cloudserve_nothere:P"})
    with pytest.raises(ProviderNotFound) as info:
        get_provider_class("sagemaker")
    assert "cloudserve[sagemaker]" in str(info.value)


def test_capability_gate_before_any_request():
    class NoBatch(MemoryProvider):
        capabilities = MemoryProvider.capabilities - {cs.Capability.BATCH}
        unsupported = {cs.Capability.BATCH: "no batch here"}

    provider = NoBatch(MemoryConfig(label="gate"))
    client = cs.Client(provider)
    before = provider.service.requests
    with pytest.raises(UnsupportedOperation, match="no batch here"):
        client.batch_predict(cs.ModelSpec(name="m", artifact="x"), "in.csv", "out")
    assert provider.service.requests == before


def test_results_are_bound_to_their_client():
    client = cs.Client(MemoryProvider(MemoryConfig(label="bound")))
    ep = client.deploy(cs.ModelSpec(name="m", artifact="x", framework="custom"), "bound")
    assert ep.predict([[1, 2, 3, 4]]).outputs == [10.0]
    assert ep.refresh().traffic == {"v1": 100}
    assert (
        cs.Endpoint(name="x", provider="p", status=cs.EndpointStatus.READY).model_dump()["name"]
        == "x"
    )
    with pytest.raises(RuntimeError, match="not bound"):
        cs.Endpoint(name="x", provider="p", status=cs.EndpointStatus.READY).predict([[1]])
