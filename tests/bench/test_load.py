"""The load generator against a loopback server with a known, injected latency profile.

Assertions use lower bounds the injected sleeps guarantee and generous upper bounds, so they
hold on a slow or busy machine; no test asserts on how fast anything ran.
"""

from __future__ import annotations

import ast
import socket
import threading

import pytest

import cloudserve as cs
from cloudserve.bench import LatencyHistogram, export_locustfile, run_load
from cloudserve.errors import ServiceUnavailable, Throttled

from .loopback import every_nth, loopback_server, periodic_stall

ROWS = [[1.0, 2.0, 3.0, 4.0]]


def test_histogram_percentiles_are_exact_to_three_digits():
    h = LatencyHistogram()
    for ms in range(1, 1001):
        h.record(float(ms))
    assert h.count == 1000
    assert h.percentile(50) == pytest.approx(500, rel=1e-3)
    assert h.percentile(99) == pytest.approx(990, rel=1e-3)
    assert h.percentile(100) == pytest.approx(1000, rel=1e-3)
    assert h.percentile(0) == pytest.approx(1, rel=1e-3)
    assert [p for p, _ in h.curve()][-1] == 100.0


def test_open_loop_percentiles_follow_the_injected_distribution():
    # Every 10th request takes 120 ms, the others 10 ms: p50 is fast, p95 and p99 are slow.
    with loopback_server(every_nth(10, 0.010, 0.120)) as url:
        r = run_load(url, cs.Workload(rps=50, duration_s=2, warmup_s=0, payload=ROWS))
    assert r.mode == "open" and r.requests == 100 and r.ok == 100 and r.errors == {}
    assert 10 <= r.p50_ms < 120 <= r.p95_ms
    assert r.p95_ms >= 120 and r.p99_ms >= 120
    assert r.p99_ms < 120 + 1000
    assert r.max_ms >= r.p99_ms >= r.p95_ms >= r.p50_ms
    assert r.hdr_histogram


def test_open_loop_shows_a_stall_that_closed_loop_hides():
    # The server stalls for the first 150 ms of every second. Open loop keeps sending at
    # 40 req/s, so ~15% of requests land in a stall and wait up to 150 ms. One closed-loop
    # client sends nothing while it waits, so only one request per stall sees it.
    stall = periodic_stall(period_s=1.0, stall_s=0.150, base_s=0.001)
    with loopback_server(stall) as url:
        open_r = run_load(url, cs.Workload(rps=40, duration_s=3, warmup_s=0, payload=ROWS))
    with loopback_server(stall) as url:
        closed_r = run_load(url, cs.Workload(concurrency=1, duration_s=3, warmup_s=0, payload=ROWS))
    print(
        f"\nopen loop  : {open_r.requests} requests, p50 {open_r.p50_ms:.1f} ms, "
        f"p90 {open_r.p90_ms:.1f} ms, p99 {open_r.p99_ms:.1f} ms"
        f"\nclosed loop: {closed_r.requests} requests, p50 {closed_r.p50_ms:.1f} ms, "
        f"p90 {closed_r.p90_ms:.1f} ms, p99 {closed_r.p99_ms:.1f} ms"
    )
    assert open_r.p99_ms >= 75, "open loop must show the injected stall in its tail"
    assert open_r.p90_ms >= 10
    # Closed loop: 3 stalls hit 3 requests out of many, so its p90 stays near the base delay.
    assert closed_r.requests > 3 * 20
    assert closed_r.p90_ms < open_r.p90_ms
    assert closed_r.max_ms >= 75, "closed loop still saw the stall, once per stall"


def test_warmup_requests_are_sent_but_not_recorded():
    with loopback_server(every_nth(1000, 0.001, 0.001)) as url:
        r = run_load(url, cs.Workload(rps=40, duration_s=1, warmup_s=0.5, payload=ROWS))
    assert r.warmup_requests == 20 and r.requests == 40


def test_http_errors_are_counted_by_class():
    # Request k answers 503 when k % 5 == 4, else 429 when k % 7 == 6, else 200.
    def status(k: int) -> int:
        if k % 5 == 4:
            return 503
        return 429 if k % 7 == 6 else 200

    with loopback_server(every_nth(1000, 0.001, 0.001), status=status) as url:
        r = run_load(url, cs.Workload(rps=50, duration_s=1, warmup_s=0, payload=ROWS))
    n5 = sum(1 for k in range(50) if k % 5 == 4)
    n429 = sum(1 for k in range(50) if k % 5 != 4 and k % 7 == 6)
    assert r.errors == {"5xx": n5, "throttled": n429}
    assert r.ok == 50 - n5 - n429
    assert r.error_rate == pytest.approx((n5 + n429) / 50)


def test_connection_refused_counts_as_connection_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_load(
        f"http://127.0.0.1:{port}/", cs.Workload(rps=20, duration_s=0.5, warmup_s=0, payload=ROWS)
    )
    assert r.errors == {"connection": 10} and r.ok == 0 and r.p50_ms is None


def test_callable_targets_and_cloudserve_errors():
    calls = []

    def predict(rows):
        calls.append(rows)
        n = len(calls)
        if n % 4 == 0:
            raise Throttled("slow down")
        if n % 9 == 0:
            raise ServiceUnavailable("down")
        return [sum(r) for r in rows]

    wl = cs.Workload(
        concurrency=2, duration_s=0.3, warmup_s=0, payload=ROWS * 3, rows_per_request=2
    )
    r = run_load(predict, wl)
    assert r.mode == "closed" and r.concurrency == 2
    assert set(r.errors) <= {"throttled", "5xx"} and r.errors["throttled"] >= 1
    assert all(len(rows) == 2 for rows in calls)
    assert r.ok + r.error_count == r.requests


def test_a_keyboard_interrupt_inside_a_request_stops_the_run():
    seen = []

    def predict(rows):
        seen.append(1)
        if len(seen) == 5:
            raise KeyboardInterrupt
        return rows

    with pytest.raises(KeyboardInterrupt):
        run_load(predict, cs.Workload(rps=100, duration_s=5, warmup_s=0, payload=ROWS))
    assert len(seen) < 500


def test_a_workload_without_payload_is_refused():
    with pytest.raises(cs.InvalidRequest, match="payload"):
        run_load(lambda rows: rows, cs.Workload(rps=1, duration_s=1))


def test_locustfile_export(tmp_path):
    wl = cs.Workload(rps=20, duration_s=60, warmup_s=5, payload=ROWS)
    path = tmp_path / "locustfile.py"
    text = export_locustfile("http://127.0.0.1:8080/invocations", wl, path)
    assert path.read_text() == text
    tree = ast.parse(text)
    assert any(isinstance(n, ast.ClassDef) and n.name == "CloudserveUser" for n in tree.body)
    assert "host = 'http://127.0.0.1:8080'" in text
    assert "self.client.post('/invocations'" in text
    assert "constant_throughput(5.0)" in text and "-u 4 -r 4 -t 65s" in text
    assert '{"instances": [[1.0, 2.0, 3.0, 4.0]]}' in text


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_requests_that_never_return_count_as_timeouts(mode):
    release = threading.Event()
    calls = []

    def predict(rows):
        calls.append(1)
        if len(calls) == 3:
            release.wait(30)  # hangs well past the workload's timeout
        return rows

    kw = {"rps": 10} if mode == "open" else {"concurrency": 2}
    wl = cs.Workload(duration_s=0.5, warmup_s=0, timeout_s=0.2, payload=ROWS, **kw)
    try:
        r = run_load(predict, wl)
    finally:
        release.set()
    assert r.errors == {"timeout": 1}
    assert r.ok == r.requests - 1 and r.ok >= 4
