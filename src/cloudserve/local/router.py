"""Which variant and which worker serve a request.

Variants are chosen by weight. With a routing key (``parameters={"routing_key": ...}``) the
choice is a stable hash of the key, so one user keeps hitting the same variant while the split
does not change. Within a variant, requests go round-robin over its live workers.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
from collections.abc import Sequence

__all__ = ["ROUTING_KEY", "RoundRobin", "pick_variant"]

ROUTING_KEY = "routing_key"


def _point(key: str | None) -> float:
    """A point in [0, 100): from the key's hash when given, else random."""
    if key is None:
        return random.random() * 100
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def pick_variant(weights: Sequence[tuple[str, int]], key: str | None = None) -> str | None:
    """The variant a request goes to, by weight; None when every weight is 0.

    ``weights`` is (name, percent) pairs; the order is normalised (sorted by name) so that
    every process maps a routing key to the same variant.
    """
    ordered = sorted((name, w) for name, w in weights if w > 0)
    total = sum(w for _, w in ordered)
    if total == 0:
        return None
    point = _point(key) * total / 100
    upto = 0.0
    for name, w in ordered:
        upto += w
        if point < upto:
            return name
    return ordered[-1][0]


class RoundRobin:
    """Rotates over the workers of each variant; thread-safe."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}
        self._lock = threading.Lock()

    def order(self, endpoint: str, variant: str, items: Sequence[int]) -> list[int]:
        """``items`` rotated so that successive calls start at successive items."""
        if not items:
            return []
        with self._lock:
            counter = self._counters.setdefault((endpoint, variant), itertools.count())
            start = next(counter) % len(items)
        return [*items[start:], *items[:start]]
