"""What batch and tuning jobs share: cancelling them."""

from __future__ import annotations

from cloudserve.errors import NotFound
from cloudserve.local import supervisor
from cloudserve.local.store import StateDB, now
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import JobStatus

__all__ = ["cancel"]


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
