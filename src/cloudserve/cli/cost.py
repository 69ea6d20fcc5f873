"""Cost commands: ``estimate``, ``plan``, ``compare`` and ``pricing refresh`` / ``pricing show``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from cloudserve.cli._render import console, print_json
from cloudserve.cli.core import ConfigOpt, JsonOpt, _model, _read_rows
from cloudserve.errors import InvalidRequest
from cloudserve.specs import (
    BatchSpec,
    Compute,
    DeploySpec,
    ModelSpec,
    Objective,
    TrainSpec,
    TuningSpec,
    Uniform,
    Workload,
)

__all__ = ["register"]

CLOUDS = ("sagemaker", "vertex", "azureml")
Kind = Literal["hosting", "batch", "training"]

TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Target from cloudserve.yaml (repeat for several)."),
]
SizeOpt = Annotated[str, typer.Option(help="Normalised size: cpu.small, cpu.medium, gpu.t4 …")]
InstanceOpt = Annotated[str | None, typer.Option(help="Explicit instance type (overrides --size).")]
OverridesOpt = Annotated[
    Path | None, typer.Option(help="Price overrides YAML (discounts, custom prices, currency).")
]


def _money(value: float | None, currency: str) -> str:
    return "unknown" if value is None else f"{value:,.4f} {currency}"


def _compute(
    size: str,
    instance_type: str | None,
    replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    accelerator: str | None = None,
    accelerator_count: int = 0,
) -> Compute:
    return Compute(
        size=None if instance_type else size,
        instance_type=instance_type,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        accelerator=accelerator,
        accelerator_count=accelerator_count,
    )


def _estimate_spec(
    kind: Kind,
    compute: Compute,
    rows: int | None,
    rows_per_second: float | None,
    trials: int,
    parallel_trials: int,
    trial_minutes: float | None,
) -> DeploySpec | BatchSpec | TuningSpec:
    # Estimates need only the compute and the volume: the model is a placeholder.
    model = ModelSpec(name="estimate", artifact="estimate://placeholder")
    if kind == "hosting":
        return DeploySpec(model=model, endpoint="estimate", compute=compute)
    if kind == "batch":
        return BatchSpec(
            model=model,
            input="estimate://in",
            output="estimate://out",
            compute=compute,
            rows_hint=rows,
            rows_per_second_hint=rows_per_second,
        )
    return TuningSpec(
        train=TrainSpec(command=["train"], compute=compute),
        search_space={"x": Uniform(low=0, high=1)},
        objective=Objective(metric="objective"),
        max_trials=trials,
        parallel_trials=parallel_trials,
        trial_time_hint_s=trial_minutes * 60 if trial_minutes else None,
    )


def _where(
    targets: list[str] | None,
    providers: list[str] | None,
    region: str | None,
    config: Path | None,
) -> list[tuple[str, str, str | None]]:
    """(label, provider, region) for each place to price."""
    if targets:
        from cloudserve.config import resolve_target

        out = []
        for name in targets:
            tgt = resolve_target(name, path=config)
            reg = getattr(tgt.config, "region", None) or getattr(tgt.config, "location", None)
            out.append((name, tgt.provider, region or reg))
        return out
    return [(p, p, region) for p in (providers or list(CLOUDS))]


def estimate_cmd(
    target: TargetsOpt = None,
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", "-p", help="Provider to price (repeat; default: all clouds)."),
    ] = None,
    region: Annotated[str | None, typer.Option(help="Region (default: per target/cloud).")] = None,
    kind: Annotated[str, typer.Option(help="hosting, batch or training.")] = "hosting",
    size: SizeOpt = "cpu.small",
    instance_type: InstanceOpt = None,
    accelerator: Annotated[str | None, typer.Option(help="Accelerator add-on type.")] = None,
    accelerator_count: Annotated[int, typer.Option(min=0)] = 0,
    replicas: Annotated[int, typer.Option(min=0)] = 1,
    min_replicas: Annotated[int | None, typer.Option(min=0)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1)] = None,
    rows: Annotated[int | None, typer.Option(help="Batch: rows to predict.")] = None,
    rows_per_second: Annotated[
        float | None, typer.Option(help="Batch: rows per second per instance.")
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Training: trials.")] = 10,
    parallel_trials: Annotated[int, typer.Option(min=1)] = 1,
    trial_minutes: Annotated[float | None, typer.Option(help="Training: minutes a trial.")] = None,
    egress_gb: Annotated[
        float | None, typer.Option(help="Hosting: GB of internet egress a month.")
    ] = None,
    overrides: OverridesOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Price a deploy, batch or tuning spec on one or more clouds, from the catalog."""
    from cloudserve.pricing import PriceOverrides, estimate

    if kind not in ("hosting", "batch", "training"):
        raise InvalidRequest(f"--kind must be hosting, batch or training, not {kind!r}")
    chosen: Kind = kind  # type: ignore[assignment]  # checked just above
    compute = _compute(
        size, instance_type, replicas, min_replicas, max_replicas, accelerator, accelerator_count
    )
    spec = _estimate_spec(
        chosen, compute, rows, rows_per_second, trials, parallel_trials, trial_minutes
    )
    ov = PriceOverrides.load(overrides)
    results: list[tuple[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for label, prov, reg in _where(target, provider, region, config):
            est = estimate(
                spec, provider=prov, region=reg, overrides=ov, egress_gb_per_month=egress_gb
            )
            results.append((label, est))
    if json:
        print_json({label: est for label, est in results})
        return
    console.print(_estimate_table(results))
    for w in {str(w.message) for w in caught}:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def _estimate_table(results: list[tuple[str, Any]]) -> Table:
    table = Table(
        "target", "region", "instance", "per hour", "per hour (max)", "per month", "total", "as of"
    )
    notes = []
    for label, est in results:
        table.add_row(
            label,
            est.region or "—",
            est.instance_type or "—",
            _money(est.hourly, est.currency),
            "—" if est.hourly_max is None else _money(est.hourly_max, est.currency),
            "—" if est.monthly is None else _money(est.monthly, est.currency),
            "—" if est.total is None else _money(est.total, est.currency),
            est.as_of or "—",
        )
        if est.unknown_reason:
            notes.append(f"{label}: price unknown — {est.unknown_reason}")
        notes += [f"{label}: {a}" for a in est.assumptions]
    table.caption = "\n".join(notes) or None
    return table


def plan_cmd(
    artifact: Annotated[str, typer.Argument(help="Model directory, file or cloud URI.")],
    target: TargetsOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Model name (default: from the artifact).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    framework: Annotated[str | None, typer.Option(help="sklearn, xgboost, onnx …")] = None,
    image: Annotated[str | None, typer.Option(help="Container image.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint name.")] = None,
    size: SizeOpt = "cpu.small",
    instance_type: InstanceOpt = None,
    replicas: Annotated[int, typer.Option(min=0)] = 1,
    min_replicas: Annotated[int | None, typer.Option(min=0)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1)] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show the calls a deploy would make on each target, and its cost. Creates nothing."""
    from cloudserve.client import connect

    model = _model(artifact, name, version, framework, image)
    compute = _compute(size, instance_type, replicas, min_replicas, max_replicas)
    spec = DeploySpec(model=model, endpoint=endpoint or model.name, compute=compute)
    plans = []
    names: list[str | None] = list(target) if target else [None]
    for tname in names:
        with connect(tname, config=config) as client:
            plans.append(client.plan(spec))
    if json:
        print_json(plans)
        return
    for p in plans:
        route = f" · {p.route} route" if p.route else ""
        title = f"plan for {p.target} ({p.provider}){route}"
        calls = Table("#", "service", "operation", "creates", title=title)
        for i, call in enumerate(p.calls, start=1):
            calls.add_row(str(i), call.service, call.operation, call.creates or "—")
        console.print(calls)
        for i, call in enumerate(p.calls, start=1):
            if isinstance(call.params.get("command"), str):  # a step the user runs first
                console.print(f"step {i}: {escape(call.params['command'])}")
        for w in p.warnings:
            console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(_estimate_table([(p.target, p.estimate) for p in plans if p.estimate]))


def compare_cmd(
    artifact: Annotated[str, typer.Argument(help="Model directory, file or cloud URI.")],
    target: TargetsOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Model name (default: from the artifact).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    framework: Annotated[str | None, typer.Option(help="sklearn, xgboost, onnx …")] = None,
    image: Annotated[str | None, typer.Option(help="Container image.")] = None,
    data: Annotated[str | None, typer.Option(help='JSON rows, e.g. "[[1, 2, 3]]".')] = None,
    file: Annotated[Path | None, typer.Option(help="CSV, JSON or JSON Lines rows.")] = None,
    rps: Annotated[float | None, typer.Option(help="Open loop: requests per second.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Closed loop: clients.")] = None,
    duration: Annotated[float, typer.Option(help="Seconds of measured load.")] = 30.0,
    warmup: Annotated[float, typer.Option(help="Seconds of unmeasured warm-up.")] = 2.0,
    rows_per_request: Annotated[int, typer.Option(min=1)] = 1,
    slo_p99_ms: Annotated[float | None, typer.Option(help="Latency SLO on p99, in ms.")] = None,
    size: SizeOpt = "cpu.small",
    instance_type: InstanceOpt = None,
    existing: Annotated[
        list[str] | None,
        typer.Option("--endpoint", help="target=endpoint: measure an existing endpoint."),
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    json_out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the endpoints it deploys.")] = False,
    overrides: OverridesOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Deploy the model to each target, drive the same load, tear down, compare cost and latency."""
    from cloudserve.bench import compare
    from cloudserve.pricing import PriceOverrides

    model = _model(artifact, name, version, framework, image)
    workload = Workload(
        rps=rps,
        concurrency=concurrency,
        duration_s=duration,
        warmup_s=warmup,
        payload=_read_rows(data, file),
        rows_per_request=rows_per_request,
    )
    endpoints = dict(_pair(e) for e in existing or [])
    say = None if json else (lambda msg: console.print(f"[dim]{escape(msg)}[/]"))
    report = compare(
        target or ["local"],
        model,
        workload,
        slo_p99_ms=slo_p99_ms,
        compute=_compute(size, instance_type, 1, None, None),
        endpoints=endpoints,
        config=config,
        keep=keep,
        status=say,
        overrides=PriceOverrides.load(overrides),
    )
    if html is not None:
        report.save_html(html)
    if json_out is not None:
        json_out.write_text(report.to_json(), encoding="utf-8")
    if json:
        print(report.to_json())
        return
    console.print(report.table())
    if html is not None:
        console.print(f"HTML report: {escape(str(html))}")


def _pair(text: str) -> tuple[str, str]:
    target, sep, endpoint = text.partition("=")
    if not sep or not target or not endpoint:
        raise InvalidRequest(f"--endpoint takes target=endpoint, got {text!r}")
    return target, endpoint


pricing_app = typer.Typer(
    help="The price catalog: show it, refresh it from the clouds' APIs.", no_args_is_help=True
)


@pricing_app.command("refresh")
def pricing_refresh(
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", "-p", help="Provider to refresh (repeat; default: all)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Pull current prices from each provider's pricing API into the user catalog.

    The table names, per provider, what the pricing API had no usable price for; those
    catalog rows were left as they were.
    """
    from cloudserve.pricing import MissingPricesWarning, refresh

    with warnings.catch_warnings():
        # The table lists the missing items; the providers' warnings would repeat them.
        warnings.simplefilter("ignore", MissingPricesWarning)
        report = refresh(provider)
    if json:
        print_json(report)
        return
    table = Table(
        "provider", "status", "rows", "reason", "missing", title=f"refreshed into {report.path}"
    )
    for r in report.results:
        missing = "\n".join(f"{item}: {why}" for item, why in sorted(r.missing.items()))
        table.add_row(r.provider, r.status, str(r.rows), r.reason or "", missing)
    console.print(table)


@pricing_app.command("show")
def pricing_show(
    provider: Annotated[
        list[str] | None, typer.Option("--provider", "-p", help="Only these providers.")
    ] = None,
    max_age_days: Annotated[int, typer.Option(help="Warn about prices older than this.")] = 180,
    json: JsonOpt = False,
) -> None:
    """List the catalog's prices with their source and date; warn about stale ones."""
    from cloudserve.pricing import load_catalog, stale_warnings

    catalog = load_catalog()
    rows = [r for r in catalog if not provider or r.provider in provider]
    if json:
        print(orjson.dumps([r.model_dump(mode="json") for r in rows]).decode())
        return
    table = Table("provider", "region", "kind", "item", "type", "price", "as of", "source")
    for r in sorted(rows, key=lambda r: r.key):
        table.add_row(
            r.provider,
            r.region,
            r.kind,
            r.item,
            r.instance_type,
            f"{r.price:g} {r.currency}/{r.unit}",
            r.as_of.isoformat(),
            r.source_url,
        )
    console.print(table)
    for w in stale_warnings(catalog, max_age_days):
        console.print(f"[yellow]warning:[/] {escape(w)}")


def register(app: typer.Typer) -> None:
    """Add the cost commands to the ``cloudserve`` app."""
    app.command("estimate")(estimate_cmd)
    app.command("plan")(plan_cmd)
    app.command("compare")(compare_cmd)
    app.add_typer(pricing_app, name="pricing")
