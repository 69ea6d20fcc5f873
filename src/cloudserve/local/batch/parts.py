"""Part files of a batch job: written durably, hashed, verified and assembled.

A part is written to a temporary name, fsynced, renamed into place and its directory fsynced,
so after a crash a part is either whole or absent. Its sha256 and row count go into the job's
chunk record; assembly checks every part against that record.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cloudserve.local.model_registry import file_hash as file_sha256
from cloudserve.specs import BatchSpec

__all__ = ["EXT", "PartInfo", "assemble", "file_sha256", "output_paths", "write_part"]

EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


@dataclass(frozen=True)
class PartInfo:
    """What the chunk record keeps about one part file."""

    rows: int
    sha256: str


def _cell(value: Any) -> Any:
    return (
        value
        if isinstance(value, str | int | float | bool) or value is None
        else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(tmp: Path, dest: Path) -> None:
    """fsync ``tmp``, rename it to ``dest`` and fsync the directory."""
    _fsync_file(tmp)
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def write_part(path: Path, fmt: str, columns: dict[str, list[Any]]) -> PartInfo:
    """Write one part file durably; its row count and sha256."""
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "jsonl":
        names = list(columns)
        with tmp.open("wb") as fh:
            for values in zip(*columns.values(), strict=True):
                fh.write(
                    orjson.dumps(
                        dict(zip(names, values, strict=True)), option=orjson.OPT_SERIALIZE_NUMPY
                    )
                    + b"\n"
                )
    else:
        import pandas as pd

        frame = pd.DataFrame({k: [_cell(v) for v in vs] for k, vs in columns.items()})
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    durable_replace(tmp, path)
    rows = len(next(iter(columns.values()))) if columns else 0
    return PartInfo(rows=rows, sha256=file_sha256(path))


def assemble(parts: list[Path], dest: Path, fmt: str) -> None:
    """Concatenate part files into ``dest`` without loading more than one part at a time."""
    tmp = dest.with_name(dest.name + ".tmp")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for part in parts:
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(
                    table.cast(writer.schema) if table.schema != writer.schema else table
                )
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            pq.write_table(pa.table({}), tmp)
    else:
        with tmp.open("wb") as out:
            for i, part in enumerate(parts):
                with part.open("rb") as fh:
                    if fmt == "csv" and i > 0:
                        fh.readline()  # header once
                    shutil.copyfileobj(fh, out)
    durable_replace(tmp, dest)


def output_paths(spec: BatchSpec) -> tuple[Path, Path]:
    """Where predictions and error records go: a directory output gets
    ``predictions.<fmt>`` / ``errors.<fmt>``, a file output gets the file and
    ``<stem>.errors.<fmt>`` beside it."""
    fmt = EXT[spec.resolved_format]
    out = Path(spec.output)
    if out.suffix.lower().lstrip(".") in ("csv", "jsonl", "json", "parquet", "pq"):
        return out, out.with_name(f"{out.stem}.errors.{fmt}")
    return out / f"predictions.{fmt}", out / f"errors.{fmt}"
