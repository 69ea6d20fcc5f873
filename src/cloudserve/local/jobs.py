"""What batch and tuning jobs share: listing and cancelling them."""

from __future__ import annotations

from cloudserve.errors import NotFound
from cloudserve.local import supervisor
from cloudserve.local.store import StateDB, now
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import BatchJob, JobStatus, TuningJob

__all__ = ["cancel", "list_all"]


def cancel(db: StateDB, job_id: str) -> None:
    """Stop a batch or tuning job (its runner and everything it started) and mark it
    CANCELLED; a job that already ended is left as it is."""
    for table in ("batch_jobs", "tuning_jobs"):
        row = db.one(f"SELECT * FROM {table} WHERE id = ?", (job_id,))
        if row is None:
            continue
        if JobStatus(row["status"]).is_terminal:
            return
        if row["pid"]:
            supervisor.stop_group(ProcessRef(row["pid"], row["ctime"]))
        db.run(
            f"UPDATE {table} SET status = ?, message = ?, ended_at = ? WHERE id = ?",
            (JobStatus.CANCELLED.value, "cancelled", now(), job_id),
        )
        return
    raise NotFound(f"no batch or tuning job {job_id}", provider="local")


def list_all(db: StateDB) -> list[BatchJob | TuningJob]:
    """Every batch and tuning job in the state, newest first."""
    from cloudserve.local import batch, tuning

    rows = db.all(
        "SELECT id, 'batch' AS kind, created_at FROM batch_jobs UNION ALL "
        "SELECT id, 'tuning' AS kind, created_at FROM tuning_jobs ORDER BY created_at DESC"
    )
    return [
        batch.read_job(db, r["id"]) if r["kind"] == "batch" else tuning.read_job(db, r["id"])
        for r in rows
    ]
