"""A fake SageMaker for offline tests: moto in server mode, extended where moto 5.2 falls short.

Point boto3 (or the cloudserve SageMaker provider) at ``fake.url`` and everything goes over real
HTTP, signed by botocore, into moto's SageMaker, S3, CloudWatch and Application Auto Scaling —
with the additions listed in ``_service``: ``UpdateEndpoint``, endpoints that pass through
``Creating``/``Updating``, injected throttling / 5xx / failures, real model predictions from
``InvokeEndpoint``, data capture, transform jobs that transform and tuning jobs that train.
Every request is first checked against botocore's service model — maximums, enums and patterns
included, which neither botocore nor moto checks — and refused with ``ValidationException`` as
SageMaker refuses it (``fake.rejected()`` lists them)::

    from cloudserve_sagemaker.testing import FakeSageMaker

    with FakeSageMaker(creating_polls=2) as fake:
        sm = fake.client("sagemaker")
        ...
        fake.inject("throttle", times=2)
        fake.degrade("v2", error_rate=0.2, latency_ms=50)            # a bad variant
        fake.price_list.set_price("ml.m5.large", "Hosting", 0.12)   # the Price List API

``FakeSageMaker(clock=sim.now)`` stamps CloudWatch datapoints and captured requests with a
clock the test owns, so one-minute metric periods pass without sleeping.

moto keeps its state in process-wide backends, so two fakes in one process share it; ``start``
resets that state.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cloudserve.testing.fakes import Degradation
from cloudserve_sagemaker.testing._pricing import FakePriceList
from cloudserve_sagemaker.testing._service import (
    FakeState,
    Middleware,
    RecordedRequest,
    RejectedRequest,
)

__all__ = ["FakePriceList", "FakeSageMaker", "FaultKind", "RecordedRequest", "RejectedRequest"]

FaultKind = Literal["throttle", "unavailable", "fail_endpoint", "fail_create_endpoint", "fail_job"]
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def _teach_moto_percentiles() -> None:
    """moto's CloudWatch answers Sum/Average/… only; add the ``pNN`` statistics SageMaker
    latency metrics are read with (idempotent)."""
    from moto.cloudwatch.models import Statistics

    original = Statistics.get_statistics_for_type
    if getattr(original, "_cloudserve", False):
        return

    def with_percentiles(self: Any, stat: str) -> Any:
        if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
            import numpy as np

            values = self.metric_single_values_list
            return float(np.percentile(values, float(stat[1:]))) if values else None
        return original(self, stat)

    with_percentiles._cloudserve = True  # type: ignore[attr-defined]
    Statistics.get_statistics_for_type = with_percentiles  # type: ignore[method-assign]


class FakeSageMaker:
    """moto's server on a free loopback port, behind the cloudserve middleware.

    ``creating_polls`` / ``updating_polls``: how many ``DescribeEndpoint`` calls see
    ``Creating`` / ``Updating`` before the endpoint settles. ``job_polls``: the same for
    transform and tuning jobs (``InProgress``). ``clock`` (seconds since the epoch, default
    the wall clock) stamps the CloudWatch datapoints and data captures invocations produce.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        creating_polls: int = 0,
        updating_polls: int = 0,
        job_polls: int = 0,
        workdir: str | Path | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.region = region
        self.state = FakeState(
            creating_polls=creating_polls, updating_polls=updating_polls, job_polls=job_polls
        )
        if clock is not None:
            self.state.clock = clock
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cloudserve-fake-sm-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        # The fake AWS Price List API (GetProducts), served on the same port.
        self.price_list = FakePriceList()
        self._server: Any = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeSageMaker:
        """Reset moto's state and serve on 127.0.0.1 on a free port (``self.url``)."""
        from moto.moto_api import _internal
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        _teach_moto_percentiles()
        _internal.moto_api_backend.reset()
        state, workdir, price_list = self.state, self.workdir, self.price_list

        class _QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                """Requests are recorded in ``FakeSageMaker.requests``, not printed."""

        class _Server(ThreadedMotoServer):
            def _server_entry(self) -> None:
                app = Middleware(
                    DomainDispatcherApplication(create_backend_app), state, workdir, price_list
                )
                self._server = make_server(
                    self._ip_address, self._port, app, True, request_handler=_QuietHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever(poll_interval=0.02)

        self._server = _Server(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop serving (idempotent) and remove the working directory it made."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeSageMaker:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients ----------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` pointed at the fake (dummy credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            config=Config(s3={"addressing_style": "path"}),
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    # -- faults -----------------------------------------------------------------------------

    def inject(
        self, fault: FaultKind, *, times: int = 1, message: str = "injected failure"
    ) -> None:
        """Make the fake misbehave.

        ``throttle`` / ``unavailable``: the next ``times`` SageMaker API, runtime or Price List
        API requests answer ``ThrottlingException`` (400) / ``ServiceUnavailable`` (503).
        ``fail_endpoint``: the next endpoint create or update ends failed with ``message``
        (a failed update rolls back to the previous config, as SageMaker does).
        ``fail_create_endpoint``: the next ``CreateEndpoint`` call is refused with ``message``.
        ``fail_job``: the next transform or tuning job ends ``Failed`` with ``message``.
        """
        with self.state.lock:
            if fault == "throttle":
                self.state.throttle = times
            elif fault == "unavailable":
                self.state.unavailable = times
            elif fault == "fail_endpoint":
                self.state.fail_endpoint = message
            elif fault == "fail_create_endpoint":
                self.state.fail_create_endpoint = message
            elif fault == "fail_job":
                self.state.fail_job = message
            else:
                raise ValueError(f"unknown fault {fault!r}")

    def degrade(self, variant: str, *, error_rate: float = 0.0, latency_ms: float = 0.0) -> None:
        """Make ``variant`` (of any endpoint, deployed now or later) fail ``error_rate`` of its
        invocations with a model 500 — evenly spread, every ``1/error_rate``-th one, so it
        shows as ``ModelError`` to the caller and in ``Invocation5XXErrors`` — and add
        ``latency_ms`` to the ``ModelLatency`` each of its invocations publishes."""
        fault = Degradation(error_rate, latency_ms)  # ValueError for impossible figures
        with self.state.lock:
            self.state.degraded[variant] = fault

    def requests(self, operation: str | None = None) -> list[RecordedRequest]:
        """SageMaker API and runtime requests received so far, all or of one operation."""
        return self.state.operations(operation)

    def rejected(self) -> list[RejectedRequest]:
        """Requests refused with ``ValidationException`` because they break the service model
        (maximums, enums, patterns … that botocore does not check; see ``_validator``)."""
        with self.state.lock:
            return list(self.state.rejected)

    # -- state ------------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Every model, endpoint config, endpoint and scalable target moto still holds."""
        sm = self.client("sagemaker")
        aas = self.client("application-autoscaling")
        found = [f"model/{m['ModelName']}" for m in sm.list_models()["Models"]]
        found += [
            f"endpoint-config/{c['EndpointConfigName']}"
            for c in sm.list_endpoint_configs()["EndpointConfigs"]
        ]
        found += [f"endpoint/{e['EndpointName']}" for e in sm.list_endpoints()["Endpoints"]]
        targets = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        found += [f"scalable-target/{t['ResourceId']}" for t in targets]
        policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        found += [f"scaling-policy/{p['PolicyName']}" for p in policies]
        return sorted(found)
