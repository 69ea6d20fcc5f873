"""BigQuery in the fake: the tables request-response logging writes, and ``tabledata.list``.

Datasets and tables are created the way Vertex creates them for an endpoint's
``predictRequestResponseLoggingConfig``: ``bq://P`` creates the dataset
``logging_<display name>_<endpoint id>`` and the table ``request_response_logging``;
``bq://P.D`` needs the dataset and creates the table; ``bq://P.D.T`` needs the dataset and a
table that does not exist yet.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import orjson

from cloudserve_vertex.testing._http import ApiError, Reply, json_reply

__all__ = ["FakeBigQuery"]

Table = tuple[str, str, str]


class FakeBigQuery:
    """Datasets, tables of logged requests, and which table each endpoint logs to."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.datasets: set[tuple[str, str]] = set()
        self.tables: dict[Table, list[dict[str, Any]]] = {}
        self.logging_tables: dict[str, Table] = {}  # endpoint id → its table

    def create_logging_table(self, endpoint_id: str, display_name: str, uri: str) -> Table:
        """The table an endpoint's request-response log goes to, created as Vertex does."""
        project, _, rest = uri.removeprefix("bq://").partition(".")
        dataset, _, table = rest.partition(".")
        if not uri.startswith("bq://") or not project:
            raise ApiError(400, f"bigquery_destination.output_uri {uri!r} is not bq://…")
        with self.lock:
            if not dataset:
                dataset = f"logging_{re.sub(r'[^A-Za-z0-9_]', '_', display_name)}_{endpoint_id}"
                self.datasets.add((project, dataset))
            elif (project, dataset) not in self.datasets:
                raise ApiError(400, f"Not found: Dataset {project}:{dataset}")
            key = (project, dataset, table or "request_response_logging")
            if table and key in self.tables:
                raise ApiError(400, f"Already Exists: Table {project}:{dataset}.{table}")
            self.tables.setdefault(key, [])
            self.logging_tables[endpoint_id] = key
            return key

    def log(
        self,
        ep: dict[str, Any],
        dm: dict[str, Any],
        instances: list[Any],
        preds: list[Any],
        at: float | None = None,
    ) -> None:
        """One row per request, as request-response logging writes it, logged ``at`` (seconds
        since the epoch; now when not given)."""
        endpoint_id = ep["name"].rsplit("/", 1)[-1]
        with self.lock:
            rows = self.tables[self.logging_tables[endpoint_id]]
            rows.append(
                {
                    "endpoint": ep["name"],
                    "deployed_model_id": dm["id"],
                    "logging_time": int((time.time() if at is None else at) * 1_000_000),
                    "request_id": str(len(rows) + 1),
                    "request_payload": [orjson.dumps(i).decode() for i in instances],
                    "response_payload": [orjson.dumps(p).decode() for p in preds],
                }
            )

    def list_rows(
        self, project: str, dataset: str, table: str, query: dict[str, str], **_: Any
    ) -> Reply:
        """``tabledata.list`` (TIMESTAMP as int64 microseconds)."""
        with self.lock:
            rows = self.tables.get((project, dataset, table))
            if rows is None:
                raise ApiError(404, f"Not found: Table {project}:{dataset}.{table}")
            rows = list(rows)
        fields = [f for f in query.get("selectedFields", "").split(",") if f] or list(
            rows[0] if rows else []
        )
        start = int(query.get("pageToken") or 0)
        size = int(query.get("maxResults") or 1000)
        page = rows[start : start + size]

        def cell(value: Any) -> Any:
            if isinstance(value, list):
                return [{"v": v} for v in value]
            return str(value)

        out: dict[str, Any] = {
            "kind": "bigquery#tableDataList",
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": cell(r[f])} for f in fields]} for r in page],
        }
        if start + size < len(rows):
            out["pageToken"] = str(start + size)
        return json_reply(out)
