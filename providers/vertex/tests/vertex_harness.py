"""The conformance-suite harness for the Vertex AI provider, backed by the fake service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from cloudserve.specs import ModelSpec
from cloudserve.testing import Fault, ProviderHarness, make_sklearn_model
from cloudserve_vertex import VertexProvider
from cloudserve_vertex.testing import FakeVertex

FAULTS = {
    Fault.THROTTLE: "throttle",
    Fault.UNAVAILABLE: "unavailable",
    Fault.FAIL_OPERATION: "fail_operation",
    Fault.FAIL_AFTER_CREATE: "fail_deploy",
}


class VertexHarness(ProviderHarness):
    """Runs the real GAPIC REST clients against a fresh fake served on a local port.

    Every LRO answers not-done twice before it finishes, so the provider's polling is real.
    """

    fake: FakeVertex

    def start(self, workdir: Path) -> None:
        self.fake = FakeVertex(workdir=workdir / "fake-vertex", operation_polls=2).serve()

    def stop(self) -> None:
        rejected = self.fake.rejected()
        self.fake.stop()
        assert rejected == [], f"requests that do not fit the discovery document: {rejected}"

    def make_provider(self) -> VertexProvider:
        return VertexProvider(self.fake.config())

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        self.fake.inject(FAULTS[fault], times=times, message=message, retry_after="0.01")

    def leftover_resources(self) -> list[str]:
        return self.fake.leftovers()

    def read_batch_output(self, output: str) -> list[Any]:
        """Vertex writes ``prediction.results-0000X-of-0000N`` files of
        ``{"instance": …, "prediction": …}`` lines; keep the predictions, shard by shard."""
        preds: list[Any] = []
        for f in sorted(Path(output).glob("prediction.results-*")):
            preds.extend(
                orjson.loads(line)["prediction"]
                for line in f.read_text().splitlines()
                if line.strip()
            )
        return preds

    def publish_metrics(self, endpoint: str) -> None:
        """The fake publishes time series and request logs as requests arrive."""


def churn_model(tmp_path: Path, version: str = "1") -> ModelSpec:
    """Model ``churn`` at ``version``: a scikit-learn classifier saved by today's library."""
    directory = make_sklearn_model(tmp_path / f"m{version}", version=version)
    return ModelSpec(name="churn", version=version, artifact=str(directory), framework="sklearn")
