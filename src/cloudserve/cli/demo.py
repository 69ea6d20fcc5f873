"""``cloudserve demo``: the whole workflow on this machine, in a few minutes, offline.

Trains a scikit-learn model on the breast-cancer dataset that ships with scikit-learn,
registers it, deploys it on the local provider (after a smoke test), predicts online, runs a
batch job with a progress bar, tunes a few trials and deploys the best one blue/green, shows
metrics and drift, prices the same deployment on each cloud, and tears everything down.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import cloudserve as cs
from cloudserve.client import Client

__all__ = ["register", "run_demo"]

ENDPOINT = "cancer-demo"
TRAIN_SCRIPT = textwrap.dedent(
    '''
    """One tuning trial: logistic regression on the breast-cancer data, C and class weights."""
    import argparse, os
    import joblib, pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cloudserve.packaging import write_manifest

    p = argparse.ArgumentParser()
    p.add_argument("--C", type=float)
    p.add_argument("--class_weight")
    a = p.parse_args()
    data = pd.read_csv(os.environ["CLOUDSERVE_INPUT_TRAIN"])
    x, y = data.drop(columns=["target"]), data["target"]
    weight = None if a.class_weight == "none" else a.class_weight
    clf = LogisticRegression(C=a.C, class_weight=weight, max_iter=500)
    model = make_pipeline(StandardScaler(), clf)
    print(f"val_accuracy={cross_val_score(model, x, y, cv=3).mean():.5f}", flush=True)
    model.fit(x, y)
    out = os.environ["CLOUDSERVE_MODEL_DIR"]
    joblib.dump(model, os.path.join(out, "model.joblib"))
    write_manifest(out, framework="sklearn")
    '''
)


def _step(console: Console, n: int, title: str) -> None:
    console.rule(f"[bold cyan]{n}. {title}", align="left")


def train(work: Path) -> tuple[Path, Path, Any, float]:
    """Train the first model; returns (model dir, training CSV, held-out features, accuracy)."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cloudserve.packaging import write_manifest

    data = load_breast_cancer(as_frame=True)
    x = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    xt, xv, yt, yv = train_test_split(x, data.target, test_size=0.25, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    model.fit(xt, yt)
    model_dir = work / "model"
    model_dir.mkdir(parents=True)
    joblib.dump(model, model_dir / "model.joblib")
    write_manifest(model_dir, framework="sklearn", version="1")
    train_csv = work / "train.csv"
    xt.assign(target=yt).to_csv(train_csv, index=False)
    return model_dir, train_csv, xv, float(model.score(xv, yv))


def watch_batch(client: Client, job: cs.BatchJob, console: Console) -> cs.BatchJob:
    """Follow a batch job with a progress bar until it ends."""
    columns = (
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("batch", total=job.rows_total)
        while not job.status.is_terminal:
            time.sleep(0.2)
            job = client.get_batch_job(job.id)
            done = (job.rows_succeeded or 0) + (job.rows_failed or 0)
            bar.update(task, total=job.rows_total, completed=done)
    if job.status is not cs.JobStatus.SUCCEEDED:
        raise cs.OperationFailed(f"batch job {job.id} ended {job.status.value}: {job.message}")
    return job


def _price_table(spec: cs.DeploySpec) -> Table | str:
    try:
        from cloudserve.pricing import estimate
    except ImportError:
        return "pricing not available"
    table = Table("cloud", "instance", "$/hour", "$/month", "prices as of")
    for provider in ("sagemaker", "vertex", "azureml"):
        est = estimate(spec, provider=provider, region=None)
        if est.hourly is None:
            table.add_row(provider, est.instance_type or "?", "unknown", est.unknown_reason, "")
            continue
        table.add_row(
            provider,
            est.instance_type or "?",
            f"{est.hourly:.3f}",
            f"{est.monthly:,.0f}" if est.monthly is not None else "?",
            est.as_of or "?",
        )
    return table


def _metrics_table(report: cs.MetricsReport) -> Table:
    table = Table("variant", "invocations", "errors", "p50 ms", "p95 ms", "p99 ms")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    for name, m in sorted(report.per_variant.items()):
        errors = ", ".join(f"{k}: {v}" for k, v in m.errors.items()) or "0"
        table.add_row(name, str(m.invocations), errors, ms(m.p50_ms), ms(m.p95_ms), ms(m.p99_ms))
    return table


def _drift_line(report: cs.DriftReport) -> str:
    worst = max(report.features, key=lambda f: f.psi)
    verdict = (
        f"[red]drift in {len(report.flagged)} of {len(report.features)} features[/]"
        if report.drifted
        else f"[green]no drift[/] in {len(report.features)} features"
    )
    return (
        f"{verdict} (sample {report.sample_size} rows; largest PSI {worst.psi:.2f} on "
        f"{worst.feature})"
    )


def run_demo(console: Console, work: Path, *, trials: int = 4, batch_rows: int = 20_000) -> None:
    """Run every step in ``work`` (a state directory is made inside it); tear down at the end."""
    from cloudserve.local import LocalConfig

    start = time.monotonic()
    client = cs.connect(LocalConfig(state_dir=work / "state"))
    jobs: list[str] = []
    try:
        _steps(client, console, work, trials, batch_rows, jobs)
    finally:
        for job_id in jobs:  # interrupted half-way: stop the runners too
            client.provider.cancel_job(job_id)
        client.delete_endpoint(ENDPOINT)
        left = client.list_endpoints()
        client.close()
        console.rule("[bold cyan]tear down", align="left")
        console.print(
            f"endpoint deleted, {len(left)} endpoint(s) left; "
            f"done in {time.monotonic() - start:.0f}s"
        )


def _steps(
    client: Client, console: Console, work: Path, trials: int, batch_rows: int, jobs: list[str]
) -> None:
    _step(console, 1, "train a scikit-learn model (breast-cancer data, shipped with sklearn)")
    model_dir, train_csv, held_out, accuracy = train(work)
    console.print(f"logistic regression, held-out accuracy [bold]{accuracy:.3f}[/]")

    _step(console, 2, "register it")
    model = cs.ModelSpec(name="cancer", version="1", artifact=str(model_dir), framework="sklearn")
    mv = client.register_model(
        model,
        lineage={
            "training_data": str(train_csv),
            "target": "target",
            "params": {"C": 0.01},
            "metrics": {"val_accuracy": accuracy},
        },
    )
    data_hash = mv.lineage["training_data_hash"]
    console.print(f"{mv.name}:{mv.version}  {str(mv.content_hash)[:23]}…  data {data_hash[:23]}…")

    _step(console, 3, "deploy locally (smoke test first)")
    sample = held_out.head(3).to_dict(orient="records")
    ep = client.deploy(
        mv, ENDPOINT, data_capture=cs.DataCapture(sampling_rate=1.0), sample_input=sample
    )
    console.print(f"{ep.name}: {ep.status.value}, traffic {ep.traffic}, url {ep.variants[0].url}")

    _step(console, 4, "predict online")
    pred = client.predict(ENDPOINT, held_out.head(5))
    console.print(f"outputs {pred.outputs} from {pred.variant} in {pred.latency_ms:.1f} ms")

    _step(console, 5, f"batch predict {batch_rows:,} rows (streamed, worker processes)")
    rows = held_out.sample(batch_rows, replace=True, random_state=0)
    batch_in = work / "batch.csv"
    rows.to_csv(batch_in, index=False)
    t0 = time.monotonic()
    job = client.batch_predict(mv, batch_in, work / "batch-out")
    jobs.append(job.id)
    job = watch_batch(client, job, console)
    secs = time.monotonic() - t0
    console.print(
        f"{job.rows_succeeded:,} predictions, {job.rows_failed} errors in {secs:.1f}s "
        f"→ {job.output}"
    )

    _step(console, 6, f"tune {trials} trials (Optuna TPE, 2 at a time) and deploy the best")
    script = work / "train_trial.py"
    script.write_text(TRAIN_SCRIPT)
    spec = cs.TuningSpec(
        train=cs.TrainSpec(entrypoint=str(script), inputs={"train": str(train_csv)}),
        search_space={
            "C": cs.LogUniform(low=1e-3, high=10.0),
            "class_weight": cs.Choice(values=["none", "balanced"]),
        },
        objective=cs.Objective(metric="val_accuracy", goal="maximize"),
        max_trials=trials,
        parallel_trials=min(2, trials),
        strategy="bayesian",
        seed=7,
    )
    tuned = client.tune(spec)
    jobs.append(tuned.id)
    tuned = tuned.wait(timeout=600)
    table = Table("trial", "C", "class_weight", "val_accuracy", "status")
    for t in tuned.trials:
        best = " ★" if tuned.best_trial and t.id == tuned.best_trial.id else ""
        value = "-" if t.value is None else f"{t.value:.4f}{best}"
        table.add_row(
            t.id, f"{t.params['C']:.4g}", str(t.params["class_weight"]), value, t.status.value
        )
    console.print(table)
    best_mv, ep = client.provider.promote_best(  # type: ignore[attr-defined]
        tuned.id, name="cancer", version="2", endpoint=ENDPOINT
    )
    console.print(
        f"registered {best_mv.name}:{best_mv.version} (trial {best_mv.lineage['trial']}) "
        f"and deployed it blue/green: traffic {ep.traffic}"
    )

    _step(console, 7, "metrics and drift")
    for i in range(0, 200, 4):
        client.predict(ENDPOINT, held_out.iloc[i % len(held_out) :][:4])
    console.print(_metrics_table(client.metrics(ENDPOINT, "1h")))
    baseline = mv.lineage["baseline"]
    console.print("as trained:  " + _drift_line(client.drift(ENDPOINT, baseline, window="1h")))
    shifted = held_out * 1.5
    for i in range(0, 400, 8):
        client.predict(ENDPOINT, shifted.iloc[i % len(shifted) :][:8])
    console.print("inputs ×1.5: " + _drift_line(client.drift(ENDPOINT, baseline, window="1h")))

    _step(console, 8, "what this deployment would cost on each cloud (cpu.small, 1 replica)")
    deploy_spec = cs.DeploySpec(
        model=model, endpoint=ENDPOINT, compute=cs.Compute(size="cpu.small")
    )
    console.print(_price_table(deploy_spec))


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""

    @app.command()
    def demo(
        trials: Annotated[int, typer.Option(help="Tuning trials to run.", min=1)] = 4,
        rows: Annotated[int, typer.Option(help="Rows in the batch job.", min=1)] = 20_000,
        workdir: Annotated[
            Path | None,
            typer.Option(help="Keep the demo's files (model, data, state) here."),
        ] = None,
    ) -> None:
        """Run the quick start: train, register, deploy, predict, batch, tune, monitor, price,
        tear down — all on this machine, offline."""
        console = Console(highlight=False)
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            run_demo(console, workdir, trials=trials, batch_rows=rows)
            return
        work = Path(tempfile.mkdtemp(prefix="cloudserve-demo-"))
        try:
            run_demo(console, work, trials=trials, batch_rows=rows)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)
