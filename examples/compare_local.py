"""Price one size on every cloud, then measure a model's latency and cost with ``compare``.

    python examples/compare_local.py

Runs offline: the estimates come from the price catalog shipped with cloudserve, and the
comparison deploys to the local provider. With cloud targets in ``cloudserve.yaml`` the same
call is ``cs.compare(["aws", "gcp", "azure"], model, workload, slo_p99_ms=50)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

import cloudserve as cs
from cloudserve.pricing import estimate
from cloudserve.testing import make_sklearn_model, sample_rows


def price_everywhere() -> None:
    """The same normalised size on the three clouds, from the catalog; nothing is created."""
    spec = cs.DeploySpec(
        model=cs.ModelSpec(name="churn", artifact="s3://bucket/churn"),
        endpoint="churn",
        compute=cs.Compute(size="gpu.t4", replicas=1, min_replicas=1, max_replicas=3),
    )
    for provider in ("sagemaker", "vertex", "azureml"):
        e = estimate(spec, provider=provider, region=None)
        print(
            f"{provider:9} {e.instance_type:22} {e.hourly:.4f}–{e.hourly_max:.4f} USD/h "
            f"(prices as of {e.as_of}); lines: "
            + ", ".join(f"{line.item} {line.unit_price}" for line in e.lines)
        )


def measure_locally(work: Path) -> None:
    """Deploy to the local provider, drive open-loop load, tear down, and report."""
    model = cs.ModelSpec(
        name="churn", framework="sklearn", artifact=str(make_sklearn_model(work / "model"))
    )
    workload = cs.Workload(rps=20, duration_s=3, warmup_s=1, payload=sample_rows(20))
    report = cs.compare(["local"], model, workload, slo_p99_ms=250, status=print)
    Console(width=160).print(report.table())
    page = report.save_html(work / "compare.html")
    print(f"HTML report: {page}")
    (result,) = report.results
    assert result.error is None, result.error
    assert result.torn_down, "compare deletes what it deployed"


def main() -> None:
    price_everywhere()
    measure_locally(Path(tempfile.mkdtemp(prefix="cs-compare-example-")))


if __name__ == "__main__":
    main()
