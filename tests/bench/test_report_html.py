"""The HTML report is self-contained and renders in headless Chromium with charts and table."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.bench.compare import CompareReport, TargetResult
from cloudserve.bench.histogram import LatencyHistogram
from cloudserve.bench.load import LoadResult
from cloudserve.testing.components import needs

CHROMIUM = "/usr/bin/chromium"


def _load(name: str, latencies: list[float]) -> LoadResult:
    h = LatencyHistogram()
    for ms in latencies:
        h.record(ms)
    return LoadResult(
        target=name,
        mode="open",
        rps=20,
        duration_s=30,
        warmup_s=2,
        requests=len(latencies),
        ok=len(latencies),
        throughput_rps=20,
        p50_ms=h.percentile(50),
        p90_ms=h.percentile(90),
        p95_ms=h.percentile(95),
        p99_ms=h.percentile(99),
        max_ms=h.percentile(100),
        curve=h.curve(),
    )


def report() -> CompareReport:
    """A fixed report: three clouds with known latency profiles, one price unknown."""
    fast = [8.0 + (i % 10) * 0.3 for i in range(600)]
    tail = [12.0 + (i % 10) for i in range(588)] + [180.0] * 12
    mid = [20.0 + (i % 10) * 0.5 for i in range(600)]
    results = [
        TargetResult(target="aws", provider="sagemaker", instance_type="ml.m5.large",
                     hourly=0.115, cost_per_1k=0.0016, load=_load("aws", fast), slo_met=True,
                     cold_start_s=312.0, torn_down=True, created=True),
        TargetResult(target="gcp", provider="vertex", instance_type="n1-standard-2",
                     hourly=0.1095, cost_per_1k=0.00152, load=_load("gcp", tail), slo_met=False,
                     cold_start_s=655.0, torn_down=True, created=True),
        TargetResult(target="azure", provider="azureml", instance_type="Standard_DS2_v2",
                     hourly=None, price_unknown_reason="no hosting price in westus9",
                     load=_load("azure", mid), slo_met=True, torn_down=True, created=True),
    ]  # fmt: skip
    from datetime import datetime, timezone

    return CompareReport(
        model="churn:3",
        workload=cs.Workload(rps=20, duration_s=30),
        slo_p99_ms=50,
        started_at=datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc),
        results=results,
    )


def test_html_is_self_contained():
    html = report().to_html()
    assert '<svg id="chart-latency"' in html and '<svg id="chart-cost"' in html
    assert '<table id="results">' in html
    # No external resource of any kind: nothing to fetch, so it renders offline.
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    assert "@import" not in html and "url(" not in html
    # The unknown price is listed, never drawn at zero.
    assert "price unknown — no hosting price in westus9" in html
    cost_svg = html.split('<svg id="chart-cost"')[1].split("</svg>")[0]
    assert "azure:" not in cost_svg and "aws: p99" in cost_svg and "gcp: p99" in cost_svg


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def chromium(tmp_path):
    needs(CHROMIUM, "the compare report screenshot; Debian package 'chromium'")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run",
            "--disable-background-networking"]  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=120, check=True
        )

    return run


def test_report_renders_in_headless_chromium(chromium, tmp_path):
    page = report().save_html(tmp_path / "report.html")
    url = page.resolve().as_uri()
    dom = chromium("--dump-dom", url).stdout
    assert dom.count("<polyline") == 3, "one latency line per target"
    assert dom.count("<tr") == 4, "header and three result rows"
    assert 'id="chart-cost"' in dom and dom.count('r="7"') == 2, "two priced points"
    shot = tmp_path / "report.png"
    chromium("--window-size=1100,1500", f"--screenshot={shot}", url)
    data = shot.read_bytes()
    assert _png_size(data) == (1100, 1500)
    # A blank page compresses to a few kB; charts and a table do not.
    assert len(data) > 40_000
    keep = os.environ.get("CLOUDSERVE_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, Path(keep))
