"""``compare``: the same model, the same load, on several targets — latency and cost side by side.

For each target in turn: deploy (or use an existing endpoint), time the cold start (deploy →
first successful prediction), drive the workload, read server-side latency where the provider
reports metrics, price the endpoint from the catalog, and delete what was deployed. Deletion
runs in ``finally``: after a failure, and on Ctrl-C (the interrupt is re-raised once the
endpoint is gone). A target that fails is reported with its error; the others still run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloudserve.bench.load import LoadResult, run_load
from cloudserve.client import Client, connect
from cloudserve.errors import CloudServeError, InvalidRequest, Timeout
from cloudserve.provider import Capability
from cloudserve.resources import CostEstimate, Endpoint
from cloudserve.specs import Compute, DeploySpec, ModelSpec, Workload

__all__ = ["CompareReport", "TargetResult", "compare"]

Status = Callable[[str], None]


class TargetResult(BaseModel):
    """What one target measured and cost. ``error`` is set when the target failed."""

    model_config = ConfigDict(extra="forbid")

    target: str
    provider: str | None = None
    region: str | None = None
    endpoint: str | None = None
    created: bool = False
    torn_down: bool | None = None
    instance_type: str | None = None
    deploy_s: float | None = None
    cold_start_s: float | None = None
    load: LoadResult | None = None
    server_p50_ms: float | None = None
    server_p95_ms: float | None = None
    server_p99_ms: float | None = None
    currency: str = "USD"
    hourly: float | None = None
    cost_per_1k: float | None = None
    price_unknown_reason: str | None = None
    estimate: CostEstimate | None = None
    slo_met: bool | None = None
    error: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def p99_ms(self) -> float | None:
        """Client-side p99 latency, if the load ran."""
        return self.load.p99_ms if self.load else None


class CompareReport(BaseModel):
    """Per-target results of one comparison, renderable as a table, JSON or HTML."""

    model_config = ConfigDict(extra="forbid")

    model: str
    workload: Workload
    slo_p99_ms: float | None = None
    max_error_rate: float = 0.01
    started_at: datetime
    results: list[TargetResult] = Field(default_factory=list)

    @property
    def best(self) -> TargetResult | None:
        """The cheapest target per 1k predictions that met the SLO (or ran cleanly without one)."""
        ok = [
            r
            for r in self.results
            if r.cost_per_1k is not None and r.error is None and r.slo_met is not False
        ]
        return min(ok, key=lambda r: r.cost_per_1k or 0.0) if ok else None

    def to_json(self) -> str:
        """The report as indented JSON."""
        return self.model_dump_json(indent=2, exclude={"results": {"__all__": {"estimate"}}})

    def table(self) -> Any:
        """A Rich table of the results."""
        from cloudserve.bench.report import rich_table

        return rich_table(self)

    def to_html(self) -> str:
        """A self-contained HTML page (inline CSS, SVG and script; renders offline)."""
        from cloudserve.bench.report import render_html

        return render_html(self)

    def save_html(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path``; returns the path."""
        out = Path(path)
        out.write_text(self.to_html(), encoding="utf-8")
        return out


def compare(
    targets: Sequence[str | Client],
    model: ModelSpec,
    workload: Workload,
    *,
    slo_p99_ms: float | None = None,
    compute: Compute | None = None,
    endpoints: Mapping[str, str] | None = None,
    payload: list[Any] | None = None,
    config: str | Path | None = None,
    max_error_rate: float = 0.01,
    cold_start_timeout_s: float = 600.0,
    keep: bool = False,
    status: Status | None = None,
    catalog: Any = None,
    overrides: Any = None,
) -> CompareReport:
    """Deploy ``model`` to each target, drive ``workload``, tear down, and report.

    ``targets`` are target names from ``cloudserve.yaml`` or clients. ``endpoints`` maps a
    target to an existing endpoint to measure instead of deploying (it is never deleted).
    Rows come from ``payload``, else ``workload.payload``, else ``model.sample_input``.
    ``slo_p99_ms`` marks each target as meeting the SLO when its client-side p99 is within it
    and its error rate is at most ``max_error_rate``. ``keep=True`` leaves deployed endpoints
    in place. ``catalog`` / ``overrides`` are passed to :func:`cloudserve.pricing.estimate`.
    """
    rows = payload if payload is not None else (workload.payload or model.sample_input)
    if not rows:
        raise InvalidRequest(
            "compare needs input rows: a payload, workload.payload or sample_input"
        )
    report = CompareReport(
        model=f"{model.name}:{model.version}",
        workload=workload,
        slo_p99_ms=slo_p99_ms,
        max_error_rate=max_error_rate,
        started_at=datetime.now(timezone.utc),
    )
    say = status or (lambda _msg: None)
    run = _Run(model, workload, rows, compute or Compute(), say, cold_start_timeout_s, keep)
    for target in targets:
        name = target.target if isinstance(target, Client) else target
        existing = (endpoints or {}).get(name)
        result = run.target(target, name, existing, config, catalog, overrides)
        _judge(result, slo_p99_ms, max_error_rate)
        report.results.append(result)
    return report


class _Run:
    """The per-target steps of a comparison."""

    def __init__(
        self,
        model: ModelSpec,
        workload: Workload,
        rows: list[Any],
        compute: Compute,
        say: Status,
        cold_start_timeout_s: float,
        keep: bool,
    ):
        self.model = model
        self.workload = workload
        self.rows = rows
        self.compute = compute
        self.say = say
        self.cold_start_timeout_s = cold_start_timeout_s
        self.keep = keep

    def target(
        self,
        target: str | Client,
        name: str,
        existing: str | None,
        config: str | Path | None,
        catalog: Any,
        overrides: Any,
    ) -> TargetResult:
        result = TargetResult(target=name, endpoint=existing)
        client: Client | None = None
        try:
            client = target if isinstance(target, Client) else connect(target, config=config)
            result.provider = client.provider.name
            result.region = client.provider.region()
            endpoint = existing or _endpoint_name(self.model)
            result.endpoint = endpoint
            spec = DeploySpec(model=self.model, endpoint=endpoint, compute=self.compute)
            _price(result, spec, catalog, overrides)
            if existing is None:
                # Marked before the call: a deploy interrupted half-way must still be deleted.
                result.created = True
                self._deploy(client, spec, result)
            else:
                _check_instance(client.get_endpoint(existing), result)
            self.say(f"{name}: driving {self.workload.mode}-loop load")
            result.load = run_load((client, endpoint), self.workload, payload=self.rows, label=name)
            _server_latency(client, endpoint, self.workload, result)
            _cost_per_1k(result, self.workload.rows_per_request)
        except Exception as exc:
            # One target failing (a cloud error, or a bug in its provider) must not lose the
            # other targets' results; Ctrl-C (KeyboardInterrupt) is not caught here.
            result.error = f"{type(exc).__name__}: {exc}"
            self.say(f"{name}: failed: {result.error}")
        finally:
            if client is not None:
                self._teardown(client, result, owned=not isinstance(target, Client))
        return result

    def _deploy(self, client: Client, spec: DeploySpec, result: TargetResult) -> None:
        self.say(f"{result.target}: deploying {spec.endpoint}")
        t0 = time.perf_counter()
        ep = client.deploy(spec)
        result.deploy_s = round(time.perf_counter() - t0, 3)
        _check_instance(ep, result)
        self._first_prediction(client, spec.endpoint, t0)
        result.cold_start_s = round(time.perf_counter() - t0, 3)

    def _first_prediction(self, client: Client, endpoint: str, t0: float) -> None:
        delay = 0.05
        while True:
            try:
                client.predict(endpoint, self.rows[: self.workload.rows_per_request])
                return
            except CloudServeError as exc:
                if time.perf_counter() - t0 > self.cold_start_timeout_s:
                    raise Timeout(
                        f"no successful prediction from {endpoint} within "
                        f"{self.cold_start_timeout_s:g} s of deploy: {exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _teardown(self, client: Client, result: TargetResult, *, owned: bool) -> None:
        try:
            if result.created and not self.keep and result.endpoint:
                self.say(f"{result.target}: deleting {result.endpoint}")
                try:
                    client.delete_endpoint(result.endpoint)
                    result.torn_down = True
                except CloudServeError as exc:
                    result.torn_down = False
                    note = f"teardown of {result.endpoint} failed: {exc}; delete it by hand"
                    result.notes.append(note)
                    self.say(f"{result.target}: {note}")
        finally:
            if owned:
                client.close()


def _endpoint_name(model: ModelSpec) -> str:
    suffix = f"-cmp-{secrets.token_hex(3)}"
    return model.name[: 63 - len(suffix)] + suffix


def _price(result: TargetResult, spec: DeploySpec, catalog: Any, overrides: Any) -> None:
    from cloudserve.pricing import estimate

    assert result.provider is not None
    est = estimate(
        spec, provider=result.provider, region=result.region, catalog=catalog, overrides=overrides
    )
    result.estimate = est
    result.currency = est.currency
    result.hourly = est.hourly
    result.instance_type = est.instance_type
    result.price_unknown_reason = est.unknown_reason


def _check_instance(ep: Endpoint, result: TargetResult) -> None:
    # The price comes from the compute compare was given; if the endpoint runs on something
    # else (an existing endpoint, a provider's own mapping), that price would be wrong, and a
    # wrong price is worse than an unknown one.
    running = {v.instance_type for v in ep.variants if v.instance_type}
    priced = result.instance_type
    if result.hourly is not None and running and running != {priced}:
        result.price_unknown_reason = (
            f"endpoint {ep.name} runs on {', '.join(sorted(running))} but compare priced "
            f"{priced}; pass compute= with the instance type (and replicas) it runs on"
        )
        result.hourly = None
        result.instance_type = ", ".join(sorted(running))


def _server_latency(
    client: Client, endpoint: str, workload: Workload, result: TargetResult
) -> None:
    if Capability.METRICS not in client.capabilities:
        result.notes.append("no server-side latency: the provider reports no metrics")
        return
    window = max(60.0, workload.warmup_s + workload.duration_s + 30.0)
    try:
        m = client.metrics(endpoint, window=window)
    except CloudServeError as exc:
        result.notes.append(f"server-side latency unavailable: {exc}")
        return
    result.server_p50_ms, result.server_p95_ms, result.server_p99_ms = m.p50_ms, m.p95_ms, m.p99_ms


def _cost_per_1k(result: TargetResult, rows_per_request: int) -> None:
    # One prediction per row: a request of k rows is k predictions.
    load = result.load
    if result.hourly is None or load is None or load.throughput_rps <= 0:
        return
    per_hour = load.throughput_rps * rows_per_request * 3600
    result.cost_per_1k = round(result.hourly / per_hour * 1000, 6)


def _judge(result: TargetResult, slo_p99_ms: float | None, max_error_rate: float) -> None:
    if slo_p99_ms is None or result.load is None or result.error is not None:
        return
    p99 = result.load.p99_ms
    result.slo_met = (
        p99 is not None and p99 <= slo_p99_ms and result.load.error_rate <= max_error_rate
    )
