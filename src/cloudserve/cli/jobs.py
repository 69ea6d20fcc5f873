"""``cloudserve jobs``: list batch and tuning jobs, show one, cancel one.

After ``batch --no-wait`` or ``tune --no-wait`` these are how a job is followed, from any shell.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cloudserve.cli._render import console, print_json
from cloudserve.cli.core import ConfigOpt, JsonOpt, TargetOpt, _client
from cloudserve.resources import BatchJob

__all__ = ["register"]

jobs_app = typer.Typer(
    help="Batch and tuning jobs: list them, show one, cancel one.", no_args_is_help=True
)

JobIdArg = Annotated[str, typer.Argument(help="Job id (as printed by batch / tune).")]


def _kind(job: Any) -> str:
    return "batch" if isinstance(job, BatchJob) else "tuning"


def _progress(job: Any) -> str:
    if isinstance(job, BatchJob):
        if job.rows_total is None:
            return "-"
        done = (job.rows_succeeded or 0) + (job.rows_failed or 0)
        failed = f", {job.rows_failed} failed" if job.rows_failed else ""
        return f"{done}/{job.rows_total} rows{failed}"
    best = job.best_trial
    found = f", best {best.value:.6g}" if best is not None and best.value is not None else ""
    return f"{len(job.trials)} trials{found}"


def _table(jobs: list[Any]) -> Table:
    table = Table("job", "kind", "status", "progress", "created", "message")
    for job in jobs:
        when = getattr(job, "created_at", None)  # tuning jobs carry no creation time
        created = when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
        table.add_row(
            job.id, _kind(job), job.status.value, _progress(job), created, job.message or ""
        )
    return table


@jobs_app.command("list")
def list_jobs(target: TargetOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """The target's batch and tuning jobs, newest first."""
    with _client(target, config) as client:
        jobs = client.list_jobs()
    print_json(jobs) if json else console.print(_table(jobs))


@jobs_app.command("status")
def status(
    job_id: JobIdArg, target: TargetOpt = None, config: ConfigOpt = None, json: JsonOpt = False
) -> None:
    """One job's state: status, rows or trials so far, where its output goes."""
    with _client(target, config) as client:
        job = client.get_job(job_id)
    if json:
        print_json(job)
        return
    console.print(_table([job]))
    if isinstance(job, BatchJob):
        console.print(f"output: {job.output}")
        if job.error_file:
            console.print(f"errors: {job.error_file}")


@jobs_app.command("cancel")
def cancel(
    job_id: JobIdArg, target: TargetOpt = None, config: ConfigOpt = None, json: JsonOpt = False
) -> None:
    """Stop a running job (one that already ended is left as it is)."""
    with _client(target, config) as client:
        job = client.cancel_job(job_id)
    print_json(job) if json else console.print(f"job {job.id}: {job.status.value}")


def register(app: typer.Typer) -> None:
    """Add the ``jobs`` group to the CLI."""
    app.add_typer(jobs_app, name="jobs")
