"""Local batch prediction: streamed, chunked, in worker processes, resumable.

The input (CSV with a header, JSON Lines, or Parquet) is read in chunks of
``LocalConfig.batch_chunk_rows`` rows, so memory stays flat whatever the file size. Chunks are
predicted by ``BatchSpec.max_concurrency`` worker processes, each loading the model once.
Every input row gets exactly one output: a prediction (``row``, ``prediction``) in
``predictions.<format>``, or an error record (``row``, ``error``) in ``errors.<format>``.
Rows are numbered from 0 in input order. A chunk that fails as a whole is bisected until the
bad rows are isolated, so one bad row costs only itself.

Each finished chunk is written to a part file and recorded in the state database before the
next is counted; a job whose runner was killed resumes from its last finished chunk
(``LocalProvider.resume_batch`` or submitting the same spec again). The runner is
``python -m cloudserve.local.batch --config JSON --job ID``.
"""

from __future__ import annotations

import multiprocessing
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from cloudserve.errors import NotFound, OperationFailed
from cloudserve.local.config import LocalConfig
from cloudserve.local.registry import stage
from cloudserve.local.state import StateDB, now
from cloudserve.local.supervisor import ProcessRef, python_module, runner_main, spawn
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.specs import BatchSpec

__all__ = ["read_job", "resume", "run", "submit"]

_EXT = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
_BAD_LINE = re.compile(r"[Ll]ine (\d+)")


# -- reading ------------------------------------------------------------------------------


@dataclass
class Chunk:
    """Rows ``rows`` (their input numbers) of one chunk, plus rows that failed to parse."""

    index: int
    rows: np.ndarray
    frame: Any  # pandas DataFrame of the parsed rows
    parse_errors: list[tuple[int, str]]


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


def _has_header(path: Path, model_dir: Path) -> bool:
    """Whether the CSV's first line is a header, judged as the server judges a request body:
    it names one of the model's features, or it is text over columns of numbers."""
    from cloudserve import _handler

    names = getattr(_MODEL, "feature_names", None) or _handler.read_manifest(str(model_dir)).get(
        "feature_names"
    )
    with path.open("rb") as fh:
        head = b"".join(line for _, line in zip(range(50), fh, strict=False))
    try:
        return _handler.csv_table(head, names)[0] is not None
    except _handler.BadInput:  # an odd first block: let pandas read it with a header
        return True


# -- predicting (in worker processes) -----------------------------------------------------

_MODEL: Any = None
_PARAMETERS: dict[str, Any] = {}


def _load(model_dir: str, parameters: dict[str, Any] | None = None) -> None:
    global _MODEL, _PARAMETERS
    from cloudserve.serving import load_model

    _MODEL = load_model(model_dir)
    _PARAMETERS = dict(parameters or {})


def _as_input(frame: Any) -> Any:
    """A chunk's rows as the model's input, by the same rules as a request body: named columns
    in the model's feature order (a headerless CSV or list rows go by position)."""
    from cloudserve import _handler

    named = not all(isinstance(c, int) for c in frame.columns)
    names = getattr(_MODEL, "feature_names", None) if named else None
    return _handler.from_columns(frame.columns, frame.to_numpy(), names)


def _predict_rows(
    rows: Any, numbers: np.ndarray
) -> tuple[list[int], list[Any], list[tuple[int, str]]]:
    """Predict ``rows``; on failure bisect them to find the rows that fail."""
    try:
        outputs = _MODEL.predict(rows, _PARAMETERS)
        return numbers.tolist(), outputs, []
    except Exception as exc:
        if len(rows) == 1:
            return [], [], [(int(numbers[0]), _describe(exc))]
    half = len(rows) // 2
    a = _predict_rows(rows[:half], numbers[:half])
    b = _predict_rows(rows[half:], numbers[half:])
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"


def _work(chunk: Chunk, parts: Path, fmt: str) -> tuple[int, int]:
    """Predict one chunk and write its part files (in the worker, so writes run in parallel);
    returns (rows predicted, rows failed)."""
    from cloudserve import _handler

    rows: list[int] = []
    outputs: list[Any] = []
    errors = list(chunk.parse_errors)
    if chunk.frame is not None and len(chunk.frame):
        try:
            X = _as_input(chunk.frame)
        except _handler.BadInput as exc:  # e.g. a feature missing from the header: every row
            failed = [(int(n), f"InvalidRequest: {exc}") for n in chunk.rows]
        else:
            rows, outputs, failed = _predict_rows(X, chunk.rows)
        errors = sorted(errors + failed)
    ext = _EXT[fmt]
    _write(parts / f"out-{chunk.index:06d}.{ext}", fmt, {"row": rows, "prediction": outputs})
    if errors:
        _write(
            parts / f"err-{chunk.index:06d}.{ext}",
            fmt,
            {"row": [r for r, _ in errors], "error": [m for _, m in errors]},
        )
    return len(rows), len(errors)


def _pool(
    workers: int, model_dir: Path, parameters: dict[str, Any] | None = None
) -> ProcessPoolExecutor:
    """Worker processes with the model loaded: where ``fork`` exists the model is loaded once
    here and inherited (copy-on-write); elsewhere each worker loads it."""
    if "fork" in multiprocessing.get_all_start_methods():
        _load(str(model_dir), parameters)
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_load,
        initargs=(str(model_dir), parameters),
    )


# -- writing -------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    return (
        value
        if isinstance(value, str | int | float | bool) or value is None
        else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    )


def _write(path: Path, fmt: str, columns: dict[str, list[Any]]) -> None:
    """Write one part file atomically (a killed runner never leaves half a part)."""
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
    tmp.replace(path)


def _assemble(parts: list[Path], dest: Path, fmt: str) -> None:
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
    tmp.replace(dest)


def output_paths(spec: BatchSpec) -> tuple[Path, Path]:
    """Where predictions and error records go: a directory output gets
    ``predictions.<fmt>`` / ``errors.<fmt>``, a file output gets the file and
    ``<stem>.errors.<fmt>`` beside it."""
    fmt = _EXT[spec.resolved_format]
    out = Path(spec.output)
    if out.suffix.lower().lstrip(".") in ("csv", "jsonl", "json", "parquet", "pq"):
        return out, out.with_name(f"{out.stem}.errors.{fmt}")
    return out / f"predictions.{fmt}", out / f"errors.{fmt}"


# -- the runner ----------------------------------------------------------------------------


class Runner:
    """Runs (or resumes) one job in this process."""

    def __init__(self, db: StateDB, config: LocalConfig, job_id: str):
        row = db.one("SELECT * FROM batch_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"batch job {job_id} does not exist", provider="local")
        self.db, self.config, self.job_id = db, config, job_id
        self.spec = BatchSpec.model_validate_json(row["spec"])
        self.fmt = self.spec.resolved_format
        self.work = db.state_dir / "batch" / job_id
        self.parts = self.work / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.failed = 0

    def run(self) -> None:
        """Predict every unfinished chunk, then assemble the output files."""
        db, spec = self.db, self.spec
        src = Path(spec.input).expanduser()
        if not src.is_file():
            raise OperationFailed(f"batch input not found: {src}", provider="local")
        model_dir = self.work / "model"
        if not (model_dir / "cloudserve.json").exists():
            stage(spec.model, model_dir)
        db.run(
            "UPDATE batch_jobs SET status = ?, rows_total = ?, message = NULL WHERE id = ?",
            (JobStatus.RUNNING.value, count_rows(src, self.fmt), self.job_id),
        )
        done = {
            r["chunk"]
            for r in db.all("SELECT chunk FROM batch_chunks WHERE job = ?", (self.job_id,))
        }
        self.failed = sum(
            r["failed"]
            for r in db.all("SELECT failed FROM batch_chunks WHERE job = ?", (self.job_id,))
        )
        size = max(self.config.batch_chunk_rows // spec.batch_size, 1) * spec.batch_size
        if done:
            print(f"resuming: {len(done)} chunk(s) already finished are skipped", flush=True)
        pending: dict[Future[tuple[int, int]], int] = {}
        with _pool(spec.max_concurrency, model_dir, spec.parameters) as pool:
            header = _has_header(src, model_dir) if self.fmt == "csv" else True
            for chunk in read_chunks(src, self.fmt, size, header=header):
                if chunk.index in done:
                    continue
                pending[pool.submit(_work, chunk, self.parts, self.fmt)] = chunk.index
                del chunk  # the worker has its copy; keep memory flat
                while len(pending) >= 2 * spec.max_concurrency:
                    self._collect(pending)
            while pending:
                self._collect(pending)
        self._finish()

    def _collect(self, pending: dict[Future[tuple[int, int]], int]) -> None:
        """Record the chunks that finished (their part files are already written)."""
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            index = pending.pop(fut)
            ok, failed = fut.result()
            self._record(index, ok, failed)

    def _record(self, index: int, ok: int, failed: int) -> None:
        with self.db.tx() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO batch_chunks(job, chunk, rows, ok, failed)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.job_id, index, ok + failed, ok, failed),
            )
            tx.execute(
                "UPDATE batch_jobs SET rows_succeeded = rows_succeeded + ?,"
                " rows_failed = rows_failed + ? WHERE id = ?",
                (ok, failed, self.job_id),
            )
        self.failed += failed
        limit = self.spec.error_threshold
        if limit >= 0 and self.failed > limit:
            raise OperationFailed(
                f"{self.failed} rows failed, over the error threshold of {limit}", provider="local"
            )

    def _finish(self) -> None:
        out, err = output_paths(self.spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        _assemble(sorted(self.parts.glob("out-*")), out, self.fmt)
        errs = sorted(self.parts.glob("err-*"))
        if errs:
            _assemble(errs, err, self.fmt)
        totals = self.db.one(
            "SELECT COALESCE(SUM(ok), 0) AS ok, COALESCE(SUM(failed), 0) AS failed"
            " FROM batch_chunks WHERE job = ?",
            (self.job_id,),
        )
        assert totals is not None
        self.db.run(
            "UPDATE batch_jobs SET status = ?, rows_total = ?, rows_succeeded = ?, rows_failed = ?,"
            " error_file = ?, ended_at = ? WHERE id = ?",
            (
                JobStatus.SUCCEEDED.value,
                totals["ok"] + totals["failed"],
                totals["ok"],
                totals["failed"],
                str(err) if errs else None,
                now(),
                self.job_id,
            ),
        )
        shutil.rmtree(self.work, ignore_errors=True)


def run(config: LocalConfig, job_id: str) -> None:
    """Run a job in this process (what the runner process does)."""
    db = StateDB(config.state_dir.expanduser().resolve())
    try:
        Runner(db, config, job_id).run()
    except Exception as exc:
        db.run(
            "UPDATE batch_jobs SET status = ?, message = ?, ended_at = ? WHERE id = ?",
            (JobStatus.FAILED.value, f"{type(exc).__name__}: {exc}", now(), job_id),
        )
        raise


# -- the provider side ---------------------------------------------------------------------


def _start(db: StateDB, config: LocalConfig, job_id: str) -> None:
    ref = spawn(
        python_module(
            "cloudserve.local.batch", "--config", config.model_dump_json(), "--job", job_id
        ),
        log=db.state_dir / "batch" / "logs" / f"{job_id}.log",
    )
    db.run(
        "UPDATE batch_jobs SET pid = ?, ctime = ?, status = ?, message = NULL, ended_at = NULL"
        " WHERE id = ?",
        (ref.pid, ref.ctime, JobStatus.PENDING.value, job_id),
    )


def _runner_alive(row: Any) -> bool:
    return bool(row["pid"]) and ProcessRef(row["pid"], row["ctime"]).alive()


def submit(db: StateDB, config: LocalConfig, spec: BatchSpec) -> str:
    """Start a job for ``spec`` (or resume the unfinished one with the same spec); its id."""
    text = spec.model_dump_json()
    row = db.one(
        "SELECT * FROM batch_jobs WHERE spec = ? AND status IN (?, ?) ORDER BY created_at DESC",
        (text, JobStatus.PENDING.value, JobStatus.RUNNING.value),
    )
    if row is not None:
        if not _runner_alive(row):
            _start(db, config, row["id"])
        return str(row["id"])
    job_id = f"batch-{uuid.uuid4().hex[:12]}"
    db.run(
        "INSERT INTO batch_jobs(id, spec, status, created_at) VALUES (?, ?, ?, ?)",
        (job_id, text, JobStatus.PENDING.value, now()),
    )
    _start(db, config, job_id)
    return job_id


def resume(db: StateDB, config: LocalConfig, job_id: str) -> None:
    """Restart a job whose runner died (or that failed), from its last finished chunk."""
    row = db.one("SELECT * FROM batch_jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"batch job {job_id} does not exist", provider="local")
    if row["status"] == JobStatus.SUCCEEDED.value or _runner_alive(row):
        return
    _start(db, config, job_id)


def read_job(db: StateDB, job_id: str) -> BatchJob:
    """The job as a BatchJob; a runner that died unfinished shows as FAILED (resumable)."""
    from cloudserve.local.provider import _dt

    row = db.one("SELECT * FROM batch_jobs WHERE id = ?", (job_id,))
    if row is None:
        raise NotFound(f"batch job {job_id} does not exist", provider="local")
    spec = BatchSpec.model_validate_json(row["spec"])
    status, message = JobStatus(row["status"]), row["message"]
    if not status.is_terminal and row["pid"] and not _runner_alive(row):
        status = JobStatus.FAILED
        message = "the runner process died; resume_batch() continues from the last finished chunk"
    out, _ = output_paths(spec)
    return BatchJob(
        id=job_id,
        provider="local",
        status=status,
        input=spec.input,
        output=str(out.parent if out.name.startswith("predictions.") else out),
        rows_total=row["rows_total"],
        rows_succeeded=row["rows_succeeded"],
        rows_failed=row["rows_failed"],
        error_file=row["error_file"],
        message=message,
        created_at=_dt(row["created_at"]),
        ended_at=_dt(row["ended_at"]),
        raw=dict(row),
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the runner process."""
    runner_main("cloudserve.local.batch", run, argv)


if __name__ == "__main__":
    main()
