"""Batch scoring on Azure ML, uploaded by cloudserve as ``batch_score.py``.

Azure calls ``init()`` once per worker and ``run(mini_batch)`` with a list of input files; with
``output_action: append_row`` every string ``run`` returns becomes one line of
``predictions.csv``. Each input row gives exactly one line ``file,row,prediction,error`` (the
prediction JSON-encoded; ``error`` empty on success), so every row is accounted for: a chunk the
model rejects is retried row by row and only the bad rows carry an error.
"""

import csv
import io
import json
import os
from pathlib import Path

_model = None


def init():
    global _model
    from cloudserve.serving import load_model

    root = Path(os.environ["AZUREML_MODEL_DIR"])
    model_dir = root
    if not (root / "cloudserve.json").exists():
        model_dir = next(p for p in root.iterdir() if p.is_dir())
    _model = load_model(model_dir)


def run(mini_batch):
    chunk = int(os.environ.get("CLOUDSERVE_BATCH_ROWS", "64"))
    lines = []
    for path in mini_batch:
        lines.extend(score_file(_model, path, chunk))
    return lines


def read_rows(path):
    """Feature rows of a CSV (header optional) or JSON Lines file."""
    records = _records(path)
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        return [json.loads(r) for r in records]
    return [[float(v) for v in r] for r in records]


def count_rows(path):
    """How many rows a file holds (without parsing their values)."""
    return len(_records(path))


def _records(path):
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".json"):
        return [line for line in text.splitlines() if line.strip()]
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if rows and not all(_is_number(v) for v in rows[0]):
        rows = rows[1:]
    return rows


def score_file(model, path, chunk):
    """One CSV line per row of ``path``: ``file,row,prediction,error``."""
    rows = read_rows(path)
    name = Path(path).name
    lines = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        for i, (pred, err) in enumerate(_predict(model, part)):
            lines.append(_line(name, start + i, pred, err))
    return lines


def _predict(model, rows):
    try:
        return [(p, "") for p in model.predict(rows)]
    except Exception:  # find the bad rows: score the chunk one row at a time
        out = []
        for row in rows:
            try:
                out.append((model.predict([row])[0], ""))
            except Exception as exc:
                out.append((None, f"{type(exc).__name__}: {exc}"))
        return out


def _line(name, row, pred, err):
    buf = io.StringIO()
    value = "" if err else json.dumps(pred.tolist() if hasattr(pred, "tolist") else pred)
    csv.writer(buf, lineterminator="").writerow([name, row, value, err])
    return buf.getvalue()


def _is_number(value):
    try:
        float(value)
    except ValueError:
        return False
    return True
