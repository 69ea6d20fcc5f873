"""Core commands: deploy, predict, batch, tune, monitor, traffic, endpoints, describe, logs,
delete, targets, capabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.markup import escape
from rich.table import Table

from cloudserve.cli._render import console, print_json, progress_display
from cloudserve.client import Client, connect
from cloudserve.errors import CloudServeError, InvalidRequest, NotFound
from cloudserve.specs import Compute, DataCapture, ModelSpec, TuningSpec

TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target", "-t", help="Target from cloudserve.yaml (default: the default target)."
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Path to cloudserve.yaml / .toml.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _client(target: str | None, config: Path | None) -> Client:
    return connect(target, config=config)


def _model(
    artifact: str, name: str | None, version: str, framework: str | None, image: str | None
) -> ModelSpec:
    model_name = name or Path(artifact).stem.replace("_", "-").replace(".", "-") or "model"
    return ModelSpec.model_validate(
        {
            "name": model_name,
            "version": version,
            "artifact": artifact,
            "framework": framework,
            "image": image,
        }
    )


def _read_rows(data: str | None, file: Path | None, header: bool | None = None) -> list[Any]:
    """The rows of ``--data`` or ``--file``, read by the server's own decoding rules."""
    from cloudserve import codecs

    if (data is None) == (file is None):
        raise InvalidRequest("give the input with --data JSON or --file PATH (one of them)")
    if data is not None:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"--data is not JSON: {exc}", code="malformed_json") from None
        return parsed.get("instances", parsed) if isinstance(parsed, dict) else parsed
    assert file is not None
    return codecs.read_instances(file, header=header)


def _parameters(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"--parameters is not JSON: {exc}", code="bad_parameters") from None
    if not isinstance(value, dict):
        raise InvalidRequest(
            '--parameters must be a JSON object, e.g. \'{"method": "predict_proba"}\'',
            code="bad_parameters",
        )
    return value


def _endpoint_table(endpoints: list[Any]) -> Table:
    table = Table("endpoint", "status", "variant", "model", "weight", "instance", "replicas")
    for ep in endpoints:
        if not ep.variants:
            table.add_row(ep.name, ep.status.value, "-", "-", "-", "-", "-")
        for i, v in enumerate(ep.variants):
            table.add_row(
                ep.name if i == 0 else "",
                ep.status.value if i == 0 else "",
                v.name,
                f"{v.model_name}:{v.model_version}",
                f"{v.weight}%",
                v.instance_type or "-",
                str(v.replicas),
            )
    return table


def deploy(
    artifact: Annotated[str, typer.Argument(help="Model directory, file or cloud URI.")],
    name: Annotated[
        str | None, typer.Option(help="Model name (default: from the artifact).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    framework: Annotated[
        str | None, typer.Option(help="sklearn, xgboost, onnx, pytorch, custom, mlflow.")
    ] = None,
    image: Annotated[str | None, typer.Option(help="Container image (container route).")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Endpoint name (default: the model name).")
    ] = None,
    size: Annotated[
        str, typer.Option(help="Normalised size: cpu.small, cpu.medium, gpu.t4 …")
    ] = "cpu.small",
    instance_type: Annotated[
        str | None, typer.Option(help="Explicit instance type (overrides --size).")
    ] = None,
    replicas: Annotated[int, typer.Option(min=0)] = 1,
    min_replicas: Annotated[int | None, typer.Option(min=0)] = None,
    max_replicas: Annotated[int | None, typer.Option(min=1)] = None,
    variant: Annotated[str | None, typer.Option(help="Variant name (default: v<version>).")] = None,
    traffic: Annotated[
        int | None,
        typer.Option(min=0, max=100, help="Share for this variant; <100 adds a canary."),
    ] = None,
    shadow: Annotated[
        int | None,
        typer.Option(
            min=1, max=100, help="Deploy as a shadow: this percent of requests mirrored to it."
        ),
    ] = None,
    capture: Annotated[
        bool, typer.Option(help="Capture requests for monitoring and drift.")
    ] = False,
    sample: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Sample input (JSON/CSV) for the pre-deploy smoke test.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the endpoint is ready.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Deploy a model behind an endpoint (same spec again: no-op; changed spec: update)."""
    model = _model(artifact, name, version, framework, image)
    compute = Compute(
        size=None if instance_type else size,
        instance_type=instance_type,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
    sample_rows = _read_rows(None, sample) if sample else None
    with _client(target, config) as client, progress_display(not json) as progress:
        ep = client.deploy(
            model,
            endpoint,
            compute,
            variant=variant,
            traffic=traffic,
            shadow=shadow,
            data_capture=DataCapture() if capture else None,
            sample_input=sample_rows,
            wait=wait,
            timeout=timeout,
            progress=progress,
        )
    if json:
        print_json(ep)
    else:
        console.print(_endpoint_table([ep]))
        if ep.url:
            console.print(f"url: {ep.url}")


def predict(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    data: Annotated[str | None, typer.Option(help='JSON rows, e.g. "[[1, 2, 3]]".')] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CSV (header optional: named columns may come in any order), JSON or JSON "
            "Lines file of rows.",
        ),
    ] = None,
    parameters: Annotated[
        str | None,
        typer.Option(help='JSON object passed to the model, e.g. \'{"method": "predict_proba"}\'.'),
    ] = None,
    header: Annotated[
        bool | None,
        typer.Option(
            "--header/--no-header",
            help="Whether the CSV's first line names the columns (default: detected).",
        ),
    ] = None,
    variant: Annotated[str | None, typer.Option(help="Send to this variant only.")] = None,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Online prediction: one output per input row."""
    rows = _read_rows(data, file, header)
    params = _parameters(parameters)
    with _client(target, config) as client:
        pred = client.predict(endpoint, rows, variant=variant, parameters=params)
    if json:
        print_json(pred)
        return
    for out in pred.outputs:
        console.print(orjson.dumps(out).decode())
    console.print(
        f"[dim]{len(pred.outputs)} outputs · model {pred.model_version} · variant {pred.variant} · "
        f"{pred.latency_ms:.1f} ms[/]"
    )


def batch(
    artifact: Annotated[str, typer.Argument(help="Model directory, file or cloud URI.")],
    input: Annotated[
        str, typer.Argument(help="Input file or cloud prefix (CSV, JSON Lines, Parquet).")
    ],
    output: Annotated[str, typer.Argument(help="Output directory or cloud prefix.")],
    name: Annotated[str | None, typer.Option(help="Model name.")] = None,
    version: Annotated[str, typer.Option()] = "1",
    framework: Annotated[str | None, typer.Option()] = None,
    size: Annotated[str, typer.Option()] = "cpu.small",
    instance_type: Annotated[str | None, typer.Option()] = None,
    replicas: Annotated[int, typer.Option(min=1)] = 1,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    max_concurrency: Annotated[int, typer.Option(min=1)] = 2,
    parameters: Annotated[
        str | None,
        typer.Option(help='JSON object passed to the model, e.g. \'{"method": "predict_proba"}\'.'),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the job to finish.")] = True,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Batch prediction over a file; every input row gets an output row or an error record."""
    model = _model(artifact, name, version, framework, None)
    compute = Compute(
        size=None if instance_type else size, instance_type=instance_type, replicas=replicas
    )
    with _client(target, config) as client, progress_display(not json) as progress:
        job = client.batch_predict(
            model,
            input,
            output,
            compute=compute,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            parameters=_parameters(parameters),
            wait=wait,
            progress=progress,
        )
    if json:
        print_json(job)
        return
    console.print(f"batch job [bold]{job.id}[/]: {job.status.value}")
    if job.rows_total is not None:
        console.print(
            f"rows: {job.rows_total} total, {job.rows_succeeded} ok, {job.rows_failed} failed"
        )
    console.print(f"output: {job.output}")


def tune(
    spec_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="YAML or JSON TuningSpec (train, search_space, objective …).",
        ),
    ],
    wait: Annotated[bool, typer.Option(help="Wait for the job to finish.")] = True,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Run a hyperparameter search described by a spec file."""
    raw = yaml.safe_load(spec_file.read_text())
    try:
        spec = TuningSpec.model_validate(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{spec_file}: {exc}") from None
    with _client(target, config) as client, progress_display(not json) as progress:
        job = client.tune(spec, wait=wait, progress=progress)
    if json:
        print_json(job)
        return
    table = Table("trial", "status", spec.objective.metric, "params")
    for t in job.trials:
        table.add_row(
            t.id, t.status.value, "-" if t.value is None else f"{t.value:.6g}", str(t.params)
        )
    console.print(table)
    if job.best_trial is not None:
        console.print(
            f"best: trial {job.best_trial.id} {spec.objective.metric}={job.best_trial.value:.6g}"
        )


def monitor(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    window: Annotated[str, typer.Option(help="Window such as 15m, 1h, 7d.")] = "1h",
    baseline: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Baseline CSV/Parquet: also report drift."),
    ] = None,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Serving metrics (and drift against a baseline) for an endpoint."""
    with _client(target, config) as client:
        report = client.metrics(endpoint, window)
        drift = client.drift(endpoint, baseline, window=window) if baseline else None
    if json:
        print_json({"metrics": report, "drift": drift})
        return

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    table = Table(
        "scope",
        "invocations",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        title=f"{endpoint} · {window}",
    )
    table.add_row(
        "all",
        str(report.invocations),
        str(report.error_count),
        ms(report.p50_ms),
        ms(report.p95_ms),
        ms(report.p99_ms),
    )
    for name, v in report.per_variant.items():
        table.add_row(
            name, str(v.invocations), str(v.error_count), ms(v.p50_ms), ms(v.p95_ms), ms(v.p99_ms)
        )
    console.print(table)
    if drift is not None:
        dt = Table("feature", "PSI", "KS", "p-value", "flagged", title=f"drift vs {baseline}")
        for f in drift.features:
            dt.add_row(
                f.feature,
                f"{f.psi:.3f}",
                f"{f.ks_statistic:.3f}",
                f"{f.ks_pvalue:.2g}",
                "[red]yes[/]" if f.flagged else "no",
            )
        console.print(dt)


def traffic(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    weights: Annotated[list[str], typer.Argument(help="variant=percent pairs, e.g. v3=90 v4=10.")],
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Split an endpoint's traffic across its variants."""
    split: dict[str, int] = {}
    for pair in weights:
        name, sep, pct = pair.partition("=")
        if not sep or not pct.strip().isdigit():
            raise InvalidRequest(f"'{pair}' is not variant=percent")
        split[name.strip()] = int(pct)
    with _client(target, config) as client:
        ep = client.set_traffic(endpoint, split)
    print_json(ep) if json else console.print(_endpoint_table([ep]))


def endpoints(target: TargetOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """List the target's endpoints and their variants."""
    with _client(target, config) as client:
        eps = client.list_endpoints()
    print_json(eps) if json else console.print(_endpoint_table(eps))


def describe(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """One endpoint: status, URL, variants with their models, traffic and replicas."""
    with _client(target, config) as client:
        ep = client.get_endpoint(endpoint)
    if json:
        print_json(ep)
        return
    console.print(_endpoint_table([ep]))
    for label, value in (
        ("provider", ep.provider),
        ("url", ep.url),
        ("created", ep.created_at),
        ("updated", ep.updated_at),
        ("message", ep.message),
    ):
        if value:
            console.print(f"{label}: {escape(str(value))}")


def logs(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    tail: Annotated[int, typer.Option(min=1, help="How many of the last lines.")] = 100,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The last lines of an endpoint's server logs."""
    with _client(target, config) as client:
        lines = client.logs(endpoint, tail=tail)
    if json:
        print_json({"endpoint": endpoint, "lines": lines})
        return
    for line in lines:
        print(line)


def delete(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name.")],
    target: TargetOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Delete an endpoint and what cloudserve created for it (a missing one is fine)."""
    with _client(target, config) as client:
        try:
            client.get_endpoint(endpoint)
            existed = True
        except NotFound:
            existed = False
        client.delete_endpoint(endpoint)  # also when missing: it is idempotent
    if json:
        print_json({"endpoint": endpoint, "target": client.target, "deleted": existed})
    elif existed:
        console.print(f"deleted {endpoint}")
    else:
        console.print(f"no endpoint {endpoint} on target {client.target}: nothing to delete")


def targets(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """List the targets of the config file, validated, with their providers."""
    from cloudserve.config import load_targets, resolve_target

    tf = load_targets(config)
    names = sorted(tf.targets) or ["local"]
    rows = [resolve_target(n, path=config) for n in names]
    if json:
        print_json(
            [
                {"name": t.name, "provider": t.provider, "file": str(t.file) if t.file else None}
                for t in rows
            ]
        )
        return
    table = Table(
        "target", "provider", "default", title=str(tf.file or "(no config file: built-in local)")
    )
    for t in rows:
        table.add_row(t.name, t.provider, "yes" if t.name == (tf.default or "local") else "")
    console.print(table)


def _provider_classes(report: bool = False) -> list[Any]:
    from cloudserve.registry import available, get_provider_class

    classes = []
    for name in sorted(available()):
        try:
            classes.append(get_provider_class(name))
        except CloudServeError as exc:
            if report:
                console.print(f"[dim]{name}: {escape(str(exc))}[/]")
    return classes


def capability_matrix_markdown() -> str:
    """The capability matrix of the installed providers: the Markdown of docs/capabilities.md."""
    from cloudserve.provider import Capability

    classes = _provider_classes()
    caps = list(Capability)
    lines = [
        "# Capability matrix",
        "",
        "Generated by `cloudserve capabilities --markdown` from the providers' own",
        "declarations; a test keeps this page in step with the code.",
        "✓ = supported; ✗ = not supported (the reasons follow the table).",
        "",
        "| capability | " + " | ".join(c.name for c in classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for cap in caps:
        cells = ["✓" if cls.supports(cap) else "✗" for cls in classes]
        lines.append(f"| {cap.value} | " + " | ".join(cells) + " |")
    lines += ["", "## Why a capability is missing", ""]
    for cls in classes:
        for cap in caps:
            if not cls.supports(cap):
                lines.append(f"- **{cls.name} · {cap.value}**: {cls.reason(cap)}")
    return "\n".join(lines) + "\n"


def capabilities(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the docs page.")] = False,
    json: JsonOpt = False,
) -> None:
    """What each installed provider can do, and why it cannot do the rest."""
    if markdown:
        print(capability_matrix_markdown(), end="")
        return
    from cloudserve.provider import Capability

    if json:
        print_json(
            {
                cls.name: {
                    cap.value: {
                        "supported": cls.supports(cap),
                        "reason": None if cls.supports(cap) else cls.reason(cap),
                    }
                    for cap in Capability
                }
                for cls in _provider_classes()
            }
        )
        return
    classes = _provider_classes(report=True)
    table = Table("capability", *(c.name for c in classes))
    for cap in Capability:
        table.add_row(
            cap.value, *("[green]✓[/]" if c.supports(cap) else "[red]✗[/]" for c in classes)
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    for fn in (
        deploy,
        predict,
        batch,
        tune,
        monitor,
        traffic,
        endpoints,
        describe,
        logs,
        delete,
        targets,
        capabilities,
    ):
        app.command()(fn)
