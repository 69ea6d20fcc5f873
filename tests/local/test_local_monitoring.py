"""Local monitoring: per-variant metrics with error classes, capture sampling, drift."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.testing import make_sklearn_model, sample_rows, write_csv


def model(tmp: Path, version: str) -> cs.ModelSpec:
    d = make_sklearn_model(tmp / f"m{version}", version=version)
    return cs.ModelSpec(name="mon", version=version, artifact=str(d), framework="sklearn")


def test_metrics_per_variant_capture_sampling_and_drift(client: Client, tmp_path: Path):
    train = write_csv(tmp_path / "train.csv", sample_rows(500, seed=1))
    mv = client.register_model(model(tmp_path, "1"), lineage={"training_data": str(train)})
    client.deploy(mv, "mon", data_capture=cs.DataCapture(sampling_rate=0.5))
    client.deploy(model(tmp_path, "2"), "mon", traffic=20)
    for i in range(300):
        client.predict("mon", sample_rows(1, seed=1000 + i), variant="v1" if i % 3 else "v2")
    with pytest.raises(cs.InvalidRequest):
        client.predict("mon", [[1.0]], variant="v2")

    report = client.metrics("mon", "1h")
    assert report.invocations == 301
    assert report.per_variant["v1"].invocations == 200
    assert report.per_variant["v2"].invocations == 101
    assert report.per_variant["v2"].errors == {"4xx": 1}
    assert report.errors == {"4xx": 1}
    assert report.p50_ms is not None and report.p50_ms <= report.p99_ms

    captured = client.provider.captured_inputs("mon", 3600)
    assert 90 < len(captured) < 210, "about half of 300 one-row requests are captured"

    calm = client.drift("mon", mv.lineage["baseline"], window="1h")
    assert not calm.drifted
    for i in range(100):
        client.predict("mon", sample_rows(3, shift=2.0, seed=2000 + i))
    shifted = client.drift("mon", mv, window="1h")  # the registered version's data profile
    assert shifted.drifted and len(shifted.flagged) == 4
    assert shifted.baseline == "model mon:1 training profile"


def test_capture_is_off_unless_asked(client: Client, tmp_path: Path):
    client.deploy(model(tmp_path, "1"), "quiet")
    client.predict("quiet", sample_rows(40))
    assert client.provider.captured_inputs("quiet", 3600) == []
    with pytest.raises(cs.InvalidRequest, match="captured rows"):
        client.drift("quiet", write_csv(tmp_path / "b.csv", sample_rows(100)))


def test_records_past_retention_are_purged(provider):
    provider.recorder.invocation("gone", "v1", 1.0, 1)
    provider.recorder.capture("gone", "v1", [[1.0]], None, 1.0)
    provider.recorder.flush()
    provider.recorder.retention_s = 0.0
    provider.recorder.purge()
    assert provider.db.all("SELECT * FROM invocations") == []
    assert provider.db.all("SELECT * FROM captures") == []
