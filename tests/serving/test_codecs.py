"""Payload codecs shared by the client and the server."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from cloudserve import codecs
from cloudserve.errors import InvalidRequest, PayloadTooLarge

ROWS = [[1.0, 2.0], [3.0, 4.5]]


@pytest.mark.parametrize(
    "doc",
    [
        ROWS,
        {"instances": ROWS},
        {"inputs": ROWS},
        {"data": ROWS},
    ],
)
def test_json_row_shapes_decode_to_rows(doc):
    rows, params = codecs.decode_request(orjson.dumps(doc), "application/json")
    assert np.asarray(rows).tolist() == ROWS and params == {}
    array, _ = codecs.decode_request(orjson.dumps(doc), "application/json", ["a", "b"])
    assert array.tolist() == ROWS


def test_parameters_come_back_with_the_rows():
    body = orjson.dumps({"instances": ROWS, "parameters": {"method": "predict_proba"}})
    rows, params = codecs.decode_request(body, "application/json; charset=utf-8")
    assert np.asarray(rows).tolist() == ROWS and params == {"method": "predict_proba"}


def test_dataframe_and_columnar_shapes_decode_to_rows_in_feature_order():
    records = [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    split = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}
    for doc in (split, {"dataframe_records": records}, {"inputs": {"a": [1, 3], "b": [2, 4]}}):
        assert codecs.decode_request(orjson.dumps(doc), "", ["b", "a"])[0].tolist() == [
            [2, 1],
            [4, 3],
        ]
    # a custom predictor gets the rows as sent
    assert codecs.decode_request(orjson.dumps(split), "", tabular=False)[0] == records
    # without the model's names the names are kept, for the model to match later
    for doc in (split, {"dataframe_records": records}, {"inputs": {"a": [1, 3], "b": [2, 4]}}):
        assert codecs.decode_request(orjson.dumps(doc), "")[0] == records
    assert codecs.decode_request(b"b,a\n2,1\n4,3\n", "text/csv")[0] == records


def test_without_names_a_later_model_still_matches_columns_by_name(sklearn_dir):
    from cloudserve.serving import load_model

    model = load_model(sklearn_dir)
    names = [f"x{i}" for i in range(6)]
    values = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]
    reordered = [dict(zip(names[::-1], values[0][::-1], strict=True))]
    csv_body = (",".join(names[::-1]) + "\n" + ",".join(map(str, values[0][::-1]))).encode()
    model.feature_names = names  # as a model fitted on a DataFrame with these columns
    for body, kind in (
        (orjson.dumps({"instances": reordered}), codecs.JSON),
        (csv_body, codecs.CSV),
    ):
        instances, _ = codecs.decode_request(body, kind)  # a caller that does not know the model
        assert model.predict(instances) == model.predict(values)


def test_v2_tensor_in_inputs_decodes_to_a_typed_array():
    doc = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    array, _ = codecs.decode_request(orjson.dumps(doc), "application/json")
    assert array.dtype == np.float32 and array.shape == (2, 2)
    out = codecs.encode_v2_tensor("y", np.array([1, 0], dtype=np.int64))
    assert out == {"name": "y", "shape": [2], "datatype": "INT64", "data": [1, 0]}


def test_csv_with_and_without_header():
    assert codecs.decode_request(b"1,2\n3,4.5\n", "text/csv")[0] == ROWS
    assert codecs.decode_request(b"1,2\n3,4.5\n", "text/csv", ["a", "b"])[0].tolist() == ROWS
    assert codecs.decode_request(b"a,b\n1,2\n", "text/csv", ["b", "a"])[0].tolist() == [[2, 1]]
    assert codecs.decode_request(b"a,b\n1,2\n", "text/csv")[0] == [{"a": 1, "b": 2}]
    with pytest.raises(InvalidRequest, match="the header 2"):
        codecs.decode_request(b"a,b\n1,2,3\n", "text/csv")


def test_npy_round_trip_and_pickles_refused():
    body = codecs.encode_instances(np.array(ROWS), codecs.NPY)
    assert codecs.decode_request(body, codecs.NPY)[0].tolist() == ROWS
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidRequest, match="malformed NPY"):
        codecs.decode_request(buf.getvalue(), codecs.NPY)


@pytest.mark.parametrize(
    ("body", "ctype", "error"),
    [
        (b"{", "application/json", "malformed JSON"),
        (b'{"x": 1}', "application/json", "none of the keys"),
        (b'"text"', "application/json", "list of rows"),
        (b'{"instances": 3}', "application/json", "must be a list"),
        (b'{"instances": [[1]], "parameters": 3}', "application/json", "parameters"),
        (b"", "application/json", "empty"),
        (b"\xff\xfe", "text/csv", "UTF-8"),
    ],
)
def test_bad_bodies_name_the_problem(body, ctype, error):
    with pytest.raises(InvalidRequest, match=error):
        codecs.decode_request(body, ctype)


def test_content_type_and_accept_negotiation():
    with pytest.raises(codecs.UnsupportedMediaType):
        codecs.decode_request(b"<x/>", "application/xml")
    assert codecs.encode_response([1, 2], "") == (b'{"predictions":[1,2]}', "application/json")
    assert codecs.encode_response([1, 2], "text/html, */*;q=0.1")[1] == "application/json"
    assert codecs.encode_response([[1, 2], 3], "text/csv") == (b"1,2\n3\n", "text/csv")
    with pytest.raises(codecs.NotAcceptable):
        codecs.encode_response([1], "application/xml")


def test_client_side_decoding_of_every_answer_shape():
    assert codecs.decode_predictions(b'{"predictions": [1, 2]}', "application/json") == [1, 2]
    assert codecs.decode_predictions(b"[1, 2]", "application/json") == [1, 2]
    v2 = {"outputs": [{"name": "o", "shape": [2], "datatype": "FP64", "data": [0.5, 1.5]}]}
    assert codecs.decode_predictions(orjson.dumps(v2), "application/json") == [0.5, 1.5]
    assert codecs.decode_predictions(b"1\n2,3\n", "text/csv") == [1.0, [2.0, 3.0]]
    npy = codecs.encode_response([1, 2], codecs.NPY)[0]
    assert codecs.decode_predictions(npy, codecs.NPY) == [1, 2]


def test_split_for_limit_keeps_every_chunk_under_the_limit():
    rows = [[float(i)] * 10 for i in range(100)]
    chunks = codecs.split_for_limit(rows, 500)
    assert [r for c in chunks for r in c] == rows
    assert len(chunks) > 1
    assert all(len(codecs.encode_instances(c)) <= 500 for c in chunks)
    csv_chunks = codecs.split_for_limit(rows, 300, content_type="text/csv")
    assert all(len(codecs.encode_instances(c, "text/csv")) <= 300 for c in csv_chunks)
    with pytest.raises(PayloadTooLarge, match="row 0"):
        codecs.split_for_limit([[1.0] * 1000], 100)
