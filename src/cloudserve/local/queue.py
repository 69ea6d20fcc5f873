"""Queued (asynchronous) predictions: a persistent queue in the store, worked by the agent.

Results are stored until fetched, then kept for an hour (the agent purges them) so that a
repeated fetch works.
"""

from __future__ import annotations

import uuid
from typing import Any

from cloudserve.errors import NotFound
from cloudserve.local.store import StateDB, dumps, loads, now
from cloudserve.resources import AsyncPrediction, JobStatus

__all__ = ["enqueue", "result"]


def enqueue(
    db: StateDB,
    endpoint: str,
    instances: list[Any],
    variant: str | None,
    parameters: dict[str, Any] | None,
) -> AsyncPrediction:
    """Queue the rows for ``endpoint``; the request's handle (PENDING)."""
    if db.one("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)) is None:
        raise NotFound(f"endpoint {endpoint} does not exist", provider="local")
    rid = uuid.uuid4().hex
    db.run(
        "INSERT INTO async_requests(id, endpoint, variant, status, inputs, parameters,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            rid,
            endpoint,
            variant,
            JobStatus.PENDING.value,
            dumps(instances),
            dumps(parameters or {}),
            now(),
        ),
    )
    return AsyncPrediction(request_id=rid, endpoint=endpoint, status=JobStatus.PENDING)


def result(db: StateDB, endpoint: str, request_id: str) -> AsyncPrediction:
    """The queued request's state and, once done, its outputs (marked fetched)."""
    row = db.one(
        "SELECT * FROM async_requests WHERE id = ? AND endpoint = ?", (request_id, endpoint)
    )
    if row is None:
        raise NotFound(f"no queued request {request_id} for endpoint {endpoint}", provider="local")
    if JobStatus(row["status"]).is_terminal and row["fetched_at"] is None:
        db.run("UPDATE async_requests SET fetched_at = ? WHERE id = ?", (now(), request_id))
    return AsyncPrediction(
        request_id=request_id,
        endpoint=endpoint,
        status=JobStatus(row["status"]),
        outputs=loads(row["outputs"]),
        error=row["error"],
        raw=dict(row),
    )
