"""An in-memory provider: the template a new provider starts from, and the suite's own proof.

Its "cloud" is a :class:`MemoryService` that raises its own native errors
(:class:`MemoryServiceError`), so the provider goes through the same translate / retry paths as
a real one: an :class:`~cloudserve.errors.ErrorTable` from native codes to the error tree,
``self.call(...)`` around every service request (``retry=False`` for creates), shared status
enums, typed results. The model it "serves" adds up each row's features, so outputs are
checkable by hand.

A third-party provider starts by copying this module and :class:`MemoryHarness` (at the end),
then replaces the service with its cloud's SDK::

    from cloudserve.testing.memory import MemoryHarness
    from cloudserve.testing.suite import ProviderConformance

    class TestMemoryConformance(MemoryHarness, ProviderConformance):
        pass

It needs no pytest (only :mod:`cloudserve.testing.suite` does).
"""

from __future__ import annotations

import csv
import itertools
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from cloudserve.errors import (
    AlreadyExists,
    ErrorTable,
    InvalidRequest,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    Throttled,
)
from cloudserve.provider import Capability, Provider, ProviderConfig, RetrySettings, WaitSettings
from cloudserve.resources import (
    AsyncPrediction,
    BatchJob,
    Endpoint,
    EndpointStatus,
    JobStatus,
    MetricsReport,
    ModelVersion,
    Prediction,
    Trial,
    TuningJob,
    Variant,
)
from cloudserve.specs import BatchSpec, DeploySpec, ModelSpec, TuningSpec
from cloudserve.testing import Fault, ProviderHarness
from cloudserve.waiting import ProgressCallback

__all__ = [
    "MemoryConfig",
    "MemoryHarness",
    "MemoryProvider",
    "MemoryService",
    "MemoryServiceError",
]

N_FEATURES = 4


class MemoryServiceError(Exception):
    """The fake cloud's native error: a code and a message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class MemoryService:
    """The fake cloud: resources by kind and name, plus fault switches."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    throttle: int = 0
    unavailable: int = 0
    fail_operation: str | None = None
    fail_after_create: str | None = None
    requests: int = 0

    def request(self) -> None:
        self.requests += 1
        if self.throttle > 0:
            self.throttle -= 1
            raise MemoryServiceError("Throttling", "rate exceeded")
        if self.unavailable > 0:
            self.unavailable -= 1
            raise MemoryServiceError("Unavailable", "service unavailable")

    def create(self, kind: str, name: str, value: Any) -> None:
        self.request()
        bucket = self.resources.setdefault(kind, {})
        if name in bucket:
            raise MemoryServiceError("Exists", f"{kind} {name} already exists")
        bucket[name] = value

    def get(self, kind: str, name: str) -> Any:
        self.request()
        try:
            return self.resources[kind][name]
        except KeyError as exc:
            raise MemoryServiceError("NoSuch", f"{kind} {name} not found") from exc

    def delete(self, kind: str, name: str) -> None:
        self.request()
        if name not in self.resources.get(kind, {}):
            raise MemoryServiceError("NoSuch", f"{kind} {name} not found")
        del self.resources[kind][name]

    def names(self, kind: str) -> list[str]:
        self.request()
        return list(self.resources.get(kind, {}))

    def all_resources(self) -> list[str]:
        return [f"{k}/{n}" for k, bucket in self.resources.items() for n in bucket]


def _extract(exc: BaseException) -> tuple[str, str, float | None] | None:
    if isinstance(exc, MemoryServiceError):
        return exc.code, str(exc), 0.0 if exc.code == "Throttling" else None
    return None


class MemoryConfig(ProviderConfig):
    """The memory provider's config block; ``label`` picks one of the in-process services."""

    provider: Literal["memory"] = "memory"
    label: str = "memory"


class MemoryProvider(Provider):
    """Every capability but serverless, pricing refresh, rollout and shadow, on a
    :class:`MemoryService`."""

    name = "memory"
    config_cls = MemoryConfig
    unsupported = {
        Capability.SERVERLESS: "the memory provider has no serverless tier",
        Capability.PRICING_REFRESH: "the memory provider has no prices",
        Capability.ROLLOUT: "the memory provider keeps no per-variant metrics to gate a rollout on",
        Capability.SHADOW: "the memory provider does not mirror requests",
    }
    capabilities = frozenset(Capability) - set(unsupported)
    error_table = ErrorTable(
        {
            "NoSuch": NotFound,
            "Exists": AlreadyExists,
            "Throttling": Throttled,
            "Unavailable": ServiceUnavailable,
            "BadInput": InvalidRequest,
        },
        extract=_extract,
    )
    services: ClassVar[dict[str, MemoryService]] = {}

    def __init__(self, config: ProviderConfig, *, target: str | None = None):
        super().__init__(config, target=target)
        self.service = self.services.setdefault(getattr(config, "label", "memory"), MemoryService())
        self._ids = itertools.count(1)

    # -- endpoints -----------------------------------------------------------------------

    def deploy(
        self,
        spec: DeploySpec,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Endpoint:
        s = self.service
        try:
            state = self.call(s.get, "endpoint", spec.endpoint)
        except NotFound:
            state = None
        variant = spec.variant_name
        if state and state["variants"].get(variant, {}).get("spec") == spec:
            return self.get_endpoint(spec.endpoint)
        created: list[tuple[str, str]] = []
        try:
            model_key = f"{spec.model.name}-{spec.model.version}"
            if model_key not in s.resources.get("model", {}):
                self.call(s.create, "model", model_key, spec.model, retry=False)
                created.append(("model", model_key))
            if s.fail_after_create:
                msg, s.fail_after_create = s.fail_after_create, None
                raise MemoryServiceError("Internal", msg)
            if state is None:
                state = {"variants": {}, "created": time.time()}
                self.call(s.create, "endpoint", spec.endpoint, state, retry=False)
                created.append(("endpoint", spec.endpoint))
            if s.fail_operation:
                msg, s.fail_operation = s.fail_operation, None
                raise OperationFailed(
                    f"deploy of {spec.endpoint} failed: {msg}", provider=self.name
                )
            self._place_variant(state, variant, spec)
        except Exception as exc:
            if not spec.keep_on_failure:
                for kind, name in reversed(created):
                    s.resources.get(kind, {}).pop(name, None)
            raise self.translate(exc) from exc
        return self.get_endpoint(spec.endpoint)

    def _place_variant(self, state: dict[str, Any], variant: str, spec: DeploySpec) -> None:
        variants = state["variants"]
        if spec.traffic == 100:
            for old in [v for v in variants if v != variant]:
                self.service.resources.get("model", {}).pop(variants[old]["model_key"], None)
                del variants[old]
            variants[variant] = {
                "spec": spec,
                "weight": 100,
                "model_key": f"{spec.model.name}-{spec.model.version}",
            }
            return
        rest = 100 - spec.traffic
        others = {k: v for k, v in variants.items() if k != variant}
        total = sum(v["weight"] for v in others.values()) or 1
        for v in others.values():
            v["weight"] = round(v["weight"] * rest / total)
        variants[variant] = {
            "spec": spec,
            "weight": spec.traffic,
            "model_key": f"{spec.model.name}-{spec.model.version}",
        }

    def _endpoint(self, name: str, state: dict[str, Any]) -> Endpoint:
        variants = [
            Variant(
                name=vname,
                model_name=v["spec"].model.name,
                model_version=v["spec"].model.version,
                weight=v["weight"],
                instance_type="memory",
            )
            for vname, v in state["variants"].items()
        ]
        return Endpoint(
            name=name, provider=self.name, status=EndpointStatus.READY, variants=variants, raw=state
        )

    def get_endpoint(self, name: str) -> Endpoint:
        return self._endpoint(name, self.call(self.service.get, "endpoint", name))

    def list_endpoints(self) -> list[Endpoint]:
        names = self.call(self.service.names, "endpoint")
        return [self._endpoint(n, self.service.resources["endpoint"][n]) for n in names]

    def delete_endpoint(self, name: str, *, wait: bool = True) -> None:
        try:
            state = self.call(self.service.get, "endpoint", name)
        except NotFound:
            return
        for v in state["variants"].values():
            self.service.resources.get("model", {}).pop(v["model_key"], None)
        self.call(self.service.delete, "endpoint", name)

    def set_traffic(self, endpoint: str, weights: dict[str, int]) -> Endpoint:
        state = self.call(self.service.get, "endpoint", endpoint)
        unknown = set(weights) - set(state["variants"])
        if unknown:
            raise InvalidRequest(f"unknown variants: {sorted(unknown)}", provider=self.name)
        for name, v in state["variants"].items():
            v["weight"] = weights.get(name, 0)
        return self.get_endpoint(endpoint)

    def delete_variant(self, endpoint: str, variant: str) -> Endpoint:
        state = self.call(self.service.get, "endpoint", endpoint)
        v = state["variants"].get(variant)
        if v is None:
            raise NotFound(f"variant {variant} not found on {endpoint}", provider=self.name)
        if v["weight"] > 0:
            raise InvalidRequest(
                f"variant {variant} takes {v['weight']}% of {endpoint}; move its traffic first",
                provider=self.name,
            )
        del state["variants"][variant]
        self.service.resources.get("model", {}).pop(v["model_key"], None)
        return self.get_endpoint(endpoint)

    # -- predict -------------------------------------------------------------------------

    def _score(self, rows: list[Any]) -> list[float]:
        for i, r in enumerate(rows):
            if not isinstance(r, list | tuple) or len(r) != N_FEATURES:
                raise MemoryServiceError("BadInput", f"row {i} must have {N_FEATURES} features")
        return [round(sum(float(x) for x in r), 6) for r in rows]

    def predict(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Prediction:
        state = self.call(self.service.get, "endpoint", endpoint)
        name = variant or max(state["variants"], key=lambda k: state["variants"][k]["weight"])
        if name not in state["variants"]:
            raise NotFound(f"variant {name} not found", provider=self.name)
        t0 = time.perf_counter()
        try:
            outputs = self._score(instances)
        except MemoryServiceError as exc:
            state.setdefault("errors", 0)
            state["errors"] += 1
            raise self.translate(exc) from exc
        ms = (time.perf_counter() - t0) * 1000
        state.setdefault("latencies", []).append(ms)
        state.setdefault("captured", []).extend([list(map(float, r)) for r in instances])
        spec = state["variants"][name]["spec"]
        return Prediction(
            outputs=outputs, model_version=spec.model.version, variant=name, latency_ms=ms
        )

    def predict_async(
        self,
        endpoint: str,
        instances: list[Any],
        *,
        variant: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncPrediction:
        pred = self.predict(endpoint, instances, variant=variant, parameters=parameters)
        rid = f"req-{next(self._ids)}"
        self.service.resources.setdefault("async", {})[rid] = pred.outputs
        return AsyncPrediction(request_id=rid, endpoint=endpoint, status=JobStatus.PENDING)

    def get_async_result(self, endpoint: str, request_id: str) -> AsyncPrediction:
        outputs = self.call(self.service.get, "async", request_id)
        return AsyncPrediction(
            request_id=request_id, endpoint=endpoint, status=JobStatus.SUCCEEDED, outputs=outputs
        )

    # -- batch ---------------------------------------------------------------------------

    def batch_predict(self, spec: BatchSpec) -> BatchJob:
        job_id = f"batch-{next(self._ids)}"
        out_dir = Path(spec.output)
        out_dir.mkdir(parents=True, exist_ok=True)
        ok = failed = 0
        with (
            open(spec.input, newline="") as fh,
            (out_dir / "predictions.csv").open("w", newline="") as out,
        ):
            reader = csv.reader(fh)
            next(reader)
            writer = csv.writer(out)
            writer.writerow(["row", "prediction", "error"])
            for i, row in enumerate(reader):
                try:
                    writer.writerow([i, self._score([[float(x) for x in row]])[0], ""])
                    ok += 1
                except (MemoryServiceError, ValueError) as exc:
                    writer.writerow([i, "", str(exc)])
                    failed += 1
        job = BatchJob(
            id=job_id,
            provider=self.name,
            status=JobStatus.SUCCEEDED,
            input=spec.input,
            output=str(out_dir),
            rows_total=ok + failed,
            rows_succeeded=ok,
            rows_failed=failed,
        )
        self.service.resources.setdefault("batch", {})[job_id] = job
        return job

    def get_batch_job(self, job_id: str) -> BatchJob:
        return self.call(self.service.get, "batch", job_id)

    # -- tuning --------------------------------------------------------------------------

    def tune(self, spec: TuningSpec) -> TuningJob:
        import math
        import random

        rng = random.Random(spec.seed)
        trials = []
        for n in range(spec.max_trials):
            params: dict[str, Any] = {}
            for pname, p in spec.search_space.items():
                if p.kind == "choice":
                    params[pname] = rng.choice(p.values)
                elif p.kind == "int":
                    params[pname] = rng.randint(p.low, p.high)
                elif p.kind == "loguniform":
                    params[pname] = 10 ** rng.uniform(math.log10(p.low), math.log10(p.high))
                else:
                    params[pname] = rng.uniform(p.low, p.high)
            args = [x for k, v in params.items() for x in (f"--{k}", str(v))]
            out = subprocess.run(
                [sys.executable, str(spec.train.entrypoint), *args],
                capture_output=True,
                text=True,
                check=True,
            )
            m = re.search(spec.objective.pattern, out.stdout)
            trials.append(
                Trial(
                    id=str(n),
                    params=params,
                    status=JobStatus.SUCCEEDED,
                    value=float(m.group(1)) if m else None,
                    log=out.stdout,
                )
            )
        scored = [t for t in trials if t.value is not None]
        pick = max if spec.objective.goal == "maximize" else min
        best = pick(scored, key=lambda t: float(t.value or 0.0)) if scored else None
        job = TuningJob(
            id=f"tune-{next(self._ids)}",
            provider=self.name,
            status=JobStatus.SUCCEEDED,
            objective=spec.objective.metric,
            goal=spec.objective.goal,
            trials=trials,
            best_trial=best,
        )
        self.service.resources.setdefault("tuning", {})[job.id] = job
        return job

    def get_tuning_job(self, job_id: str) -> TuningJob:
        return self.call(self.service.get, "tuning", job_id)

    # -- monitoring, registry ------------------------------------------------------------

    def metrics(self, endpoint: str, window_s: float) -> MetricsReport:
        import numpy as np

        state = self.call(self.service.get, "endpoint", endpoint)
        lat = state.get("latencies", [])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99]).tolist() if lat else (None, None, None)
        return MetricsReport(
            endpoint=endpoint,
            provider=self.name,
            window_s=window_s,
            invocations=len(lat),
            errors={"4xx": state.get("errors", 0)},
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
        )

    def captured_inputs(self, endpoint: str, window_s: float) -> list[list[float]]:
        return list(self.call(self.service.get, "endpoint", endpoint).get("captured", []))

    def register_model(self, model: ModelSpec, lineage: dict[str, Any]) -> ModelVersion:
        key = f"{model.name}:{model.version}"
        mv = ModelVersion(
            name=model.name,
            version=model.version,
            provider=self.name,
            uri=model.artifact,
            framework=model.framework,
            lineage=lineage,
        )
        self.service.resources.setdefault("registry", {})[key] = mv
        return mv

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        return [
            m for m in self.service.resources.get("registry", {}).values() if name in (None, m.name)
        ]


FAST = {
    "retry": RetrySettings(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01),
    "waits": WaitSettings(poll_interval_s=0.001, max_poll_interval_s=0.01),
}


class MemoryHarness(ProviderHarness):
    """The conformance harness of :class:`MemoryProvider`: one fresh service per test."""

    provider_cls: ClassVar[type[MemoryProvider]] = MemoryProvider

    def start(self, workdir: Path) -> None:
        self.label = f"conf-{id(self)}-{workdir.name}"
        MemoryProvider.services[self.label] = MemoryService()

    def stop(self) -> None:
        MemoryProvider.services.pop(self.label, None)

    @property
    def service(self) -> MemoryService:
        return MemoryProvider.services[self.label]

    def make_provider(self) -> MemoryProvider:
        return self.provider_cls(MemoryConfig(label=self.label, **FAST))

    def model_spec(self, workdir: Path, version: str = "1") -> ModelSpec:
        d = workdir / f"model-v{version}"
        d.mkdir(parents=True, exist_ok=True)
        return ModelSpec(name="cs-conf", version=version, artifact=str(d), framework="custom")

    def inject_fault(
        self, fault: Fault, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        s = self.service
        if fault is Fault.THROTTLE:
            s.throttle = times
        elif fault is Fault.UNAVAILABLE:
            s.unavailable = times
        elif fault is Fault.FAIL_OPERATION:
            s.fail_operation = message
        else:
            s.fail_after_create = message

    def leftover_resources(self) -> list[str]:
        return [r for r in self.service.all_resources() if r.split("/")[0] in ("endpoint", "model")]
