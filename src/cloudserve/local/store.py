"""The local provider's store: one SQLite database under the state directory.

Every process — the user's, a CLI call, a batch or tuning runner, an endpoint agent — opens the
same file, so an endpoint deployed from one Python process is seen (with its health) from any
other. WAL mode lets readers run beside one writer; ``busy_timeout`` makes writers queue
instead of failing.

The state directory is created ``0700`` and ``state.db`` ``0600`` (it holds the endpoints'
bearer tokens). A damaged database — garbage, or a file truncated to nothing — is a
:class:`StateCorrupt` naming the file, never an empty state that would orphan running workers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from cloudserve.errors import CloudServeError

__all__ = ["StateCorrupt", "StateDB", "dumps", "loads", "now", "to_datetime"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints(
    name TEXT PRIMARY KEY, status TEXT NOT NULL, message TEXT, token TEXT NOT NULL,
    capture_rate REAL NOT NULL DEFAULT 0, capture_responses INTEGER NOT NULL DEFAULT 1,
    tags TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL,
    agent_pid INTEGER, agent_ctime REAL);
CREATE TABLE IF NOT EXISTS variants(
    endpoint TEXT NOT NULL, name TEXT NOT NULL, model_name TEXT NOT NULL,
    model_version TEXT NOT NULL, model_dir TEXT NOT NULL, weight INTEGER NOT NULL,
    spec TEXT NOT NULL, spec_hash TEXT NOT NULL, replicas INTEGER NOT NULL,
    min_replicas INTEGER NOT NULL, max_replicas INTEGER NOT NULL,
    autoscale_target REAL, created_at REAL NOT NULL, PRIMARY KEY(endpoint, name));
CREATE TABLE IF NOT EXISTS workers(
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, variant TEXT NOT NULL,
    pid INTEGER NOT NULL, ctime REAL NOT NULL, port INTEGER NOT NULL, log TEXT NOT NULL,
    started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS models(
    name TEXT NOT NULL, version TEXT NOT NULL, uri TEXT NOT NULL, framework TEXT,
    content_hash TEXT NOT NULL, created_at REAL NOT NULL, stage TEXT,
    lineage TEXT NOT NULL, tags TEXT NOT NULL, PRIMARY KEY(name, version));
CREATE TABLE IF NOT EXISTS invocations(
    endpoint TEXT NOT NULL, variant TEXT, ts REAL NOT NULL, latency_ms REAL,
    rows INTEGER NOT NULL, error TEXT);
CREATE INDEX IF NOT EXISTS invocations_by_time ON invocations(endpoint, ts);
CREATE TABLE IF NOT EXISTS captures(
    endpoint TEXT NOT NULL, variant TEXT, ts REAL NOT NULL, inputs TEXT NOT NULL, outputs TEXT);
CREATE INDEX IF NOT EXISTS captures_by_time ON captures(endpoint, ts);
CREATE TABLE IF NOT EXISTS async_requests(
    id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, variant TEXT, status TEXT NOT NULL,
    inputs TEXT NOT NULL, parameters TEXT, outputs TEXT, error TEXT,
    created_at REAL NOT NULL, finished_at REAL, fetched_at REAL);
CREATE INDEX IF NOT EXISTS async_by_status ON async_requests(endpoint, status, created_at);
CREATE TABLE IF NOT EXISTS batch_jobs(
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, rows_total INTEGER,
    rows_succeeded INTEGER NOT NULL DEFAULT 0, rows_failed INTEGER NOT NULL DEFAULT 0,
    error_file TEXT, message TEXT, pid INTEGER, ctime REAL,
    created_at REAL NOT NULL, ended_at REAL, plan TEXT);
CREATE TABLE IF NOT EXISTS batch_chunks(
    job TEXT NOT NULL, chunk INTEGER NOT NULL, rows INTEGER NOT NULL, ok INTEGER NOT NULL,
    failed INTEGER NOT NULL, first_row INTEGER, last_row INTEGER, out_sha256 TEXT,
    err_sha256 TEXT, PRIMARY KEY(job, chunk));
CREATE TABLE IF NOT EXISTS tuning_jobs(
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, message TEXT,
    pid INTEGER, ctime REAL, created_at REAL NOT NULL, ended_at REAL);
CREATE TABLE IF NOT EXISTS trials(
    job TEXT NOT NULL, number INTEGER NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
    value REAL, intermediate TEXT NOT NULL DEFAULT '[]', artifact TEXT, log TEXT,
    message TEXT, PRIMARY KEY(job, number));
CREATE TABLE IF NOT EXISTS shadow_pairs(
    endpoint TEXT NOT NULL, request_id TEXT NOT NULL, ts REAL NOT NULL, pair TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS shadow_pairs_by_time ON shadow_pairs(endpoint, ts);
CREATE TABLE IF NOT EXISTS rollouts(
    endpoint TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS faults(kind TEXT PRIMARY KEY, remaining INTEGER NOT NULL,
    message TEXT);
CREATE TABLE IF NOT EXISTS port_leases(
    port INTEGER PRIMARY KEY, endpoint TEXT NOT NULL, expires_at REAL NOT NULL);
"""


# Columns added after their table was first created: a state directory made by an earlier
# version gets them on open.
ADDED_COLUMNS = (
    ("batch_jobs", "plan", "TEXT"),
    ("batch_chunks", "first_row", "INTEGER"),
    ("batch_chunks", "last_row", "INTEGER"),
    ("batch_chunks", "out_sha256", "TEXT"),
    ("batch_chunks", "err_sha256", "TEXT"),
    ("variants", "shadow", "INTEGER NOT NULL DEFAULT 0"),
)


def dumps(value: Any) -> str:
    """JSON text for a state column (numpy scalars and arrays allowed)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def loads(text: str | bytes | None) -> Any:
    """The value of a JSON state column (None stays None)."""
    return None if text is None else orjson.loads(text)


class StateCorrupt(CloudServeError):
    """The state database cannot be read; the message names the file and what to do."""

    def __init__(self, path: Path, problem: str):
        super().__init__(
            f"{path}: the local state database is damaged ({problem}); move it aside to start "
            "with an empty state (endpoints it listed keep running until stopped by hand)",
            provider="local",
        )
        self.path = path


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn SQLite's "not a database" / "malformed" errors into :class:`StateCorrupt`."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        # OperationalError (locked, busy), IntegrityError … are not damage
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise StateCorrupt(path, str(exc)) from exc


class StateDB:
    """The state database of one state directory; safe to share between threads.

    Each thread gets its own connection; each ``tx()`` block is one transaction.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.path = state_dir / "state.db"
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
        if self.path.exists() and self.path.stat().st_size == 0:
            # SQLite reads an empty file as a new, empty database: the state would vanish
            raise StateCorrupt(self.path, "the file is empty (truncated)")
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        self._local = threading.local()
        with _readable(self.path):
            self._conn().executescript(SCHEMA)  # executescript commits by itself
            self._add_columns()

    def _add_columns(self) -> None:
        """Columns added after a state directory was first made (ALTER TABLE, once)."""
        conn = self._conn()
        for table, column, decl in ADDED_COLUMNS:
            have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                with contextlib.suppress(sqlite3.OperationalError):  # another process won
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: writers queue rather than deadlock)."""
        conn = self._conn()
        if conn.in_transaction:  # nested use joins the outer transaction
            yield conn
            return
        with _readable(self.path):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Every row of a read query."""
        with _readable(self.path):
            return self._conn().execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """The first row of a read query, or None."""
        with _readable(self.path):
            return self._conn().execute(sql, params).fetchone()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """One write statement in its own transaction."""
        with self.tx() as db:
            db.execute(sql, params)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def now() -> float:
    """Wall-clock seconds (state timestamps are shared between processes)."""
    return time.time()


def to_datetime(ts: float | None) -> datetime | None:
    """A state timestamp as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)
