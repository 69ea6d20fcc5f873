"""Payload encoding shared by the client and the model server: JSON, CSV and NPY.

Server side, :func:`decode_request` turns a request body into ``(instances, parameters)`` and
:func:`encode_response` turns model outputs into a body for the ``Accept`` header. Client side,
:func:`encode_instances` and :func:`decode_predictions` are their mirror images, and
:func:`split_for_limit` cuts a large input into chunks that fit a provider's payload limit.

JSON request bodies may take any of these shapes (the first key found wins)::

    [[...], ...]                                  plain list of rows
    {"instances": [...], "parameters": {...}}    Vertex AI / TF Serving
    {"inputs": [...]} or {"inputs": {"col": [...]}}   TF Serving rows or columns, MLflow
    {"inputs": [{"name", "shape", "datatype", "data"}]}   Open Inference Protocol v2 tensors
    {"dataframe_split": {"columns": [...], "data": [[...]]}}   MLflow / pandas split
    {"dataframe_records": [{...}, ...]}            MLflow / pandas records
    {"data": [...]}                                Azure ML convention

Instances come back as a list of rows (lists), a list of records (dicts keyed by column name),
or a numpy array (NPY bodies and v2 tensors). Every malformed body raises
:class:`~cloudserve.errors.InvalidRequest` whose message names the problem; an unsupported
``Content-Type`` raises :class:`UnsupportedMediaType`, an unsupported ``Accept``
:class:`NotAcceptable`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from cloudserve.errors import (
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)

__all__ = [
    "CSV",
    "JSON",
    "NPY",
    "V2_DATATYPES",
    "NotAcceptable",
    "UnsupportedMediaType",
    "decode_predictions",
    "decode_request",
    "decode_v2_tensor",
    "encode_instances",
    "encode_response",
    "encode_v2_tensor",
    "media_type",
    "split_for_limit",
]

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"

_JSON_TYPES = frozenset({JSON, "application/jsonlines", "text/json", ""})
_CSV_TYPES = frozenset({CSV, "application/csv", "text/plain"})
_NPY_TYPES = frozenset({NPY, "application/npy", "application/x-numpy"})
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

#: Open Inference Protocol datatypes and the numpy dtype each one maps to.
V2_DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_DTYPE_TO_V2 = {np.dtype(v): k for k, v in V2_DATATYPES.items() if k != "BYTES"}


def media_type(header: str | None) -> str:
    """The bare, lower-case media type of a ``Content-Type`` / ``Accept`` value."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


# -- server side --------------------------------------------------------------------------------


def decode_request(body: bytes, content_type: str) -> tuple[Any, dict[str, Any]]:
    """Decode a request body into ``(instances, parameters)``.

    An empty ``content_type`` is read as JSON. Raises ``UnsupportedMediaType`` for other types
    and ``InvalidRequest`` (naming the problem) for a body that does not decode to rows.
    """
    kind = media_type(content_type)
    if not body:
        raise InvalidRequest("the request body is empty", code="empty_body")
    if kind in _JSON_TYPES or kind.endswith("+json"):
        return _decode_json(body)
    if kind in _CSV_TYPES:
        return _decode_csv(body), {}
    if kind in _NPY_TYPES:
        return _decode_npy(body), {}
    raise UnsupportedMediaType(
        f"unsupported Content-Type '{content_type}'; send {JSON}, {CSV} or {NPY}",
        code="unsupported_media_type",
    )


def encode_response(outputs: Sequence[Any], accept: str) -> tuple[bytes, str]:
    """Encode model outputs for the ``Accept`` header; returns ``(body, content_type)``.

    JSON (the default, also for ``*/*`` or no header) is ``{"predictions": [...]}``; CSV is one
    line per output; NPY is ``numpy.save`` of the outputs as one array.
    """
    for choice in (media_type(part) for part in (accept or "").split(",")):
        if choice in ("", "*/*", "application/*", JSON) or choice.endswith("+json"):
            return orjson.dumps({"predictions": outputs}, option=_JSON_OPTIONS), JSON
        if choice in _CSV_TYPES or choice == "text/*":
            return _encode_csv(outputs), CSV
        if choice in _NPY_TYPES:
            return _encode_npy(outputs), NPY
    raise NotAcceptable(
        f"cannot answer in '{accept}'; accept {JSON}, {CSV} or {NPY}", code="not_acceptable"
    )


def _decode_json(body: bytes) -> tuple[Any, dict[str, Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", code="malformed_json") from exc
    if isinstance(doc, list):
        return _nonempty(doc), {}
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "the JSON body must be a list of rows or an object with 'instances'", code="bad_shape"
        )
    params = doc.get("parameters", doc.get("params")) or {}
    if not isinstance(params, dict):
        raise InvalidRequest("'parameters' must be a JSON object", code="bad_parameters")
    if "instances" in doc:
        return _nonempty(_rows(doc["instances"], "instances")), params
    if "inputs" in doc:
        return _decode_inputs(doc["inputs"]), params
    if "dataframe_split" in doc:
        return _decode_split(doc["dataframe_split"]), params
    if "dataframe_records" in doc:
        return _nonempty(_rows(doc["dataframe_records"], "dataframe_records")), params
    if "data" in doc:
        return _nonempty(_rows(doc["data"], "data")), params
    raise InvalidRequest(
        "the JSON body has none of the keys 'instances', 'inputs', 'dataframe_split', "
        f"'dataframe_records' or 'data' (got {sorted(doc)[:5]})",
        code="bad_shape",
    )


def _rows(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"'{key}' must be a list of rows", code="bad_shape")
    return value


def _nonempty(rows: list[Any]) -> list[Any]:
    if not rows:
        raise InvalidRequest("the request holds no rows", code="empty_input")
    return rows


def _decode_inputs(inputs: Any) -> Any:
    if isinstance(inputs, dict):  # columnar: {"col": [values...]}
        columns = list(inputs)
        values = [_rows(inputs[c], f"inputs.{c}") for c in columns]
        if len({len(v) for v in values}) > 1:
            raise InvalidRequest("the columns of 'inputs' differ in length", code="bad_shape")
        records = [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
        return _nonempty(records)
    rows = _nonempty(_rows(inputs, "inputs"))
    if isinstance(rows[0], dict) and "datatype" in rows[0] and "data" in rows[0]:
        return decode_v2_tensor(rows[0])
    return rows


def _decode_split(split: Any) -> list[dict[str, Any]]:
    if not isinstance(split, dict) or "data" not in split:
        raise InvalidRequest("'dataframe_split' needs 'columns' and 'data'", code="bad_shape")
    data = _nonempty(_rows(split["data"], "dataframe_split.data"))
    columns = split.get("columns")
    if columns is None:
        return data
    out = []
    for row in data:
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidRequest(
                f"every 'dataframe_split' row needs {len(columns)} values", code="bad_shape"
            )
        out.append(dict(zip(columns, row, strict=True)))
    return out


def _number(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell


def _decode_csv(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the CSV body is not UTF-8", code="malformed_csv") from exc
    cells = [row for row in csv.reader(io.StringIO(text)) if row]
    if not cells:
        raise InvalidRequest("the CSV body holds no rows", code="empty_input")
    rows = [[_number(c) for c in row] for row in cells]
    header = all(isinstance(v, str) for v in rows[0]) and any(
        not isinstance(v, str) for r in rows[1:2] for v in r
    )
    if header:
        names = cells[0]
        if any(len(r) != len(names) for r in rows[1:]):
            raise InvalidRequest(
                f"every CSV row needs {len(names)} values like its header", code="bad_shape"
            )
        return _nonempty([dict(zip(names, r, strict=True)) for r in rows[1:]])
    return rows


def _decode_npy(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError for bad bytes
        raise InvalidRequest(f"malformed NPY body: {exc}", code="malformed_npy") from exc
    if not isinstance(array, np.ndarray) or array.ndim == 0 or len(array) == 0:
        raise InvalidRequest("the NPY body must hold an array with rows", code="bad_shape")
    return array


def _as_list(outputs: Sequence[Any]) -> list[Any]:
    return outputs.tolist() if isinstance(outputs, np.ndarray) else list(outputs)


def _encode_csv(outputs: Sequence[Any]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for out in _as_list(outputs):
        if isinstance(out, dict):
            writer.writerow(list(out.values()))
        elif isinstance(out, list | tuple):
            writer.writerow(out)
        else:
            writer.writerow([out])
    return buf.getvalue().encode()


def _encode_npy(outputs: Sequence[Any]) -> bytes:
    buf = io.BytesIO()
    try:
        np.save(buf, np.asarray(outputs), allow_pickle=False)
    except ValueError as exc:
        raise NotAcceptable(
            f"these outputs cannot be sent as NPY: {exc}", code="not_acceptable"
        ) from exc
    return buf.getvalue()


# -- Open Inference Protocol tensors --------------------------------------------------------------


def decode_v2_tensor(tensor: dict[str, Any]) -> np.ndarray:
    """A v2 ``{"name", "shape", "datatype", "data"}`` input as a numpy array of that shape."""
    datatype = str(tensor.get("datatype", "")).upper()
    if datatype not in V2_DATATYPES:
        raise InvalidRequest(
            f"tensor '{tensor.get('name')}': unknown datatype '{datatype}'", code="bad_datatype"
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidRequest(
            f"tensor '{tensor.get('name')}': 'shape' must be a list of sizes", code="bad_shape"
        )
    try:
        flat = np.asarray(tensor.get("data"), dtype=V2_DATATYPES[datatype]).ravel()
        array = flat.reshape(shape)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"tensor '{tensor.get('name')}': data does not fit shape {shape} as {datatype}: {exc}",
            code="bad_shape",
        ) from exc
    if array.ndim == 0 or len(array) == 0:
        raise InvalidRequest(f"tensor '{tensor.get('name')}' holds no rows", code="empty_input")
    return array


def encode_v2_tensor(name: str, outputs: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """Model outputs as a v2 output tensor (``shape``, ``datatype`` and flat ``data``)."""
    array = np.asarray(outputs)
    datatype = _DTYPE_TO_V2.get(array.dtype, "BYTES")
    data = array.ravel().tolist() if datatype != "BYTES" else [str(v) for v in array.ravel()]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


# -- client side --------------------------------------------------------------------------------


def encode_instances(instances: Any, content_type: str = JSON) -> bytes:
    """Encode rows for a request: JSON ``{"instances": [...]}``, CSV lines or an NPY array."""
    kind = media_type(content_type)
    if kind in _JSON_TYPES:
        return orjson.dumps({"instances": instances}, option=_JSON_OPTIONS)
    if kind in _CSV_TYPES:
        return _encode_csv(instances)
    if kind in _NPY_TYPES:
        return _encode_npy(instances)
    raise UnsupportedMediaType(f"cannot encode instances as '{content_type}'")


def decode_predictions(body: bytes, content_type: str) -> list[Any]:
    """Decode a prediction response body into a list with one output per input row.

    Understands ``{"predictions": [...]}``, a v2 ``{"outputs": [...]}`` answer (first output,
    one entry per row), a bare JSON list, CSV lines and NPY arrays.
    """
    kind = media_type(content_type)
    if kind in _NPY_TYPES:
        return list(_decode_npy(body).tolist())
    if kind in _CSV_TYPES:
        return [r[0] if len(r) == 1 else r for r in _decode_csv(body)]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON response: {exc}", code="malformed_json") from exc
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list):
        return list(doc["predictions"])
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list) and doc["outputs"]:
        return list(decode_v2_tensor(doc["outputs"][0]).tolist())
    raise InvalidRequest("the response holds no 'predictions'", code="bad_response")


def split_for_limit(
    instances: Sequence[Any], max_bytes: int, *, content_type: str = JSON
) -> list[list[Any]]:
    """Cut rows into consecutive chunks whose encoded request fits in ``max_bytes``.

    Sizes are those of :func:`encode_instances` for ``content_type`` (JSON or CSV). Raises
    ``PayloadTooLarge`` when a single row alone does not fit.
    """
    rows = _as_list(instances)
    csv_mode = media_type(content_type) in _CSV_TYPES
    overhead = 0 if csv_mode else len(b'{"instances":[]}')
    chunks: list[list[Any]] = []
    current: list[Any] = []
    size = overhead
    for i, row in enumerate(rows):
        row_size = len(_encode_csv([row])) if csv_mode else len(_row_json(row)) + 1
        if overhead + row_size > max_bytes:
            raise PayloadTooLarge(
                f"row {i} alone encodes to {row_size} bytes, over the {max_bytes}-byte limit"
            )
        if current and size + row_size > max_bytes:
            chunks.append(current)
            current, size = [], overhead
        current.append(row)
        size += row_size
    if current:
        chunks.append(current)
    return chunks


def _row_json(row: Any) -> bytes:
    return orjson.dumps(row, option=_JSON_OPTIONS)
