"""Through the client and the CLI: the model's own answers for named columns in any order, and
input the model rejects reported as the caller's fault (cause + error id, no retry)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

import cloudserve as cs
from cloudserve.cli import main
from cloudserve.client import Client
from cloudserve.errors import InvalidRequest
from cloudserve.testing import make_sklearn_model, sample_rows
from cloudserve.testing.parity import make_titanic_model, shuffled_csv, titanic_answers


@pytest.fixture
def titanic(client: Client, tmp_path: Path) -> tuple[str, Path]:
    model_dir = make_titanic_model(tmp_path / "titanic")
    client.deploy(cs.ModelSpec(name="titanic", artifact=str(model_dir)), "titanic", cs.Compute())
    return "titanic", model_dir


def _cli_outputs(args: list[str], capsys: pytest.CaptureFixture[str]) -> list:
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    return orjson.loads(out)["outputs"]


@pytest.mark.parametrize("header", [True, False], ids=["reordered-header", "no-header"])
def test_cli_predict_file_with_text_and_blanks(
    header: bool,
    titanic: tuple[str, Path],
    state_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    endpoint, model_dir = titanic
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(state_dir))
    csv_file = tmp_path / "titanic.csv"
    csv_file.write_text(shuffled_csv(header=header))
    args = ["predict", endpoint, "--file", str(csv_file), "--json"]
    if header:  # detected: the columns come in another order than the model's
        assert csv_file.read_text().splitlines()[0] != "Pclass,Sex,Age,SibSp,Fare,Embarked"
    else:  # said: the values are in the model's order
        args.append("--no-header")
    assert _cli_outputs(args, capsys) == titanic_answers(model_dir)
    proba = _cli_outputs([*args, "--parameters", '{"method": "predict_proba"}'], capsys)
    assert np.allclose(proba, titanic_answers(model_dir, method="predict_proba"))


def test_nan_is_the_callers_fault_with_the_cause_and_an_error_id_and_no_retry(
    client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    model_dir = make_sklearn_model(tmp_path / "numeric")
    client.deploy(cs.ModelSpec(name="numeric", artifact=str(model_dir)), "numeric", cs.Compute())
    row = sample_rows(1)[0]
    row[0] = math.nan
    with (
        caplog.at_level(logging.INFO, logger="cloudserve.retry"),
        pytest.raises(InvalidRequest) as err,
    ):
        client.predict("numeric", [row])
    message = str(err.value)
    assert "NaN" in message and "model_rejected_input" in message
    assert "error id " in message
    assert not [r for r in caplog.records if r.name == "cloudserve.retry"], "4xx must not retry"
    assert len(client.predict("numeric", sample_rows(2)).outputs) == 2
