"""Serving workers of local endpoints: ports, start-up, records, replacement, orphans.

A worker is ``python -m cloudserve.serving`` on a loopback port, recorded in the ``workers``
table with its pid and start time. Ports are leased in the store before a worker starts (in one
transaction, so two workers, or two processes, never get the same port, within ``port_range``
or not); the lease ends when the worker is recorded or after ``ready_timeout_s``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cloudserve.errors import OperationFailed
from cloudserve.local import supervisor
from cloudserve.local.config import LocalConfig
from cloudserve.local.locks import EndpointLock
from cloudserve.local.store import StateDB, now
from cloudserve.local.supervisor import ProcessRef
from cloudserve.specs import DeploySpec

__all__ = [
    "Started",
    "host_url",
    "insert_workers",
    "max_queue_of",
    "refs",
    "replace_dead",
    "reserve_ports",
    "start_workers",
    "sweep",
]


@dataclass(frozen=True)
class Started:
    """A worker that answers /ping, not yet recorded."""

    ref: ProcessRef
    port: int
    log: Path


def host_url(config: LocalConfig) -> str:
    """The configured host as it goes in a URL."""
    return f"[{config.host}]" if ":" in config.host else config.host


def max_queue_of(variant: Any) -> int | None:
    """The per-worker request cap of a variant row (``Compute.max_concurrency``)."""
    return DeploySpec.model_validate_json(variant["spec"]).compute.max_concurrency


def refs(db: StateDB, where: str, params: tuple[Any, ...]) -> list[tuple[Any, ProcessRef]]:
    """Worker rows matching ``where`` with their process references."""
    rows = db.all(f"SELECT * FROM workers WHERE {where}", params)
    return [(r, ProcessRef(r["pid"], r["ctime"])) for r in rows]


def reserve_ports(db: StateDB, config: LocalConfig, endpoint: str, count: int) -> list[int]:
    """Lease ``count`` ports no worker holds or is about to hold, and nobody listens on."""
    lo_hi = config.port_range
    with db.tx() as tx:
        tx.execute("DELETE FROM port_leases WHERE expires_at < ?", (now(),))
        taken = {r["port"] for r in tx.execute("SELECT port FROM workers")}
        taken |= {r["port"] for r in tx.execute("SELECT port FROM port_leases")}
        ports: list[int] = []
        if lo_hi is None:
            for _ in range(count * 20):
                port = supervisor.bindable(config.host, 0)
                if port is not None and port not in taken and port not in ports:
                    ports.append(port)
                if len(ports) == count:
                    break
        else:
            for candidate in range(lo_hi[0], lo_hi[1] + 1):
                if candidate in taken or supervisor.bindable(config.host, candidate) is None:
                    continue
                ports.append(candidate)
                if len(ports) == count:
                    break
        if len(ports) < count:
            raise OperationFailed(
                f"no {count} free port(s) in {lo_hi or 'the ephemeral range'} for {endpoint}",
                provider="local",
            )
        expires = now() + config.ready_timeout_s + 60
        tx.executemany(
            "INSERT INTO port_leases(port, endpoint, expires_at) VALUES (?, ?, ?)",
            [(p, endpoint, expires) for p in ports],
        )
    return ports


def start_workers(
    db: StateDB,
    config: LocalConfig,
    endpoint: str,
    variant: str,
    model_dir: Path,
    token: str,
    count: int,
    started: list[ProcessRef],
    *,
    timeout: float | None = None,
    max_queue: int | None = None,
) -> list[Started]:
    """Start ``count`` serving workers and wait until each answers /ping.

    Every process started is appended to ``started`` at once, so a caller that fails later
    stops them. ``max_queue`` (``Compute.max_concurrency``) caps the requests a worker holds
    at once; past it the worker refuses (the provider raises Throttled).
    """
    out = []
    for port in reserve_ports(db, config, endpoint, count):
        log = model_dir / "logs" / f"worker-{port}-{uuid.uuid4().hex[:6]}.log"
        args = ["--model-dir", str(model_dir / "model"), "--host", config.host]
        args += ["--port", str(port)]
        if max_queue is not None:
            args += ["--max-queue", str(max_queue)]
        if config.server_batch_size:
            args += ["--batch-size", str(config.server_batch_size)]
            args += ["--batch-wait-ms", str(config.server_batch_wait_ms)]
        ref = supervisor.spawn(
            supervisor.python_module("cloudserve.serving", *args),
            log=log,
            # the token goes by environment so that it does not show in the process list
            env={
                "CLOUDSERVE_TOKEN": token,
                "CLOUDSERVE_ENDPOINT": endpoint,
                "CLOUDSERVE_VARIANT": variant,
            },
        )
        started.append(ref)
        out.append(Started(ref, port, log))
    for w in out:
        supervisor.wait_ready(
            w.ref,
            f"http://{host_url(config)}:{w.port}/ping",
            log=w.log,
            timeout=timeout or config.ready_timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )
    return out


def insert_workers(tx: Any, endpoint: str, variant: str, workers: list[Started]) -> None:
    """Record started workers (their port leases end: the worker rows hold the ports now)."""
    for w in workers:
        tx.execute(
            "INSERT INTO workers(endpoint, variant, pid, ctime, port, log, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (endpoint, variant, w.ref.pid, w.ref.ctime, w.port, str(w.log), now()),
        )
        tx.execute("DELETE FROM port_leases WHERE port = ?", (w.port,))


def replace_dead(db: StateDB, config: LocalConfig, endpoint: str, variant: Any) -> int:
    """Replace the variant's dead workers and start what it lacks of ``max(replicas,
    min_replicas)``; the number started. Call with the endpoint's lock held."""
    ep = db.one("SELECT token FROM endpoints WHERE name = ?", (endpoint,))
    if ep is None:
        return 0
    workers = refs(db, "endpoint = ? AND variant = ?", (endpoint, variant["name"]))
    dead = [w for w, ref in workers if not ref.alive()]
    missing = max(variant["replicas"], variant["min_replicas"]) - (len(workers) - len(dead))
    if not dead and missing <= 0:
        return 0
    started: list[ProcessRef] = []
    try:
        fresh = start_workers(
            db,
            config,
            endpoint,
            variant["name"],
            Path(variant["model_dir"]),
            ep["token"],
            max(missing, 0),
            started,
            max_queue=max_queue_of(variant),
        )
    except BaseException:
        supervisor.stop_all(started, grace_s=5)
        raise
    with db.tx() as tx:
        for w in dead:
            tx.execute("DELETE FROM workers WHERE id = ?", (w["id"],))
        insert_workers(tx, endpoint, variant["name"], fresh)
    return len(fresh)


def _endpoint_of(cmdline: list[str], endpoints_dir: str) -> str | None:
    for part in cmdline:
        if part.startswith(endpoints_dir):
            return part[len(endpoints_dir) :].split(os.sep, 1)[0] or None
    return None


def _owned(db: StateDB) -> dict[int, float]:
    return {r["pid"]: r["ctime"] for r in db.all("SELECT pid, ctime FROM workers")}


def _is_owned(ref: ProcessRef, owned: dict[int, float]) -> bool:
    return ref.pid in owned and abs(owned[ref.pid] - ref.ctime) <= 0.5


def sweep(db: StateDB, endpoint: str | None = None, *, held: bool = False) -> list[int]:
    """Stop serving workers of this state directory that no worker row owns (left by a
    process that died mid-deploy, say); the pids stopped. Endpoints whose lock another holder
    has (a deploy in progress) are left alone; ``held`` says the caller holds ``endpoint``'s."""
    endpoints_dir = str(db.state_dir / "endpoints") + os.sep
    owned = _owned(db)
    orphans: dict[str, list[ProcessRef]] = {}
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        with contextlib.suppress(psutil.Error):
            name = _endpoint_of(proc.info["cmdline"] or [], endpoints_dir)
            if name is None or (endpoint is not None and name != endpoint):
                continue
            ref = ProcessRef(proc.pid, proc.info["create_time"])
            if not _is_owned(ref, owned):
                orphans.setdefault(name, []).append(ref)
    stopped: list[int] = []
    for name, found in orphans.items():
        lock = EndpointLock(db.state_dir, name)
        if not (held and name == endpoint) and not lock.try_acquire():
            continue
        try:
            owned = _owned(db)  # read again under the lock
            gone = [r for r in found if not _is_owned(r, owned)]
            supervisor.stop_all(gone, grace_s=5)
            stopped += [r.pid for r in gone]
        finally:
            lock.release()
    return stopped
