"""The handler template: decoding rules, predict/encode, and that it runs where it is uploaded."""

from __future__ import annotations

import ast
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cloudserve import _handler as h

SOURCE = Path(h.__file__).read_text()
NAMES = ["Pclass", "Sex", "Age", "Fare", "Embarked"]


# -- portability --------------------------------------------------------------------------------


def test_parses_as_python_3_8() -> None:
    ast.parse(SOURCE, feature_version=(3, 8))


def test_vermin_finds_nothing_newer_than_3_8() -> None:
    vermin = pytest.importorskip("vermin")
    config = vermin.Config()
    config.set_eval_annotations(True)  # list[int] in an annotation is a 3.9 feature too
    assert vermin.detect("'x'.removeprefix('y')", config)[1] == (3, 9)  # it does look
    minimum = vermin.detect(SOURCE, config)[1]
    assert minimum is not None and minimum <= (3, 8)


def test_imports_only_the_standard_library_and_numpy_at_module_level() -> None:
    tree = ast.parse(SOURCE)
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top - set(sys.stdlib_module_names) == {"numpy"}
    every = {
        (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert "cloudserve" not in every
    assert every - set(sys.stdlib_module_names) <= {"numpy", "pandas", "joblib", "xgboost"}


# -- decoding -----------------------------------------------------------------------------------


def test_numeric_rows_are_a_numeric_array_without_pandas() -> None:
    X, params = h.decode(b"[[1, 2.5], [3, 4]]", "application/json")
    assert X.dtype.kind in "if" and X.tolist() == [[1, 2.5], [3, 4]]
    assert params == {}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"Age": 22, "Sex": "male", "Pclass": 3, "Fare": 7.25, "Embarked": "S"}]},
        [{"Embarked": "S", "Fare": 7.25, "Age": 22, "Sex": "male", "Pclass": 3, "extra": 1}],
        {
            "dataframe_split": {
                "columns": ["Sex", "Age", "Embarked", "Pclass", "Fare"],
                "data": [["male", 22, "S", 3, 7.25]],
            }
        },
        {
            "dataframe_records": [
                {"Sex": "male", "Age": 22, "Embarked": "S", "Pclass": 3, "Fare": 7.25}
            ]
        },
        {
            "inputs": {
                "Fare": [7.25],
                "Sex": ["male"],
                "Age": [22],
                "Embarked": ["S"],
                "Pclass": [3],
            }
        },
    ],
)
def test_named_columns_take_the_model_order(body: object) -> None:
    X, _ = h.decode(json.dumps(body).encode(), "application/json", NAMES)
    assert X.tolist() == [[3.0, "male", 22.0, 7.25, "S"]]


def test_missing_feature_is_named() -> None:
    with pytest.raises(h.BadInput, match="Fare") as err:
        h.decode(b'[{"Pclass": 1, "Sex": "f", "Age": 3, "Embarked": "S"}]', "", NAMES)
    assert err.value.code == "missing_feature" and err.value.status == 400


CSV_REORDERED = b"Sex,Embarked,Age,Fare,Pclass\nfemale,C,,71.28,1\nmale,S,22,7.25,3\n"


def test_csv_header_in_another_order_blanks_and_strings() -> None:
    X, _ = h.decode(CSV_REORDERED, "text/csv", NAMES)
    assert X.dtype == object
    assert X[0, 0] == 1.0 and X[0, 1] == "female" and np.isnan(X[0, 2]) and X[0, 4] == "C"
    assert X[1].tolist() == [3.0, "male", 22.0, 7.25, "S"]


def test_csv_header_detected_when_the_first_row_is_all_text() -> None:
    X, _ = h.decode(b"Sex,Embarked\nfemale,C\nmale,S\n", "text/csv", ["Embarked", "Sex"])
    assert X.tolist() == [["C", "female"], ["S", "male"]]


def test_csv_without_header_goes_by_position() -> None:
    X, _ = h.decode(b"1,female,,71.28,C\n", "text/csv", NAMES)
    assert X[0, 1] == "female" and np.isnan(X[0, 2]) and X[0, 0] == 1.0


def test_csv_header_without_names_by_numbers_below() -> None:
    X, _ = h.decode(b"a,b\n1,2\n3,\n", "text/csv")
    assert X.dtype == np.float64 and X[0].tolist() == [1, 2] and np.isnan(X[1, 1])


def test_csv_blank_first_value_is_nan() -> None:
    X, _ = h.decode(b",1.5,2\n3,4,5\n", "text/csv")
    assert np.isnan(X[0, 0]) and X[1].tolist() == [3, 4, 5]


def test_nan_and_inf_text_become_floats_for_the_model_to_judge() -> None:
    X, _ = h.decode(b'[["inf", 1], [null, 2], ["nan", 3]]', "application/json")
    assert X.dtype == np.float64 and np.isinf(X[0, 0]) and np.isnan(X[1:, 0]).all()


def test_jsonlines_one_row_a_line() -> None:
    body = b'{"Sex": "male", "Age": 3, "Pclass": 2, "Fare": 1, "Embarked": "Q"}\n\n' * 2
    X, _ = h.decode(body, "application/jsonlines", NAMES)
    assert X.shape == (2, 5)
    X, _ = h.decode(b"[1, 2]\n[3, 4]\n", "application/x-ndjson")
    assert X.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(h.BadInput, match="line 2"):
        h.decode(b"[1, 2]\n[3, \n", "application/jsonlines")


def test_npy() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[1.0, np.nan]]))
    X, _ = h.decode(buf.getvalue(), "application/x-npy")
    assert X.shape == (1, 2) and np.isnan(X[0, 1])
    with pytest.raises(h.BadInput, match="NPY"):
        h.decode(b"\x93NUMPYgarbage", "application/x-npy")


def test_form_encoded_body_is_json_and_gzip_is_named() -> None:
    X, params = h.decode(
        b'{"instances": [[1, 2]], "parameters": {"method": "predict_proba"}}',
        "application/x-www-form-urlencoded",
    )
    assert X.tolist() == [[1, 2]] and params == {"method": "predict_proba"}
    import gzip

    with pytest.raises(h.BadInput, match="gzip") as err:
        h.decode(gzip.compress(b"[[1]]"), "application/json")
    assert err.value.status == 415


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"instances": [[1]], "parameters": [1]}', "'parameters' must be a JSON object"),
        (b'{"dataframe_split": {"columns": 5, "data": [[1]]}}', "columns"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "row 0 needs 1"),
        (b"[[1, 2], [3]]", "row 1 has 1 values"),
        (b"[]", "no rows"),
        (b"{", "malformed JSON"),
        (b'"text"', "list of rows"),
        (b'{"rows": []}', "none of the keys"),
        (b"[[1, [2]]]", "nested"),
    ],
)
def test_bad_json_names_the_problem(body: bytes, words: str) -> None:
    with pytest.raises(h.BadInput, match=words.replace("[", r"\[")):
        h.decode(body, "application/json")


def test_unknown_content_type_is_415() -> None:
    with pytest.raises(h.BadInput, match="image/png") as err:
        h.decode(b"xx", "image/png")
    assert err.value.status == 415


@pytest.mark.parametrize(
    ("datatype", "data", "words"),
    [
        ("INT8", [1000], "out of range"),
        ("UINT8", [-1], "out of range"),
        ("INT64", [2**63], "out of range"),
        ("UINT64", [-1], "out of range"),
        ("INT32", [1.5], "not an integer"),
        ("FP32", [1e300], "overflows"),
        ("FP64", ["x"], "numbers"),
        ("BOOL", [1], "true or false"),
    ],
)
def test_v2_values_must_fit_their_datatype(datatype: str, data: list, words: str) -> None:
    with pytest.raises(h.BadInput, match=words):
        h.decode_v2_tensor({"name": "x", "shape": [1, 1], "datatype": datatype, "data": data})


def test_v2_tensor_ok() -> None:
    t = {"name": "x", "shape": [2, 2], "datatype": "UINT64", "data": [0, 2**64 - 1, 3, 4]}
    assert h.decode_v2_tensor(t).tolist() == [[0, 2**64 - 1], [3, 4]]


# -- encoding -----------------------------------------------------------------------------------


def test_encode_formats() -> None:
    assert h.encode([1, 2], "") == (b'{"predictions":[1,2]}', "application/json")
    assert h.encode(np.array([0.5, np.nan]), "application/json")[0] == (
        b'{"predictions":[0.5,null]}'
    )
    assert h.encode([[0.1, 0.9]], "text/csv") == (b"0.1,0.9\n", "text/csv")
    body, kind = h.encode([[0.1, 0.9], [1, 0]], "application/jsonlines")
    assert body == b"[0.1,0.9]\n[1,0]\n" and kind == "application/jsonlines"
    with pytest.raises(h.BadInput) as err:
        h.encode([1], "image/png")
    assert err.value.status == 406


# -- predict on real models -----------------------------------------------------------------------


def titanic_frame():  # type: ignore[no-untyped-def]
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    n = 200
    frame = pd.DataFrame(
        {
            "Pclass": rng.integers(1, 4, n),
            "Sex": rng.choice(["male", "female"], n),
            "Age": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(1, 70, n).round()),
            "Fare": rng.uniform(5, 100, n).round(2),
            "Embarked": rng.choice(["S", "C", "Q", None], n),
        }
    )
    y = ((frame.Sex == "female") | (frame.Pclass == 1)).astype(int)
    return frame, y


def titanic_pipeline():  # type: ignore[no-untyped-def]
    pytest.importorskip("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame, y = titanic_frame()
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["Age", "Fare", "Pclass"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["Sex", "Embarked"],
            ),
        ]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(frame, y), frame


def test_titanic_pipeline_answers_like_the_model() -> None:
    model, _ = titanic_pipeline()
    names = h.model_feature_names(model)
    assert names == NAMES
    X, _ = h.decode(CSV_REORDERED, "text/csv", names)
    pd = pytest.importorskip("pandas")
    # the model's own answers on the same CSV, read by pandas and put in the training order
    reference = pd.read_csv(io.BytesIO(CSV_REORDERED))[names]
    expected = model.predict_proba(reference).tolist()
    assert h.predict(model, X, {"method": "predict_proba"}) == expected
    assert h.predict(model, X) == model.predict(reference).tolist()


def test_parameters_are_checked() -> None:
    model, _ = titanic_pipeline()
    X, _ = h.decode(CSV_REORDERED, "text/csv", NAMES)
    with pytest.raises(h.BadInput, match="predict_proba"):
        h.predict(model, X, {"method": "explode"})
    with pytest.raises(h.BadInput, match="unknown parameter"):
        h.predict(model, X, {"temperature": 1})


def test_model_errors_are_bad_input_with_the_model_message() -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0, 1], [1, 0], [1, 1], [0, 0]], [0, 1, 1, 0])
    X, _ = h.decode(b'[["nan", 1]]', "application/json")
    with pytest.raises(h.BadInput, match="NaN") as err:
        h.predict(model, X)
    assert err.value.code == "model_rejected_input"
    with pytest.raises(h.BadInput, match="2 features, got 3"):
        h.predict(model, h.decode(b"[[1, 2, 3]]", "")[0])


def test_xgb_classifier_saved_with_save_model_is_a_classifier(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    y = (x[:, 0] > 0).astype(int)
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    clf.save_model(str(tmp_path / "model.json"))
    loaded = h.load_model(tmp_path)
    assert type(loaded).__name__ == "XGBClassifier"
    assert h.predict(loaded, x[:4]) == clf.predict(x[:4]).tolist()
    proba = h.predict(loaded, x[:4], {"method": "predict_proba"})
    assert np.allclose(proba, clf.predict_proba(x[:4]))
    with pytest.raises(h.BadInput, match="unknown parameter"):
        h.predict(loaded, x[:4], {"iteration_range": 3})
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, y), 3)
    booster.save_model(str(tmp_path / "b.ubj"))
    raw = h.load_model(str(tmp_path / "b.ubj"))
    assert type(raw).__name__ == "Booster"
    assert np.allclose(h.predict(raw, x[:4]), booster.predict(xgb.DMatrix(x[:4])))


def test_manifest_and_model_file(tmp_path: Path) -> None:
    (tmp_path / "cloudserve.json").write_text(
        json.dumps({"framework": "sklearn", "signature": {"feature_names": ["a", "b"]}})
    )
    assert h.read_manifest(tmp_path)["feature_names"] == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        h.find_model_file(tmp_path)
    sub = tmp_path / "azure" / "model"
    sub.mkdir(parents=True)
    (sub / "model.joblib").write_bytes(b"x")
    assert h.find_model_file(tmp_path / "azure") == str(sub / "model.joblib")
    assert h.find_model_file(sub / "model.joblib") == str(sub / "model.joblib")
    assert h.model_feature_names(object(), h.read_manifest(tmp_path)) == ["a", "b"]


def test_from_columns_reorders_numbers_without_per_cell_work() -> None:
    rows = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    X = h.from_columns(["c", "a", "b"], rows, ["a", "b", "c"])
    assert X.tolist() == [[2, 3, 1], [5, 6, 4]]
    with pytest.raises(h.BadInput, match=r"missing feature\(s\) \['d'\]"):
        h.from_columns(["c", "a", "b"], rows, ["a", "d"])
    mixed = np.array([["x", 1.0], [None, 2.0]], dtype=object)
    X = h.from_columns(["s", "n"], mixed, ["n", "s"])
    assert X[0].tolist() == [1.0, "x"] and np.isnan(X[1, 1])


def test_handle_and_error_response() -> None:
    model, _ = titanic_pipeline()
    body, kind = h.handle(model, CSV_REORDERED, "text/csv", "application/json", NAMES)
    assert kind == "application/json" and len(json.loads(body)["predictions"]) == 2
    with pytest.raises(h.BadInput) as err:
        h.handle(model, b'{"instances": [[1]], "parameters": 3}', "", None, NAMES)
    status, doc = h.error_response(err.value)
    assert status == 400 and json.loads(doc)["code"] == "bad_parameters"
    assert len(json.loads(doc)["error_id"]) == 16
    status, doc = h.error_response(RuntimeError("secret detail"))
    assert status == 500 and b"secret" not in doc and json.loads(doc)["code"] == "model_error"


def test_mlflow_signature_names_the_features(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\nsignature:\n"
        '  inputs: \'[{"type": "double", "name": "Age"}, {"type": "string", "name":'
        ' "Sex"}]\'\n  outputs: \'[{"type": "long"}]\'\n'
    )
    manifest = h.read_manifest(tmp_path)
    assert manifest["feature_names"] == ["Age", "Sex"] and manifest["n_features"] == 2
