"""Price a deploy, batch or tuning spec from the catalog, before anything is created.

What a user can rely on:

- A price the catalog lacks makes the estimate unknown (``hourly=None`` and ``unknown_reason``
  says which price is missing); it is never counted as 0.
- GPUs are priced the way the cloud sells them: on Vertex AI the machine row and the
  accelerator add-on row are summed (× accelerator count); on SageMaker and Azure ML the GPU
  instance price already includes the GPU.
- Discounts and custom prices from :class:`PriceOverrides` are applied and listed in
  ``assumptions``; prices older than ``max_age_days`` add a warning naming their date.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import date

from cloudserve.errors import InvalidRequest
from cloudserve.pricing.catalog import Catalog, PriceRow, load_catalog
from cloudserve.pricing.overrides import PriceOverrides
from cloudserve.resources import CostEstimate, CostLine
from cloudserve.sizes import SIZES, InstanceChoice, resolve_instance
from cloudserve.specs import BatchSpec, Compute, DeploySpec, TrainSpec, TuningSpec

__all__ = ["DEFAULT_REGIONS", "StalePriceWarning", "estimate"]

# The region an estimate uses when none is given (the catalog's main region per cloud).
DEFAULT_REGIONS = {"sagemaker": "us-east-1", "vertex": "us-central1", "azureml": "eastus"}

Spec = DeploySpec | BatchSpec | TuningSpec | TrainSpec


class StalePriceWarning(UserWarning):
    """A price used by an estimate is older than the configured maximum age."""


class _Unknown(Exception):
    """A price the estimate needs is missing; the message says which."""


@dataclass
class _Unit:
    """The hourly price of one replica, built from priced lines."""

    lines: list[CostLine] = field(default_factory=list)
    rows: list[PriceRow] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    @property
    def hourly(self) -> float:
        return sum(line.total or 0.0 for line in self.lines)


def estimate(
    spec: Spec,
    *,
    provider: str,
    region: str | None,
    catalog: Catalog | None = None,
    overrides: PriceOverrides | None = None,
    egress_gb_per_month: float | None = None,
) -> CostEstimate:
    """What ``spec`` would cost on ``provider`` in ``region``, from the price catalog.

    Deploy spec → hourly and monthly at ``compute.replicas`` (with autoscaling: ``hourly`` at
    the minimum and ``hourly_max`` at the maximum replica count). Batch spec → hourly for its
    instances, and ``total`` from ``rows_hint`` / ``rows_per_second_hint`` (rows per second per
    instance). Tuning spec → ``total`` = trials × trial time × instance price; ``hourly`` while
    ``parallel_trials`` run at once. ``region=None`` uses the cloud's main catalog region.
    """
    ov = overrides if overrides is not None else PriceOverrides.load()
    cat = (catalog if catalog is not None else load_catalog()).merged(p.to_row() for p in ov.prices)
    kind, compute = _kind_and_compute(spec)
    assumptions: list[str] = []
    if region is None and provider in DEFAULT_REGIONS:
        region = DEFAULT_REGIONS[provider]
        assumptions.append(f"no region given; priced in {region}")
    base = CostEstimate(
        provider=provider,
        region=region,
        kind=kind,
        instance_type=compute.instance_type,
        currency=ov.currency,
    )
    try:
        if compute.serverless:
            raise _Unknown(
                "serverless endpoints are billed per request and memory-second; "
                "the catalog has no serverless prices"
            )
        choice = _choice(provider, compute)
        instance_type = compute.instance_type or (choice.instance_type if choice else None)
        base.instance_type = instance_type
        assert instance_type is not None
        unit = _unit_price(cat, ov, provider, region, kind, instance_type, compute, choice)
    except _Unknown as exc:
        base.unknown_reason = str(exc)
        base.assumptions = assumptions
        return base
    assumptions.extend(unit.assumptions)
    result = _scale(base, spec, compute, unit, ov, assumptions)
    if egress_gb_per_month:
        _add_egress(result, cat, ov, provider, region, egress_gb_per_month, unit)
    result.as_of = min(r.as_of for r in unit.rows).isoformat() if unit.rows else None
    _warn_stale(result, unit.rows, ov.max_age_days)
    return result


def _kind_and_compute(spec: Spec) -> tuple[str, Compute]:
    if isinstance(spec, DeploySpec):
        return "hosting", spec.compute
    if isinstance(spec, BatchSpec):
        return "batch", spec.compute
    if isinstance(spec, TuningSpec):
        return "training", spec.train.compute
    if isinstance(spec, TrainSpec):
        return "training", spec.compute
    raise InvalidRequest(
        f"cannot estimate a {type(spec).__name__}; give a deploy, batch or tuning spec"
    )


def _choice(provider: str, compute: Compute) -> InstanceChoice | None:
    if compute.instance_type:
        return None
    if compute.size not in SIZES:
        # A typo in a size is the user's error, not an unknown price.
        resolve_instance(provider, compute.size)
    try:
        return resolve_instance(provider, compute.size)
    except InvalidRequest as exc:
        raise _Unknown(exc.message) from None


def _unit_price(
    cat: Catalog,
    ov: PriceOverrides,
    provider: str,
    region: str | None,
    kind: str,
    instance_type: str,
    compute: Compute,
    choice: InstanceChoice | None,
) -> _Unit:
    unit = _Unit()
    machine = _row(cat, provider, region, kind, "instance", instance_type)
    _add_line(unit, ov, machine, f"{instance_type} ({kind})", 1, "instance-hour")
    accelerator, count = _separate_accelerator(compute, choice)
    if accelerator:
        acc_row = _row(cat, provider, region, kind, "accelerator", accelerator)
        _add_line(unit, ov, acc_row, f"{accelerator} add-on ({kind})", count, "accelerator-hour")
    if ov.factor(provider) != 1.0:
        unit.assumptions.append(
            f"{ov.discounts[provider]:.0%} discount on {provider} list prices (overrides)"
        )
    return unit


def _separate_accelerator(
    compute: Compute, choice: InstanceChoice | None
) -> tuple[str | None, int]:
    """The accelerator priced on its own row, if any, and how many of them."""
    if choice is not None:
        if choice.accelerator_separate and choice.accelerator:
            return choice.accelerator, choice.accelerator_count
        return None, 0
    if compute.accelerator and compute.accelerator_count:
        return compute.accelerator, compute.accelerator_count
    return None, 0


def _row(
    cat: Catalog, provider: str, region: str | None, kind: str, item: str, name: str
) -> PriceRow:
    row = cat.find(provider, region, kind, item, name)
    if row is not None:
        return row
    known = ", ".join(cat.regions(provider)) or "none"
    where = f"in {region}" if region else "(no region given)"
    raise _Unknown(
        f"no {kind} price for {item} {name} {where} on {provider} in the catalog "
        f"(regions with prices: {known}); add it with `cloudserve pricing refresh` "
        "or a custom price in the overrides file"
    )


def _add_line(
    unit: _Unit, ov: PriceOverrides, row: PriceRow, item: str, qty: float, unit_name: str
) -> None:
    rate = ov.rate(row.currency)
    if rate is None:
        raise _Unknown(
            f"price of {row.instance_type} is in {row.currency} and no fx_rates entry converts "
            f"it to {ov.currency}"
        )
    price = row.price * rate * ov.factor(row.provider)
    unit.rows.append(row)
    unit.lines.append(
        CostLine(
            item=item,
            quantity=qty,
            unit=unit_name,
            unit_price=round(price, 6),
            total=round(price * qty, 6),
            source=row.source_url,
            as_of=row.as_of.isoformat(),
        )
    )


def _scale(
    base: CostEstimate,
    spec: Spec,
    compute: Compute,
    unit: _Unit,
    ov: PriceOverrides,
    assumptions: list[str],
) -> CostEstimate:
    per = unit.hourly
    base.lines = unit.lines
    if isinstance(spec, DeploySpec):
        lo, hi = compute.replica_range
        count = lo if compute.autoscaling else compute.replicas
        base.hourly = round(per * count, 6)
        base.monthly = round(per * count * ov.hours_per_month, 2)
        if compute.autoscaling:
            base.hourly_max = round(per * hi, 6)
            base.monthly_max = round(per * hi * ov.hours_per_month, 2)
            assumptions.append(f"autoscaling between {lo} and {hi} replicas")
        else:
            assumptions.append(f"{count} replica(s) running all month")
        assumptions.append(f"{ov.hours_per_month:g} hours a month")
    elif isinstance(spec, BatchSpec):
        _scale_batch(base, spec, per, assumptions)
    else:
        _scale_training(base, spec, per, assumptions)
    base.assumptions = assumptions
    return base


def _scale_batch(base: CostEstimate, spec: BatchSpec, per: float, assumptions: list[str]) -> None:
    n = spec.compute.replicas or 1
    base.hourly = round(per * n, 6)
    if spec.rows_hint is None or spec.rows_per_second_hint is None:
        assumptions.append("no total: give rows_hint and rows_per_second_hint for one")
        return
    instance_hours = spec.rows_hint / spec.rows_per_second_hint / 3600
    base.total = round(per * instance_hours, 6)
    assumptions.append(
        f"{spec.rows_hint} rows at {spec.rows_per_second_hint:g} rows/s per instance → "
        f"{instance_hours:.3f} instance-hours ({instance_hours / n:.3f} h on {n} instance(s)); "
        "start-up time not billed in this figure"
    )


def _scale_training(
    base: CostEstimate, spec: TuningSpec | TrainSpec, per: float, assumptions: list[str]
) -> None:
    if isinstance(spec, TuningSpec):
        trials, parallel = spec.max_trials, spec.parallel_trials
        train, hint = spec.train, spec.trial_time_hint_s
    else:
        trials, parallel, train, hint = 1, 1, spec, None
    replicas = train.compute.replicas or 1
    seconds = hint if hint is not None else float(train.max_runtime_s)
    if hint is None:
        assumptions.append(
            f"each trial runs its full max_runtime_s ({train.max_runtime_s} s): an upper bound; "
            "give trial_time_hint_s for a closer figure"
        )
    base.hourly = round(per * replicas * parallel, 6)
    base.total = round(per * replicas * trials * seconds / 3600, 6)
    assumptions.append(
        f"{trials} trial(s) × {seconds / 3600:.3f} h × {replicas} instance(s), {parallel} at a time"
    )


def _add_egress(
    est: CostEstimate,
    cat: Catalog,
    ov: PriceOverrides,
    provider: str,
    region: str | None,
    gb: float,
    unit: _Unit,
) -> None:
    try:
        row = _row(cat, provider, region, "network", "egress", "internet")
        egress = _Unit()
        _add_line(egress, ov, row, "internet egress", gb, "GB/month")
    except _Unknown as exc:
        est.unknown_reason = str(exc)
        est.monthly = est.monthly_max = None
        return
    unit.rows.extend(egress.rows)
    est.lines.extend(egress.lines)
    monthly = egress.hourly
    if est.monthly is not None:
        est.monthly = round(est.monthly + monthly, 2)
    if est.monthly_max is not None:
        est.monthly_max = round(est.monthly_max + monthly, 2)
    est.assumptions.append(f"{gb:g} GB a month of internet egress (first price tier)")


def _warn_stale(est: CostEstimate, rows: list[PriceRow], max_age_days: int) -> None:
    today = date.today()
    old = [r for r in rows if r.age_days(today) > max_age_days]
    if not old:
        return
    oldest = min(r.as_of for r in old)
    msg = (
        f"{est.provider} prices used here date from {oldest.isoformat()} "
        f"({(today - oldest).days} days old, more than {max_age_days}); "
        f"run `cloudserve pricing refresh --provider {est.provider}`"
    )
    est.assumptions.append(msg)
    warnings.warn(msg, StalePriceWarning, stacklevel=3)
