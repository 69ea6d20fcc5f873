"""Progressive delivery: a metric-gated rollout with automatic rollback, the same on every cloud.

A rollout moves a new model version behind a live endpoint in steps (``[10, 50, 100]`` percent of
traffic). At each step it waits the bake time, reads the endpoint's per-variant metrics over the
step's window and compares the new variant with the current one *over that same window*:

    gates = cs.Gates(max_error_rate=0.01, max_p99_ratio=1.5, min_invocations=100)
    report = client.rollout(model, "churn", steps=[10, 50, 100], bake="5m", gates=gates)

All gates pass → the next step; at 100 % the old variant is retired. A failed gate shifts all
traffic back to the current variant and removes the new one (``on_fail="hold"`` keeps it at 0 %).
Insufficient traffic (fewer than ``min_invocations`` on either variant) is not a decision: the step
bakes again, up to ``max_bakes`` times, then fails the ``min_invocations`` gate.

The rollout's state is recorded with the endpoint itself through the provider
(``put_rollout_state``), after every change, so a rollout whose process died is resumed or aborted
from another process or machine: ``client.rollout(endpoint=..., resume=True)`` /
``client.abort_rollout(endpoint)``.

Time is a :class:`Clock` the caller may replace, so tests drive bake times without sleeping.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloudserve.errors import InvalidRequest, NotFound, OperationFailed
from cloudserve.provider import Capability
from cloudserve.resources import Endpoint, VariantMetrics, _Result
from cloudserve.specs import ModelSpec

if TYPE_CHECKING:
    from cloudserve.client import Client

__all__ = [
    "Clock",
    "GateResult",
    "Gates",
    "RolloutReport",
    "RolloutStep",
    "SystemClock",
    "run_rollout",
]

Outcome = Literal["in_progress", "completed", "rolled_back", "held", "aborted"]


class Clock(Protocol):
    """Where a rollout reads the time and waits; tests pass one that does not sleep."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time and real sleeps."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Gates(BaseModel):
    """What the new variant must show, against the current one, before it gets more traffic.

    Rates are fractions (0.01 = 1 %). ``None`` turns a gate off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float | None = Field(0.01, ge=0, le=1)
    max_error_rate_increase: float | None = Field(None, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    max_p99_ratio: float | None = Field(1.5, gt=0)
    min_invocations: int = Field(50, ge=1)
    max_bakes: int = Field(3, ge=1, le=20)
    max_drift_psi: float | None = Field(None, gt=0)
    drift_baseline: str | None = None

    @model_validator(mode="after")
    def _drift_needs_baseline(self) -> Gates:
        if self.max_drift_psi is not None and not self.drift_baseline:
            raise ValueError("max_drift_psi needs drift_baseline (a CSV/Parquet of training rows)")
        return self


class GateResult(BaseModel):
    """One gate's verdict at one step, with the figures it saw."""

    gate: str
    passed: bool
    observed: float | None = None
    limit: float | None = None
    baseline: float | None = None
    detail: str = ""


class RolloutStep(BaseModel):
    """What one step saw and decided."""

    weight: int
    bake: int = 1
    started_at: float
    decided_at: float | None = None
    window_s: float
    #: how long the step waited after its bake for the provider's metrics to catch up
    settle_s: float = 0.0
    new: VariantMetrics = Field(default_factory=VariantMetrics)
    current: VariantMetrics = Field(default_factory=VariantMetrics)
    gates: list[GateResult] = Field(default_factory=list)
    decision: Literal["promote", "rollback", "wait", "hold"] | None = None


class RolloutReport(_Result):
    """The outcome of a rollout: where it ended, every step's figures and the failing gate."""

    endpoint: str
    provider: str
    model: ModelSpec
    new_variant: str
    current_variant: str
    steps: list[int]
    bake_s: float
    gates: Gates
    on_fail: Literal["rollback", "hold"] = "rollback"
    outcome: Outcome = "in_progress"
    step_index: int = 0
    history: list[RolloutStep] = Field(default_factory=list)
    failed_gate: GateResult | None = None
    message: str = ""
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        return check_steps(steps)

    @property
    def done(self) -> bool:
        """Whether the rollout reached an end (completed, rolled back, held or aborted)."""
        return self.outcome != "in_progress"

    def summary(self) -> str:
        """One line saying how it ended and why."""
        if self.outcome == "completed":
            return f"{self.new_variant} serves 100% of {self.endpoint}"
        if self.failed_gate is not None:
            g = self.failed_gate
            return f"{self.outcome}: gate {g.gate} failed at {self.history[-1].weight}%: {g.detail}"
        return f"{self.outcome}: {self.message}" if self.message else self.outcome


def check_steps(steps: Sequence[int]) -> list[int]:
    """Steps are whole percentages, strictly increasing, ending at 100."""
    clean = list(steps)
    if not clean:
        raise ValueError("steps is empty")
    for w in clean:
        if isinstance(w, bool) or not isinstance(w, int) or not 0 < w <= 100:
            raise ValueError(f"step {w!r} is not a whole percentage in 1..100")
    if any(b <= a for a, b in itertools.pairwise(clean)):
        raise ValueError(f"steps must increase strictly, got {clean}")
    if clean[-1] != 100:
        raise ValueError(f"the last step must be 100, got {clean[-1]}")
    return clean


# -- gates ------------------------------------------------------------------------------------


def _error_rate(m: VariantMetrics) -> float:
    return m.error_count / m.invocations if m.invocations else 0.0


def evaluate(
    gates: Gates,
    new: VariantMetrics,
    current: VariantMetrics,
    *,
    drift_psi: float | None = None,
) -> list[GateResult]:
    """Every gate's verdict for the new variant against the current one over one window."""
    results = [
        GateResult(
            gate="min_invocations",
            passed=min(new.invocations, current.invocations) >= gates.min_invocations,
            observed=float(min(new.invocations, current.invocations)),
            limit=float(gates.min_invocations),
            detail=(
                f"new {new.invocations}, current {current.invocations} invocations"
                f" (need {gates.min_invocations} each)"
            ),
        )
    ]
    new_rate, cur_rate = _error_rate(new), _error_rate(current)
    if gates.max_error_rate is not None:
        results.append(
            GateResult(
                gate="max_error_rate",
                passed=new_rate <= gates.max_error_rate,
                observed=new_rate,
                limit=gates.max_error_rate,
                baseline=cur_rate,
                detail=f"error rate {new_rate:.2%} (current {cur_rate:.2%}),"
                f" limit {gates.max_error_rate:.2%}",
            )
        )
    if gates.max_error_rate_increase is not None:
        results.append(
            GateResult(
                gate="max_error_rate_increase",
                passed=new_rate - cur_rate <= gates.max_error_rate_increase,
                observed=new_rate - cur_rate,
                limit=gates.max_error_rate_increase,
                baseline=cur_rate,
                detail=f"error rate {new_rate:.2%} vs current {cur_rate:.2%},"
                f" allowed increase {gates.max_error_rate_increase:.2%}",
            )
        )
    if gates.max_p99_ms is not None:
        results.append(_p99_absolute(gates.max_p99_ms, new, current))
    if gates.max_p99_ratio is not None:
        results.append(_p99_ratio(gates.max_p99_ratio, new, current))
    if gates.max_drift_psi is not None:
        results.append(
            GateResult(
                gate="max_drift_psi",
                passed=drift_psi is not None and drift_psi <= gates.max_drift_psi,
                observed=drift_psi,
                limit=gates.max_drift_psi,
                detail="largest per-feature PSI of the captured inputs"
                if drift_psi is not None
                else "no captured inputs to compute drift from",
            )
        )
    return results


def _p99_absolute(limit: float, new: VariantMetrics, current: VariantMetrics) -> GateResult:
    if new.p99_ms is None:
        return GateResult(gate="max_p99_ms", passed=False, limit=limit, detail="no p99 reported")
    return GateResult(
        gate="max_p99_ms",
        passed=new.p99_ms <= limit,
        observed=new.p99_ms,
        limit=limit,
        baseline=current.p99_ms,
        detail=f"p99 {new.p99_ms:.1f} ms, limit {limit:.1f} ms",
    )


def _p99_ratio(limit: float, new: VariantMetrics, current: VariantMetrics) -> GateResult:
    if new.p99_ms is None or not current.p99_ms:
        return GateResult(
            gate="max_p99_ratio", passed=False, limit=limit, detail="no p99 to compare"
        )
    ratio = new.p99_ms / current.p99_ms
    return GateResult(
        gate="max_p99_ratio",
        passed=ratio <= limit,
        observed=ratio,
        limit=limit,
        baseline=current.p99_ms,
        detail=f"p99 {new.p99_ms:.1f} ms is {ratio:.2f}x the current {current.p99_ms:.1f} ms,"
        f" limit {limit:.2f}x",
    )


# -- the state machine ------------------------------------------------------------------------

Progress = Callable[[RolloutReport], None]


class _Run:
    """One rollout driven to its end (or to the process's end: the state is saved each step)."""

    def __init__(self, client: Client, report: RolloutReport, clock: Clock, progress: Progress):
        self.client = client
        self.provider = client.provider
        self.report = report
        self.clock = clock
        self.progress = progress

    def save(self) -> None:
        self.report.updated_at = datetime.now(timezone.utc)
        state = None if self.report.done else self.report.model_dump(mode="json")
        self.provider.put_rollout_state(self.report.endpoint, state)
        self.progress(self.report)

    def weights(self, new_weight: int) -> dict[str, int]:
        r = self.report
        return {r.current_variant: 100 - new_weight, r.new_variant: new_weight}

    def ensure_new_variant(self) -> None:
        """Deploy the new version as a variant at the first step's weight, unless it is there
        already (a resumed rollout)."""
        r = self.report
        ep = self.provider.get_endpoint(r.endpoint)
        if r.new_variant in {v.name for v in ep.variants}:
            return
        first = r.steps[0]
        try:
            self.client.deploy(r.model, r.endpoint, variant=r.new_variant, traffic=first)
        except Exception:
            if not r.history:  # nothing happened yet: no rollout to resume
                self.provider.put_rollout_state(r.endpoint, None)
            raise

    def run(self) -> RolloutReport:
        r = self.report
        while not r.done:
            weight = r.steps[r.step_index]
            if weight == 100:
                self.promote()
                break
            self.client.set_traffic(r.endpoint, self.weights(weight))
            self.bake(weight)
        return r

    def bake(self, weight: int) -> None:
        r = self.report
        began = self.clock.now()
        for attempt in range(1, r.gates.max_bakes + 1):
            step = RolloutStep(weight=weight, bake=attempt, started_at=self.clock.now(),
                               window_s=r.bake_s)  # fmt: skip
            r.history.append(step)
            self.save()
            # the bake, then the provider's metrics delay in the same wait (traffic stays at
            # this weight), so the window read below holds every request of the bake
            settle = max(0.0, float(self.provider.metrics_delay_s))
            step.settle_s = settle
            self.clock.sleep(r.bake_s + settle)
            # every bake at this weight counts: a starved step gathers more traffic
            window = max(r.bake_s + settle, self.clock.now() - began)
            step.window_s = window
            report = self.provider.metrics(r.endpoint, window)
            step.new = report.per_variant.get(r.new_variant, VariantMetrics())
            step.current = report.per_variant.get(r.current_variant, VariantMetrics())
            step.gates = evaluate(r.gates, step.new, step.current, drift_psi=self.drift(window))
            step.decided_at = self.clock.now()
            failed = [g for g in step.gates if not g.passed]
            starved = next((g for g in failed if g.gate == "min_invocations"), None)
            if starved is not None and attempt < r.gates.max_bakes:
                step.decision = "wait"  # too little traffic to decide anything yet
                continue
            if failed:
                self.fail(step, starved or failed[0])
                return
            step.decision = "promote"
            r.step_index += 1
            self.save()
            return

    def drift(self, window: float) -> float | None:
        gates = self.report.gates
        if gates.max_drift_psi is None or gates.drift_baseline is None:
            return None
        from cloudserve.monitoring import drift_report

        rows = self.provider.captured_inputs(self.report.endpoint, window)
        if not rows:
            return None
        dr = drift_report(gates.drift_baseline, rows, endpoint=self.report.endpoint,
                          provider=self.provider.name)  # fmt: skip
        return max((f.psi for f in dr.features if f.psi is not None), default=None)

    def fail(self, step: RolloutStep, gate: GateResult) -> None:
        r = self.report
        r.failed_gate = gate
        step.decision = "rollback" if r.on_fail == "rollback" else "hold"
        self.restore(hold=r.on_fail == "hold")
        r.outcome = "rolled_back" if r.on_fail == "rollback" else "held"
        self.save()

    def restore(self, *, hold: bool) -> None:
        """All traffic back to the current variant; the new one removed unless held at 0 %."""
        r = self.report
        ep = self.provider.get_endpoint(r.endpoint)
        names = {v.name for v in ep.variants}
        if r.new_variant in names:
            self.client.set_traffic(r.endpoint, self.weights(0))
            if not hold:
                self.provider.delete_variant(r.endpoint, r.new_variant)

    def promote(self) -> None:
        r = self.report
        self.client.set_traffic(r.endpoint, self.weights(100))
        ep = self.provider.get_endpoint(r.endpoint)
        if r.current_variant in {v.name for v in ep.variants}:
            self.provider.delete_variant(r.endpoint, r.current_variant)
        r.history.append(RolloutStep(weight=100, started_at=self.clock.now(), window_s=0,
                                     decided_at=self.clock.now(), decision="promote"))  # fmt: skip
        r.step_index = len(r.steps) - 1
        r.outcome = "completed"
        self.save()


def _current_variant(ep: Endpoint, new_variant: str) -> str:
    live = [v for v in ep.variants if v.weight > 0 and v.name != new_variant]
    if len(live) != 1:
        split = ", ".join(f"{v.name}={v.weight}" for v in ep.variants) or "none"
        raise InvalidRequest(
            f"a rollout starts from one live variant; {ep.name} has {split}"
            " (set_traffic to one variant first)"
        )
    return live[0].name


def start_report(
    client: Client,
    model: ModelSpec,
    endpoint: str,
    *,
    variant: str | None,
    steps: Sequence[int],
    bake_s: float,
    gates: Gates,
    on_fail: Literal["rollback", "hold"],
) -> RolloutReport:
    """Check everything a rollout needs before it changes anything."""
    provider = client.provider
    for cap in (Capability.ROLLOUT, Capability.TRAFFIC_SPLIT, Capability.METRICS):
        provider.require(cap)
    if gates.max_drift_psi is not None:
        provider.require(Capability.DATA_CAPTURE)
    try:
        clean_steps = check_steps(steps)
    except ValueError as exc:
        raise InvalidRequest(f"rollout steps: {exc}") from None
    floor = provider.min_metrics_window_s
    if bake_s < floor:
        raise InvalidRequest(
            f"bake {bake_s:g}s is shorter than {provider.name}'s shortest metrics window"
            f" ({floor:g}s): each decision would see no data"
        )
    if provider.get_rollout_state(endpoint) is not None:
        raise InvalidRequest(
            f"a rollout of {endpoint} is in progress: resume it (rollout --resume {endpoint})"
            f" or abort it (rollout --abort {endpoint})"
        )
    ep = provider.get_endpoint(endpoint)
    new_variant = variant or f"v{model.version}"
    current = _current_variant(ep, new_variant)
    return RolloutReport(
        endpoint=endpoint,
        provider=provider.name,
        model=model,
        new_variant=new_variant,
        current_variant=current,
        steps=clean_steps,
        bake_s=bake_s,
        gates=gates,
        on_fail=on_fail,
    )


def run_rollout(
    client: Client,
    report: RolloutReport,
    *,
    clock: Clock | None = None,
    progress: Progress | None = None,
) -> RolloutReport:
    """Drive ``report`` to its end, from wherever its recorded state says it is."""
    run = _Run(client, report, clock or SystemClock(), progress or (lambda _r: None))
    run.save()  # recorded before anything changes, so a crash from here on is resumable
    run.ensure_new_variant()
    return run.run()


def load_report(client: Client, endpoint: str) -> RolloutReport:
    """The recorded state of the rollout in progress on ``endpoint``."""
    state = client.provider.get_rollout_state(endpoint)
    if state is None:
        raise NotFound(f"no rollout in progress on {endpoint}", provider=client.provider.name)
    try:
        return RolloutReport.model_validate(state)
    except ValueError as exc:
        raise OperationFailed(
            f"the recorded rollout state of {endpoint} cannot be read: {exc}",
            provider=client.provider.name,
        ) from exc


def abort_rollout(client: Client, endpoint: str) -> RolloutReport:
    """Roll back the rollout in progress on ``endpoint``: all traffic to the current variant."""
    report = load_report(client, endpoint)
    run = _Run(client, report, SystemClock(), lambda _r: None)
    run.restore(hold=False)
    report.outcome = "aborted"
    report.message = "aborted by request"
    run.save()
    return report
