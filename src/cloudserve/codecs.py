"""Payload encoding shared by the client and the model server: JSON, JSON Lines, CSV and NPY.

The decoding rules live in one module, :mod:`cloudserve._handler` (the handler template the cloud
containers also run, so every path gives the same answers); this module adds what the server
and the client need on top: orjson for speed, the error tree, the v2 tensor encoding, the
client's chunking and error descriptions.

Server side, :func:`decode_request` turns a request body into ``(instances, parameters)`` and
:func:`encode_response` turns model outputs into a body for the ``Accept`` header. Client side,
:func:`encode_instances` and :func:`decode_predictions` are their mirror images,
:func:`read_instances` reads a file of rows (CSV with or without a header, JSON, JSON Lines),
:func:`split_for_limit` cuts a large input into chunks that fit a provider's payload limit and
:func:`error_message` reads a server's JSON error (message, code, error id).

JSON request bodies may take any of these shapes (the first key found wins)::

    [[...], ...] or [{...}, ...]                  plain list of rows or of records
    {"instances": [...], "parameters": {...}}    Vertex AI / TF Serving
    {"inputs": [...]} or {"inputs": {"col": [...]}}   TF Serving rows or columns, MLflow
    {"inputs": [{"name", "shape", "datatype", "data"}]}   Open Inference Protocol v2 tensors
    {"dataframe_split": {"columns": [...], "data": [[...]]}}   MLflow / pandas split
    {"dataframe_records": [{...}, ...]}            MLflow / pandas records
    {"data": [...]}                                Azure ML convention

Instances come back as a numpy array in the model's feature order (see
:mod:`cloudserve._handler` for the rules on names, blanks and text). Every malformed body raises
:class:`~cloudserve.errors.InvalidRequest` whose message names the problem; an unsupported
``Content-Type`` (or ``Content-Encoding``) raises :class:`UnsupportedMediaType`, an unsupported
``Accept`` :class:`NotAcceptable`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from cloudserve import _handler
from cloudserve._handler import V2_DATATYPES, BadInput, media_type
from cloudserve.errors import (
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)

__all__ = [
    "CSV",
    "JSON",
    "JSONLINES",
    "NPY",
    "V2_DATATYPES",
    "NotAcceptable",
    "UnsupportedMediaType",
    "as_error",
    "check_content_encoding",
    "decode_predictions",
    "decode_request",
    "decode_v2_tensor",
    "encode_instances",
    "encode_response",
    "encode_v2_tensor",
    "error_message",
    "media_type",
    "read_instances",
    "request_parameters",
    "split_for_limit",
]

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
NPY = "application/x-npy"

_JSON_TYPES = _handler.JSON_TYPES
_JSONLINES_TYPES = _handler.JSONLINES_TYPES
_CSV_TYPES = _handler.CSV_TYPES
_NPY_TYPES = _handler.NPY_TYPES
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_ERRORS: dict[int, type[InvalidRequest]] = {415: UnsupportedMediaType, 406: NotAcceptable}

_DTYPE_TO_V2 = {np.dtype(v): k for k, v in V2_DATATYPES.items() if k != "BYTES"}


def as_error(exc: BadInput) -> InvalidRequest:
    """The error-tree exception for the template's :class:`~cloudserve._handler.BadInput`:
    ``UnsupportedMediaType`` (415), ``NotAcceptable`` (406), else ``InvalidRequest`` (400)."""
    err = _ERRORS.get(exc.status, InvalidRequest)(str(exc), code=exc.code)
    err.__cause__ = exc
    return err


# -- server side --------------------------------------------------------------------------------


def decode_request(
    body: bytes,
    content_type: str,
    feature_names: Sequence[str] | None = None,
    *,
    tabular: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Decode a request body into ``(instances, parameters)``.

    With the model's ``feature_names``, ``instances`` is a numpy array with named columns put in
    that order (see :mod:`cloudserve._handler`). Without them, named rows come back as records
    (dicts keyed by column: JSON records, ``dataframe_split``, columnar ``inputs``, a CSV header)
    and other rows as sent, so the model they reach can still match columns by name
    (:meth:`cloudserve.serving.LoadedModel.predict` does). ``tabular=False`` keeps JSON rows as
    sent in every case, for custom predictors. An empty ``content_type`` (and the form type
    ``curl -d`` sends) is read as JSON. Raises ``UnsupportedMediaType`` for other types and
    ``InvalidRequest`` (naming the problem) for a body that does not decode to rows.
    """
    kind = media_type(content_type)
    keep_names = feature_names is None
    try:
        if kind in _JSON_TYPES or kind.endswith("+json"):
            _handler.check_body(body)
            doc = _load_json(body)
            return _handler.decode_document(doc, feature_names, tabular and not keep_names)
        if keep_names and kind in _CSV_TYPES:
            _handler.check_body(body)
            columns, rows = _handler.csv_table(body)
            if columns is None:
                return rows, {}
            return [dict(zip(columns, row, strict=True)) for row in rows], {}
        if keep_names and kind in _JSONLINES_TYPES:
            _handler.check_body(body)
            return _handler.decode_document(_handler.jsonlines_rows(body), None, False)[0], {}
        return _handler.decode(body, kind, feature_names)
    except BadInput as exc:
        raise as_error(exc) from exc


def check_content_encoding(encoding: str) -> None:
    """Refuse a compressed body (``Content-Encoding`` other than ``identity``) with a 415 that
    names the encoding: the server reads bodies uncompressed."""
    value = encoding.strip().lower()
    if value and value != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding '{encoding}' is not supported; send the body uncompressed",
            code="unsupported_content_encoding",
        )


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", code="malformed_json") from exc


def request_parameters(doc: dict[str, Any]) -> dict[str, Any]:
    """A request document's ``parameters`` object (``{}`` when absent); anything but an object
    is an ``InvalidRequest``."""
    params = doc.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidRequest(
            f"'parameters' must be a JSON object, got {type(params).__name__}",
            code="bad_parameters",
        )
    return params


def encode_response(outputs: Sequence[Any], accept: str) -> tuple[bytes, str]:
    """Encode model outputs for the ``Accept`` header; returns ``(body, content_type)``.

    JSON (the default, also for ``*/*`` or no header) is ``{"predictions": [...]}``; CSV is one
    line per output; NPY is ``numpy.save`` of the outputs as one array.
    """
    for choice in (media_type(part) for part in (accept or "").split(",")):
        if choice in ("", "*/*", "application/*", JSON) or choice.endswith("+json"):
            return orjson.dumps({"predictions": outputs}, option=_JSON_OPTIONS), JSON
        if choice in _JSONLINES_TYPES:
            lines = (orjson.dumps(v, option=_JSON_OPTIONS) + b"\n" for v in _as_list(outputs))
            return b"".join(lines), choice
        if choice in _CSV_TYPES or choice == "text/*":
            return _encode_csv(outputs), CSV
        if choice in _NPY_TYPES:
            return _encode_npy(outputs), NPY
    raise NotAcceptable(
        f"cannot answer in '{accept}'; accept {JSON}, {JSONLINES}, {CSV} or {NPY}",
        code="not_acceptable",
    )


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
    """A v2 ``{"name", "shape", "datatype", "data"}`` input as a numpy array of that shape;
    values that do not fit the datatype (``INT8`` 1000, ``UINT64`` -1) are an
    ``InvalidRequest``."""
    try:
        return _handler.decode_v2_tensor(tensor)
    except BadInput as exc:
        raise as_error(exc) from exc


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
    try:
        if kind in _NPY_TYPES:
            return list(_handler.decode(body, kind)[0].tolist())
        if kind in _CSV_TYPES:
            return _csv_outputs(body)
        if kind in _JSONLINES_TYPES:
            return [orjson.loads(line) for line in body.splitlines() if line.strip()]
        doc = orjson.loads(body)
    except BadInput as exc:
        raise InvalidRequest(f"malformed response: {exc}", code="bad_response") from exc
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON response: {exc}", code="malformed_json") from exc
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("predictions"), list):
        return list(doc["predictions"])
    if isinstance(doc, dict) and isinstance(doc.get("outputs"), list) and doc["outputs"]:
        return list(decode_v2_tensor(doc["outputs"][0]).tolist())
    raise InvalidRequest("the response holds no 'predictions'", code="bad_response")


def _csv_outputs(body: bytes) -> list[Any]:
    # An answer's lines may differ in width (one value, or a list per row): no table rules here.
    lines = csv.reader(io.StringIO(body.decode("utf-8")))
    rows = [[float(c) if _handler.is_number(c) else c for c in line] for line in lines if line]
    return [r[0] if len(r) == 1 else r for r in rows]


def read_instances(path: str | Path, *, header: bool | None = None) -> list[Any]:
    """The rows of a file for a prediction request, decoded by the server's own rules.

    ``.csv`` (and ``.txt``): a header line is detected (``header`` says it instead) and turns
    the rows into records keyed by column name, so the server matches them to the model's
    features in any order; numbers stay numbers, text stays text, blanks become ``None``.
    ``.jsonl``: one row or record a line. Anything else is JSON: a list of rows or records, or a
    document with ``instances`` (or any key :func:`decode_request` reads) whose rows are
    returned as sent. Raises ``InvalidRequest`` naming the file and the problem.
    """
    file = Path(path)
    try:
        body = file.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {file}: {exc.strerror}", code="no_input") from exc
    try:
        _handler.check_body(body)
        suffix = file.suffix.lower()
        if suffix in (".csv", ".txt"):
            columns, rows = _handler.csv_table(body, header=header)
            if columns is None:
                return rows
            return [dict(zip(columns, row, strict=True)) for row in rows]
        if suffix in (".jsonl", ".ndjson"):
            return list(_handler.decode_document(_handler.jsonlines_rows(body), None, False)[0])
        return list(_handler.decode_document(_load_json(body), None, False)[0])
    except BadInput as exc:
        raise InvalidRequest(f"{file}: {exc}", code=exc.code) from exc
    except InvalidRequest as exc:
        raise InvalidRequest(f"{file}: {exc.message}", code=exc.code) from exc


def error_message(body: bytes, fallback: str = "") -> str:
    """What a cloudserve server's JSON error says, with its code and error id when given:
    ``"the model rejected the input: … [model_rejected_input] (error id 3f2a…)"``; other bodies
    come back as (at most 500 characters of) text."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace") or fallback
    if not isinstance(doc, dict):
        return str(doc)[:500]
    message = next((doc[k] for k in ("error", "message", "detail") if doc.get(k)), None)
    if message is None:
        return str(doc)[:500]
    text = message if isinstance(message, str) else orjson.dumps(message).decode()
    if isinstance(doc.get("code"), str):
        text += f" [{doc['code']}]"
    if doc.get("error_id"):
        text += f" (error id {doc['error_id']})"
    return text


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
