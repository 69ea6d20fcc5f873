"""A stateful fake Vertex AI service for offline tests of code that uses google-cloud-aiplatform.

The real GAPIC v1 clients (``transport="rest"``), google-cloud-storage, Cloud Monitoring and
Cloud Billing Catalog (``billing``) REST calls talk to it over HTTP, in either of two ways::

    from cloudserve_vertex.testing import FakeVertex

    with FakeVertex(operation_polls=2).serve() as fake:      # a plain-HTTP local server
        cfg = fake.config()                                   # a VertexConfig pointed at it
        ...
    with FakeVertex().intercept() as fake:                    # in-process, through `responses`
        ...                                                   # (intercepts *.googleapis.com)

What it keeps: models with versions (an upload with ``parent_model`` adds a version), endpoints
(caller-chosen ``endpoint_id``), deployed models with their dedicated resources, traffic
splits, long-running operations that stay not-done for ``operation_polls`` polls (polled at
``GET /ui/{operation}`` as the REST transport does), batch prediction and tuning jobs that move
PENDING → RUNNING → SUCCEEDED over ``job_polls`` reads, GCS objects, and every prediction (for
Cloud Monitoring time series and request-response logging).

``predict`` runs the deployed artifact in-process through ``cloudserve.serving.load_model``,
so predictions are the model's real outputs; tuning trials run the job's Python package.

Fault injection (:meth:`FakeVertex.inject`): ``throttle`` (429), ``unavailable`` (503),
``aborted`` (409 ABORTED),
``fail_operation`` (the next LRO ends with an error), ``fail_deploy`` (the next deployModel
fails after the model and endpoint exist), ``fail_job`` (the next batch / tuning job fails) and
``slow`` (the next requests are delayed). :meth:`FakeVertex.degrade` makes one deployed model
fail a share of its predictions or answer slower, and the Cloud Monitoring series show it.

Time is injectable: ``FakeVertex(clock=...)`` (any ``() -> float``, e.g. a rollout test's
clock) stamps every prediction, so a test that shares the clock with the provider
(``provider.clock``) reads one-minute metric windows without sleeping through them.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudserve.testing.fakes import request_body
from cloudserve_vertex.testing._billing import FakeBillingCatalog
from cloudserve_vertex.testing._service import FakeVertexService, PredictRecord

if TYPE_CHECKING:
    from cloudserve_vertex._config import VertexConfig

__all__ = ["FakeBillingCatalog", "FakeVertex", "PredictRecord"]

_HOSTS = re.compile(
    r"https://([a-z0-9-]+-aiplatform|aiplatform|storage|monitoring|bigquery|cloudbilling)"
    r"\.googleapis\.com/.*"
)


class FakeVertex:
    """The fake Vertex AI project; start it with :meth:`serve` or :meth:`intercept`.

    ``operation_polls``: how many polls each LRO answers not-done. ``job_polls``: how many
    reads a batch or tuning job takes to finish. ``load_model`` turns a model directory into
    an object with ``predict(instances)`` for the container route (default:
    ``cloudserve.serving.load_model``). ``prebuilt_python`` maps a prebuilt image
    (``"sklearn-cpu.1-5"``) to a Python holding that image's libraries, in which its
    predictor steps then run (see ``_prebuilt``).
    """

    def __init__(
        self,
        *,
        project: str = "fake-project",
        location: str = "us-central1",
        staging_bucket: str = "gs://fake-staging",
        operation_polls: int = 1,
        job_polls: int = 2,
        workdir: str | Path | None = None,
        seed: int = 0,
        load_model: Callable[[Path], Any] | None = None,
        prebuilt_python: dict[str, str | Path] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.staging_bucket = staging_bucket
        self.service = FakeVertexService(
            project=project,
            location=location,
            operation_polls=operation_polls,
            job_polls=job_polls,
            workdir=None,
            seed=seed,
            load_model=load_model,
        )
        self.service.prebuilt_python = {k: str(v) for k, v in (prebuilt_python or {}).items()}
        if clock is not None:
            self.service.clock = clock
        self._workdir = Path(workdir) if workdir else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._mock: Any = None
        self.url: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cs-fake-vertex-")
            self._workdir = Path(self._tmp.name)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.service.workdir = self._workdir

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> FakeVertex:
        """Serve plain HTTP on ``host:port`` (0 = a free port) in a thread; sets ``url``."""
        if self._server is not None:
            return self
        self._prepare()
        handler = type("_Handler", (_Handler,), {"service": self.service})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self._server.server_port}"
        self.service.base_url = self.url
        return self

    def intercept(self) -> FakeVertex:
        """Answer requests to ``*.googleapis.com`` in-process through ``responses``."""
        import responses

        if self._mock is not None:
            return self
        self._prepare()
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            mock.add_callback(method, _HOSTS, callback=self._callback)
        mock.start()
        self._mock = mock
        return self

    def stop(self) -> None:
        """Stop serving / intercepting and drop temporary files (idempotent)."""
        self.service.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.url = None
        if self._mock is not None:
            self._mock.stop()
            self._mock.reset()
            self._mock = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._workdir = None

    def __enter__(self) -> FakeVertex:
        if self._server is None and self._mock is None:
            self.serve()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _callback(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        data = request_body(request)
        return self.service.handle(request.method, request.url, request.headers, data)

    # -- configuration pointed at the fake ---------------------------------------------------

    @property
    def project(self) -> str:
        return self.service.project

    @property
    def location(self) -> str:
        return self.service.location

    def config(self, **overrides: Any) -> VertexConfig:
        """A ``VertexConfig`` for this fake: anonymous credentials, its URL, fast waits."""
        from cloudserve.provider import RetrySettings, WaitSettings
        from cloudserve_vertex._config import VertexConfig

        settings: dict[str, Any] = {
            "project": self.project,
            "location": self.location,
            "staging_bucket": self.staging_bucket,
            "credentials": "anonymous",
            "api_endpoint": self.url,
            # the cloudserve runtime image, as `cloudserve build-image --push` would set it:
            # the fake serves any image that is not a prebuilt one with the runtime
            "serving_image": (
                f"{self.location}-docker.pkg.dev/{self.project}/cloudserve/cloudserve-serve:latest"
            ),
            "training_image": "us-docker.pkg.dev/vertex-ai/training/sklearn-cpu.1-6:latest",
            "retry": RetrySettings(
                max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05, max_elapsed_s=20
            ),
            "waits": WaitSettings(
                poll_interval_s=0.01, max_poll_interval_s=0.05, deploy_timeout_s=60
            ),
        }
        settings.update(overrides)
        return VertexConfig(**settings)

    # -- fault injection -----------------------------------------------------------------------

    def inject(
        self,
        fault: str,
        *,
        times: int = 1,
        message: str = "injected failure",
        retry_after: str | None = None,
        delay_s: float = 0.2,
    ) -> None:
        """Make the fake misbehave for the next ``times`` requests / operations / jobs.

        ``throttle``: 429 RESOURCE_EXHAUSTED (with ``Retry-After`` when given).
        ``unavailable``: 503 UNAVAILABLE. ``aborted``: 409 ABORTED (a concurrency conflict,
        safe to retry). ``fail_operation``: the next LRO ends with
        ``error {code: 13, message}``. ``fail_deploy``: the next deployModel LRO fails (the
        model and endpoint already exist). ``fail_job``: the next batch / tuning job ends
        FAILED. ``slow``: the next requests wait ``delay_s`` before they are answered.
        GCS requests are never throttled or failed.
        """
        f = self.service.faults
        with self.service.lock:
            if fault == "throttle":
                f.throttle, f.throttle_retry_after = times, retry_after
            elif fault == "unavailable":
                f.unavailable = times
            elif fault == "aborted":
                f.aborted = times
            elif fault == "fail_operation":
                f.fail_operation.extend([message] * times)
            elif fault == "fail_deploy":
                f.fail_deploy.extend([message] * times)
            elif fault == "fail_job":
                f.fail_job.extend([message] * times)
            elif fault == "slow":
                f.slow.extend([delay_s] * times)
            else:
                raise ValueError(f"unknown fault {fault!r}")

    def degrade(
        self, deployed_model: str, *, error_rate: float = 0.0, latency_ms: float = 0.0
    ) -> None:
        """Make the deployed model whose display name is ``deployed_model`` (a cloudserve
        variant, deployed now or later) fail ``error_rate`` of its predictions with 500 —
        evenly spread, every ``1/error_rate``-th answer — and add ``latency_ms`` to the latency
        of each of its answers in the ``prediction_latencies`` series (the answer itself is not
        delayed: time in the series is the fake's clock)."""
        from cloudserve.testing.fakes import Degradation

        with self.service.lock:
            self.service.degraded[deployed_model] = Degradation(error_rate, latency_ms)

    # -- state, for assertions -----------------------------------------------------------------

    def endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        """The stored endpoint (REST JSON), or None."""
        with self.service.lock:
            return self.service.endpoints.get(endpoint_id)

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint."""
        with self.service.lock:
            return list(self.service.endpoints.values())

    def traffic(self, endpoint_id: str) -> dict[str, int]:
        """The endpoint's traffic split keyed by deployed model *display name*."""
        ep = self.endpoint(endpoint_id)
        if ep is None:
            raise KeyError(endpoint_id)
        names = {d["id"]: d.get("displayName", d["id"]) for d in ep["deployedModels"]}
        return {names[k]: int(v) for k, v in ep["trafficSplit"].items()}

    def model_versions(self, model_id: str) -> list[dict[str, Any]]:
        """Every stored version of a model, oldest first."""
        with self.service.lock:
            versions = self.service.models.get(model_id, {})
            return [versions[v] for v in sorted(versions, key=int)]

    def models(self) -> list[str]:
        """Ids of every model."""
        with self.service.lock:
            return sorted(self.service.models)

    def batch_jobs(self) -> list[dict[str, Any]]:
        with self.service.lock:
            return list(self.service.batch_jobs.values())

    def tuning_jobs(self) -> list[dict[str, Any]]:
        with self.service.lock:
            return list(self.service.tuning_jobs.values())

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Names of the GCS objects under ``prefix`` in ``bucket``."""
        return [o.name for o in self.service.gcs.list_objects(bucket.removeprefix("gs://"), prefix)]

    def read_object(self, uri: str) -> bytes:
        """The bytes of ``gs://bucket/name``."""
        objs = self.service.gcs.read_uri(uri)
        if not objs or objs[0].name != uri.removeprefix("gs://").partition("/")[2]:
            raise KeyError(uri)
        return objs[0].data

    def put_object(self, uri: str, data: bytes) -> None:
        """Store ``data`` at ``gs://bucket/name``."""
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        self.service.gcs.put(bucket, name, data)

    def predictions(self) -> list[PredictRecord]:
        """Every online prediction the fake answered."""
        with self.service.lock:
            return list(self.service.predictions)

    @property
    def billing(self) -> FakeBillingCatalog:
        """The fake Cloud Billing Catalog API: its SKUs, ``page_size``, ``set_price``,
        ``remove`` and the ``queries`` it answered (throttle / unavailable faults apply)."""
        return self.service.billing

    def rejected(self) -> list[tuple[str, str, str]]:
        """(method, path, message) of every request that did not fit the API's discovery
        document (answered 400 INVALID_ARGUMENT)."""
        with self.service.lock:
            return list(self.service.rejected)

    def requests_made(self) -> list[tuple[str, str]]:
        """(method, url) of every request, in order."""
        with self.service.lock:
            return list(self.service.requests)

    def settle(self) -> None:
        """Finish every pending long-running operation now."""
        self.service.settle()

    def leftovers(self) -> list[str]:
        """Models, endpoints and staged model artifacts that still exist."""
        return self.service.owned()


class _Handler(BaseHTTPRequestHandler):
    service: FakeVertexService
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle on, each keep-alive answer waited for
    # the client's delayed ACK (~40 ms a request)
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = f"http://{self.headers.get('Host', 'localhost')}{self.path}"
        status, headers, data = self.service.handle(self.command, url, self.headers, body)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the fake's state, not its access log."""
