"""The prediction cache: in-process LRU, and Redis against a real redis-server."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloudserve.serving import BackgroundServer
from cloudserve.serving._cache import LRUCache, RedisCache, cache_key
from cloudserve.testing.components import needs


def counter(metrics: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert m, f"{name} missing"
    return float(m.group(1))


def test_lru_keeps_the_most_recently_used_entries():
    async def scenario() -> list:
        cache = LRUCache(2)
        await cache.set("a", [1])
        await cache.set("b", [2])
        await cache.get("a")
        await cache.set("c", [3])
        return [await cache.get(k) for k in "abc"]

    assert asyncio.run(scenario()) == [[1], None, [3]]


def test_cache_keys_depend_on_version_parameters_and_input():
    base = cache_key("m", "1", [[1.0, 2.0]], {})
    assert base == cache_key("m", "1", [[1.0, 2.0]], {})
    assert base != cache_key("m", "2", [[1.0, 2.0]], {})
    assert base != cache_key("m", "1", [[1.0, 2.5]], {})
    assert base != cache_key("m", "1", [[1.0, 2.0]], {"method": "predict_proba"})
    assert cache_key("m", "1", [{"a": 1, "b": 2}], {}) == cache_key(
        "m", "1", [{"b": 2, "a": 1}], {}
    )


def exercise_cache(url: str) -> tuple[list, list, str]:
    with httpx.Client(base_url=url) as http:
        first = http.post("/invocations", json=[[1, 2]]).json()
        second = http.post("/invocations", json=[[1, 2]]).json()
        metrics = http.get("/metrics").text
    return first, second, metrics


def test_repeated_input_is_served_from_the_lru_cache(custom_dir: Path):
    with BackgroundServer(custom_dir, cache_size=100) as srv:
        first, second, metrics = exercise_cache(srv.url)
        calls = len(srv.app.model.predictor.batches)
    assert first == second == {"predictions": [3.5]}
    assert counter(metrics, "cloudserve_cache_hits_total") == 1
    assert counter(metrics, "cloudserve_cache_misses_total") == 1
    assert calls == 1


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = needs(
        "redis-server", "the shared Redis prediction cache; apt-get install redis-server"
    )
    pytest.importorskip("redis", reason="the redis client is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_replicas_share_the_redis_cache(custom_dir: Path, redis_url: str):
    with BackgroundServer(custom_dir, cache_url=redis_url) as one:
        first, _, metrics_one = exercise_cache(one.url)
    with BackgroundServer(custom_dir, cache_url=redis_url) as two:
        again, _, metrics_two = exercise_cache(two.url)
        calls = len(two.app.model.predictor.batches)
    assert first == again == {"predictions": [3.5]}
    assert counter(metrics_one, "cloudserve_cache_misses_total") == 1
    assert counter(metrics_two, "cloudserve_cache_hits_total") == 2
    assert calls == 0  # the second replica never ran the model


def test_an_unreachable_redis_degrades_to_misses(custom_dir: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    with BackgroundServer(custom_dir, cache_url=f"redis://127.0.0.1:{port}/0") as srv:
        first, second, metrics = exercise_cache(srv.url)
    assert first == second == {"predictions": [3.5]}
    assert counter(metrics, "cloudserve_cache_misses_total") == 2


def test_redis_cache_round_trip(redis_url: str):
    async def scenario() -> list:
        cache = RedisCache(redis_url, ttl_s=60)
        await cache.set("k", [{"a": 1}, 2.5])
        try:
            return [await cache.get("k"), await cache.get("missing")]
        finally:
            await cache.close()

    assert asyncio.run(scenario()) == [[{"a": 1}, 2.5], None]
