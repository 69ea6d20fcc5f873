"""The prediction cache: repeated inputs answered without running the model.

Keys hash the model name and version, the parameters and the canonical JSON of the instances,
so a new model version never sees the old one's answers. In-process LRU by default; Redis when a
URL is given, so replicas share one cache. A Redis failure is logged and counted as a miss: the
cache can make a request faster, never make it fail.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from typing import Any

import numpy as np
import orjson

__all__ = ["LRUCache", "PredictionCache", "RedisCache", "cache_key", "make_cache"]

log = logging.getLogger("cloudserve.serving")
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def cache_key(model: str, version: str, instances: Any, parameters: dict[str, Any]) -> str:
    """A stable key for one request's inputs to one model version."""
    if isinstance(instances, np.ndarray):
        instances = instances.tolist()
    digest = hashlib.blake2b(orjson.dumps([instances, parameters], option=_OPTS), digest_size=20)
    return f"cloudserve:{model}:{version}:{digest.hexdigest()}"


class PredictionCache:
    """The interface both caches share: async ``get(key)`` and ``set(key, outputs)``."""

    async def get(self, key: str) -> list[Any] | None:
        """The cached outputs, or ``None`` on a miss."""
        raise NotImplementedError

    async def set(self, key: str, outputs: list[Any]) -> None:
        """Remember the outputs of one request."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


class LRUCache(PredictionCache):
    """At most ``size`` entries in this process; the least recently used goes first."""

    def __init__(self, size: int):
        self.size = size
        self._data: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    async def get(self, key: str) -> list[Any] | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        self._data.move_to_end(key)
        return orjson.loads(hit)  # a fresh copy: callers may not mutate the cached value

    async def set(self, key: str, outputs: list[Any]) -> None:
        self._data[key] = orjson.dumps(outputs, option=_OPTS)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class RedisCache(PredictionCache):
    """A Redis server shared by every replica; entries expire after ``ttl_s``."""

    def __init__(self, url: str, ttl_s: int):
        import redis.asyncio as redis

        self.url = url
        self.ttl_s = ttl_s
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def get(self, key: str) -> list[Any] | None:
        try:
            hit = await self._client.get(key)
        except Exception as exc:  # any Redis trouble degrades to a miss
            log.warning("prediction cache get failed (%s): %s", self.url, exc)
            return None
        return None if hit is None else orjson.loads(hit)

    async def set(self, key: str, outputs: list[Any]) -> None:
        try:
            await self._client.set(key, orjson.dumps(outputs, option=_OPTS), ex=self.ttl_s)
        except Exception as exc:
            log.warning("prediction cache set failed (%s): %s", self.url, exc)

    async def close(self) -> None:
        await self._client.aclose()


def make_cache(size: int, url: str | None, ttl_s: int) -> PredictionCache | None:
    """The cache the settings ask for, or ``None`` when caching is off."""
    if url:
        return RedisCache(url, ttl_s)
    if size > 0:
        return LRUCache(size)
    return None
