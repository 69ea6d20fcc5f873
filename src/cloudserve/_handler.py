"""cloudserve's model handler: decode a request, run the model, encode the answer.

This one module is the decoding core of every path cloudserve serves a model on: the serving
runtime (``cloudserve.codecs`` imports it), the client and the CLI, local batch, and the code
uploaded to the clouds' prebuilt containers (SageMaker ``inference.py``, Azure ML ``score.py``,
the batch scripts), which copy this file's source text next to a thin wrapper. So the same body
gives the same answers everywhere.

Rules that keep it portable (a test checks them): Python 3.8 syntax; only the standard library
and numpy at module level; pandas and the model's framework imported lazily, when present and
needed; nothing from cloudserve.

The API::

    BadInput                       the caller's fault (a 4xx); the message names the problem
    read_manifest(model_dir)       the staged cloudserve.json as a dict (framework, feature_names…)
    find_model_file(path)          the model file in a directory, or the file itself
    load_model(path, framework)    the model object (sklearn pickle/joblib, XGBoost .json/.ubj/.bst)
    model_feature_names(model, manifest)   the column order the model expects, or None
    decode(body, content_type, feature_names)   -> (X, parameters)
    predict(model, X, parameters)  -> list, one JSON-able output per row
    encode(outputs, accept)        -> (bytes, content_type)
    handle(model, body, content_type, accept, feature_names)   decode + predict + encode
    error_response(exc)            -> (status, bytes): the JSON error body every path sends

Request bodies ``decode`` understands:

- JSON (``application/json``, ``text/json``, ``*+json``, no type at all, and the
  ``application/x-www-form-urlencoded`` that ``curl -d`` sends by default): a list of rows
  ``[[...], ...]``, a list of records ``[{"col": v}, ...]``, or an object with one of
  ``instances`` (+ ``parameters``), ``inputs`` (rows, columns ``{"col": [...]}`` or Open Inference
  Protocol v2 tensors), ``dataframe_split`` (``columns`` + ``data``), ``dataframe_records``,
  ``data``.
- JSON Lines (``application/jsonlines``, ``application/x-ndjson`` …): one row or record a line.
- CSV (``text/csv``, ``application/csv``, ``text/plain``): with or without a header line. With
  known feature names, a first line naming any of them is the header; otherwise a first line of
  text over rows that hold numbers in those columns is.
- NPY (``application/x-npy``): ``numpy.save`` of a 1-D or 2-D array (no pickles).

Named columns (records, ``dataframe_split``, a CSV header, columnar ``inputs``) are put in the
model's feature order, whatever order they came in; extra columns are dropped, a missing one is a
``BadInput`` naming it. Blanks, ``null`` and ``NaN`` become ``numpy.nan`` (what ``pandas.read_csv``
gives the model at training time), numeric text becomes numbers, and a column holding text stays
text. ``X`` is a numeric numpy array when every value is a number (the fast path: no pandas, no
per-value Python work), else a 2-D ``object`` array; ``predict`` hands a model fitted on a
DataFrame a DataFrame with those column names and per-column dtypes.
"""

import csv
import io
import json
import math
import os
import uuid

import numpy as np

__all__ = [
    "BadInput",
    "check_body",
    "csv_table",
    "decode",
    "decode_document",
    "decode_v2_tensor",
    "encode",
    "error_response",
    "find_model_file",
    "from_columns",
    "handle",
    "jsonlines_rows",
    "load_model",
    "model_feature_names",
    "predict",
    "read_manifest",
]

MANIFEST_FILE = "cloudserve.json"

JSON_TYPES = frozenset(["application/json", "text/json", "", "application/x-www-form-urlencoded"])
JSONLINES_TYPES = frozenset(
    [
        "application/jsonlines",
        "application/x-jsonlines",
        "application/jsonl",
        "application/x-ndjson",
        "application/ndjson",
    ]
)
CSV_TYPES = frozenset(["text/csv", "application/csv", "text/plain"])
NPY_TYPES = frozenset(["application/x-npy", "application/npy", "application/x-numpy"])

#: Open Inference Protocol datatypes and the numpy dtype each one maps to.
V2_DATATYPES = {
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

# Methods a request may ask for with parameters={"method": ...}, in the order offered.
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
# Other parameter keys each kind of model understands.
_XGB_PARAMETERS = frozenset(["method", "output_margin"])
_SKLEARN_PARAMETERS = frozenset(["method"])

# Cells read as missing, as pandas.read_csv reads them by default.
_MISSING_TEXT = frozenset(["", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None"])
_MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".ubj", ".bst", ".xgb", ".json")
_GZIP_MAGIC = b"\x1f\x8b"


class BadInput(ValueError):
    """The request cannot be answered because of what the caller sent (a 4xx).

    ``code`` is a short machine-readable reason (``malformed_json``, ``wrong_shape``,
    ``bad_parameters``, ``missing_feature``, ``model_rejected_input`` …); ``status`` the HTTP
    status a server should answer with (400, or 415 for an unsupported content type).
    """

    def __init__(self, message, code="bad_input", status=400):
        ValueError.__init__(self, message)
        self.code = code
        self.status = status


# -- the model directory --------------------------------------------------------------------------


def read_manifest(model_dir):
    """The manifest of a staged model directory, as a dict.

    ``cloudserve.json`` when present (its ``signature`` fields are also copied to the top level:
    ``feature_names``, ``n_features``, ``dtype``); else the names of an MLflow ``MLmodel``
    signature; else ``{}``. A model file's own directory is read when given the file.
    """
    path = model_dir if os.path.isdir(model_dir) else os.path.dirname(str(model_dir))
    manifest = {}
    file = os.path.join(path, MANIFEST_FILE)
    if os.path.isfile(file):
        with open(file, "rb") as fh:
            try:
                manifest = json.loads(fh.read().decode("utf-8"))
            except ValueError as exc:
                raise ValueError(f"{file} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise ValueError(f"{file} must hold a JSON object")
    elif os.path.isfile(os.path.join(path, "MLmodel")):
        names = _mlflow_feature_names(os.path.join(path, "MLmodel"))
        if names:
            manifest = {"signature": {"feature_names": names, "n_features": len(names)}}
    signature = manifest.get("signature") or {}
    for key in ("feature_names", "n_features", "dtype", "input_name"):
        if manifest.get(key) is None and signature.get(key) is not None:
            manifest[key] = signature[key]
    return manifest


def _mlflow_feature_names(mlmodel):
    # MLmodel is YAML, but its signature inputs are one JSON string on one line: no yaml needed.
    with open(mlmodel, encoding="utf-8") as fh:
        for line in fh:
            text = line.strip()
            if not text.startswith("inputs:"):
                continue
            value = text[len("inputs:") :].strip()
            if value[:1] in ("'", '"'):
                value = value[1:-1].replace("''", "'")
            try:
                columns = json.loads(value)
            except ValueError:
                return None
            names = [c.get("name") for c in columns if isinstance(c, dict)]
            return names if names and all(names) else None
    return None


def find_model_file(path):
    """The model file to load: ``path`` itself when it is a file, else the file in the directory.

    A directory's ``cloudserve.json`` may name it (``artifact``); otherwise the first file with a
    known suffix (``.joblib .pkl .pickle .ubj .bst .xgb``, then an XGBoost ``.json``) is taken,
    looking one level down when the directory holds a single subfolder (Azure ML's layout).
    """
    path = str(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model path {path} does not exist")
    artifact = read_manifest(path).get("artifact")
    if artifact:
        found = os.path.join(path, artifact)
        if not os.path.exists(found):
            raise FileNotFoundError(f"{found} named by {MANIFEST_FILE} does not exist")
        return found
    names = sorted(os.listdir(path))
    for suffix in _MODEL_SUFFIXES:
        for name in names:
            full = os.path.join(path, name)
            wanted = name.lower().endswith(suffix) and name != MANIFEST_FILE
            if wanted and os.path.isfile(full) and (suffix != ".json" or _is_xgboost_json(full)):
                return full
    folders = [n for n in names if os.path.isdir(os.path.join(path, n))]
    if len(folders) == 1:
        return find_model_file(os.path.join(path, folders[0]))
    raise FileNotFoundError("no model file ({}) in {}".format(" ".join(_MODEL_SUFFIXES), path))


def _is_xgboost_json(path):
    with open(path, "rb") as fh:
        return b'"learner"' in fh.read(4096)


def _framework_of(file):
    lower = file.lower()
    if lower.endswith((".ubj", ".bst", ".xgb", ".json")):
        return "xgboost"
    return "sklearn"


def load_model(path, framework=None):
    """Load the model at ``path`` (a directory or the model file).

    scikit-learn models come from joblib (or pickle) files — only load files you trust. XGBoost
    models come from their native ``.json``/``.ubj``/``.bst`` files; one saved by an
    ``XGBClassifier``/``XGBRegressor`` (``save_model``) comes back as that estimator, so
    ``predict`` gives labels and ``predict_proba`` probabilities like the original; a plain
    ``Booster`` stays a ``Booster``.
    """
    file = find_model_file(path)
    if framework is None:
        manifest = read_manifest(path if os.path.isdir(str(path)) else os.path.dirname(file))
        framework = manifest.get("framework") or _framework_of(file)
    framework = {"scikit-learn": "sklearn"}.get(framework, framework)
    if framework == "xgboost":
        return _load_xgboost(file)
    if framework == "sklearn":
        try:
            import joblib
        except ImportError:
            import pickle

            with open(file, "rb") as fh:
                return pickle.load(fh)
        return joblib.load(file)
    raise ValueError(f"this handler loads sklearn and xgboost models, not '{framework}'")


def _load_xgboost(file):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(file)
    # XGBModel.save_model records the estimator type in the booster's "scikit_learn" attribute
    kind = ""
    attribute = booster.attr("scikit_learn")
    if attribute:
        try:
            kind = str(json.loads(attribute).get("_estimator_type") or "")
        except (ValueError, AttributeError):
            kind = ""
    estimator = {"classifier": "XGBClassifier", "regressor": "XGBRegressor"}.get(kind)
    if estimator is None:
        return booster
    model = getattr(xgb, estimator)()
    model.load_model(file)
    return model


def model_feature_names(model, manifest=None):
    """The column names the model expects, in order, or ``None`` when it has none.

    From the model itself (``feature_names_in_``, an XGBoost booster's ``feature_names``), else the
    manifest's ``feature_names`` (staged from an MLflow signature or given by the user).
    """
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        booster = _booster_of(model)
        names = getattr(booster, "feature_names", None) if booster is not None else None
    if names is None and manifest:
        names = manifest.get("feature_names")
    return [str(n) for n in names] if names is not None and len(names) else None


def _booster_of(model):
    if type(model).__name__ == "Booster":
        return model
    getter = getattr(model, "get_booster", None)
    if getter is None:
        return None
    try:
        return getter()
    except Exception:  # an unfitted estimator has no booster
        return None


# -- decoding -----------------------------------------------------------------------------------


def media_type(header):
    """The bare, lower-case media type of a ``Content-Type`` / ``Accept`` value."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def decode(body, content_type, feature_names=None):
    """Decode a request body into ``(X, parameters)``.

    ``X`` is a numpy array with one entry per row (see the module docstring); ``parameters`` the
    request's ``parameters`` object (``{}`` when none). Raises :class:`BadInput` naming the
    problem, with ``status`` 415 for a content type it does not read.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    kind = media_type(content_type)
    check_body(body)
    names = list(feature_names) if feature_names else None
    if kind in JSON_TYPES or kind.endswith("+json"):
        return decode_document(_load_json(body), names)
    if kind in JSONLINES_TYPES:
        return _table(jsonlines_rows(body), names, "rows"), {}
    if kind in CSV_TYPES:
        return _decode_csv(body, names), {}
    if kind in NPY_TYPES:
        return _decode_npy(body), {}
    raise BadInput(
        f"unsupported Content-Type '{content_type}'; send application/json, application/jsonlines, "
        "text/csv or application/x-npy",
        "unsupported_media_type",
        415,
    )


def _not_json(token):
    raise ValueError(f"{token} is not JSON; send null for a missing value")


def _load_json(body, where="the JSON body"):
    try:
        text = body.decode("utf-8-sig") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_not_json)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{where} is not UTF-8", "malformed_json") from exc
    except ValueError as exc:
        raise BadInput(f"malformed JSON in {where}: {exc}", "malformed_json") from exc


def check_body(body):
    """Refuse what no decoder reads: an empty body, a compressed one."""
    if not body or not body.strip():
        raise BadInput("the request body is empty", "empty_body")
    if body[:2] == _GZIP_MAGIC:
        raise BadInput(
            "the body is gzip-compressed; Content-Encoding gzip is not supported, send it "
            "uncompressed",
            "unsupported_content_encoding",
            415,
        )


def decode_document(doc, feature_names=None, tabular=True):
    """``(X, parameters)`` from an already parsed JSON document (see the module docstring).

    ``tabular=False`` keeps the rows as sent (lists or dicts) instead of an array, for a custom
    predictor that reads them itself.
    """
    names = list(feature_names) if feature_names else None
    table = _table if tabular else _as_sent
    if isinstance(doc, list):
        return table(doc, names, "the body"), {}
    if not isinstance(doc, dict):
        raise BadInput(
            "the JSON body must be a list of rows or an object with 'instances'", "bad_shape"
        )
    params = doc.get("parameters", doc.get("params"))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadInput(
            f"'parameters' must be a JSON object, got {_json_kind(params)}",
            "bad_parameters",
        )
    if "instances" in doc:
        return table(doc["instances"], names, "'instances'"), params
    if "inputs" in doc:
        return _decode_inputs(doc["inputs"], names, table), params
    if "dataframe_split" in doc:
        return _decode_split(doc["dataframe_split"], names, tabular), params
    if "dataframe_records" in doc:
        return table(doc["dataframe_records"], names, "'dataframe_records'"), params
    if "data" in doc:
        return table(doc["data"], names, "'data'"), params
    raise BadInput(
        "the JSON body has none of the keys 'instances', 'inputs', 'dataframe_split', "
        f"'dataframe_records' or 'data' (got {sorted(doc)[:5]})",
        "bad_shape",
    )


def _json_kind(value):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def jsonlines_rows(body):
    """The JSON values of a JSON Lines body, one a non-blank line."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput("the JSON Lines body is not UTF-8", "malformed_json") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rows.append(_load_json(line, f"JSON Lines line {number}"))
    return rows


def _decode_inputs(inputs, names, table):
    if isinstance(inputs, dict):  # columnar: {"col": [values...]}
        columns = list(inputs)
        values = [inputs[c] for c in columns]
        if not all(isinstance(v, list) for v in values):
            raise BadInput("every column of 'inputs' must be a list of values", "bad_shape")
        if len(set(len(v) for v in values)) > 1:
            raise BadInput("the columns of 'inputs' differ in length", "bad_shape")
        records = [dict(zip(columns, row)) for row in zip(*values)]
        return table(records, names, "'inputs'")
    first = inputs[0] if isinstance(inputs, list) and inputs else None
    if isinstance(first, dict) and "datatype" in first and "data" in first:
        return decode_v2_tensor(first)
    return table(inputs, names, "'inputs'")


def _decode_split(split, names, tabular=True):
    if not isinstance(split, dict) or "data" not in split:
        raise BadInput("'dataframe_split' needs 'columns' and 'data'", "bad_shape")
    data = split["data"]
    columns = split.get("columns")
    if columns is None:
        return (_table if tabular else _as_sent)(data, names, "'dataframe_split.data'")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadInput(
            f"'dataframe_split.columns' must be a list of column names, got {_json_kind(columns)}",
            "bad_shape",
        )
    if len(set(columns)) != len(columns):
        raise BadInput("'dataframe_split.columns' names a column twice", "bad_shape")
    if not isinstance(data, list):
        raise BadInput("'dataframe_split.data' must be a list of rows", "bad_shape")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadInput(
                f"'dataframe_split.data' row {i} needs {len(columns)} values like 'columns'",
                "wrong_shape",
            )
    if not tabular:
        return [dict(zip(columns, row)) for row in data]
    return _named(columns, data, names)


def _decode_csv(body, names):
    columns, lines = _csv_lines(body, names, None)
    try:  # the fast path: every cell a number, parsed by numpy in one go
        numbers = np.asarray(lines, dtype=np.float64)
    except ValueError:
        numbers = None
    if numbers is not None:
        return numbers if columns is None else from_columns(columns, numbers, names)
    rows = _typed_rows(lines)
    if columns is not None:
        return _named(columns, rows, names)
    return _rows_array(rows, "the CSV body")


def csv_table(body, feature_names=None, header=None):
    """A CSV body as ``(columns, rows)``: ``columns`` the header's names (``None`` when there is
    no header line), ``rows`` lists of values — numbers for a column of numbers, ``None`` for a
    blank or missing cell, text otherwise.

    ``header=None`` detects the header (see the module docstring); ``True``/``False`` say it.
    """
    columns, lines = _csv_lines(body, feature_names, header)
    return columns, _typed_rows(lines)


def _csv_lines(body, feature_names, header):
    """``(columns, lines)``: the header's names (or ``None``) and the rows' cells as text."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput("the CSV body is not UTF-8", "malformed_csv") from exc
    try:
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise BadInput(f"malformed CSV: {exc}", "malformed_csv") from exc
    if not lines:
        raise BadInput("the CSV body holds no rows", "empty_input")
    names = list(feature_names) if feature_names else None
    columns = None
    if header if header is not None else _is_header(lines, names):
        columns = [c.strip() for c in lines[0]]
        lines = lines[1:]
        if not lines:
            raise BadInput("the CSV body holds a header but no rows", "empty_input")
        if len(set(columns)) != len(columns):
            raise BadInput("the CSV header names a column twice", "bad_shape")
    width = len(columns) if columns is not None else len(lines[0])
    for i, row in enumerate(lines):
        if len(row) != width:
            like = "the header" if columns is not None else "row 0"
            raise BadInput(f"CSV row {i} has {len(row)} values, {like} {width}", "wrong_shape")
    return columns, lines


def _typed_rows(lines):
    """CSV cells by pandas.read_csv's rules: a column of numbers is numbers, blanks are None."""
    table = [[_cell(c, "the CSV body") for c in row] for row in lines]
    for col in range(len(table[0])):
        present = [r[col] for r in table if r[col] is not None]
        if present and all(is_number(v) for v in present):
            for r in table:
                if r[col] is not None:
                    r[col] = float(r[col])
    return table


def _is_header(lines, names):
    first = [c.strip() for c in lines[0]]
    if any(is_number(c) or c in _MISSING_TEXT for c in first):
        return False
    if names:
        return any(c in names for c in first)
    # Without names: text over numbers in the same column is a header (as csv.Sniffer judges).
    rest = lines[1:50]
    for col in range(len(first)):
        cells = [
            r[col].strip() for r in rest if col < len(r) and r[col].strip() not in _MISSING_TEXT
        ]
        if cells and all(is_number(c) for c in cells):
            return True
    return False


def is_number(text):
    """Whether ``float()`` reads the value (``"1.5"``, ``"1e3"``, ``"nan"``, ``"inf"``)."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _decode_npy(body):
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError for bad bytes
        raise BadInput(f"malformed NPY body: {exc}", "malformed_npy") from exc
    if not isinstance(array, np.ndarray) or array.ndim == 0 or len(array) == 0:
        raise BadInput("the NPY body must hold an array with rows", "bad_shape")
    if array.dtype.kind not in "biuf":
        raise BadInput(f"the NPY array must hold numbers, got dtype {array.dtype}", "bad_datatype")
    return array


def _table(rows, names, where):
    """Rows (lists) or records (dicts) as a 2-D array (1-D for a list of scalars)."""
    if not isinstance(rows, list):
        raise BadInput(f"{where} must be a list of rows, got {_json_kind(rows)}", "bad_shape")
    if not rows:
        raise BadInput("the request holds no rows", "empty_input")
    if isinstance(rows[0], dict):
        return _records(rows, names, where)
    return _rows_array(rows, where)


def _as_sent(rows, names, where):
    """The rows as the caller sent them (a non-empty list), for predictors that read them."""
    if not isinstance(rows, list):
        raise BadInput(f"{where} must be a list of rows, got {_json_kind(rows)}", "bad_shape")
    if not rows:
        raise BadInput("the request holds no rows", "empty_input")
    return rows


def _records(records, names, where):
    columns = names or [str(k) for k in records[0]]
    try:
        data = [[record[c] for c in columns] for record in records]
    except (KeyError, TypeError, IndexError):  # find the row to name
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise BadInput(
                    f"{where} row {i} is not an object like row 0", "bad_shape"
                ) from None
            missing = [c for c in columns if c not in record]
            if missing:
                raise BadInput(
                    f"{where} row {i} lacks feature(s) {missing[:5]}", "missing_feature"
                ) from None
        raise
    return _rows_array(data, where)


def from_columns(columns, rows, feature_names=None):
    """Rows whose columns are named (a header, a DataFrame's columns) as ``X`` in the model's
    feature order; extra columns are dropped, a missing feature is a :class:`BadInput`."""
    columns = [str(c) for c in columns]
    names = list(feature_names) if feature_names else None
    if isinstance(rows, np.ndarray) and rows.dtype.kind in "biuf":
        return rows[:, _order(columns, names)] if names else rows  # numbers: no per-cell work
    if isinstance(rows, np.ndarray):
        rows = rows.tolist()
    return _named(columns, rows, names)


def _order(columns, names):
    """The positions of ``names`` among ``columns``; a missing name is a :class:`BadInput`."""
    index = dict((c, i) for i, c in enumerate(columns))
    missing = [n for n in names if n not in index]
    if missing:
        raise BadInput(
            f"missing feature(s) {missing[:5]}; the model takes {names[:20]}",
            "missing_feature",
        )
    return [index[n] for n in names]


def _named(columns, data, names):
    """Rows whose columns are named: reordered to ``names`` (extra columns dropped)."""
    if names:
        order = _order(columns, names)
        data = [[row[i] for i in order] for row in data]
    return _rows_array(data, "the rows")


def _rows_array(rows, where):
    """A numeric array when every value is a number, else an object array (missing → NaN)."""
    if not rows:
        raise BadInput("the request holds no rows", "empty_input")
    try:  # the fast path: numbers only (numpy gives strings, None and ragged rows other kinds)
        array = np.asarray(rows)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is not None and array.dtype.kind in "biuf" and array.size:
        return array
    if all(isinstance(r, list) for r in rows):
        width = len(rows[0])
        for i, r in enumerate(rows):
            if len(r) != width:
                raise BadInput(
                    f"{where}: row {i} has {len(r)} values, row 0 has {width}",
                    "wrong_shape",
                )
        if width == 0:
            raise BadInput(f"{where}: rows hold no values", "wrong_shape")
    elif any(isinstance(r, (list, dict)) for r in rows):
        raise BadInput(f"{where}: mixes rows and single values", "wrong_shape")
    return _mixed_array(rows, where)


def _mixed_array(rows, where):
    flat = not isinstance(rows[0], list)
    table = [[r] for r in rows] if flat else rows
    width = len(table[0])
    columns = []
    for col in range(width):
        values = [_cell(r[col], where) for r in table]
        present = [v for v in values if not _missing(v)]
        if any(isinstance(v, str) for v in present) and all(is_number(v) for v in present):
            # numeric text in a column of numbers, as pandas.read_csv reads it
            values = [v if _missing(v) else float(v) for v in values]
        columns.append(values)
    array = np.empty((len(table), width), dtype=object)
    for col, values in enumerate(columns):
        for row, value in enumerate(values):
            array[row, col] = np.nan if _missing(value) else value
    if all(not isinstance(v, str) for values in columns for v in values):
        array = array.astype(np.float64)
    return array[:, 0] if flat else array


def _cell(value, where):
    if isinstance(value, (list, dict)):
        raise BadInput(f"{where}: a cell holds a nested {_json_kind(value)}", "wrong_shape")
    if isinstance(value, str):
        text = value.strip()
        return None if text in _MISSING_TEXT else text
    if isinstance(value, bool):
        return float(value)
    return value


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- Open Inference Protocol tensors --------------------------------------------------------------


def decode_v2_tensor(tensor):
    """A v2 ``{"name", "shape", "datatype", "data"}`` input as a numpy array of that shape.

    Values must fit the datatype: ``INT8`` 1000, ``UINT64`` -1, 1.5 as an integer type or 1e300 as
    ``FP32`` are a :class:`BadInput` naming the tensor, never a silent wrap-around.
    """
    if not isinstance(tensor, dict):
        raise BadInput("a v2 input must be an object with name, shape, datatype, data", "bad_shape")
    name = tensor.get("name")
    datatype = str(tensor.get("datatype", "")).upper()
    if datatype not in V2_DATATYPES:
        raise BadInput(
            f"tensor '{name}': unknown datatype '{datatype}'; use one of {sorted(V2_DATATYPES)}",
            "bad_datatype",
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadInput(f"tensor '{name}': 'shape' must be a list of sizes", "bad_shape")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise BadInput(f"tensor '{name}': 'data' must be a list", "bad_shape")
    flat = _v2_values(name, datatype, data)
    size = 1
    for d in shape:
        size *= d
    if flat.size != size:
        raise BadInput(
            f"tensor '{name}': {flat.size} values do not fit shape {shape}",
            "bad_shape",
        )
    array = flat.reshape(shape)
    if array.ndim == 0 or len(array) == 0:
        raise BadInput(f"tensor '{name}' holds no rows", "empty_input")
    return array


def _v2_values(name, datatype, data):
    def bad(problem):
        return BadInput(f"tensor '{name}': {problem} for {datatype}", "bad_value")

    values = _flatten(data)
    target = np.dtype(V2_DATATYPES[datatype])
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise bad("values must be strings")
        return np.asarray(values, dtype=object)
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in values):
            raise bad("values must be true or false")
        return np.asarray(values, dtype=bool)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise bad("values must be numbers")
    if not values:
        return np.asarray(values, dtype=target)
    if target.kind in "iu":
        info = np.iinfo(target)
        for v in values:
            if isinstance(v, float) and not v.is_integer():
                raise bad(f"{v} is not an integer")
        low, high = min(values), max(values)  # exact: Python compares ints and floats exactly
        for v in (low, high):
            if not info.min <= v <= info.max:
                raise bad(f"{v} is out of range [{info.min}, {info.max}]")
        return np.asarray([int(v) for v in values], dtype=target)
    out = np.asarray(values, dtype=np.float64)
    if not np.isfinite(out).all():
        raise bad("values must be finite")
    with np.errstate(over="ignore"):
        converted = out.astype(target)
    if not np.isfinite(converted).all():
        raise bad("a value overflows")
    return converted


def _flatten(data):
    flat = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


# -- predicting ----------------------------------------------------------------------------------


def predict(model, X, parameters=None):
    """Run ``model`` on ``X`` and return one JSON-able output per row.

    ``parameters={"method": "predict_proba"}`` (or ``predict_log_proba``, ``decision_function``,
    ``transform``) picks another method; an XGBoost model also takes ``output_margin``. An unknown
    key or a method the model lacks is a :class:`BadInput`, and so is a ``ValueError`` or
    ``TypeError`` the model raises on this input (its message is kept): only other failures are
    the server's fault.
    """
    parameters = parameters or {}
    if not isinstance(parameters, dict):
        raise BadInput("'parameters' must be an object", "bad_parameters")
    booster = type(model).__name__ == "Booster"
    xgb_estimator = not booster and _booster_of(model) is not None
    allowed = _XGB_PARAMETERS if (booster or xgb_estimator) else _SKLEARN_PARAMETERS
    unknown = sorted(k for k in parameters if k not in allowed)
    if unknown:
        raise BadInput(
            f"unknown parameter(s) {unknown}; this model takes {sorted(allowed)}",
            "bad_parameters",
        )
    method = parameters.get("method", "predict")
    offered = ["predict"] if booster else [m for m in METHODS if hasattr(model, m)]
    if not isinstance(method, str) or method not in offered:
        raise BadInput(
            f"method {method!r} is not available; use one of {offered}",
            "bad_parameters",
        )
    margin = parameters.get("output_margin", False)
    if not isinstance(margin, bool):
        raise BadInput("'output_margin' must be true or false", "bad_parameters")
    if margin and method != "predict":
        raise BadInput("'output_margin' goes with method 'predict' only", "bad_parameters")
    X = as_rows(X, _n_features(model))
    try:
        if booster:
            outputs = _predict_booster(model, X, margin)
        else:
            X = _frame_for(model, X)
            call = getattr(model, method)
            outputs = call(X, output_margin=True) if margin else call(X)
    except BadInput:
        raise
    except (ValueError, TypeError) as exc:
        raise BadInput(f"the model rejected the input: {exc}", "model_rejected_input") from exc
    return _to_list(outputs, len(X))


def as_rows(X, n_features=None):
    """``X`` as 2-D rows: a 1-D input is one row of ``n_features`` values when the model takes
    several, else one value per row. A row of another width is a :class:`BadInput`."""
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # already a DataFrame
        return X
    X = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if X.ndim == 1:
        X = X.reshape(1, -1) if (n_features or 0) > 1 else X.reshape(-1, 1)
    if X.ndim != 2:
        raise BadInput(
            f"rows must be flat lists of features, got shape {list(X.shape)}",
            "wrong_shape",
        )
    if n_features is not None and X.shape[1] != n_features:
        raise BadInput(f"each row needs {n_features} features, got {X.shape[1]}", "wrong_shape")
    return X


def _n_features(model):
    n = getattr(model, "n_features_in_", None)
    if n is None and type(model).__name__ == "Booster":
        try:
            n = model.num_features()
        except Exception:  # a booster without trees
            n = None
    return int(n) if n else None


def _frame_for(model, X):
    """A DataFrame with the model's column names when it was fitted on one, else ``X``."""
    names = getattr(model, "feature_names_in_", None)
    if names is None or (hasattr(X, "columns") and hasattr(X, "iloc")):
        if X.dtype == object and _booster_of(model) is not None:
            raise BadInput("this XGBoost model takes numbers only", "bad_value")
        return X
    return to_frame(X, [str(n) for n in names])


def to_frame(X, names):
    """A pandas DataFrame of the rows with these column names: numeric columns as float64,
    text columns as objects with ``NaN`` for missing values (what ``read_csv`` gives)."""
    import pandas as pd

    if X.dtype != object:
        return pd.DataFrame(X, columns=names)
    columns = {}
    for i, name in enumerate(names):
        col = X[:, i]
        if all(not isinstance(v, str) for v in col):
            columns[name] = col.astype(np.float64)
        else:
            columns[name] = col
    return pd.DataFrame(columns, columns=names)


def _predict_booster(booster, X, margin):
    if X.dtype == object:
        raise BadInput("this XGBoost model takes numbers only", "bad_value")
    names = booster.feature_names
    if names:
        import pandas as pd

        X = pd.DataFrame(X, columns=names)
    return booster.inplace_predict(X, predict_type="margin" if margin else "value")


def _to_list(outputs, n_rows):
    if hasattr(outputs, "to_numpy"):  # a pandas result
        outputs = outputs.to_numpy()
    if hasattr(outputs, "toarray"):  # a scipy sparse matrix from transform
        outputs = outputs.toarray()
    result = outputs.tolist() if isinstance(outputs, np.ndarray) else list(outputs)
    if len(result) != n_rows:
        raise RuntimeError(f"the model returned {len(result)} outputs for {n_rows} rows")
    return result


# -- one request, end to end ----------------------------------------------------------------------


def handle(model, body, content_type, accept=None, feature_names=None):
    """Answer one request: ``decode`` + ``predict`` (with the body's ``parameters``) + ``encode``.

    Returns ``(body, content_type)``; raises :class:`BadInput` for the caller's faults. This is
    what a cloud wrapper calls (``feature_names`` from :func:`model_feature_names`).
    """
    X, parameters = decode(body, content_type, feature_names)
    return encode(predict(model, X, parameters), accept)


def error_response(exc):
    """``(status, body)`` for an exception, in the server's JSON error format.

    A :class:`BadInput` gives its status and ``{"error", "code", "error_id"}`` naming the problem;
    anything else a 500 whose message says only that the model failed (the details belong in the
    log, under the same ``error_id``).
    """
    error_id = uuid.uuid4().hex[:16]
    if isinstance(exc, BadInput):
        doc = {"error": str(exc), "code": exc.code, "error_id": error_id}
        return exc.status, _dumps(doc)
    doc = {
        "error": "the model failed on this request; the server log has the details",
        "code": "model_error",
        "error_id": error_id,
    }
    return 500, _dumps(doc)


# -- encoding ------------------------------------------------------------------------------------


def encode(outputs, accept):
    """Encode outputs for the ``Accept`` header; returns ``(body, content_type)``.

    JSON (the default, also for ``*/*`` or none) is ``{"predictions": [...]}``; JSON Lines one
    output a line; CSV one line per output (a list output gives one line of values). Non-finite
    numbers become ``null`` in JSON. Any other type is a :class:`BadInput` with status 406.
    """
    values = outputs.tolist() if isinstance(outputs, np.ndarray) else list(outputs)
    for choice in (media_type(part) for part in (accept or "").split(",")):
        if choice in ("", "*/*", "application/*", "application/json") or choice.endswith("+json"):
            return _dumps({"predictions": values}), "application/json"
        if choice in JSONLINES_TYPES:
            return b"".join(_dumps(v) + b"\n" for v in values), choice
        if choice in CSV_TYPES or choice == "text/*":
            return _encode_csv(values), "text/csv"
    raise BadInput(
        f"cannot answer in '{accept}'; accept application/json, application/jsonlines or text/csv",
        "not_acceptable",
        406,
    )


def _dumps(value):
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), default=_json_default)
    except ValueError:  # NaN or infinity in the outputs
        text = json.dumps(_finite(value), separators=(",", ":"), default=_json_default)
    return text.encode("utf-8")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return dict((k, _finite(v)) for k, v in value.items())
    return value


def _encode_csv(values):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for out in values:
        if isinstance(out, dict):
            writer.writerow(list(out.values()))
        elif isinstance(out, (list, tuple)):
            writer.writerow(out)
        else:
            writer.writerow([out])
    return buf.getvalue().encode("utf-8")
