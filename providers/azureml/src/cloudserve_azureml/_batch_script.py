"""Batch scoring on Azure ML, uploaded by cloudserve as ``batch_score.py`` beside
``cloudserve_handler.py``.

Azure's batch driver calls ``init()`` once per worker and ``run(mini_batch)`` with a list of
input file paths; with ``output_action: append_row`` every string ``run`` returns becomes one
line of ``predictions.csv``. Each input row gives exactly one line ``file,row,prediction,error``
(the prediction JSON-encoded; ``error`` empty on success), so every row is accounted for: a
chunk the model rejects is scored again row by row and only the bad rows carry an error. Rows
are decoded by the handler template exactly as the online scoring script decodes them (CSV with
or without a header, string and blank values, JSON Lines rows or records). Python 3.8 syntax,
the standard library and the handler only.
"""

import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cloudserve_handler as handler

_model = None
_feature_names = None
CSV = "text/csv"
JSON = "application/json"


def model_path(root):
    """The model under ``AZUREML_MODEL_DIR``: the one folder or file in it, else the root."""
    entries = [e for e in os.listdir(root) if not e.startswith(".")]
    if len(entries) == 1:
        return os.path.join(root, entries[0])
    return root


def init():
    global _model, _feature_names
    path = model_path(os.environ["AZUREML_MODEL_DIR"])
    manifest = handler.read_manifest(path)
    framework = manifest.get("framework") or os.environ.get("CLOUDSERVE_FRAMEWORK") or None
    _model = handler.load_model(handler.find_model_file(path), framework)
    _feature_names = handler.model_feature_names(_model, manifest)


def run(mini_batch):
    chunk = int(os.environ.get("CLOUDSERVE_BATCH_ROWS", "64"))
    parameters = json.loads(os.environ.get("CLOUDSERVE_BATCH_PARAMETERS") or "null")
    lines = []
    for path in mini_batch:
        lines.extend(score_file(_model, path, chunk, parameters))
    return lines


def score_file(model, path, chunk, parameters=None):
    """One CSV line per row of ``path``: ``file,row,prediction,error``."""
    header, records, kind = split_records(path)
    name = os.path.basename(str(path))
    lines = []
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        for i, (pred, err) in enumerate(_score(model, header, part, kind, parameters)):
            lines.append(_line(name, start + i, pred, err))
    return lines


def split_records(path):
    """(header line or None, one text record per row, content type) of a CSV / JSON Lines file."""
    with open(str(path), newline="") as fh:
        text = fh.read()
    if str(path).lower().endswith((".jsonl", ".json", ".ndjson")):
        return None, [line for line in text.splitlines() if line.strip()], JSON
    rows = [line for line in text.splitlines() if line.strip()]
    if rows and _is_header(rows):
        return rows[0], rows[1:], CSV
    return None, rows, CSV


def _is_header(rows):
    """Whether the first line is a header, judged by the handler itself: decoding it with one
    readable data line gives one row when it is."""
    for other in rows[1:50]:
        try:
            decoded, _ = handler.decode("\n".join([rows[0], other]).encode(), CSV, _feature_names)
        except ValueError:
            continue
        return len(decoded) == 1
    return False


def _body(header, records, kind):
    if kind == JSON:
        return ("[" + ",".join(records) + "]").encode()
    return "\n".join(([header] if header else []) + records).encode()


def _predict(model, header, records, kind, parameters):
    rows, asked = handler.decode(_body(header, records, kind), kind, _feature_names)
    outputs = handler.predict(model, rows, asked or parameters)
    if len(outputs) != len(records):
        raise ValueError(f"{len(outputs)} outputs for {len(records)} rows")
    return outputs


def _score(model, header, records, kind, parameters):
    try:
        return [(p, "") for p in _predict(model, header, records, kind, parameters)]
    except Exception:  # find the bad rows: score the chunk one row at a time
        out = []
        for record in records:
            try:
                out.append((_predict(model, header, [record], kind, parameters)[0], ""))
            except Exception as exc:
                out.append((None, f"{type(exc).__name__}: {exc}"))
        return out


def _line(name, row, pred, err):
    buf = io.StringIO()
    value = "" if err else json.dumps(pred.tolist() if hasattr(pred, "tolist") else pred)
    csv.writer(buf, lineterminator="").writerow([name, row, value, err])
    return buf.getvalue()
