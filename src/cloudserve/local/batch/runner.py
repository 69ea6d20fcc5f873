"""The batch runner process: ``python -m cloudserve.local.batch --config JSON --job ID``.

The first run of a job stores its plan: the chunk size and the input's size and sha256. Every
finished chunk is recorded with its row range, its row counts and the sha256 of its part files.
A resumed run follows the stored plan (whatever ``batch_chunk_rows`` says now), re-predicts a
chunk whose part is missing or does not match its record, and refuses — the job ends FAILED —
when the input changed or no longer splits into the recorded chunks. Assembly checks every part
against its record again, so a job never ends SUCCEEDED with a row missing or twice.

Only one runner works on a job at a time: it holds an exclusive lock on the job's work
directory; a second runner exits at once without touching the job.

Chunks are predicted in worker processes started with ``forkserver`` (``spawn`` where that does
not exist), each loading the model itself: a model loaded in a parent and inherited through
``fork`` deadlocks OpenMP-based libraries (XGBoost, LightGBM) in the children.
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudserve.errors import NotFound, OperationFailed
from cloudserve.local.batch.parts import EXT, PartInfo, assemble, file_sha256, output_paths
from cloudserve.local.batch.parts import write_part as _write_part
from cloudserve.local.batch.reading import (
    Chunk,
    count_rows,
    fingerprint,
    has_header,
    read_chunks,
)
from cloudserve.local.config import LocalConfig
from cloudserve.local.locks import RunnerBusy, runner_lock
from cloudserve.local.model_registry import stage
from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.local.supervisor import runner_main
from cloudserve.resources import JobStatus
from cloudserve.specs import BatchSpec

__all__ = ["PlanRefused", "Runner", "main", "run"]


class PlanRefused(OperationFailed):
    """A resumed job cannot follow its stored plan (the input changed, or its chunks did)."""


# -- in the worker processes ---------------------------------------------------------------

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


@dataclass(frozen=True)
class ChunkResult:
    """A predicted chunk: its input rows and its part files."""

    index: int
    first_row: int
    last_row: int
    rows: int
    out: PartInfo
    err: PartInfo | None


def part_paths(parts: Path, index: int, fmt: str) -> tuple[Path, Path]:
    """The prediction and error part files of chunk ``index``."""
    ext = EXT[fmt]
    return parts / f"out-{index:06d}.{ext}", parts / f"err-{index:06d}.{ext}"


def _work(chunk: Chunk, parts: Path, fmt: str) -> ChunkResult:
    """Predict one chunk and write its part files (in the worker, so writes run in parallel)."""
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
    numbers = chunk.numbers()
    if sorted(rows + [r for r, _ in errors]) != numbers:
        raise RuntimeError(f"chunk {chunk.index}: outputs and errors do not cover its rows")
    out_path, err_path = part_paths(parts, chunk.index, fmt)
    out = _write_part(out_path, fmt, {"row": rows, "prediction": outputs})
    err = None
    if errors:
        err = _write_part(
            err_path, fmt, {"row": [r for r, _ in errors], "error": [m for _, m in errors]}
        )
    else:
        err_path.unlink(missing_ok=True)  # left by an earlier attempt at this chunk
    return ChunkResult(chunk.index, numbers[0], numbers[-1], len(numbers), out, err)


def _pool(
    workers: int, model_dir: Path, parameters: dict[str, Any] | None = None
) -> ProcessPoolExecutor:
    """Worker processes that each load the model (never inherited through ``fork``)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_load, initargs=(str(model_dir), parameters)
    )


def _feature_names(model_dir: Path) -> list[str] | None:
    """The staged model's feature names (the manifest), read without loading the model."""
    from cloudserve import _handler

    names = _handler.read_manifest(str(model_dir)).get("feature_names")
    return list(names) if names else None


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

    def run(self) -> None:
        """Predict every chunk the job has not finished, then assemble the output files."""
        with runner_lock(self.work, f"batch job {self.job_id}"):
            src = Path(self.spec.input).expanduser()
            if not src.is_file():
                raise OperationFailed(f"batch input not found: {src}", provider="local")
            model_dir = self.work / "model"
            if not (model_dir / "cloudserve.json").exists():
                stage(self.spec.model, model_dir)
            plan = self._plan(src)
            self.db.run(
                "UPDATE batch_jobs SET status = ?, rows_total = ?, message = NULL WHERE id = ?",
                (JobStatus.RUNNING.value, count_rows(src, self.fmt), self.job_id),
            )
            for _ in range(2):  # a part that fails its check at assembly is predicted again
                chunks = self._predict(src, plan, model_dir, self._verified())
                if self._finish(plan, chunks):
                    return
            raise OperationFailed(
                "part files failed their checks twice; the job is stopped", provider="local"
            )

    def _plan(self, src: Path) -> dict[str, Any]:
        """The stored plan (refusing an input that changed since), or a new one."""
        row = self.db.one("SELECT plan FROM batch_jobs WHERE id = ?", (self.job_id,))
        assert row is not None
        current = fingerprint(src)
        plan = loads(row["plan"])
        if plan is None:
            spec = self.spec
            size = max(self.config.batch_chunk_rows // spec.batch_size, 1) * spec.batch_size
            plan = {"chunk_rows": size, "input": current}
            self.db.run("UPDATE batch_jobs SET plan = ? WHERE id = ?", (dumps(plan), self.job_id))
            return plan
        if plan["input"] != current:
            raise PlanRefused(
                f"batch input {src} changed since the job started ({plan['input']['bytes']} → "
                f"{current['bytes']} bytes, sha256 differs); its finished chunks no longer "
                "describe it. Start a new job",
                provider="local",
            )
        print(f"following the stored plan: {plan['chunk_rows']} rows per chunk", flush=True)
        return plan

    def _records(self) -> list[Any]:
        return self.db.all(
            "SELECT * FROM batch_chunks WHERE job = ? ORDER BY chunk", (self.job_id,)
        )

    def _check(self, rec: Any) -> str | None:
        """Why chunk record ``rec`` does not match its part files (None when it does)."""
        out_path, err_path = part_paths(self.parts, rec["chunk"], self.fmt)
        for path, sha in ((out_path, rec["out_sha256"]), (err_path, rec["err_sha256"])):
            if sha is None:
                continue
            if not path.is_file():
                return f"{path.name} is missing"
            if file_sha256(path) != sha:
                return f"{path.name} does not match its checksum"
        return None

    def _drop(self, rec: Any, why: str) -> None:
        print(f"chunk {rec['chunk']}: {why}; it is predicted again", flush=True)
        for path in part_paths(self.parts, rec["chunk"], self.fmt):
            path.unlink(missing_ok=True)
        with self.db.tx() as tx:
            tx.execute(
                "DELETE FROM batch_chunks WHERE job = ? AND chunk = ?", (self.job_id, rec["chunk"])
            )
            self._update_totals(tx)

    def _verified(self) -> dict[int, Any]:
        """The finished chunks whose parts match their records; the others are dropped."""
        done = {}
        for rec in self._records():
            why = self._check(rec)
            if why is None:
                done[rec["chunk"]] = rec
            else:
                self._drop(rec, why)
        if done:
            print(f"resuming: {len(done)} chunk(s) already finished are skipped", flush=True)
        return done

    def _predict(
        self, src: Path, plan: dict[str, Any], model_dir: Path, done: dict[int, Any]
    ) -> int:
        """Predict the chunks not in ``done``; the number of chunks in the plan."""
        chunks = 0
        pending: dict[Future[ChunkResult], int] = {}
        limit = 2 * self.spec.max_concurrency
        with _pool(self.spec.max_concurrency, model_dir, self.spec.parameters) as pool:
            header = self.fmt != "csv" or has_header(src, _feature_names(model_dir))
            for chunk in read_chunks(src, self.fmt, plan["chunk_rows"], header=header):
                chunks = chunk.index + 1
                rec = done.get(chunk.index)
                if rec is not None:
                    numbers = chunk.numbers()
                    if (rec["first_row"], rec["last_row"], rec["rows"]) != (
                        numbers[0],
                        numbers[-1],
                        len(numbers),
                    ):
                        raise PlanRefused(
                            f"chunk {chunk.index} of the input no longer holds the rows its "
                            "record says; the job cannot resume. Start a new job",
                            provider="local",
                        )
                    continue
                pending[pool.submit(_work, chunk, self.parts, self.fmt)] = chunk.index
                del chunk  # the worker has its copy; keep memory flat
                while len(pending) >= limit:
                    self._collect(pending)
            while pending:
                self._collect(pending)
        extra = sorted(set(done) - set(range(chunks)))
        if extra:
            raise PlanRefused(
                f"the job recorded chunks {extra} that the input does not have; start a new job",
                provider="local",
            )
        return chunks

    def _collect(self, pending: dict[Future[ChunkResult], int]) -> None:
        """Record the chunks that finished (their part files are already written)."""
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in finished:
            pending.pop(fut)
            self._record(fut.result())

    def _update_totals(self, tx: Any) -> None:
        tx.execute(
            "UPDATE batch_jobs SET"
            " rows_succeeded = (SELECT COALESCE(SUM(ok), 0) FROM batch_chunks WHERE job = ?),"
            " rows_failed = (SELECT COALESCE(SUM(failed), 0) FROM batch_chunks WHERE job = ?)"
            " WHERE id = ?",
            (self.job_id, self.job_id, self.job_id),
        )

    def _record(self, r: ChunkResult) -> None:
        failed = r.err.rows if r.err else 0
        with self.db.tx() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO batch_chunks(job, chunk, rows, ok, failed, first_row,"
                " last_row, out_sha256, err_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.job_id,
                    r.index,
                    r.rows,
                    r.out.rows,
                    failed,
                    r.first_row,
                    r.last_row,
                    r.out.sha256,
                    r.err.sha256 if r.err else None,
                ),
            )
            self._update_totals(tx)
            total = tx.execute(
                "SELECT rows_failed FROM batch_jobs WHERE id = ?", (self.job_id,)
            ).fetchone()["rows_failed"]
        limit = self.spec.error_threshold
        if limit >= 0 and total > limit:
            raise OperationFailed(
                f"{total} rows failed, over the error threshold of {limit}", provider="local"
            )

    def _finish(self, plan: dict[str, Any], chunks: int) -> bool:
        """Check every part against its record and assemble; False when one was dropped."""
        records = self._records()
        if [r["chunk"] for r in records] != list(range(chunks)):
            return False
        bad = [(r, why) for r in records if (why := self._check(r)) is not None]
        for rec, why in bad:
            self._drop(rec, why)
        if bad:
            return False
        if any(r["ok"] + r["failed"] != r["rows"] for r in records):
            raise OperationFailed("a chunk's outputs do not add up to its rows", provider="local")
        out, err = output_paths(self.spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        assemble([part_paths(self.parts, r["chunk"], self.fmt)[0] for r in records], out, self.fmt)
        errs = [part_paths(self.parts, r["chunk"], self.fmt)[1] for r in records if r["failed"]]
        if errs:
            assemble(errs, err, self.fmt)
        ok = sum(r["ok"] for r in records)
        failed = sum(r["failed"] for r in records)
        plan = {**plan, "chunks": chunks, "rows": ok + failed}
        self.db.run(
            "UPDATE batch_jobs SET status = ?, rows_total = ?, rows_succeeded = ?, rows_failed = ?,"
            " error_file = ?, plan = ?, ended_at = ? WHERE id = ?",
            (
                JobStatus.SUCCEEDED.value,
                ok + failed,
                ok,
                failed,
                str(err) if errs else None,
                dumps(plan),
                now(),
                self.job_id,
            ),
        )
        shutil.rmtree(self.work, ignore_errors=True)
        return True


def run(config: LocalConfig, job_id: str) -> None:
    """Run a job in this process (what the runner process does)."""
    db = StateDB(config.state_dir.expanduser().resolve())
    try:
        Runner(db, config, job_id).run()
    except RunnerBusy as exc:
        print(f"{exc}; this runner exits", flush=True)
    except Exception as exc:
        db.run(
            "UPDATE batch_jobs SET status = ?, message = ?, ended_at = ? WHERE id = ?",
            (JobStatus.FAILED.value, f"{type(exc).__name__}: {exc}", now(), job_id),
        )
        raise


def main(argv: list[str] | None = None) -> None:
    """Entry point of the runner process."""
    runner_main("cloudserve.local.batch", run, argv)
