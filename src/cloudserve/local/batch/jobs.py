"""The provider side of local batch jobs: submit, resume, read."""

from __future__ import annotations

import uuid
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.local.batch.parts import output_paths
from cloudserve.local.config import LocalConfig
from cloudserve.local.store import StateDB, loads, now, to_datetime
from cloudserve.local.supervisor import ProcessRef, python_module, spawn
from cloudserve.resources import BatchJob, JobStatus
from cloudserve.specs import BatchSpec

__all__ = ["read_job", "resume", "submit"]


def _runner_alive(row: Any) -> bool:
    return bool(row["pid"]) and ProcessRef(row["pid"], row["ctime"]).alive()


def _start(db: StateDB, config: LocalConfig, job_id: str) -> None:
    """Start the job's runner unless one runs: checked and recorded in one transaction, so two
    processes resuming the same job at once start one runner."""
    with db.tx() as tx:
        row = tx.execute("SELECT * FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"batch job {job_id} does not exist", provider="local")
        if row["status"] == JobStatus.SUCCEEDED.value or _runner_alive(row):
            return
        ref = spawn(
            python_module(
                "cloudserve.local.batch", "--config", config.model_dump_json(), "--job", job_id
            ),
            log=db.state_dir / "batch" / "logs" / f"{job_id}.log",
        )
        tx.execute(
            "UPDATE batch_jobs SET pid = ?, ctime = ?, status = ?, message = NULL, ended_at = NULL"
            " WHERE id = ?",
            (ref.pid, ref.ctime, JobStatus.PENDING.value, job_id),
        )


def submit(db: StateDB, config: LocalConfig, spec: BatchSpec) -> str:
    """Start a job for ``spec`` (or resume the unfinished one with the same spec); its id."""
    text = spec.model_dump_json()
    row = db.one(
        "SELECT * FROM batch_jobs WHERE spec = ? AND status IN (?, ?) ORDER BY created_at DESC",
        (text, JobStatus.PENDING.value, JobStatus.RUNNING.value),
    )
    if row is not None:
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
    """Restart a job whose runner died (or that failed); it follows its stored plan."""
    _start(db, config, job_id)


def read_job(db: StateDB, job_id: str) -> BatchJob:
    """The job as a BatchJob; a runner that died unfinished shows as FAILED (resumable)."""
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
        created_at=to_datetime(row["created_at"]),
        ended_at=to_datetime(row["ended_at"]),
        raw={**dict(row), "plan": loads(row["plan"])},
    )
