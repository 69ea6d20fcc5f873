from __future__ import annotations

import pytest

from cloudserve.errors import InvalidRequest, ServiceUnavailable, Throttled, Timeout
from cloudserve.retry import RetryPolicy, is_retryable
from cloudserve.waiting import wait_for


def flaky(errors):
    calls = []

    def fn():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return fn, calls


def test_retries_only_retry_safe_errors():
    sleeps: list[float] = []
    policy = RetryPolicy(
        max_attempts=5, initial_backoff_s=0.1, max_backoff_s=1, sleep=sleeps.append
    )
    fn, calls = flaky([Throttled("slow down"), ServiceUnavailable("503"), ConnectionResetError()])
    assert policy.call(fn) == "ok" and len(calls) == 4 and len(sleeps) == 3
    assert all(0 <= s <= 1 for s in sleeps)
    fn, calls = flaky([InvalidRequest("bad")])
    with pytest.raises(InvalidRequest):
        policy.call(fn)
    assert len(calls) == 1


def test_attempts_are_bounded_and_last_error_raised():
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0, sleep=lambda s: None)
    fn, calls = flaky([Throttled(str(i)) for i in range(10)])
    with pytest.raises(Throttled, match="2"):
        policy.call(fn)
    assert len(calls) == 3


def test_retry_after_is_honoured_and_capped():
    sleeps: list[float] = []
    policy = RetryPolicy(
        max_attempts=3, initial_backoff_s=0.01, max_backoff_s=5, sleep=sleeps.append
    )
    fn, _ = flaky([Throttled("a", retry_after=2.5), Throttled("b", retry_after=60)])
    policy.call(fn)
    assert sleeps == [2.5, 5]


def test_is_retryable():
    assert is_retryable(Throttled("x")) and is_retryable(TimeoutError())
    assert not is_retryable(ValueError()) and not is_retryable(InvalidRequest("x"))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_wait_for_returns_when_done_with_progress():
    clock = FakeClock()
    states = iter(["CREATING", "CREATING", "READY"])
    seen = []
    result = wait_for(
        lambda: next(states),
        is_done=lambda s: s == "READY",
        timeout=60,
        description="deploy",
        progress=seen.append,
        sleep=clock.sleep,
        clock=clock,
        interval=1,
    )
    assert result == "READY"
    assert [p.status for p in seen] == ["CREATING", "CREATING", "READY"] and seen[-1].done


def test_wait_for_times_out_naming_last_status():
    clock = FakeClock()
    with pytest.raises(Timeout, match="last status: CREATING"):
        wait_for(
            lambda: "CREATING",
            is_done=lambda s: False,
            timeout=10,
            description="deploy",
            sleep=clock.sleep,
            clock=clock,
            interval=1,
            max_interval=4,
        )
    assert clock.now == pytest.approx(10, abs=0.01)


def test_wait_requires_timeout():
    with pytest.raises(ValueError):
        wait_for(lambda: 1, is_done=bool, timeout=0, description="x")
