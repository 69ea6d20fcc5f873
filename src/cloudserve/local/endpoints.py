"""Local endpoints: deploy (blue/green or canary), read, restart, traffic, delete, plan.

An endpoint is rows in the store (endpoint, variants, workers) plus its serving workers and
its agent (:mod:`cloudserve.local.agent`), which restarts dead workers and autoscales. Every
change to an endpoint's workers holds the endpoint's lock (:mod:`cloudserve.local.locks`), so
concurrent deploys and deletes from several processes run one after the other: the endpoint
ends up working, or gone, and no worker is left that no row owns.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import math
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from cloudserve.errors import CloudServeError, InvalidRequest, NotFound, OperationFailed
from cloudserve.local import agent, faults, model_registry, supervisor, workers
from cloudserve.local.config import LocalConfig
from cloudserve.local.faults import NoFaults
from cloudserve.local.locks import EndpointLock, endpoint_lock
from cloudserve.local.store import StateDB, dumps, loads, now, to_datetime
from cloudserve.local.supervisor import ProcessRef
from cloudserve.resources import Endpoint, EndpointStatus, PlannedCall, Variant
from cloudserve.specs import DeploySpec

__all__ = ["Endpoints", "canary_weights", "initial_workers"]

Refs = builtins.list[tuple[Any, ProcessRef]]  # the class below has a method named list


def initial_workers(spec: DeploySpec) -> int:
    """Workers to start at deploy: none for serverless (the first request starts one)."""
    if spec.compute.serverless:
        return spec.compute.replicas
    lo, _ = spec.compute.replica_range
    return max(spec.compute.replicas, lo, 1)


def canary_weights(current: dict[str, int], new: str, share: int) -> dict[str, int]:
    """Weights after adding ``new`` at ``share`` %: the others keep their relative shares of
    the rest (largest-remainder rounding, so the total is exactly 100)."""
    others = {k: w for k, w in current.items() if k != new}
    if not others:
        return {new: 100}
    rest = 100 - share
    total = sum(others.values())
    exact = {k: (rest * w / total if total else rest / len(others)) for k, w in others.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    short = rest - sum(out.values())
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[:short]:
        out[k] += 1
    out[new] = share
    return out


def _not_found(name: str) -> NotFound:
    return NotFound(f"endpoint {name} does not exist", provider="local")


class Endpoints:
    """Every endpoint operation on one state directory."""

    def __init__(self, db: StateDB, config: LocalConfig, hooks: NoFaults):
        self.db, self.config, self.hooks = db, config, hooks
        self.bg: list[threading.Thread] = []
        # long enough for a deploy in another process to finish and drain
        self.lock_timeout = 2 * config.ready_timeout_s + config.drain_s + 30

    def _dir(self, endpoint: str) -> Path:
        return self.db.state_dir / "endpoints" / endpoint

    # -- read -------------------------------------------------------------------------------

    def get(self, name: str) -> Endpoint:
        """The endpoint with its variants and health; NotFound when missing."""
        row = self.db.one("SELECT * FROM endpoints WHERE name = ?", (name,))
        if row is None:
            raise _not_found(name)
        return self.endpoint_of(row)

    def list(self) -> list[Endpoint]:
        """Every endpoint of the state directory."""
        return [self.endpoint_of(r) for r in self.db.all("SELECT * FROM endpoints ORDER BY name")]

    def token(self, name: str) -> str:
        """The endpoint's bearer token."""
        row = self.db.one("SELECT token FROM endpoints WHERE name = ?", (name,))
        if row is None:
            raise _not_found(name)
        return str(row["token"])

    def endpoint_of(self, row: Any) -> Endpoint:
        """The Endpoint of a row: dead workers make their variant (and a READY endpoint)
        FAILED until the agent has replaced them."""
        name, status, message = row["name"], EndpointStatus(row["status"]), row["message"]
        variants, dead = [], []
        for v in self.db.all(
            "SELECT * FROM variants WHERE endpoint = ? ORDER BY created_at, name", (name,)
        ):
            found = workers.refs(self.db, "endpoint = ? AND variant = ?", (name, v["name"]))
            live = [w for w, ref in found if ref.alive()]
            gone = [w for w, ref in found if not ref.alive()]
            v_status = EndpointStatus.READY if status is EndpointStatus.READY else status
            if gone or (not live and v["min_replicas"] > 0):  # serverless may scale to zero
                v_status = EndpointStatus.FAILED
                dead += [f"{v['name']} (pid {w['pid']})" for w in gone]
                if not found:
                    dead.append(f"{v['name']} (no worker)")
            variants.append(
                Variant(
                    name=v["name"],
                    model_name=v["model_name"],
                    model_version=v["model_version"],
                    weight=v["weight"],
                    instance_type="local",
                    replicas=len(live),
                    min_replicas=v["min_replicas"],
                    max_replicas=v["max_replicas"],
                    status=v_status,
                    url=f"http://{workers.host_url(self.config)}:{live[0]['port']}"
                    if live
                    else None,
                    shadow=v["shadow"],
                )
            )
        stale = now() - row["updated_at"] > 2 * self.config.ready_timeout_s
        if status in (EndpointStatus.CREATING, EndpointStatus.UPDATING) and stale:
            status = EndpointStatus.FAILED
            message = (
                "the deploy did not finish (the process running it may have died); "
                "deploy again or delete it"
            )
        if status is EndpointStatus.READY and dead:
            status = EndpointStatus.FAILED
            message = (
                f"worker process exited: {', '.join(dead)}; the endpoint's agent restarts it "
                "within seconds (or call restart_endpoint())"
            )
        return Endpoint(
            name=name,
            provider="local",
            status=status,
            variants=variants,
            url=None,
            created_at=to_datetime(row["created_at"]),
            updated_at=to_datetime(row["updated_at"]),
            message=message,
            tags=loads(row["tags"]) or {},
            raw=dict(row),
        )

    # -- deploy -----------------------------------------------------------------------------

    def deploy(self, spec: DeploySpec, *, wait: bool, timeout: float | None) -> Endpoint:
        """Create or update ``spec.endpoint`` under its lock (see :meth:`LocalProvider.deploy`)."""
        lock = EndpointLock(self.db.state_dir, spec.endpoint)
        lock.acquire(self.lock_timeout)
        if wait:
            try:
                self._deploy(spec, timeout)
            finally:
                lock.release()
            return self.get(spec.endpoint)
        try:
            created = self._ensure_row(spec)
        except BaseException:
            lock.release()
            raise
        thread = threading.Thread(
            target=self._deploy_in_background,
            args=(spec, timeout, created, lock),
            name=f"deploy-{spec.endpoint}",
        )
        thread.start()
        self.bg.append(thread)
        return self.get(spec.endpoint)

    def _deploy_in_background(
        self, spec: DeploySpec, timeout: float | None, created: bool, lock: EndpointLock
    ) -> None:
        # the outcome is visible in the endpoint's state; there is no caller to raise to
        try:
            with contextlib.suppress(CloudServeError):
                self._deploy(spec, timeout, created)
        finally:
            lock.release()

    def _spec_hash(self, spec: DeploySpec) -> str:
        assert spec.model.artifact is not None
        model = spec.model.model_dump_json(exclude={"sample_input"})
        compute = spec.compute.model_dump_json()
        content = model_registry.content_hash(Path(spec.model.artifact).expanduser())
        return hashlib.sha256(f"{model}|{compute}|{content}".encode()).hexdigest()

    def _capture_rate(self, spec: DeploySpec) -> tuple[float, bool]:
        if spec.data_capture is not None:
            dc = spec.data_capture
            return (dc.sampling_rate if dc.enabled else 0.0), dc.capture_responses
        return self.config.capture_sampling, True

    def _ensure_row(self, spec: DeploySpec) -> bool:
        """Create the endpoint row (CREATING) or mark it UPDATING; True when created here."""
        rate, responses = self._capture_rate(spec)
        with self.db.tx() as tx:
            row = tx.execute("SELECT status FROM endpoints WHERE name = ?", (spec.endpoint,))
            if row.fetchone() is None:
                tx.execute(
                    "INSERT INTO endpoints(name, status, token, capture_rate, capture_responses,"
                    " tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.endpoint,
                        EndpointStatus.CREATING.value,
                        secrets.token_urlsafe(24),
                        rate,
                        int(responses),
                        dumps(spec.tags),
                        now(),
                        now(),
                    ),
                )
                return True
            tx.execute(
                "UPDATE endpoints SET status = ?, updated_at = ? WHERE name = ?",
                (EndpointStatus.UPDATING.value, now(), spec.endpoint),
            )
            if spec.data_capture is not None:  # else the endpoint keeps its capture setting
                tx.execute(
                    "UPDATE endpoints SET capture_rate = ?, capture_responses = ? WHERE name = ?",
                    (rate, int(responses), spec.endpoint),
                )
            return False

    def _deploy(self, spec: DeploySpec, timeout: float | None, created: bool | None = None) -> None:
        name, vname = spec.endpoint, spec.variant_name
        if spec.shadow:
            live = self.db.one(
                "SELECT 1 FROM variants WHERE endpoint = ? AND name != ? AND weight > 0",
                (name, vname),
            )
            if live is None:
                raise InvalidRequest(
                    f"a shadow mirrors requests of a live variant; {name} has none to mirror",
                    provider="local",
                )
        spec_hash = self._spec_hash(spec)
        existing = self.db.one(
            "SELECT * FROM variants WHERE endpoint = ? AND name = ?", (name, vname)
        )
        if existing is not None and existing["spec_hash"] == spec_hash:
            if spec.data_capture is not None:
                rate, responses = self._capture_rate(spec)
                self.db.run(
                    "UPDATE endpoints SET capture_rate = ?, capture_responses = ? WHERE name = ?",
                    (rate, int(responses), name),
                )
            self._reuse_variant(spec)
            agent.ensure_agent(self.db, self.config, name)
            return
        if created is None:  # else deploy(wait=False) made the row already
            created = self._ensure_row(spec)
        started: builtins.list[ProcessRef] = []
        model_dir = self._dir(name) / f"{vname}-{spec_hash[:12]}"
        try:
            msg = self.hooks.take(faults.FAIL_OPERATION)
            if msg is not None:
                raise OperationFailed(f"deploy of {name} failed: {msg}", provider="local")
            model_registry.stage(spec.model, model_dir / "model")
            fresh = workers.start_workers(
                self.db,
                self.config,
                name,
                vname,
                model_dir,
                self.token(name),
                initial_workers(spec),
                started,
                timeout=timeout,
                max_queue=spec.compute.max_concurrency,
            )
            msg = self.hooks.take(faults.FAIL_AFTER_CREATE)
            if msg is not None:
                raise OperationFailed(
                    f"deploy of {name} failed after creating workers: {msg}", provider="local"
                )
            old = self._switch(spec, spec_hash, model_dir, fresh)
        except BaseException as exc:
            self._undo(spec, created, started, model_dir)
            if isinstance(exc, Exception) and not isinstance(exc, CloudServeError):
                raise OperationFailed(f"deploy of {name} failed: {exc}", provider="local") from exc
            raise
        self._drain(old)
        agent.ensure_agent(self.db, self.config, name)

    def _switch(
        self,
        spec: DeploySpec,
        spec_hash: str,
        model_dir: Path,
        fresh: builtins.list[workers.Started],
    ) -> Refs:
        """Atomically put the new variant in service; returns the workers to drain."""
        name, vname = spec.endpoint, spec.variant_name
        lo, hi = spec.compute.replica_range
        with self.db.tx() as tx:
            old = workers.refs(self.db, "endpoint = ? AND variant = ?", (name, vname))
            tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant = ?", (name, vname))
            tx.execute("DELETE FROM variants WHERE endpoint = ? AND name = ?", (name, vname))
            current = {
                r["name"]: r["weight"]
                for r in tx.execute("SELECT name, weight FROM variants WHERE endpoint = ?", (name,))
            }
            if spec.traffic == 100 or not current:
                for other in current:
                    old += workers.refs(self.db, "endpoint = ? AND variant = ?", (name, other))
                tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant != ?", (name, vname))
                tx.execute("DELETE FROM variants WHERE endpoint = ?", (name,))
                weights = {vname: 100}
            else:
                weights = canary_weights(current, vname, spec.traffic)
            tx.execute(
                "INSERT INTO variants(endpoint, name, model_name, model_version, model_dir, weight,"
                " spec, spec_hash, replicas, min_replicas, max_replicas, autoscale_target,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    vname,
                    spec.model.name,
                    spec.model.version,
                    str(model_dir),
                    weights[vname],
                    spec.model_dump_json(),
                    spec_hash,
                    len(fresh),
                    lo,
                    max(hi, 1),
                    spec.compute.autoscale_target,
                    now(),
                ),
            )
            for other, w in weights.items():
                tx.execute(
                    "UPDATE variants SET weight = ? WHERE endpoint = ? AND name = ?",
                    (w, name, other),
                )
            tx.execute(
                "UPDATE variants SET shadow = ? WHERE endpoint = ? AND name = ?",
                (spec.shadow, name, vname),
            )
            workers.insert_workers(tx, name, vname, fresh)
            tx.execute(
                "UPDATE endpoints SET status = ?, message = NULL, updated_at = ? WHERE name = ?",
                (EndpointStatus.READY.value, now(), name),
            )
        return old

    def _drain(self, old: Refs) -> None:
        """Stop workers taken out of service, after callers that already routed to them finish.

        Requests already sent complete (the server drains on SIGTERM); a caller that read the
        old routing table just before the switch and finds the worker gone re-routes.
        """
        if not old:
            return
        time.sleep(self.config.drain_s)
        supervisor.stop_all([ref for _, ref in old])
        dirs = {Path(w["log"]).parent.parent for w, _ in old}
        live_dirs = {r["model_dir"] for r in self.db.all("SELECT model_dir FROM variants")}
        for d in dirs:
            if str(d) not in live_dirs:
                shutil.rmtree(d, ignore_errors=True)

    def _undo(
        self, spec: DeploySpec, created: bool, started: builtins.list[ProcessRef], model_dir: Path
    ) -> None:
        """Remove what a failed deploy created (kept when ``keep_on_failure``)."""
        if spec.keep_on_failure:
            self.db.run(
                "UPDATE endpoints SET status = ?, message = ?, updated_at = ? WHERE name = ?",
                (
                    EndpointStatus.FAILED.value,
                    "deploy failed (kept for debugging)",
                    now(),
                    spec.endpoint,
                ),
            )
            return
        supervisor.stop_all(started, grace_s=5)
        shutil.rmtree(model_dir, ignore_errors=True)
        with self.db.tx() as tx:
            tx.execute("DELETE FROM port_leases WHERE endpoint = ?", (spec.endpoint,))
            if created:
                tx.execute("DELETE FROM endpoints WHERE name = ?", (spec.endpoint,))
            else:
                tx.execute(
                    "UPDATE endpoints SET status = ?, updated_at = ? WHERE name = ?",
                    (EndpointStatus.READY.value, now(), spec.endpoint),
                )
        if created:
            shutil.rmtree(self._dir(spec.endpoint), ignore_errors=True)

    def _reuse_variant(self, spec: DeploySpec) -> None:
        """Same model and compute as deployed: restart dead workers, apply the traffic share."""
        name, vname = spec.endpoint, spec.variant_name
        self._restart(name, [vname])
        old: Refs = []
        with self.db.tx() as tx:
            current = {
                r["name"]: r["weight"]
                for r in tx.execute("SELECT name, weight FROM variants WHERE endpoint = ?", (name,))
            }
            others = [v for v in current if v != vname]
            if spec.traffic == 100 and not others and current.get(vname) == 100:
                return
            if spec.traffic == 100:
                for other in others:
                    old += workers.refs(self.db, "endpoint = ? AND variant = ?", (name, other))
                tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant != ?", (name, vname))
                tx.execute("DELETE FROM variants WHERE endpoint = ? AND name != ?", (name, vname))
                weights = {vname: 100}
            else:
                weights = canary_weights(current, vname, spec.traffic)
            for v, w in weights.items():
                tx.execute(
                    "UPDATE variants SET weight = ? WHERE endpoint = ? AND name = ?", (w, name, v)
                )
            tx.execute(
                "UPDATE variants SET shadow = ? WHERE endpoint = ? AND name = ?",
                (spec.shadow, name, vname),
            )
            tx.execute("UPDATE endpoints SET updated_at = ? WHERE name = ?", (now(), name))
        self._drain(old)

    # -- restart, traffic, delete ------------------------------------------------------------

    def _restart(self, name: str, variants: builtins.list[str] | None) -> None:
        if self.db.one("SELECT 1 FROM endpoints WHERE name = ?", (name,)) is None:
            raise _not_found(name)
        for v in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (name,)):
            if variants is None or v["name"] in variants:
                workers.replace_dead(self.db, self.config, name, v)
        self.db.run(
            "UPDATE endpoints SET status = ?, message = NULL, updated_at = ? WHERE name = ?",
            (EndpointStatus.READY.value, now(), name),
        )

    def restart(self, name: str, variants: builtins.list[str] | None = None) -> Endpoint:
        """Replace the dead workers of an endpoint (all variants, or those named) now."""
        with endpoint_lock(self.db.state_dir, name, timeout=self.lock_timeout):
            self._restart(name, variants)
        agent.ensure_agent(self.db, self.config, name)
        return self.get(name)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Set the split; every variant not named gets 0."""
        with self.db.tx() as tx:
            if tx.execute("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)).fetchone() is None:
                raise _not_found(endpoint)
            names = {
                r["name"]
                for r in tx.execute("SELECT name FROM variants WHERE endpoint = ?", (endpoint,))
            }
            unknown = sorted(set(weights) - names)
            if unknown:
                raise InvalidRequest(
                    f"endpoint {endpoint} has no variant {', '.join(unknown)} "
                    f"(variants: {', '.join(sorted(names))})",
                    provider="local",
                )
            if sum(weights.values()) != 100:
                raise InvalidRequest("traffic weights must sum to 100", provider="local")
            for v in names:
                tx.execute(
                    "UPDATE variants SET weight = ? WHERE endpoint = ? AND name = ?",
                    (weights.get(v, 0), endpoint, v),
                )
            # a variant that now answers callers is no longer a shadow
            tx.execute(
                "UPDATE variants SET shadow = 0 WHERE endpoint = ? AND weight > 0", (endpoint,)
            )
            tx.execute("UPDATE endpoints SET updated_at = ? WHERE name = ?", (now(), endpoint))
        return self.get(endpoint)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Stop a variant that takes no traffic and remove it from the endpoint."""
        with endpoint_lock(self.db.state_dir, endpoint, timeout=self.lock_timeout):
            row = self.db.one(
                "SELECT weight FROM variants WHERE endpoint = ? AND name = ?", (endpoint, variant)
            )
            if row is None:
                return self.get(endpoint)  # NotFound for a missing endpoint; a gone variant is fine
            if row["weight"] > 0:
                raise InvalidRequest(
                    f"variant {variant} still takes {row['weight']}% of {endpoint}'s traffic;"
                    " set_traffic it to 0 first",
                    provider="local",
                )
            params = (endpoint, variant)
            refs = [ref for _, ref in workers.refs(self.db, "endpoint = ? AND variant = ?", params)]
            with self.db.tx() as tx:
                tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant = ?", params)
                tx.execute("DELETE FROM variants WHERE endpoint = ? AND name = ?", params)
                tx.execute("UPDATE endpoints SET updated_at = ? WHERE name = ?", (now(), endpoint))
            supervisor.stop_all(refs, grace_s=10)
        return self.get(endpoint)

    def delete(self, name: str, *, wait: bool) -> None:
        """Stop the endpoint's processes (its orphans included) and remove its state."""
        with endpoint_lock(self.db.state_dir, name, timeout=self.lock_timeout):
            row = self.db.one("SELECT * FROM endpoints WHERE name = ?", (name,))
            refs = [ref for _, ref in workers.refs(self.db, "endpoint = ?", (name,))]
            if row is not None and row["agent_pid"]:
                refs.append(ProcessRef(row["agent_pid"], row["agent_ctime"]))
            with self.db.tx() as tx:
                for table in (
                    "workers",
                    "variants",
                    "async_requests",
                    "invocations",
                    "captures",
                    "rollouts",
                ):
                    tx.execute(f"DELETE FROM {table} WHERE endpoint = ?", (name,))
                tx.execute("DELETE FROM port_leases WHERE endpoint = ?", (name,))
                tx.execute("DELETE FROM endpoints WHERE name = ?", (name,))
            supervisor.stop_all(refs, grace_s=10 if wait else 2)
            workers.sweep(self.db, name, held=True)
            shutil.rmtree(self._dir(name), ignore_errors=True)

    def logs(self, name: str, *, tail: int = 100) -> builtins.list[str]:
        """The last ``tail`` lines of the endpoint's worker and agent logs, each line prefixed
        with its file."""
        self.get(name)  # NotFound for a missing endpoint
        lines: builtins.list[str] = []
        for log in sorted(self._dir(name).rglob("*.log")):
            text = log.read_text(encoding="utf-8", errors="replace").splitlines()
            lines += [f"{log.name}: {line}" for line in text[-tail:]]
        return lines[-tail:]

    # -- rollouts and plans ------------------------------------------------------------------

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout recorded in the store with ``endpoint``."""
        row = self.db.one("SELECT state FROM rollouts WHERE endpoint = ?", (endpoint,))
        return None if row is None else loads(row["state"])

    def put_rollout_state(self, endpoint: str, state: dict[str, Any] | None) -> None:
        """Record the rollout with the endpoint (``None`` clears it)."""
        with self.db.tx() as tx:
            if state is None:
                tx.execute("DELETE FROM rollouts WHERE endpoint = ?", (endpoint,))
            else:
                tx.execute(
                    "INSERT OR REPLACE INTO rollouts(endpoint, state, updated_at) VALUES (?, ?, ?)",
                    (endpoint, dumps(state), now()),
                )

    def plan(self, spec: DeploySpec) -> builtins.list[PlannedCall]:
        """What ``deploy(spec)`` would do on this machine, doing none of it."""
        count = initial_workers(spec)
        return [
            PlannedCall(
                service="local",
                operation="stage_artifact",
                params={"artifact": spec.model.artifact},
                creates=f"{self._dir(spec.endpoint)}/{spec.variant_name}-<hash>/model",
            ),
            PlannedCall(
                service="local",
                operation="start_workers",
                params={"count": count, "host": self.config.host},
                creates=f"{count} × python -m cloudserve.serving on a free port",
            ),
            PlannedCall(
                service="local",
                operation="switch_traffic",
                params={"variant": spec.variant_name, "traffic": spec.traffic},
                creates=f"endpoint {spec.endpoint} in {self.db.path}",
            ),
            PlannedCall(
                service="local",
                operation="start_agent",
                params={"endpoint": spec.endpoint},
                creates="python -m cloudserve.local.agent (restarts workers, autoscales)",
            ),
        ]
