"""The conformance suite every provider passes.

Subclass a :class:`~cloudserve.testing.ProviderHarness` together with
:class:`ProviderConformance` (or the individual ``*Tests`` classes). Tests of a capability the
provider does not declare ``pytest.skip`` with the provider's reason — and
``test_undeclared_capabilities_raise`` checks that each such operation raises
``UnsupportedOperation`` instead of silently doing something. Overriding a standard test is
allowed only with an ``xfail`` mark that gives a reason; ``test_no_unmarked_overrides`` fails
otherwise.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudserve.client import Client
from cloudserve.errors import (
    CloudServeError,
    InvalidRequest,
    NotFound,
    OperationFailed,
    Throttled,
    UnsupportedOperation,
)
from cloudserve.provider import Capability, Provider
from cloudserve.resources import EndpointStatus, JobStatus
from cloudserve.specs import BatchSpec, Compute, DataCapture, DeploySpec
from cloudserve.testing import Fault, FaultNotSupported, ProviderHarness
from cloudserve.testing.parity import ParityChecks

__all__ = [
    "AnswersParityTests",
    "AsyncTests",
    "BatchTests",
    "DeployTests",
    "DriftTests",
    "ErrorTests",
    "FaultTests",
    "MetricsTests",
    "PredictTests",
    "ProviderConformance",
    "RegistryTests",
    "RolloutConformance",
    "ShadowConformance",
    "TrafficTests",
    "TuneTests",
]


class _Base:
    """Fixtures shared by every conformance class."""

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> Iterator[Path]:
        harness: ProviderHarness = self  # type: ignore[assignment]
        harness.start(tmp_path)
        try:
            yield tmp_path
        finally:
            harness.stop()

    @pytest.fixture
    def provider(self, workdir: Path) -> Iterator[Provider]:
        p = self.make_provider()  # type: ignore[attr-defined]
        try:
            yield p
        finally:
            p.close()

    @pytest.fixture
    def client(self, provider: Provider) -> Client:
        return Client(provider, target=provider.name)

    @pytest.fixture
    def endpoint_name(self, client: Client) -> Iterator[str]:
        name = f"cs-{uuid.uuid4().hex[:8]}"
        yield name
        with contextlib.suppress(CloudServeError):
            client.delete_endpoint(name)

    def harness(self) -> ProviderHarness:
        return self  # type: ignore[return-value]

    def need(self, provider: Provider, capability: Capability) -> None:
        if not provider.supports(capability):
            pytest.skip(f"{capability.value}: {provider.reason(capability)}")

    def fault(self, fault: Fault, **kwargs: Any) -> None:
        try:
            self.harness().inject_fault(fault, **kwargs)
        except FaultNotSupported:
            pytest.skip(f"the harness cannot inject {fault.value}")

    def leftovers(self) -> list[str]:
        try:
            return self.harness().leftover_resources()
        except FaultNotSupported:
            pytest.skip("the harness cannot list leftover resources")

    def deploy(self, client: Client, workdir: Path, endpoint: str, version: str = "1", **kw: Any):
        model = self.harness().model_spec(workdir, version)
        return client.deploy(model, endpoint, kw.pop("compute", Compute()), **kw)


class DeployTests(_Base):
    """Deploy, get, list, delete: the required core."""

    def test_deploy_creates_ready_endpoint(self, client: Client, workdir: Path, endpoint_name: str):
        ep = self.deploy(client, workdir, endpoint_name)
        assert ep.name == endpoint_name
        assert ep.status is EndpointStatus.READY
        assert ep.provider == client.provider.name
        assert len(ep.variants) == 1
        assert ep.variants[0].weight == 100
        assert ep.variants[0].model_version == "1"
        fetched = client.get_endpoint(endpoint_name)
        assert isinstance(fetched.status, EndpointStatus)
        assert fetched.status is EndpointStatus.READY
        assert endpoint_name in {e.name for e in client.list_endpoints()}

    def test_redeploy_same_spec_is_noop(self, client: Client, workdir: Path, endpoint_name: str):
        first = self.deploy(client, workdir, endpoint_name)
        before = self.harness_resources_or_none()
        second = self.deploy(client, workdir, endpoint_name)
        assert second.status is EndpointStatus.READY
        assert [v.name for v in second.variants] == [v.name for v in first.variants]
        assert second.traffic == first.traffic
        if before is not None:
            assert sorted(self.leftovers()) == sorted(before)

    def harness_resources_or_none(self) -> list[str] | None:
        try:
            return self.harness().leftover_resources()
        except FaultNotSupported:
            return None

    def test_changed_spec_updates(self, client: Client, workdir: Path, endpoint_name: str):
        self.deploy(client, workdir, endpoint_name, version="1")
        ep = self.deploy(client, workdir, endpoint_name, version="2")
        assert ep.status is EndpointStatus.READY
        served = {v.model_version: v.weight for v in ep.variants}
        assert served.get("2") == 100, f"after the update all traffic goes to v2: {ep.traffic}"
        pred = client.predict(endpoint_name, self.harness().rows(2))
        assert len(pred.outputs) == 2

    def test_delete_is_idempotent(self, client: Client, workdir: Path, endpoint_name: str):
        self.deploy(client, workdir, endpoint_name)
        client.delete_endpoint(endpoint_name)
        client.delete_endpoint(endpoint_name)
        with pytest.raises(NotFound):
            client.get_endpoint(endpoint_name)
        assert endpoint_name not in {e.name for e in client.list_endpoints()}
        if self.harness_resources_or_none() is not None:
            assert self.leftovers() == []

    def test_missing_endpoint_is_not_found(self, client: Client, workdir: Path):
        with pytest.raises(NotFound) as info:
            client.get_endpoint("cs-does-not-exist")
        assert info.value.provider == client.provider.name
        if self.harness().native_errors:
            assert info.value.__cause__ is not None, "native error must be chained as __cause__"


class PredictTests(_Base):
    """Online prediction."""

    def test_predict_one_output_per_row(self, client: Client, workdir: Path, endpoint_name: str):
        ep = self.deploy(client, workdir, endpoint_name)
        rows = self.harness().rows(7)
        pred = ep.predict(rows)
        assert len(pred.outputs) == 7
        assert pred.model_version == "1"
        assert pred.latency_ms is not None and pred.latency_ms >= 0
        again = client.predict(endpoint_name, rows)
        assert again.outputs == pred.outputs, "the same model gives the same outputs"

    def test_predict_missing_endpoint(self, client: Client, workdir: Path):
        with pytest.raises(NotFound):
            client.predict("cs-does-not-exist", self.harness().rows(1))

    def test_predict_bad_rows_is_invalid_request(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.deploy(client, workdir, endpoint_name)
        with pytest.raises(InvalidRequest):
            client.predict(endpoint_name, self.harness().bad_rows())
        assert len(client.predict(endpoint_name, self.harness().rows(1)).outputs) == 1


class TrafficTests(_Base):
    """Several variants behind one endpoint and the split between them."""

    def test_canary_and_set_traffic(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.TRAFFIC_SPLIT)
        self.deploy(client, workdir, endpoint_name, version="1")
        ep = self.deploy(client, workdir, endpoint_name, version="2", traffic=10)
        assert ep.traffic == {"v1": 90, "v2": 10}
        ep = client.set_traffic(endpoint_name, {"v1": 30, "v2": 70})
        assert ep.traffic == {"v1": 30, "v2": 70}
        fetched = client.get_endpoint(endpoint_name)
        assert fetched.traffic == {"v1": 30, "v2": 70}
        assert sum(fetched.traffic.values()) == 100
        assert len(client.predict(endpoint_name, self.harness().rows(3)).outputs) == 3
        assert len(client.predict(endpoint_name, self.harness().rows(3), variant="v2").outputs) == 3

    def test_bad_split_rejected(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.TRAFFIC_SPLIT)
        self.deploy(client, workdir, endpoint_name)
        with pytest.raises(InvalidRequest):
            client.set_traffic(endpoint_name, {"v1": 60})
        with pytest.raises((InvalidRequest, NotFound)):
            client.set_traffic(endpoint_name, {"v1": 50, "nope": 50})
        assert client.get_endpoint(endpoint_name).traffic == {"v1": 100}


class BatchTests(_Base):
    """Batch prediction: every input row accounted for."""

    def test_batch_predict(self, client: Client, workdir: Path):
        self.need(client.provider, Capability.BATCH)
        h = self.harness()
        rows = h.rows(25, seed=3)
        model = h.model_spec(workdir)
        job = client.batch_predict(model, h.batch_input(workdir, rows), h.batch_output(workdir))
        assert isinstance(job.status, JobStatus)
        done = job.wait(timeout=300)
        assert done.status is JobStatus.SUCCEEDED
        assert done.rows_total in (None, 25)
        assert len(h.read_batch_output(done.output)) == 25


class TuneTests(_Base):
    """Hyperparameter tuning."""

    def test_tune_finds_best_trial(self, client: Client, workdir: Path):
        self.need(client.provider, Capability.TUNE)
        spec = self.harness().tuning_spec(workdir)
        job = client.tune(spec)
        assert isinstance(job.status, JobStatus)
        done = job.wait(timeout=600)
        assert done.status is JobStatus.SUCCEEDED
        assert 1 <= len(done.trials) <= spec.max_trials
        scored = [t for t in done.trials if t.value is not None]
        assert scored and done.best_trial is not None
        pick = max if spec.objective.goal == "maximize" else min
        assert done.best_trial.value == pick(t.value for t in scored)  # type: ignore[type-var]
        for t in done.trials:
            assert isinstance(t.status, JobStatus)
            assert set(t.params) == set(spec.search_space)


class MetricsTests(_Base):
    """Serving metrics."""

    def test_metrics_count_invocations(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.METRICS)
        self.deploy(client, workdir, endpoint_name)
        for _ in range(4):
            client.predict(endpoint_name, self.harness().rows(2))
        self.harness().publish_metrics(endpoint_name)
        report = client.metrics(endpoint_name, "1h")
        assert report.endpoint == endpoint_name
        assert report.invocations >= 4
        if report.p50_ms is not None and report.p99_ms is not None:
            assert 0 <= report.p50_ms <= report.p99_ms


class DriftTests(_Base):
    """Data capture and drift against a baseline."""

    def test_drift_flags_shift_only(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.DATA_CAPTURE)
        from cloudserve.testing import write_csv

        h = self.harness()
        baseline = write_csv(workdir / "baseline.csv", h.rows(400, seed=11))
        self.deploy(client, workdir, endpoint_name, data_capture=DataCapture(sampling_rate=1.0))
        for i in range(4):
            client.predict(endpoint_name, h.rows(50, seed=100 + i))
        h.publish_metrics(endpoint_name)
        calm = client.drift(endpoint_name, baseline, window="1h")
        assert calm.sample_size >= 200
        assert not calm.drifted, f"unshifted data flagged: {calm.flagged}"
        for i in range(4):
            client.predict(endpoint_name, h.rows(100, shift=1.5, seed=200 + i))
        h.publish_metrics(endpoint_name)
        shifted = client.drift(endpoint_name, baseline, window="1h")
        assert shifted.drifted
        assert len(shifted.features) == len(h.rows(1)[0])


class RegistryTests(_Base):
    """Model registry."""

    def test_register_list_and_deploy(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.REGISTRY)
        model = self.harness().model_spec(workdir, "3")
        mv = client.register_model(model, lineage={"params": {"C": 1.0}})
        assert (mv.name, mv.version) == (model.name, "3")
        listed = client.list_models(model.name)
        assert ("3" in {m.version for m in listed}) and all(m.name == model.name for m in listed)
        ep = client.deploy(mv, endpoint_name)
        assert ep.variants[0].model_version == "3"


class AsyncTests(_Base):
    """Queued (asynchronous) prediction."""

    def test_async_predict(self, client: Client, workdir: Path, endpoint_name: str):
        self.need(client.provider, Capability.ASYNC_PREDICT)
        self.deploy(client, workdir, endpoint_name)
        handle = client.predict_async(endpoint_name, self.harness().rows(3))
        assert isinstance(handle.status, JobStatus)
        done = handle.wait(timeout=120)
        assert done.status is JobStatus.SUCCEEDED
        assert done.outputs is not None and len(done.outputs) == 3


def _batch_spec(h: ProviderHarness, workdir: Path) -> BatchSpec:
    model = h.model_spec(workdir)
    return BatchSpec(
        model=model,
        input=h.batch_input(workdir, h.rows(2)),
        output=h.batch_output(workdir),
    )


def _optional_calls(
    p: Provider, h: ProviderHarness, workdir: Path
) -> dict[Capability, list[Callable[[], Any]]]:
    """Direct provider calls of each optional capability's methods (specs built lazily)."""
    rows = [[0.0]]
    model = lambda: h.model_spec(workdir)  # noqa: E731
    return {
        Capability.TRAFFIC_SPLIT: [
            lambda: p.set_traffic("cs-x", {"a": 100}),
            lambda: p.delete_variant("cs-x", "a"),
        ],
        Capability.ASYNC_PREDICT: [
            lambda: p.predict_async("cs-x", rows),
            lambda: p.get_async_result("cs-x", "r"),
        ],
        Capability.BATCH: [
            lambda: p.batch_predict(_batch_spec(h, workdir)),
            lambda: p.get_batch_job("job"),
        ],
        Capability.TUNE: [lambda: p.tune(h.tuning_spec(workdir)), lambda: p.get_tuning_job("job")],
        Capability.METRICS: [lambda: p.metrics("cs-x", 60.0)],
        Capability.DATA_CAPTURE: [lambda: p.captured_inputs("cs-x", 60.0)],
        Capability.REGISTRY: [
            lambda: p.register_model(model(), {}),
            lambda: p.list_models(None),
        ],
        Capability.PRICING_REFRESH: [lambda: p.refresh_prices()],
        Capability.ROLLOUT: [
            lambda: p.get_rollout_state("cs-x"),
            lambda: p.put_rollout_state("cs-x", None),
        ],
        Capability.SHADOW: [lambda: p.shadow_pairs("cs-x", 60.0)],
    }


#: The provider methods the Client may reach only after its capability check.
_GATED_METHODS = (
    "deploy",
    "set_traffic",
    "delete_variant",
    "get_rollout_state",
    "put_rollout_state",
    "shadow_pairs",
    "predict_async",
    "get_async_result",
    "batch_predict",
    "get_batch_job",
    "tune",
    "get_tuning_job",
    "metrics",
    "captured_inputs",
    "register_model",
    "list_models",
    "refresh_prices",
)


def _client_calls(
    c: Client, h: ProviderHarness, workdir: Path
) -> dict[Capability, list[Callable[[], Any]]]:
    """The Client's calls of every optional capability (DEPLOY and PREDICT are required)."""
    model = lambda: h.model_spec(workdir)  # noqa: E731

    def deploy_with(compute: Compute) -> Callable[[], Any]:
        return lambda: c.deploy(DeploySpec(model=model(), endpoint="cs-x", compute=compute))

    def refresh() -> None:
        from cloudserve.pricing.refresh import refresh as refresh_prices

        report = refresh_prices([c.provider], path=workdir / "prices.csv")
        (result,) = report.results
        if result.status == "skipped":
            raise UnsupportedOperation(
                Capability.PRICING_REFRESH, result.reason or "", provider=c.provider.name
            )

    rows = h.rows(2)
    return {
        Capability.TRAFFIC_SPLIT: [lambda: c.set_traffic("cs-x", {"a": 100})],
        Capability.AUTOSCALE: [deploy_with(Compute(replicas=1, min_replicas=1, max_replicas=3))],
        Capability.SERVERLESS: [deploy_with(Compute(serverless=True, replicas=0))],
        Capability.ASYNC_PREDICT: [
            lambda: c.predict_async("cs-x", rows),
            lambda: c.get_async_result("cs-x", "r"),
        ],
        Capability.BATCH: [
            lambda: c.batch_predict(_batch_spec(h, workdir)),
            lambda: c.get_batch_job("job"),
        ],
        Capability.TUNE: [lambda: c.tune(h.tuning_spec(workdir)), lambda: c.get_tuning_job("job")],
        Capability.METRICS: [lambda: c.metrics("cs-x", "1h")],
        Capability.DATA_CAPTURE: [lambda: c.drift("cs-x", h.rows(20))],
        Capability.DRIFT: [lambda: c.drift("cs-x", h.rows(20))],
        Capability.REGISTRY: [lambda: c.register_model(model()), lambda: c.list_models()],
        Capability.PRICING_REFRESH: [refresh],
        Capability.ROLLOUT: [lambda: c.rollout(model(), "cs-x", steps=[100], bake="1h")],
        Capability.SHADOW: [
            lambda: c.shadow_report("cs-x"),
            lambda: c.deploy(model(), "cs-x", shadow=10),
        ],
    }


class ErrorTests(_Base):
    """The shared contract: capabilities, validation, enums."""

    def test_undeclared_capabilities_raise(self, provider: Provider, workdir: Path):
        for cap, calls in _optional_calls(provider, self.harness(), workdir).items():
            if provider.supports(cap):
                continue
            for call in calls:
                with pytest.raises(UnsupportedOperation) as info:
                    call()
                assert info.value.capability == cap
                assert info.value.reason == provider.reason(cap)

    def test_declared_capabilities_are_implemented(self, provider: Provider, workdir: Path):
        """A declared capability's methods exist: asked about a missing endpoint or job they
        answer or raise the provider's own error, never UnsupportedOperation (the base class's
        answer for a method the provider forgot)."""
        costly = {Capability.BATCH: 1, Capability.TUNE: 1, Capability.REGISTRY: 1}
        forgotten = []
        for cap, calls in _optional_calls(provider, self.harness(), workdir).items():
            if not provider.supports(cap) or cap is Capability.PRICING_REFRESH:
                continue
            for call in calls[costly.get(cap, 0) :]:  # skip the calls that start real work
                try:
                    call()
                except UnsupportedOperation as exc:
                    forgotten.append(f"{cap.value}: {exc}")
                except CloudServeError:
                    pass
        assert not forgotten, f"declared but not implemented: {forgotten}"

    def test_client_checks_capability_before_request(self, client: Client, workdir: Path):
        """Every capability the provider lacks is refused by the Client before the provider
        is asked anything (``UnsupportedOperation``, or ``InvalidRequest`` for a spec that
        needs it)."""
        p = client.provider
        calls = _client_calls(client, self.harness(), workdir)
        assert set(calls) == set(Capability) - {Capability.DEPLOY, Capability.PREDICT}, (
            "every optional capability needs a client call in _client_calls"
        )
        missing = [cap for cap in calls if not p.supports(cap)]
        if not missing:
            pytest.skip("the provider declares every optional capability")
        reached: list[str] = []

        def spy(method: str) -> Callable[..., Any]:
            def called(*args: Any, **kwargs: Any) -> Any:
                reached.append(method)
                raise AssertionError(f"the Client called provider.{method} past its check")

            return called

        for method in _GATED_METHODS:
            setattr(p, method, spy(method))
        try:
            for cap in missing:
                for call in calls[cap]:
                    if cap in (Capability.AUTOSCALE, Capability.SERVERLESS):
                        with pytest.raises(InvalidRequest, match=cap.value):
                            call()
                        continue
                    with pytest.raises(UnsupportedOperation) as info:
                        call()
                    # drift needs DATA_CAPTURE and DRIFT: either missing one is named
                    assert info.value.capability in missing, f"{cap.value}: {info.value}"
        finally:
            for method in _GATED_METHODS:
                delattr(p, method)
        assert reached == [], f"provider methods reached for missing capabilities: {reached}"

    def test_declared_capabilities_are_capabilities(self, provider: Provider, workdir: Path):
        assert all(isinstance(c, Capability) for c in provider.capabilities)
        assert {Capability.DEPLOY, Capability.PREDICT} <= provider.capabilities
        for cap in provider.unsupported:
            assert cap not in provider.capabilities, f"{cap} declared and also unsupported"

    def test_spec_it_cannot_honour_is_rejected(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        p = client.provider
        unsupported = [
            c for c in (Capability.AUTOSCALE, Capability.SERVERLESS) if not p.supports(c)
        ]
        if not unsupported:
            pytest.skip("the provider honours autoscaling and serverless")
        compute = (
            Compute(replicas=1, min_replicas=1, max_replicas=3)
            if Capability.AUTOSCALE in unsupported
            else Compute(serverless=True, replicas=0)
        )
        model = self.harness().model_spec(workdir)
        with pytest.raises(InvalidRequest):
            client.deploy(DeploySpec(model=model, endpoint=endpoint_name, compute=compute))
        with pytest.raises(NotFound):
            client.get_endpoint(endpoint_name)

    def test_job_and_endpoint_statuses_are_shared_enums(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        ep = self.deploy(client, workdir, endpoint_name)
        assert type(ep.status) is EndpointStatus
        assert all(type(v.status) is EndpointStatus for v in ep.variants)
        assert all(type(e.status) is EndpointStatus for e in client.list_endpoints())


class FaultTests(_Base):
    """Throttling, 5xx, failed operations and half-way failures."""

    def test_throttled_call_succeeds_after_retries(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.deploy(client, workdir, endpoint_name)
        self.fault(Fault.THROTTLE, times=2)
        assert client.get_endpoint(endpoint_name).status is EndpointStatus.READY

    def test_unavailable_call_succeeds_after_retries(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.deploy(client, workdir, endpoint_name)
        self.fault(Fault.UNAVAILABLE, times=2)
        assert len(client.predict(endpoint_name, self.harness().rows(2)).outputs) == 2

    def test_endless_throttling_raises_throttled(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.deploy(client, workdir, endpoint_name)
        self.fault(Fault.THROTTLE, times=1000)
        with pytest.raises(Throttled) as info:
            client.get_endpoint(endpoint_name)
        assert info.value.provider == client.provider.name
        if self.harness().native_errors:
            assert info.value.__cause__ is not None

    def test_failed_operation_raises_operation_failed(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.fault(Fault.FAIL_OPERATION, message="artifact could not be loaded: cs-marker-42")
        with pytest.raises(OperationFailed) as info:
            self.deploy(client, workdir, endpoint_name)
        assert "cs-marker-42" in str(info.value)
        assert info.value.provider == client.provider.name
        assert self.leftovers() == []

    def test_half_way_failure_leaves_nothing(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.fault(Fault.FAIL_AFTER_CREATE, message="cs-halfway")
        with pytest.raises(CloudServeError):
            self.deploy(client, workdir, endpoint_name)
        assert self.leftovers() == []
        with pytest.raises(NotFound):
            client.get_endpoint(endpoint_name)


_STANDARD = (
    DeployTests,
    PredictTests,
    TrafficTests,
    BatchTests,
    TuneTests,
    MetricsTests,
    DriftTests,
    RegistryTests,
    AsyncTests,
    ErrorTests,
    FaultTests,
)


def _standard_tests() -> dict[str, Any]:
    return {
        name: fn
        for cls in _STANDARD
        for name, fn in vars(cls).items()
        if name.startswith("test_") and inspect.isfunction(fn)
    }


class AnswersParityTests(ParityChecks, _Base):
    """Answers parity (see :mod:`cloudserve.testing.parity`): records in another order, a CSV
    with a shuffled header or none, blanks, text, NaN, ``predict_proba`` and wrong shapes, online
    and in batch, each compared with the model's own answers. Not part of
    :class:`ProviderConformance` yet: a provider adds it with
    ``class TestXParity(XHarness, AnswersParityTests)``."""


def _has_xfail_reason(fn: Any) -> bool:
    marks = getattr(fn, "pytestmark", [])
    return any(m.name == "xfail" and (m.kwargs.get("reason") or m.args) for m in marks)


class ProviderConformance(*_STANDARD):  # type: ignore[misc]
    """Every standard test; use as ``class TestX(XHarness, ProviderConformance)``."""

    def test_no_unmarked_overrides(self) -> None:
        overridden = [
            name
            for name, fn in _standard_tests().items()
            if getattr(type(self), name) is not fn
            and not _has_xfail_reason(getattr(type(self), name))
        ]
        assert not overridden, (
            f"standard tests overridden without an xfail reason: {overridden}; mark the override "
            "@pytest.mark.xfail(reason=...) so the gap is visible"
        )


# -- progressive delivery ---------------------------------------------------------------------


def decided(report: Any) -> list[Any]:
    """The steps of a rollout that made a decision (a starved bake only waits)."""
    return [s for s in report.history if s.decision != "wait"]


class RolloutConformance(_Base):
    """Metric-gated rollout (``Capability.ROLLOUT``) as every provider must behave.

    Not part of :class:`ProviderConformance`: a provider that declares ROLLOUT adds
    ``class TestXRollout(XHarness, RolloutConformance)``. The harness sets ``rollout_clock`` in
    ``start()`` (shared with its fake and provider) and implements ``degrade_variant``. Each bake
    is the provider's shortest metric window, filled with real predictions by a
    :class:`~cloudserve.testing.rollout.TrafficClock` — simulated time on a fake, no sleeping.
    """

    #: Predictions each bake sends, spread over the bake: ~24 reach a 20 % first step. A step
    #: that saw fewer than ``min_invocations`` bakes again (``Gates.max_bakes``), so a thin
    #: draw costs a bake, never a wrong decision.
    bake_requests = 120
    #: The steps every test but the good-version one takes (one bake before 100 %).
    steps = (20, 100)

    @pytest.fixture
    def live(self, client: Client, workdir: Path, endpoint_name: str) -> Client:
        """An endpoint serving version 1 as variant ``v1``."""
        self.need(client.provider, Capability.ROLLOUT)
        if self.harness().rollout_clock is None:
            pytest.fail(
                "the provider declares ROLLOUT, so its harness must set rollout_clock in start()"
            )
        self.deploy(client, workdir, endpoint_name, variant="v1")
        return client

    def traffic(self, client: Client, endpoint: str, **kw: Any) -> Any:
        from cloudserve.testing.rollout import TrafficClock

        h = self.harness()
        kw.setdefault("requests", self.bake_requests)
        return TrafficClock(h.rollout_clock, client, endpoint, h.rows(20, seed=7), **kw)

    def bake_s(self, client: Client) -> float:
        return float(max(client.provider.min_metrics_window_s, 1))

    def gates(self, **kw: Any) -> Any:
        from cloudserve.rollout import Gates

        # no latency gate unless a test asks: these check decisions, not a machine's speed
        return Gates(**{"min_invocations": 10, "max_p99_ratio": None, **kw})

    def rollout(self, client: Client, workdir: Path, endpoint: str, clock: Any, **kw: Any):
        model = self.harness().model_spec(workdir, "2")
        return client.rollout(
            model, endpoint, bake=self.bake_s(client), clock=clock,
            **{"gates": self.gates(), "steps": list(self.steps), **kw},
        )  # fmt: skip

    def degrade(self, endpoint: str, **kw: float) -> None:
        try:
            self.harness().degrade_variant(endpoint, "v2", **kw)
        except FaultNotSupported:
            pytest.fail("the provider declares ROLLOUT, so its harness must degrade a variant")

    def test_good_version_ends_at_100_with_the_old_variant_gone(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        clock = self.traffic(live, endpoint_name, requests=200)
        report = self.rollout(live, workdir, endpoint_name, clock, steps=[10, 50, 100])
        assert report.outcome == "completed", report.summary()
        promoted = [s for s in report.history if s.decision == "promote"]
        assert [s.weight for s in promoted] == [10, 50, 100]
        assert clock.bakes >= 2 and clock.failures == 0
        assert promoted[0].new.invocations >= 10 and promoted[0].current.invocations >= 100
        ep = live.get_endpoint(endpoint_name)
        assert ep.traffic == {"v2": 100}
        assert [v.name for v in ep.variants] == ["v2"]
        assert live.rollout_status(endpoint_name) is None
        assert live.predict(endpoint_name, self.harness().rows(2)).variant in (None, "v2")

    def test_version_failing_a_fifth_of_requests_is_rolled_back_at_the_first_step(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        self.degrade(endpoint_name, error_rate=0.2)
        clock = self.traffic(live, endpoint_name)
        report = self.rollout(
            live, workdir, endpoint_name, clock, gates=self.gates(max_error_rate=0.05)
        )
        assert report.outcome == "rolled_back", report.summary()
        assert [s.weight for s in decided(report)] == [self.steps[0]]
        gate = report.failed_gate
        assert gate is not None and gate.gate == "max_error_rate", report.summary()
        assert gate.observed is not None and 0.05 < gate.observed <= 0.5, gate
        assert gate.limit == 0.05 and gate.baseline == 0.0
        assert f"gate max_error_rate failed at {self.steps[0]}%" in report.summary()
        ep = live.get_endpoint(endpoint_name)
        assert ep.traffic == {"v1": 100} and [v.name for v in ep.variants] == ["v1"]
        assert live.rollout_status(endpoint_name) is None

    def test_version_50ms_slower_is_rolled_back_at_the_first_step(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        self.degrade(endpoint_name, latency_ms=50.0)
        clock = self.traffic(live, endpoint_name)
        report = self.rollout(
            live, workdir, endpoint_name, clock, gates=self.gates(max_p99_ratio=1.5)
        )
        assert report.outcome == "rolled_back", report.summary()
        assert [s.weight for s in decided(report)] == [self.steps[0]]
        gate = report.failed_gate
        assert gate is not None and gate.gate == "max_p99_ratio", report.summary()
        slow = decided(report)[0].new.p99_ms
        assert slow is not None and slow >= 50, report.summary()
        assert live.get_endpoint(endpoint_name).traffic == {"v1": 100}

    def test_hold_keeps_the_failed_variant_at_zero(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        self.degrade(endpoint_name, error_rate=0.2)
        clock = self.traffic(live, endpoint_name)
        report = self.rollout(
            live, workdir, endpoint_name, clock,
            gates=self.gates(max_error_rate=0.05), on_fail="hold",
        )  # fmt: skip
        assert report.outcome == "held", report.summary()
        assert live.get_endpoint(endpoint_name).traffic == {"v1": 100, "v2": 0}

    def crash(self, live: Client, workdir: Path, endpoint: str) -> Client:
        """Start a rollout that dies half-way through its first bake; a client on a new
        provider instance (as another process would build) to pick it up."""
        from cloudserve.testing.rollout import SimulatedCrash

        clock = self.traffic(live, endpoint, crash_in_bake=1)
        with pytest.raises(SimulatedCrash):
            self.rollout(live, workdir, endpoint, clock)
        other = Client(self.make_provider(), target=live.provider.name)  # type: ignore[attr-defined]
        status = other.rollout_status(endpoint)
        assert status is not None and status.outcome == "in_progress"
        assert status.new_variant == "v2" and status.history[0].weight == self.steps[0]
        return other

    def test_crashed_rollout_is_resumed_to_the_end_from_another_provider(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        other = self.crash(live, workdir, endpoint_name)
        try:
            with pytest.raises(InvalidRequest, match="in progress"):
                self.rollout(other, workdir, endpoint_name, self.traffic(other, endpoint_name))
            report = other.resume_rollout(endpoint_name, clock=self.traffic(other, endpoint_name))
            assert report.outcome == "completed", report.summary()
            assert other.get_endpoint(endpoint_name).traffic == {"v2": 100}
            assert other.rollout_status(endpoint_name) is None
        finally:
            other.provider.close()

    def test_crashed_rollout_is_aborted_from_another_provider(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        other = self.crash(live, workdir, endpoint_name)
        try:
            report = other.abort_rollout(endpoint_name)
            assert report.outcome == "aborted"
            ep = other.get_endpoint(endpoint_name)
            assert ep.traffic == {"v1": 100} and [v.name for v in ep.variants] == ["v1"]
            assert other.rollout_status(endpoint_name) is None
        finally:
            other.provider.close()

    def test_bake_shorter_than_the_metric_window_is_refused_before_any_change(
        self, live: Client, workdir: Path, endpoint_name: str
    ):
        window = live.provider.min_metrics_window_s
        if window <= 1:
            pytest.skip(f"{live.provider.name} reads metrics over any window of a second or more")
        clock = self.traffic(live, endpoint_name)
        with pytest.raises(InvalidRequest, match="bake"):
            live.rollout(
                self.harness().model_spec(workdir, "2"), endpoint_name,
                bake=window / 2, gates=self.gates(), clock=clock,
            )  # fmt: skip
        assert clock.bakes == 0
        ep = live.get_endpoint(endpoint_name)
        assert [v.name for v in ep.variants] == ["v1"]
        assert live.rollout_status(endpoint_name) is None


class ShadowConformance(_Base):
    """Shadow traffic (``Capability.SHADOW``): a share of production requests mirrored to a
    variant whose answers are discarded, and a report joining both sides by request id.

    Not part of :class:`ProviderConformance`: a provider that declares SHADOW adds
    ``class TestXShadow(XHarness, ShadowConformance)``.
    """

    requests = 200

    @pytest.fixture
    def production(self, client: Client, workdir: Path, endpoint_name: str) -> list[Any]:
        """Version 1 live as ``v1``; its answers to the test rows, before any shadow exists."""
        self.need(client.provider, Capability.SHADOW)
        self.deploy(client, workdir, endpoint_name, variant="v1")
        rows = self.shadow_rows()
        return [client.predict(endpoint_name, [r]).outputs[0] for r in rows]

    def shadow_rows(self) -> list[list[float]]:
        return self.harness().rows(self.requests, seed=11)

    def send_all(self, client: Client, endpoint: str) -> list[Any]:
        answers = []
        for r in self.shadow_rows():
            pred = client.predict(endpoint, [r])
            assert pred.variant in (None, "v1"), pred.variant
            answers.append(pred.outputs[0])
        self.harness().settle_shadow()
        return answers

    def test_production_answers_are_unchanged_and_about_the_share_is_mirrored(
        self, client: Client, workdir: Path, endpoint_name: str, production: list[Any]
    ):
        shadow = self.harness().different_model_spec(workdir, "2")
        ep = client.deploy(shadow, endpoint_name, variant="v2", shadow=20)
        assert ep.traffic == {"v1": 100, "v2": 0}
        assert ep.variant("v2").shadow == 20
        assert self.send_all(client, endpoint_name) == production
        report = client.shadow_report(endpoint_name, window="1h")
        assert report.shadow_variant == "v2"
        # binomial(200, 0.2): mean 40, sd 5.7 — only the far tails fail
        assert 15 <= report.mirrored <= 70, report.mirrored
        assert report.both_answered == report.mirrored and report.shadow_errors == 0
        # production counts what production answered (this test's two rounds of requests at
        # most), never the mirrored copies a cloud may count under the shadow variant
        if client.provider.supports(Capability.METRICS):
            assert self.requests <= report.production_invocations <= 2 * self.requests, report
        assert report.agreement_rate is not None and report.agreement_rate < 0.5, report
        assert report.disagreements

    def test_identical_shadow_agrees_on_every_mirrored_request(
        self, client: Client, workdir: Path, endpoint_name: str, production: list[Any]
    ):
        client.deploy(self.harness().model_spec(workdir, "2"), endpoint_name, variant="v2",
                      shadow=50)  # fmt: skip
        assert self.send_all(client, endpoint_name) == production
        report = client.shadow_report(endpoint_name, window="1h")
        assert 60 <= report.mirrored <= 140, report.mirrored
        assert report.agreement_rate == 1.0 and not report.disagreements

    def test_promoting_the_shadow_ends_mirroring(
        self, client: Client, workdir: Path, endpoint_name: str, production: list[Any]
    ):
        client.deploy(self.harness().model_spec(workdir, "2"), endpoint_name, variant="v2",
                      shadow=50)  # fmt: skip
        ep = client.set_traffic(endpoint_name, {"v1": 0, "v2": 100})
        assert ep.variant("v2").shadow == 0
        for r in self.shadow_rows()[:20]:
            assert client.predict(endpoint_name, [r]).variant in (None, "v2")
        self.harness().settle_shadow()
        assert client.shadow_report(endpoint_name, window="1h").mirrored == 0

    def test_shadow_rules_are_checked_before_anything_is_created(
        self, client: Client, workdir: Path, endpoint_name: str
    ):
        self.need(client.provider, Capability.SHADOW)
        model = self.harness().model_spec(workdir, "1")
        with pytest.raises(InvalidRequest):
            client.deploy(model, endpoint_name, shadow=10)  # nothing to mirror yet
        with pytest.raises((InvalidRequest, ValueError)):
            client.deploy(model, endpoint_name, traffic=10, shadow=10)
        with pytest.raises(NotFound):
            client.get_endpoint(endpoint_name)
