"""``cloudserve estimate`` from the catalog alone: one table across clouds, unknowns shown."""

from __future__ import annotations

import json

import pytest

from cloudserve.cli import main


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CLOUDSERVE_PRICING_OVERRIDES", raising=False)
    monkeypatch.chdir(tmp_path)


def test_same_size_on_every_cloud_as_json(capsys):
    assert main(["estimate", "--size", "gpu.t4", "--replicas", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: v["hourly"] for k, v in data.items()} == pytest.approx(
        {"sagemaker": 2 * 0.736, "vertex": 2 * (0.219 + 0.4025), "azureml": 2 * 0.526}
    )
    assert all(v["as_of"] for v in data.values())


def test_unknown_prices_print_as_unknown(capsys):
    assert main(["estimate", "--size", "gpu.a10", "-p", "vertex", "-p", "azureml"]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out and "A10" in out
    assert "0.0000" not in out


def test_training_and_batch_totals(capsys):
    argv = ["estimate", "--kind", "training", "--trials", "20", "--parallel-trials", "4"]
    argv += ["--trial-minutes", "30", "--size", "cpu.medium", "-p", "vertex", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["vertex"]["total"] == pytest.approx(
        20 * 0.5 * 0.2185
    )
    argv = ["estimate", "--kind", "batch", "--rows", "720000", "--rows-per-second", "100"]
    argv += ["-p", "sagemaker", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["sagemaker"]["total"] == pytest.approx(2 * 0.115)


def test_overrides_file_applies(tmp_path, capsys):
    over = tmp_path / "o.yaml"
    over.write_text("discounts: {azureml: 0.5}\n")
    assert main(["estimate", "-p", "azureml", "--overrides", str(over), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["azureml"]["hourly"] == pytest.approx(0.073)


def test_bad_kind_is_a_clear_error(capsys):
    assert main(["estimate", "--kind", "serverless"]) == 2  # a usage mistake
    assert "--kind must be" in capsys.readouterr().err
