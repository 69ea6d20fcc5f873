"""Reading a batch input in chunks: CSV with a header, JSON Lines, Parquet.

Rows are numbered from 0 in input order. Reading is deterministic: the same input read with the
same chunk size gives the same chunks, which is what lets a resumed job follow its stored plan.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["Chunk", "count_rows", "fingerprint", "has_header", "read_chunks"]

_BAD_LINE = re.compile(r"[Ll]ine (\d+)")


@dataclass
class Chunk:
    """Rows ``rows`` (their input numbers) of one chunk, plus rows that failed to parse."""

    index: int
    rows: np.ndarray
    frame: Any  # pandas DataFrame of the parsed rows
    parse_errors: list[tuple[int, str]]

    def numbers(self) -> list[int]:
        """Every input row number of the chunk (parsed or not), sorted."""
        return sorted(self.rows.tolist() + [r for r, _ in self.parse_errors])


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and sha256 of the input: a resumed job refuses an input that changed."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def count_rows(path: Path, fmt: str) -> int:
    """A quick count of input rows for the progress bar: Parquet metadata, else newlines
    (a CSV field holding a newline makes it an overestimate; the final total is exact)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - (1 if fmt == "csv" else 0), 0)


def _csv_chunks(path: Path, size: int, header: bool = True) -> Iterator[Chunk]:
    import pandas as pd

    next_row = 0
    first = 0 if header else None
    with pd.read_csv(path, chunksize=size, on_bad_lines="warn", header=first) as reader:
        for index in range(1 << 62):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    frame = reader.get_chunk()
                except StopIteration:
                    frame = None
            bad: list[tuple[int, str]] = []
            for w in caught:
                for line_text in str(w.message).splitlines():
                    m = _BAD_LINE.search(line_text)
                    if m:  # line numbers count from 1, the header included
                        bad.append((int(m.group(1)) - (2 if header else 1), line_text.strip()))
            if frame is None:
                if bad:
                    yield Chunk(index, np.empty(0, dtype=np.int64), None, bad)
                return
            taken = {r for r, _ in bad}
            span = range(next_row, next_row + len(frame) + len(bad))
            numbers = np.fromiter((r for r in span if r not in taken), dtype=np.int64)
            next_row += len(frame) + len(bad)
            yield Chunk(index, numbers[: len(frame)], frame.reset_index(drop=True), bad)


def _jsonl_chunks(path: Path, size: int) -> Iterator[Chunk]:
    import pandas as pd

    def flush(index: int, records: list[Any], numbers: list[int], bad: list[tuple[int, str]]):
        frame = pd.DataFrame.from_records(records) if records else None
        return Chunk(index, np.asarray(numbers, dtype=np.int64), frame, bad)

    records: list[Any] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    index = row = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
                if not isinstance(value, dict | list):
                    raise ValueError(f"a row must be an object or a list, got {value!r:.40}")
                records.append(value if isinstance(value, dict) else dict(enumerate(value)))
                numbers.append(row)
            except (orjson.JSONDecodeError, ValueError) as exc:
                bad.append((row, f"malformed JSON line: {exc}"))
            row += 1
            if len(records) + len(bad) >= size:
                yield flush(index, records, numbers, bad)
                records, numbers, bad, index = [], [], [], index + 1
    if records or bad:
        yield flush(index, records, numbers, bad)


def _parquet_chunks(path: Path, size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    start = 0
    for index, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=size)):
        frame = batch.to_pandas()
        yield Chunk(index, np.arange(start, start + len(frame), dtype=np.int64), frame, [])
        start += len(frame)


def read_chunks(path: Path, fmt: str, size: int, *, header: bool = True) -> Iterator[Chunk]:
    """The input as chunks of about ``size`` rows, in order (``header``: whether a CSV's first
    line names the columns)."""
    if fmt == "csv":
        return _csv_chunks(path, size, header)
    readers = {"jsonl": _jsonl_chunks, "parquet": _parquet_chunks}
    return readers[fmt](path, size)


def has_header(path: Path, feature_names: list[str] | None) -> bool:
    """Whether the CSV's first line is a header, judged as the server judges a request body:
    it names one of the model's features, or it is text over columns of numbers."""
    from cloudserve import _handler

    with path.open("rb") as fh:
        head = b"".join(line for _, line in zip(range(50), fh, strict=False))
    try:
        return _handler.csv_table(head, feature_names)[0] is not None
    except _handler.BadInput:  # an odd first block: let pandas read it with a header
        return True
