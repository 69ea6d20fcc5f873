"""The server gives the model's own answers: named columns in any order, text and blanks,
probabilities, an XGBClassifier as a classifier, every body format it documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from cloudserve.packaging import write_manifest
from cloudserve.serving import BackgroundServer
from cloudserve.testing.parity import (
    TITANIC_CSV,
    make_titanic_model,
    shuffled_csv,
    titanic_answers,
)
from conftest import ROWS, train_data


@pytest.fixture(scope="module")
def titanic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    model_dir = make_titanic_model(tmp_path_factory.mktemp("titanic") / "model")
    with BackgroundServer(model_dir) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c, model_dir


def test_csv_with_a_reordered_header_text_and_blanks(titanic):
    client, model_dir = titanic
    body = shuffled_csv().encode()
    assert body.splitlines()[1].split(b",")[0].isalpha(), "the first data row starts with text"
    r = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == titanic_answers(model_dir)


def test_every_named_shape_gives_the_same_answers(titanic):
    client, model_dir = titanic
    want = titanic_answers(model_dir, method="predict_proba")
    lines = TITANIC_CSV.splitlines()
    columns = lines[0].split(",")
    rows = [[None if v in ("", "nan") else v for v in line.split(",")] for line in lines[1:]]
    records = [dict(zip(columns[::-1], row[::-1], strict=True)) for row in rows]
    params = {"method": "predict_proba"}
    docs = [
        {"instances": records, "parameters": params},
        {"dataframe_records": records, "parameters": params},
        {"dataframe_split": {"columns": columns, "data": rows}, "parameters": params},
        {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(columns)}, "parameters": params},
    ]
    for doc in docs:
        r = client.post("/invocations", content=orjson.dumps(doc))
        assert r.status_code == 200, r.text
        assert np.allclose(r.json()["predictions"], want), doc
    lines_body = b"\n".join(orjson.dumps(rec) for rec in records)
    r = client.post(
        "/invocations",
        content=lines_body,
        headers={"content-type": "application/jsonlines", "accept": "application/jsonlines"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/jsonlines"
    assert [orjson.loads(x) for x in r.content.splitlines()] == titanic_answers(model_dir)


def test_plain_curl_d_is_read_as_json(sklearn_dir: Path):
    with BackgroundServer(sklearn_dir) as srv:
        r = httpx.post(
            f"{srv.url}/invocations",
            content=orjson.dumps({"instances": ROWS}),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(ROWS)


@pytest.fixture(scope="module")
def xgb_classifier(tmp_path_factory: pytest.TempPathFactory):
    xgb = pytest.importorskip("xgboost")
    x, y = train_data()
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
    directory = tmp_path_factory.mktemp("xgbclf")
    clf.save_model(str(directory / "model.json"))
    write_manifest(directory, framework="xgboost")
    return clf, directory


def test_xgb_classifier_is_served_as_a_classifier(xgb_classifier):
    clf, directory = xgb_classifier
    rows = np.asarray(ROWS)
    with BackgroundServer(directory) as srv, httpx.Client(base_url=srv.url) as c:
        labels = c.post("/invocations", json={"instances": ROWS}).json()["predictions"]
        proba = c.post(
            "/invocations", json={"instances": ROWS, "parameters": {"method": "predict_proba"}}
        ).json()["predictions"]
        unknown = c.post(
            "/invocations", json={"instances": ROWS, "parameters": {"iteration_range": [0, 1]}}
        )
    assert labels == clf.predict(rows).tolist()
    assert np.allclose(proba, clf.predict_proba(rows))
    assert unknown.status_code == 400 and "iteration_range" in unknown.json()["error"]


def test_xgboost_booster_rejects_unknown_parameters(xgboost_dir: Path):
    with BackgroundServer(xgboost_dir) as srv, httpx.Client(base_url=srv.url) as c:
        r = c.post("/invocations", json={"instances": ROWS, "parameters": {"method": "nope"}})
        margin = c.post(
            "/invocations", json={"instances": ROWS, "parameters": {"output_margin": True}}
        )
        typo = c.post("/invocations", json={"instances": ROWS, "parameters": {"margin": True}})
    assert r.status_code == 400 and "nope" in r.json()["error"]
    assert margin.status_code == 200 and any(v < 0 for v in margin.json()["predictions"])
    assert typo.status_code == 400 and "unknown parameter" in typo.json()["error"]


NO_PANDAS = """
import sys
from cloudserve.serving import load_model
model = load_model(sys.argv[1])
for body, kind in ((b'[[1, 2, 3, 4, 5, 6]]', "application/json"), (b"1,2,3,4,5,,\\n", "text/csv")):
    instances, parameters = model.decode(body.replace(b",,", b",6"), kind)
    model.run(model.prepare(instances), parameters)
print("pandas" in sys.modules)
"""


@pytest.mark.parametrize("model", ["onnx_dir", "custom_dir"])
def test_numeric_rows_never_import_pandas(model: str, request: pytest.FixtureRequest):
    # scikit-learn and XGBoost import pandas themselves when it is installed; the codec must not
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", NO_PANDAS, str(request.getfixturevalue(model))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.strip() == "False", done.stderr
