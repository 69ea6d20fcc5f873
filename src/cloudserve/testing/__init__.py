"""Test support for providers: the harness a provider's tests fill in, and fault kinds.

The conformance tests themselves live in :mod:`cloudserve.testing.suite` (which needs pytest);
this module does not import pytest, so fakes and harnesses can be used from plain scripts::

    from cloudserve.testing import ProviderHarness
    from cloudserve.testing.suite import ProviderConformance

    class SageMakerHarness(ProviderHarness):
        def make_provider(self): ...

    class TestSageMaker(SageMakerHarness, ProviderConformance):
        pass
"""

from __future__ import annotations

import csv
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from cloudserve.provider import Provider
from cloudserve.specs import (
    Choice,
    IntRange,
    LogUniform,
    ModelSpec,
    Objective,
    TrainSpec,
    TuningSpec,
)

__all__ = ["Fault", "FaultNotSupported", "ProviderHarness", "make_sklearn_model", "sample_rows"]

N_FEATURES = 4


class Fault(str, Enum):
    """Faults a harness can inject into its fake service."""

    THROTTLE = "throttle"  # the next N requests are throttled (429 / ThrottlingException)
    UNAVAILABLE = "unavailable"  # the next N requests answer 503
    FAIL_OPERATION = "fail_operation"  # the next long-running operation ends in failure
    FAIL_AFTER_CREATE = "fail_after_create"  # a deploy fails after it created some resources


class FaultNotSupported(Exception):
    """Raised by a harness that cannot inject the fault; the suite skips the test."""


def sample_rows(n: int = 5, *, shift: float = 0.0, seed: int = 0) -> list[list[float]]:
    """``n`` rows of ``N_FEATURES`` standard-normal features (plus ``shift``), reproducible."""
    import random

    rng = random.Random(seed)
    return [[round(rng.gauss(shift, 1.0), 6) for _ in range(N_FEATURES)] for _ in range(n)]


def make_sklearn_model(
    directory: Path, *, version: str = "1", seed: int = 0, invert: bool = False
) -> Path:
    """Train a small scikit-learn classifier on ``N_FEATURES`` features into ``directory``.

    Writes ``model.joblib`` and the cloudserve manifest; returns the directory. ``invert`` trains
    on the opposite labels: a model that disagrees with the usual one on (almost) every row.
    """
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from cloudserve.packaging import write_manifest

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, N_FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    if invert:
        y = 1 - y
    model = LogisticRegression().fit(x, y)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    write_manifest(directory, framework="sklearn", version=version)
    return directory


def write_csv(path: Path, rows: list[list[float]], *, header: bool = True) -> Path:
    """Write feature rows as CSV with ``f0..fN`` column names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow([f"f{i}" for i in range(len(rows[0]))])
        w.writerows(rows)
    return path


TRAIN_SCRIPT = '''\
"""A tiny training script: the objective peaks at lr=0.01, depth=6."""
import argparse, math
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--depth", type=int, default=2)
p.add_argument("--kind", default="a")
a, _ = p.parse_known_args()
score = 1.0 - 0.1 * abs(math.log10(a.lr) + 2.0) - 0.02 * abs(a.depth - 6)
print(f"val_score={score:.6f}", flush=True)
'''


class ProviderHarness:
    """What the conformance suite needs to know about a provider under test.

    Override ``make_provider`` at least. A fake-backed harness also overrides
    ``inject_fault`` and ``leftover_resources``; the defaults make those tests skip.
    ``start``/``stop`` run around every test (start a fake, reset its state …).
    """

    #: Whether the provider talks to a native SDK whose errors must arrive chained as
    #: ``__cause__`` (False only for providers with no native layer, like ``local``).
    native_errors: ClassVar[bool] = True
    #: The instance of the provider under test is built with these waits in tests.
    tuning_trials: ClassVar[int] = 3

    def start(self, workdir: Path) -> None:
        """Prepare the fake service for one test."""

    def stop(self) -> None:
        """Tear the fake service down after one test."""

    def make_provider(self) -> Provider:
        """A provider instance pointed at the fake, with fast waits and retries."""
        raise NotImplementedError

    def model_spec(self, workdir: Path, version: str = "1") -> ModelSpec:
        """A small, real model artifact to deploy (default: a scikit-learn classifier)."""
        directory = make_sklearn_model(workdir / f"model-v{version}", version=version)
        return ModelSpec(
            name="cs-conf", version=version, artifact=str(directory), framework="sklearn"
        )

    def rows(self, n: int = 5, *, shift: float = 0.0, seed: int = 0) -> list[list[float]]:
        """Valid input rows for the model from :meth:`model_spec`."""
        return sample_rows(n, shift=shift, seed=seed)

    def bad_rows(self) -> list[list[float]]:
        """Rows the model must reject (wrong number of features)."""
        return [[1.0, 2.0]]

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        """Make the fake misbehave; raise FaultNotSupported if it cannot."""
        raise FaultNotSupported(fault.value)

    def leftover_resources(self) -> list[str]:
        """Every resource cloudserve created that the fake still holds (empty when clean).

        Raise FaultNotSupported when the harness cannot list them.
        """
        raise FaultNotSupported("leftover_resources")

    def batch_input(self, workdir: Path, rows: list[list[float]]) -> str:
        """Where the batch input lives (a local CSV by default; a fake bucket URI for clouds)."""
        return str(write_csv(workdir / "batch" / "input.csv", rows))

    def batch_output(self, workdir: Path) -> str:
        """Where the batch job should write its output."""
        return str(workdir / "batch" / "output")

    def read_batch_output(self, output: str) -> list[Any]:
        """The predictions the batch job wrote, in input order."""
        import orjson

        out = Path(output)
        files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]
        preds: list[Any] = []
        for f in files:
            if f.suffix == ".csv":
                with f.open() as fh:
                    reader = csv.DictReader(fh)
                    preds.extend(r.get("prediction") for r in reader if not r.get("error"))
            elif f.suffix in (".jsonl", ".out", ".json"):
                for line in f.read_text().splitlines():
                    if line.strip():
                        preds.append(orjson.loads(line))
        return preds

    def tuning_spec(self, workdir: Path) -> TuningSpec:
        """A small tuning job whose objective is known to peak inside the search space."""
        script = workdir / "tune" / "train.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(TRAIN_SCRIPT)
        return TuningSpec(
            train=TrainSpec(entrypoint=str(script)),
            search_space={
                "lr": LogUniform(low=1e-4, high=1e-1),
                "depth": IntRange(low=2, high=10),
                "kind": Choice(values=["a", "b"]),
            },
            objective=Objective(metric="val_score", goal="maximize"),
            max_trials=self.tuning_trials,
            parallel_trials=1,
            strategy="random",
            seed=1,
        )

    def publish_metrics(self, endpoint: str) -> None:
        """Make recent invocations visible to ``metrics()`` (fakes may need to flush)."""

    # -- rollout and shadow (RolloutConformance / ShadowConformance) --------------------------

    #: The clock the fake, the provider and a rollout share, set by ``start()`` of a harness
    #: whose provider declares ROLLOUT: a :class:`cloudserve.testing.rollout.SimClock` (the fake
    #: stamps requests with it, the provider ends metric windows with it) or ``WallClock()``.
    rollout_clock: Any = None

    def degrade_variant(
        self, endpoint: str, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        """Make ``variant`` of ``endpoint`` — not deployed yet, a rollout deploys it — fail
        ``error_rate`` of its requests and add ``latency_ms`` to its latency, visibly in its
        per-variant metrics. Raise FaultNotSupported if the harness cannot."""
        raise FaultNotSupported("degrade_variant")

    def different_model_spec(self, workdir: Path, version: str) -> ModelSpec:
        """A model of the same shape as :meth:`model_spec` that answers differently."""
        directory = make_sklearn_model(
            workdir / f"model-v{version}-inverted", version=version, invert=True
        )
        return ModelSpec(
            name="cs-conf", version=version, artifact=str(directory), framework="sklearn"
        )

    def settle_shadow(self) -> None:
        """Wait until every mirrored request has been answered and captured (a harness whose
        mirror runs off the caller's path waits here)."""
