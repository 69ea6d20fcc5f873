"""The local provider: every cloudserve operation, for real, on this machine.

An endpoint is a set of serving-runtime worker processes on loopback ports; its state lives in
the SQLite database of the state directory (see :mod:`cloudserve.local.state`), so any process
sees it. Requests are routed by :mod:`cloudserve.local.router` straight from the caller to a
worker of the chosen variant. Batch and tuning jobs run as detached runner processes; queued
predictions and autoscaling are handled by one agent process per endpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cloudserve.errors import (
    CloudServeError,
    ErrorTable,
    InvalidRequest,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    Throttled,
)
from cloudserve.local import monitor, registry, supervisor
from cloudserve.local.config import LocalConfig
from cloudserve.local.router import ROUTING_KEY, RoundRobin, pick_variant
from cloudserve.local.shadow import Mirror
from cloudserve.local.state import StateDB, dumps, loads, now, to_datetime
from cloudserve.local.supervisor import ProcessRef
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.resources import (
    AsyncPrediction,
    BatchJob,
    Endpoint,
    EndpointStatus,
    JobStatus,
    MetricsReport,
    ModelVersion,
    PlannedCall,
    Prediction,
    ShadowPair,
    TuningJob,
    Variant,
)
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.waiting import ProgressCallback

__all__ = ["LocalProvider"]

T = TypeVar("T")

# Fault kinds of the test hook (armed with StateDB.set_fault by the conformance harness).
FAULT_THROTTLE = "throttle"
FAULT_UNAVAILABLE = "unavailable"
FAULT_FAIL_OPERATION = "fail_operation"
FAULT_FAIL_AFTER_CREATE = "fail_after_create"


class WorkerAnswer(Exception):
    """A serving worker's non-200 answer: the local provider's native error."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _extract(exc: BaseException) -> tuple[int, str, float | None] | None:
    if isinstance(exc, WorkerAnswer):
        return exc.status, str(exc), exc.retry_after
    return None


# Every worker status means what the core's HTTP table says: no overrides.
ERROR_TABLE = ErrorTable({}, extract=_extract)


def _error_message(response: httpx.Response) -> str:
    from cloudserve.codecs import error_message

    return error_message(response.content, response.reason_phrase)


class LocalProvider(Provider):
    """Endpoints, batch, tuning, monitoring and a registry on this machine.

    State is kept in ``config.state_dir`` (default ``.cloudserve/``, or
    ``$CLOUDSERVE_STATE_DIR``); endpoints keep running after the deploying process exits and
    are stopped by ``delete_endpoint``.
    """

    name = "local"
    config_cls = LocalConfig
    error_table = ERROR_TABLE
    capabilities = frozenset(Capability) - {Capability.PRICING_REFRESH}
    min_metrics_window_s = 1.0  # every request is recorded at once in the state store
    unsupported = {
        Capability.PRICING_REFRESH: (
            "the local provider runs on a machine you already have; it has no price list to refresh"
        ),
    }

    def __init__(self, config: ProviderConfig, *, target: str | None = None):
        if not isinstance(config, LocalConfig):
            config = LocalConfig.model_validate(config.model_dump())
        # runners and agents get the absolute state directory, whatever their working directory
        config = config.model_copy(update={"state_dir": config.state_dir.expanduser().resolve()})
        super().__init__(config, target=target)
        self.config: LocalConfig = config
        self.state_dir = config.state_dir
        self.db = StateDB(self.state_dir)
        self.recorder = monitor.Recorder(self.db, retention_s=config.metrics_retention_s)
        self.mirror = Mirror(self.db, self._send)
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.request_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._rr = RoundRobin()
        self._cold_lock = threading.Lock()
        self._bg: list[threading.Thread] = []

    # -- plumbing ---------------------------------------------------------------------------

    def _service(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` as a retry-safe request (faults armed by tests are checked first)."""

        def attempt() -> T:
            self._check_faults()
            return fn(*args, **kwargs)

        return self.call(attempt)

    def _check_faults(self) -> None:
        msg = self.db.take_fault(FAULT_THROTTLE)
        if msg is not None:
            raise Throttled(msg, provider=self.name, code="throttle", retry_after=0.0)
        msg = self.db.take_fault(FAULT_UNAVAILABLE)
        if msg is not None:
            raise ServiceUnavailable(msg, provider=self.name, code="unavailable")

    def _endpoint_dir(self, endpoint: str) -> Path:
        return self.state_dir / "endpoints" / endpoint

    def _worker_refs(self, where: str, params: tuple[Any, ...]) -> list[tuple[Any, ProcessRef]]:
        rows = self.db.all(f"SELECT * FROM workers WHERE {where}", params)
        return [(r, ProcessRef(r["pid"], r["ctime"])) for r in rows]

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # -- validation ---------------------------------------------------------------------------

    def validate(self, spec: Any) -> None:
        """Reject what the local provider cannot honour (accelerators, cloud-only sizes …)."""
        super().validate(spec)
        compute = getattr(spec, "compute", None)
        if compute is not None:
            from cloudserve.sizes import resolve_instance

            if compute.instance_type not in (None, "local"):
                raise InvalidRequest(
                    f"instance_type '{compute.instance_type}' is a cloud machine; the local "
                    "provider runs on this machine (use a size such as cpu.small)",
                    provider=self.name,
                )
            if compute.serverless_memory_mb is not None:
                raise InvalidRequest(
                    "serverless_memory_mb: local serverless workers run without a memory cap",
                    provider=self.name,
                )
            if compute.accelerator or compute.accelerator_count:
                raise InvalidRequest(
                    "the local provider does not attach accelerators", provider=self.name
                )
            resolve_instance(self.name, compute.size or "cpu.small", compute.instance_type)
        model = getattr(spec, "model", None)
        if isinstance(model, ModelSpec) and not model.is_local:
            raise InvalidRequest(
                f"the local provider serves local artifacts; {model.artifact!r} is remote",
                provider=self.name,
            )
        if isinstance(model, ModelSpec) and model.artifact is None:
            raise InvalidRequest(
                "the local provider runs the cloudserve serving runtime on an artifact; "
                "a container image alone cannot be served",
                provider=self.name,
            )

    # -- endpoints: read ----------------------------------------------------------------------

    def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint with its variants and health (workers that died make it FAILED)."""
        return self._service(self._read_endpoint, name)

    def _read_endpoint(self, name: str) -> Endpoint:
        row = self.db.one("SELECT * FROM endpoints WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"endpoint {name} does not exist", provider=self.name)
        return self._endpoint_of(row)

    def _endpoint_of(self, row: Any) -> Endpoint:
        name = row["name"]
        status = EndpointStatus(row["status"])
        message = row["message"]
        variants = []
        dead: list[str] = []
        for v in self.db.all(
            "SELECT * FROM variants WHERE endpoint = ? ORDER BY created_at, name", (name,)
        ):
            workers = self._worker_refs("endpoint = ? AND variant = ?", (name, v["name"]))
            live = [(w, ref) for w, ref in workers if ref.alive()]
            gone = [w for w, ref in workers if not ref.alive()]
            v_status = EndpointStatus.READY if status is EndpointStatus.READY else status
            if gone or (not live and v["min_replicas"] > 0):  # serverless may scale to zero
                v_status = EndpointStatus.FAILED
                dead.extend(f"{v['name']} (pid {w['pid']})" for w in gone)
                if not workers:
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
                    url=f"http://{self._host_url()}:{live[0][0]['port']}" if live else None,
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
                "worker process exited: "
                + ", ".join(dead)
                + ("; redeploy or restart_endpoint() to restart, or delete it")
            )
        return Endpoint(
            name=name,
            provider=self.name,
            status=status,
            variants=variants,
            url=None,
            created_at=to_datetime(row["created_at"]),
            updated_at=to_datetime(row["updated_at"]),
            message=message,
            tags=loads(row["tags"]) or {},
            raw=dict(row),
        )

    def _host_url(self) -> str:
        return f"[{self.config.host}]" if ":" in self.config.host else self.config.host

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint in the state directory, with its health."""

        def read() -> list[Endpoint]:
            rows = self.db.all("SELECT * FROM endpoints ORDER BY name")
            return [self._endpoint_of(r) for r in rows]

        return self._service(read)

    # -- endpoints: deploy --------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        """Create or update ``spec.endpoint`` (blue/green at ``traffic=100``, else a canary).

        With ``wait=False`` the deploy continues in a background thread of this process and
        the endpoint is returned in CREATING/UPDATING state.
        """
        self.call(self._check_faults)
        if wait:
            self._deploy(spec, timeout)
            return self.get_endpoint(spec.endpoint)
        created = self._ensure_row(spec)
        thread = threading.Thread(
            target=self._deploy_quietly,
            args=(spec, timeout, created),
            name=f"deploy-{spec.endpoint}",
        )
        thread.start()
        self._bg.append(thread)
        return self.get_endpoint(spec.endpoint)

    def _deploy_quietly(self, spec: DeploySpec, timeout: float | None, created: bool) -> None:
        # the outcome is visible in the endpoint's state; there is no caller to raise to
        with contextlib.suppress(CloudServeError):
            self._deploy(spec, timeout, created)

    def _spec_hash(self, spec: DeploySpec) -> str:
        assert spec.model.artifact is not None
        model = spec.model.model_dump_json(exclude={"sample_input"})
        compute = spec.compute.model_dump_json()
        content = registry.content_hash(Path(spec.model.artifact).expanduser())
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
                    provider=self.name,
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
            return
        if created is None:  # else deploy(wait=False) made the row already
            created = self._ensure_row(spec)
        started: list[ProcessRef] = []
        model_dir = self._endpoint_dir(name) / f"{vname}-{spec_hash[:12]}"
        try:
            msg = self.db.take_fault(FAULT_FAIL_OPERATION)
            if msg is not None:
                raise OperationFailed(f"deploy of {name} failed: {msg}", provider=self.name)
            registry.stage(spec.model, model_dir / "model")
            token = self._token(name)
            lo, hi = spec.compute.replica_range
            workers = self._start_workers(
                name,
                vname,
                model_dir,
                token,
                _initial_workers(spec),
                timeout,
                started,
                spec.compute.max_concurrency,
            )
            msg = self.db.take_fault(FAULT_FAIL_AFTER_CREATE)
            if msg is not None:
                raise OperationFailed(
                    f"deploy of {name} failed after creating workers: {msg}", provider=self.name
                )
            old = self._switch(spec, spec_hash, model_dir, workers, lo, max(hi, 1))
        except BaseException as exc:
            self._undo(spec, created, started, model_dir)
            if isinstance(exc, CloudServeError):
                raise
            if isinstance(exc, Exception):
                raise OperationFailed(
                    f"deploy of {name} failed: {exc}", provider=self.name
                ) from exc
            raise
        self._drain(old)
        if spec.compute.autoscaling or spec.compute.serverless:
            self._ensure_agent(name)

    def _token(self, endpoint: str) -> str:
        row = self.db.one("SELECT token FROM endpoints WHERE name = ?", (endpoint,))
        if row is None:
            raise NotFound(f"endpoint {endpoint} does not exist", provider=self.name)
        return str(row["token"])

    def _start_workers(
        self,
        endpoint: str,
        variant: str,
        model_dir: Path,
        token: str,
        count: int,
        timeout: float | None,
        started: list[ProcessRef],
        max_queue: int | None = None,
    ) -> list[tuple[ProcessRef, int, Path]]:
        """Start ``count`` serving workers and wait until each answers /ping.

        ``max_queue`` (``Compute.max_concurrency``) caps the requests a worker holds at once;
        past it the worker answers 429.
        """
        out = []
        for _ in range(count):
            port = supervisor.free_port(self.config.host, self.config.port_range)
            log = model_dir / "logs" / f"worker-{port}-{uuid.uuid4().hex[:6]}.log"
            args = ["--model-dir", str(model_dir / "model"), "--host", self.config.host]
            args += ["--port", str(port)]
            if max_queue is not None:
                args += ["--max-queue", str(max_queue)]
            if self.config.server_batch_size:
                args += ["--batch-size", str(self.config.server_batch_size)]
                args += ["--batch-wait-ms", str(self.config.server_batch_wait_ms)]
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
            out.append((ref, port, log))
        for ref, port, log in out:
            supervisor.wait_ready(
                ref,
                f"http://{self._host_url()}:{port}/ping",
                log=log,
                timeout=timeout or self.config.ready_timeout_s,
                headers=self._headers(token),
            )
        return out

    def _switch(
        self,
        spec: DeploySpec,
        spec_hash: str,
        model_dir: Path,
        workers: list[tuple[ProcessRef, int, Path]],
        lo: int,
        hi: int,
    ) -> list[tuple[Any, ProcessRef]]:
        """Atomically put the new variant in service; returns the workers to drain."""
        name, vname = spec.endpoint, spec.variant_name
        with self.db.tx() as tx:
            old = self._worker_refs("endpoint = ? AND variant = ?", (name, vname))
            tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant = ?", (name, vname))
            tx.execute("DELETE FROM variants WHERE endpoint = ? AND name = ?", (name, vname))
            current = {
                r["name"]: r["weight"]
                for r in tx.execute("SELECT name, weight FROM variants WHERE endpoint = ?", (name,))
            }
            if spec.traffic == 100 or not current:
                for other in current:
                    old += self._worker_refs("endpoint = ? AND variant = ?", (name, other))
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
                    len(workers),
                    lo,
                    hi,
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
            for ref, port, log in workers:
                self._insert_worker(tx, name, vname, ref, port, log)
            tx.execute(
                "UPDATE endpoints SET status = ?, message = NULL, updated_at = ? WHERE name = ?",
                (EndpointStatus.READY.value, now(), name),
            )
        return old

    @staticmethod
    def _insert_worker(
        tx: Any, endpoint: str, variant: str, ref: ProcessRef, port: int, log: Path
    ) -> None:
        tx.execute(
            "INSERT INTO workers(endpoint, variant, pid, ctime, port, log, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (endpoint, variant, ref.pid, ref.ctime, port, str(log), now()),
        )

    def _drain(self, old: list[tuple[Any, ProcessRef]]) -> None:
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
        self, spec: DeploySpec, created: bool, started: list[ProcessRef], model_dir: Path
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
            if created:
                tx.execute("DELETE FROM endpoints WHERE name = ?", (spec.endpoint,))
            else:
                tx.execute(
                    "UPDATE endpoints SET status = ?, updated_at = ? WHERE name = ?",
                    (EndpointStatus.READY.value, now(), spec.endpoint),
                )
        if created:
            shutil.rmtree(self._endpoint_dir(spec.endpoint), ignore_errors=True)

    def _reuse_variant(self, spec: DeploySpec) -> None:
        """Same model and compute as deployed: restart dead workers, apply the traffic share."""
        name, vname = spec.endpoint, spec.variant_name
        self.restart_endpoint(name, variants=[vname])
        with self.db.tx() as tx:
            current = {
                r["name"]: r["weight"]
                for r in tx.execute("SELECT name, weight FROM variants WHERE endpoint = ?", (name,))
            }
            others = [v for v in current if v != vname]
            if spec.traffic == 100 and not others and current.get(vname) == 100:
                return
        old: list[tuple[Any, ProcessRef]] = []
        with self.db.tx() as tx:
            if spec.traffic == 100:
                for other in others:
                    old += self._worker_refs("endpoint = ? AND variant = ?", (name, other))
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

    def restart_endpoint(self, name: str, *, variants: list[str] | None = None) -> Endpoint:
        """Replace the dead workers of an endpoint (all variants, or those named)."""
        ep_row = self.db.one("SELECT * FROM endpoints WHERE name = ?", (name,))
        if ep_row is None:
            raise NotFound(f"endpoint {name} does not exist", provider=self.name)
        for v in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (name,)):
            if variants is not None and v["name"] not in variants:
                continue
            workers = self._worker_refs("endpoint = ? AND variant = ?", (name, v["name"]))
            dead = [w for w, ref in workers if not ref.alive()]
            missing = max(v["replicas"], v["min_replicas"]) - (len(workers) - len(dead))
            if not dead and missing <= 0:
                continue
            started: list[ProcessRef] = []
            try:
                fresh = self._start_workers(
                    name,
                    v["name"],
                    Path(v["model_dir"]),
                    ep_row["token"],
                    missing,
                    None,
                    started,
                    max_queue_of(v),
                )
            except BaseException:
                supervisor.stop_all(started, grace_s=5)
                raise
            with self.db.tx() as tx:
                for w in dead:
                    tx.execute("DELETE FROM workers WHERE id = ?", (w["id"],))
                for ref, port, log in fresh:
                    self._insert_worker(tx, name, v["name"], ref, port, log)
        self.db.run(
            "UPDATE endpoints SET status = ?, message = NULL, updated_at = ? WHERE name = ?",
            (EndpointStatus.READY.value, now(), name),
        )
        return self.get_endpoint(name)

    # -- endpoints: traffic and delete ----------------------------------------------------------

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        """Set the split; every variant not named gets 0."""

        def apply() -> None:
            with self.db.tx() as tx:
                if (
                    tx.execute("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)).fetchone()
                    is None
                ):
                    raise NotFound(f"endpoint {endpoint} does not exist", provider=self.name)
                names = {
                    r["name"]
                    for r in tx.execute("SELECT name FROM variants WHERE endpoint = ?", (endpoint,))
                }
                unknown = sorted(set(weights) - names)
                if unknown:
                    raise InvalidRequest(
                        f"endpoint {endpoint} has no variant {', '.join(unknown)} "
                        f"(variants: {', '.join(sorted(names))})",
                        provider=self.name,
                    )
                if sum(weights.values()) != 100:
                    raise InvalidRequest("traffic weights must sum to 100", provider=self.name)
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

        self._service(apply)
        return self.get_endpoint(endpoint)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        """Stop a variant that takes no traffic and remove it from the endpoint."""
        row = self.db.one(
            "SELECT weight FROM variants WHERE endpoint = ? AND name = ?", (endpoint, variant)
        )
        if row is None:
            self.get_endpoint(endpoint)  # NotFound for a missing endpoint
            return self.get_endpoint(endpoint)  # a missing variant is already gone
        if row["weight"] > 0:
            raise InvalidRequest(
                f"variant {variant} still takes {row['weight']}% of {endpoint}'s traffic;"
                " set_traffic it to 0 first",
                provider=self.name,
            )
        where = ("endpoint = ? AND variant = ?", (endpoint, variant))
        refs = [ref for _, ref in self._worker_refs(*where)]
        with self.db.tx() as tx:
            tx.execute("DELETE FROM workers WHERE endpoint = ? AND variant = ?", where[1])
            tx.execute("DELETE FROM variants WHERE endpoint = ? AND name = ?", where[1])
            tx.execute("UPDATE endpoints SET updated_at = ? WHERE name = ?", (now(), endpoint))
        supervisor.stop_all(refs, grace_s=10)
        return self.get_endpoint(endpoint)

    def shadow_pairs(self, endpoint: str, window_s: float) -> list[ShadowPair]:
        """Mirrored requests of the window, each production answer beside its shadow's."""
        self._read_endpoint(endpoint)
        return self.mirror.pairs(endpoint, window_s)

    def get_rollout_state(self, endpoint: str) -> dict[str, Any] | None:
        """The rollout recorded in the state store with ``endpoint``."""
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

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        """Stop the endpoint's processes and remove its state; a missing endpoint is fine."""
        self.call(self._check_faults)
        row = self.db.one("SELECT * FROM endpoints WHERE name = ?", (name,))
        if row is None:
            return
        refs = [ref for _, ref in self._worker_refs("endpoint = ?", (name,))]
        if row["agent_pid"]:
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
            tx.execute("DELETE FROM endpoints WHERE name = ?", (name,))
        supervisor.stop_all(refs, grace_s=10 if wait else 2)
        shutil.rmtree(self._endpoint_dir(name), ignore_errors=True)

    # -- predictions --------------------------------------------------------------------------

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        """Route the rows to a variant (by weight, or sticky by ``parameters['routing_key']``)."""
        params = dict(parameters or {})
        key = params.pop(ROUTING_KEY, None)
        return self._service(self._predict, endpoint, instances, variant, params, key)

    def _routing(self, endpoint: str) -> tuple[Any, dict[str, Any], dict[str, list[Any]]]:
        ep = self.db.one("SELECT * FROM endpoints WHERE name = ?", (endpoint,))
        if ep is None:
            raise NotFound(f"endpoint {endpoint} does not exist", provider=self.name)
        variants = {
            r["name"]: r
            for r in self.db.all("SELECT * FROM variants WHERE endpoint = ?", (endpoint,))
        }
        workers: dict[str, list[Any]] = {}
        for w in self.db.all("SELECT * FROM workers WHERE endpoint = ? ORDER BY id", (endpoint,)):
            workers.setdefault(w["variant"], []).append(w)
        return ep, variants, workers

    def _predict(
        self,
        endpoint: str,
        instances: list[Any],
        variant: str | None,
        params: dict[str, Any],
        key: str | None,
    ) -> Prediction:
        start = time.perf_counter()
        chosen: str | None = variant
        known = False  # only requests to an existing endpoint are recorded
        try:
            for attempt in range(3):
                ep, variants, workers = self._routing(endpoint)
                known = True
                if variant is not None and variant not in variants:
                    raise NotFound(
                        f"endpoint {endpoint} has no variant {variant}", provider=self.name
                    )
                chosen = variant or pick_variant(
                    [(n, v["weight"]) for n, v in variants.items()],
                    None if key is None else str(key),
                )
                if chosen is None:
                    raise ServiceUnavailable(
                        f"endpoint {endpoint} has no variant with traffic", provider=self.name
                    )
                if not workers.get(chosen) and variants[chosen]["min_replicas"] == 0:
                    self._cold_start(endpoint, variants[chosen])
                    continue
                outputs = self._send(ep, chosen, workers.get(chosen, []), instances, params)
                if outputs is not None:
                    break
                time.sleep(0.05 * (attempt + 1))  # the routing table may be mid-switch
            else:
                raise ServiceUnavailable(
                    f"no worker of {endpoint}/{chosen} accepted the connection",
                    provider=self.name,
                )
        except CloudServeError as exc:
            if known:
                self.recorder.invocation(endpoint, chosen, None, len(instances), _error_class(exc))
                if variant is None:
                    self.mirror.maybe(ep, variants, workers, instances, params, chosen, None,
                                      None, f"{type(exc).__name__}: {exc}")  # fmt: skip
            raise
        ms = (time.perf_counter() - start) * 1000
        self.recorder.invocation(endpoint, chosen, ms, len(instances))
        if variant is None:  # a request addressed to one variant is not mirrored
            self.mirror.maybe(ep, variants, workers, instances, params, chosen, outputs, ms, None)
        self.recorder.capture(
            endpoint,
            chosen,
            instances,
            outputs if ep["capture_responses"] else None,
            ep["capture_rate"],
        )
        v = variants[chosen]
        return Prediction(
            outputs=outputs, model_version=v["model_version"], variant=chosen, latency_ms=ms
        )

    def _cold_start(self, endpoint: str, variant: Any) -> None:
        """Start a worker for a variant scaled to zero (serverless), once per process at a time.

        The endpoint's agent stops it again after ``scale_down_after_s`` without traffic.
        """
        with self._cold_lock:
            has = self.db.one(
                "SELECT 1 FROM workers WHERE endpoint = ? AND variant = ?",
                (endpoint, variant["name"]),
            )
            if has is not None:
                return  # another thread (or process) started one meanwhile
            started: list[ProcessRef] = []
            try:
                fresh = self._start_workers(
                    endpoint,
                    variant["name"],
                    Path(variant["model_dir"]),
                    self._token(endpoint),
                    1,
                    None,
                    started,
                    max_queue_of(variant),
                )
            except BaseException:
                supervisor.stop_all(started, grace_s=5)
                raise
            with self.db.tx() as tx:
                for ref, port, log in fresh:
                    self._insert_worker(tx, endpoint, variant["name"], ref, port, log)
        self._ensure_agent(endpoint)

    def _send(
        self,
        ep: Any,
        variant: str,
        workers: list[Any],
        instances: list[Any],
        params: dict[str, Any],
    ) -> list[Any] | None:
        """POST to the variant's workers in round-robin order; None when none accepted."""
        by_id = {w["id"]: w for w in workers}
        body: dict[str, Any] = {"instances": instances}
        if params:
            body["parameters"] = params
        for wid in self._rr.order(ep["name"], variant, list(by_id)):
            w = by_id[wid]
            url = f"http://{self._host_url()}:{w['port']}/invocations"
            try:
                response = self._http.post(
                    url,
                    content=dumps(body),
                    headers={**self._headers(ep["token"]), "Content-Type": "application/json"},
                )
            except (
                httpx.ConnectError,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
            ):
                # the worker is gone or going (drained); predictions are idempotent, so the
                # request is safe to send to the next worker
                continue
            except httpx.TimeoutException as exc:
                raise ServiceUnavailable(
                    f"worker of {ep['name']}/{variant} timed out", provider=self.name
                ) from exc
            return self._outputs(response, len(instances))
        return None

    def _outputs(self, response: httpx.Response, n_rows: int) -> list[Any]:
        status = response.status_code
        if status == 200:
            from cloudserve.codecs import decode_predictions

            outputs = decode_predictions(response.content, response.headers.get("content-type", ""))
            if len(outputs) != n_rows:
                raise ServiceUnavailable(
                    f"worker answered {len(outputs)} outputs for {n_rows} rows", provider=self.name
                )
            return outputs
        retry_after = response.headers.get("retry-after")
        raise self.translate(
            WorkerAnswer(
                status,
                _error_message(response),
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        )

    # -- async ----------------------------------------------------------------------------------

    def predict_async(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        """Queue the rows in the endpoint's persistent queue; its agent process works it."""

        def enqueue() -> str:
            if self.db.one("SELECT 1 FROM endpoints WHERE name = ?", (endpoint,)) is None:
                raise NotFound(f"endpoint {endpoint} does not exist", provider=self.name)
            rid = uuid.uuid4().hex
            self.db.run(
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
            return rid

        rid = self.call(enqueue, retry=False)
        self._ensure_agent(endpoint)
        return AsyncPrediction(request_id=rid, endpoint=endpoint, status=JobStatus.PENDING)

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        """The queued request's state and, once done, its outputs.

        Results are stored until fetched, then kept for an hour so that a repeated fetch works.
        """

        def read() -> AsyncPrediction:
            row = self.db.one(
                "SELECT * FROM async_requests WHERE id = ? AND endpoint = ?", (request_id, endpoint)
            )
            if row is None:
                raise NotFound(
                    f"no queued request {request_id} for endpoint {endpoint}", provider=self.name
                )
            if JobStatus(row["status"]).is_terminal and row["fetched_at"] is None:
                self.db.run(
                    "UPDATE async_requests SET fetched_at = ? WHERE id = ?", (now(), request_id)
                )
            return AsyncPrediction(
                request_id=request_id,
                endpoint=endpoint,
                status=JobStatus(row["status"]),
                outputs=loads(row["outputs"]),
                error=row["error"],
                raw=dict(row),
            )

        return self._service(read)

    def _ensure_agent(self, endpoint: str) -> None:
        """Start the endpoint's agent (queue worker and autoscaler) unless it runs."""
        with self.db.tx() as tx:
            row = tx.execute(
                "SELECT agent_pid, agent_ctime FROM endpoints WHERE name = ?", (endpoint,)
            ).fetchone()
            if row is None:
                return
            if row["agent_pid"] and ProcessRef(row["agent_pid"], row["agent_ctime"]).alive():
                return
            ref = supervisor.spawn(
                supervisor.python_module(
                    "cloudserve.local.agent",
                    "--config",
                    self.config.model_dump_json(),
                    "--endpoint",
                    endpoint,
                ),
                log=self._endpoint_dir(endpoint) / "agent.log",
            )
            tx.execute(
                "UPDATE endpoints SET agent_pid = ?, agent_ctime = ? WHERE name = ?",
                (ref.pid, ref.ctime, endpoint),
            )

    # -- batch and tuning -------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        """Start (or resume) a streamed batch job in a runner process.

        The same spec as an unfinished job whose runner died resumes that job from its last
        finished chunk instead of starting over.
        """
        from cloudserve.local import batch

        self.call(self._check_faults)
        job_id = batch.submit(self.db, self.config, spec)
        return self.get_batch_job(job_id)

    def resume_batch(self, job_id: str) -> BatchJob:
        """Restart a batch job whose runner died, from its last finished chunk."""
        from cloudserve.local import batch

        batch.resume(self.db, self.config, job_id)
        return self.get_batch_job(job_id)

    def get_batch_job(self, job_id: str) -> BatchJob:
        """The job's state; a runner that died makes it FAILED (resumable)."""
        from cloudserve.local import batch

        return self._service(batch.read_job, self.db, job_id)

    def route(self, spec: DeploySpec) -> str:
        """Every local model runs in cloudserve's serving runtime, in local processes."""
        return "local runtime"

    def list_jobs(self) -> list[BatchJob | TuningJob]:
        """Every batch and tuning job in the state, newest first."""
        rows = self.db.all(
            "SELECT id, 'batch' AS kind, created_at FROM batch_jobs UNION ALL "
            "SELECT id, 'tuning' AS kind, created_at FROM tuning_jobs ORDER BY created_at DESC"
        )
        return [
            self.get_batch_job(r["id"]) if r["kind"] == "batch" else self.get_tuning_job(r["id"])
            for r in rows
        ]

    def endpoint_logs(self, name: str, *, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the endpoint's worker and agent logs, each line prefixed
        with its file."""
        self.get_endpoint(name)  # NotFound for a missing endpoint
        lines: list[str] = []
        for log in sorted(self._endpoint_dir(name).rglob("*.log")):
            text = log.read_text(encoding="utf-8", errors="replace").splitlines()
            lines += [f"{log.name}: {line}" for line in text[-tail:]]
        return lines[-tail:]

    def cancel_job(self, job_id: str) -> None:
        """Stop a batch or tuning job (its runner, workers and trials) and mark it CANCELLED.

        A job that already ended is left as it is.
        """
        for table in ("batch_jobs", "tuning_jobs"):
            row = self.db.one(f"SELECT * FROM {table} WHERE id = ?", (job_id,))
            if row is None:
                continue
            if JobStatus(row["status"]).is_terminal:
                return
            if row["pid"]:
                supervisor.stop_group(ProcessRef(row["pid"], row["ctime"]))
            self.db.run(
                f"UPDATE {table} SET status = ?, message = ?, ended_at = ? WHERE id = ?",
                (JobStatus.CANCELLED.value, "cancelled", now(), job_id),
            )
            return
        raise NotFound(f"no batch or tuning job {job_id}", provider=self.name)

    def tune(self, spec: TuningSpec) -> TuningJob:
        """Start an Optuna search in a runner process; trials run the training subprocess."""
        from cloudserve.local import tuning

        self.call(self._check_faults)
        return self.get_tuning_job(tuning.submit(self.db, self.config, spec))

    def get_tuning_job(self, job_id: str) -> TuningJob:
        """The search's state, its trials and the best one so far."""
        from cloudserve.local import tuning

        return self._service(tuning.read_job, self.db, job_id)

    def promote_best(
        self,
        job_id: str,
        *,
        name: str,
        version: str | None = None,
        endpoint: str | None = None,
        framework: str | None = None,
    ) -> tuple[ModelVersion, Endpoint | None]:
        """Register the best trial's model (with its lineage) and, given ``endpoint``, deploy it."""
        from cloudserve.local import tuning

        job = self.get_tuning_job(job_id)
        model, lineage = tuning.best_model(job, name=name, version=version, framework=framework)
        mv = self.register_model(model, lineage)
        if endpoint is None:
            return mv, None
        from cloudserve.client import model_spec_of

        ep = self.deploy(DeploySpec(model=model_spec_of(mv), endpoint=endpoint))
        return mv, ep

    # -- monitoring and registry -------------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        """Invocations, errors by class and p50/p95/p99, overall and per variant."""
        self.recorder.flush()
        self._read_endpoint(endpoint)
        return self._service(monitor.metrics_report, self.db, endpoint, window_s)

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        """Feature rows of the captured requests over the window."""
        self.recorder.flush()
        self._read_endpoint(endpoint)
        return self._service(monitor.captured_rows, self.db, endpoint, window_s)

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        """Copy the artifact into the registry with its content hash and lineage."""
        return registry.register(self.db, model, lineage)

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered versions, all or of one model."""
        return self._service(registry.list_versions, self.db, name)

    def plan(self, spec: DeploySpec) -> list[PlannedCall]:
        """What ``deploy(spec)`` would do on this machine, doing none of it."""
        workers = _initial_workers(spec)
        calls = [
            PlannedCall(
                service="local",
                operation="stage_artifact",
                params={"artifact": spec.model.artifact},
                creates=f"{self._endpoint_dir(spec.endpoint)}/{spec.variant_name}-<hash>/model",
            ),
            PlannedCall(
                service="local",
                operation="start_workers",
                params={"count": workers, "host": self.config.host},
                creates=f"{workers} × python -m cloudserve.serving on a free port",
            ),
            PlannedCall(
                service="local",
                operation="switch_traffic",
                params={"variant": spec.variant_name, "traffic": spec.traffic},
                creates=f"endpoint {spec.endpoint} in {self.db.path}",
            ),
        ]
        if spec.compute.autoscaling or spec.compute.serverless:
            calls.append(
                PlannedCall(
                    service="local",
                    operation="start_agent",
                    params={"endpoint": spec.endpoint},
                    creates="python -m cloudserve.local.agent",
                )
            )
        return calls

    def close(self) -> None:
        """Flush monitoring records and close connections; endpoints keep running."""
        for thread in self._bg:
            thread.join()
        self._bg.clear()
        self.recorder.close()
        self.mirror.close()
        self._http.close()


def max_queue_of(variant: Any) -> int | None:
    """The per-worker request cap of a variant row (``Compute.max_concurrency``)."""
    return DeploySpec.model_validate_json(variant["spec"]).compute.max_concurrency


def _initial_workers(spec: DeploySpec) -> int:
    """Workers to start at deploy: none for serverless (the first request starts one)."""
    if spec.compute.serverless:
        return spec.compute.replicas
    lo, _ = spec.compute.replica_range
    return max(spec.compute.replicas, lo, 1)


def _error_class(exc: CloudServeError) -> str:
    if isinstance(exc, Throttled):
        return "throttled"
    if isinstance(exc, InvalidRequest | NotFound):
        return "4xx"
    if isinstance(exc, ServiceUnavailable):
        return "5xx"
    return "other"


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
