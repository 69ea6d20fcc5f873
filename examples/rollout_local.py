"""A metric-gated rollout on the local backend: a good version is promoted step by step, a
version that fails one request in five is rolled back at its first step.

    python examples/rollout_local.py

Runs offline in about a minute; everything it creates is deleted at the end. On a cloud target
the same calls work with bake times the cloud's metrics allow (at least a minute).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import cloudserve as cs
from cloudserve.packaging import write_manifest

PREDICTOR = """\
from cloudserve.serving import Predictor

FAIL_EVERY = {fail_every}


class Scorer(Predictor):
    def load(self, path):
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        if FAIL_EVERY and self.calls % FAIL_EVERY == 0:
            raise RuntimeError("a bug in this version")
        return [sum(r) for r in rows]
"""


def version(root: Path, number: str, fail_every: int = 0) -> cs.ModelSpec:
    """A model version directory: a custom predictor summing each row (maybe buggy)."""
    d = root / f"v{number}"
    d.mkdir()
    (d / "scorer.py").write_text(PREDICTOR.format(fail_every=fail_every))
    write_manifest(d, framework="custom", version=number, predictor="scorer:Scorer")
    return cs.ModelSpec(name="scorer", version=number, artifact=str(d), framework="custom")


class ShopTraffic:
    """Time for the rollout: each bake sends real requests, as users would meanwhile."""

    def __init__(self, client: cs.Client, endpoint: str, requests_per_bake: int = 150):
        self.client, self.endpoint, self.n = client, endpoint, requests_per_bake

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        for i in range(self.n):
            with contextlib.suppress(
                cs.CloudServeError
            ):  # errors are what the gates are there to see
                self.client.predict(self.endpoint, [[float(i), 2.0]])


def main() -> None:
    client = cs.connect("local")
    root = Path(tempfile.mkdtemp(prefix="rollout-"))
    gates = cs.Gates(max_error_rate=0.02, min_invocations=10, max_p99_ratio=None)
    try:
        client.deploy(version(root, "1"), "scorer", variant="v1")
        print("live:", client.get_endpoint("scorer").traffic)

        good = client.rollout(version(root, "2"), "scorer", steps=[10, 50, 100], bake="2s",
                              gates=gates, clock=ShopTraffic(client, "scorer"))  # fmt: skip
        print("v2:", good.summary())
        assert good.outcome == "completed"

        buggy = version(root, "3", fail_every=5)
        bad = client.rollout(buggy, "scorer", steps=[10, 50, 100], bake="2s", gates=gates,
                             clock=ShopTraffic(client, "scorer"))  # fmt: skip
        print("v3:", bad.summary())
        assert bad.outcome == "rolled_back" and bad.failed_gate is not None
        print("live:", client.get_endpoint("scorer").traffic)
    finally:
        client.delete_endpoint("scorer")


if __name__ == "__main__":
    main()
