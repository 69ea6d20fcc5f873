"""Progressive delivery commands: ``rollout`` (metric-gated, resumable) and ``shadow`` (the
report of a shadow variant's mirrored answers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cloudserve.cli._render import console, print_json
from cloudserve.cli.core import ConfigOpt, JsonOpt, TargetOpt, _client, _model
from cloudserve.errors import InvalidRequest

if TYPE_CHECKING:
    from cloudserve.rollout import RolloutReport


def _steps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidRequest(
            f"--steps '{text}' is not a comma-separated list such as 10,50,100"
        ) from None


def _table(report: RolloutReport) -> Table:
    table = Table(title=f"rollout of {report.new_variant} on {report.endpoint}: {report.outcome}")
    cols = ("step", "bake", "window", "new inv", "new err", "new p99", "cur p99", "decision")
    for col in cols:
        table.add_column(col, overflow="fold")
    for s in report.history:
        p99 = f"{s.new.p99_ms:.1f}" if s.new.p99_ms is not None else "-"
        cur = f"{s.current.p99_ms:.1f}" if s.current.p99_ms is not None else "-"
        window = f"{s.window_s:g}s" + (f" ({s.settle_s:g}s settle)" if s.settle_s else "")
        table.add_row(f"{s.weight}%", str(s.bake), window, str(s.new.invocations),
                      str(s.new.error_count), p99, cur, s.decision or "…")  # fmt: skip
    return table


def _show(report: RolloutReport, json: bool) -> None:
    if json:
        print_json(report)
        return
    console.print(_table(report))
    console.print(escape(report.summary()))


def _live(json: bool) -> Callable[[RolloutReport], None] | None:
    if json or not console.is_terminal:
        return None

    def update(report: RolloutReport) -> None:
        step = report.history[-1] if report.history else None
        where = f"{step.weight}% (bake {step.bake})" if step else "deploying"
        console.print(f"[dim]{report.endpoint}:[/] {where} {step.decision or '…' if step else ''}")

    return update


Opt = typer.Option


def rollout(
    endpoint: Annotated[str, typer.Argument(help="Endpoint to roll the new version out on.")],
    artifact: Annotated[
        str | None, typer.Argument(help="Model directory or file of the new version.")
    ] = None,
    name: Annotated[str | None, Opt(help="Model name (default: from the path).")] = None,
    version: Annotated[str, Opt(help="Model version.")] = "1",
    framework: Annotated[str | None, Opt(help="Model framework.")] = None,
    variant: Annotated[str | None, Opt(help="New variant name (default v<version>).")] = None,
    steps: Annotated[str, Opt(help="Traffic steps in percent, ending at 100.")] = "10,50,100",
    bake: Annotated[str, Opt(help="How long each step runs before it is judged.")] = "5m",
    max_error_rate: Annotated[float, Opt(help="Largest error rate (0.01 = 1%).")] = 0.01,
    max_p99_ratio: Annotated[float, Opt(help="Largest p99 / current p99.")] = 1.5,
    max_p99_ms: Annotated[float | None, Opt(help="Largest p99 in ms.")] = None,
    min_invocations: Annotated[int, Opt(help="Requests per variant before deciding.")] = 50,
    hold: Annotated[bool, Opt("--hold", help="On a failed gate keep the new one at 0%.")] = False,
    resume: Annotated[bool, Opt("--resume", help="Continue the recorded rollout.")] = False,
    abort: Annotated[bool, Opt("--abort", help="Roll back the recorded rollout.")] = False,
    status: Annotated[bool, Opt("--status", help="Show the recorded rollout.")] = False,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Move a new model version behind ENDPOINT step by step, gated by its metrics."""
    from cloudserve.rollout import Gates

    with _client(target, config) as client:
        if abort:
            _show(client.abort_rollout(endpoint), json)
            return
        if status:
            report = client.rollout_status(endpoint)
            if report is None:
                print_json(None) if json else console.print(f"no rollout in progress on {endpoint}")
                return
            _show(report, json)
            return
        if resume:
            report = client.resume_rollout(endpoint, progress=_live(json))
        else:
            if artifact is None:
                raise InvalidRequest("rollout needs the new model's ARTIFACT (or --resume/--abort)")
            gates = Gates(max_error_rate=max_error_rate, max_p99_ratio=max_p99_ratio,
                          max_p99_ms=max_p99_ms, min_invocations=min_invocations)  # fmt: skip
            report = client.rollout(
                _model(artifact, name, version, framework, None),
                endpoint,
                steps=_steps(steps),
                bake=bake,
                gates=gates,
                variant=variant,
                on_fail="hold" if hold else "rollback",
                progress=_live(json),
            )
    _show(report, json)
    if report.outcome != "completed":
        raise typer.Exit(1)


def shadow(
    endpoint: Annotated[str, typer.Argument(help="Endpoint with a shadow variant.")],
    window: Annotated[str, Opt(help="How far back to look: 30m, 1h, 1d …")] = "1h",
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """How ENDPOINT's shadow variant answered the requests mirrored to it."""
    with _client(target, config) as client:
        report = client.shadow_report(endpoint, window=window)
    if json:
        print_json(report)
        return

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    agree = "-" if report.agreement_rate is None else f"{report.agreement_rate:.1%}"
    share = "-" if report.share is None else f"{report.share:.1%}"
    table = Table(title=f"shadow {report.shadow_variant or '?'} on {endpoint} ({window})")
    for col in ("mirrored", "share", "agreement", "prod p50/p99", "shadow p50/p99", "errors"):
        table.add_column(col, overflow="fold")
    table.add_row(
        str(report.mirrored),
        share,
        agree,
        f"{ms(report.production_p50_ms)} / {ms(report.production_p99_ms)}",
        f"{ms(report.shadow_p50_ms)} / {ms(report.shadow_p99_ms)}",
        f"{report.production_errors} / {report.shadow_errors}",
    )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``rollout`` and ``shadow`` to ``app``."""
    app.command()(rollout)
    app.command()(shadow)
