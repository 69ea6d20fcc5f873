"""A stateful fake Azure ML service for offline tests of code that uses azure-ai-ml.

The real ``MLClient`` (and azure-storage-blob, and cloudserve's scoring calls) talk to it over
HTTP, intercepted in-process by ``responses``::

    from cloudserve_azureml.testing import FakeAzureML

    with FakeAzureML(in_progress_polls=2) as fake:
        ml = fake.ml_client()                    # an MLClient pointed at the fake, fast polls
        ...
        fake.deployments("my-endpoint")          # inspect what was created
        fake.inject("throttle", times=2)         # 429 with Retry-After on the next 2 calls
        fake.batch_deployments("csb-churn")      # batch deployment settings
        fake.job("sweep-1"); fake.child_jobs("sweep-1")   # jobs and sweep trials
        fake.retail_prices.set_price("Standard_DS3_v2", 0.31)   # the Retail Prices API
        fake.settle_mirror(); fake.rejected()    # mirrored copies scored; refused changes

Why ``responses`` and not a local HTTP server: azure-core's bearer-token policy refuses
non-HTTPS URLs and MLClient builds its ARM, run-history and scoring URLs from Azure's public
hostnames, so intercepting those hostnames in-process is what lets the *unmodified* SDK run
against the fake. Anything not served by the fake fails as a connection error — no request
ever leaves the process.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudserve.testing.fakes import request_body
from cloudserve_azureml.testing._http import relay
from cloudserve_azureml.testing._prices import FakeRetailPrices
from cloudserve_azureml.testing._service import FakeAzureMLService, ScoringRecord

__all__ = ["FakeAzureML", "FakeCredential", "FakeRetailPrices", "ScoringRecord", "relay"]

_HOSTS = re.compile(
    r"https://(management\.azure\.com|[a-z0-9]+\.blob\.core\.windows\.net"
    r"|[a-z0-9-]+\.[a-z0-9]+\.inference\.ml\.azure\.com|[a-z0-9]+\.api\.azureml\.ms"
    r"|prices\.azure\.com(?::443)?)/.*"
)


class FakeCredential:
    """A token credential that hands out a fake bearer token (no identity service is called)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("fake-token", int(time.time()) + 3600)


class FakeAzureML:
    """The fake Azure ML workspace; a context manager that intercepts Azure's hostnames.

    ``in_progress_polls`` is how many ``InProgress`` answers each long-running operation gives
    before it ends; ``poll_retry_after`` is the ``Retry-After`` the fake sends with them (small,
    so that even an MLClient with default polling settles fast). ``load_model`` turns a model
    directory into an object with ``predict(instances)``; the default is cloudserve's serving
    runtime, so scoring answers are the deployed artifact's real outputs.

    ``resolve_environments``: a deployment whose environment's pip lines do not resolve on the
    package index (``pip install --dry-run`` for the conda file's Python, binary wheels only,
    cached) fails as Azure's image build fails (``ImageBuildFailure``).

    ``shared_key_access=False`` is a workspace whose storage account refuses account keys: the
    default datastore holds no key, asking for its secrets fails, and blob requests signed with
    a key are refused (403 ``KeyBasedAuthenticationNotPermitted``); bearer tokens and the SAS
    URIs the service hands out for uploads still work.

    ``job_polls`` is how many reads a batch or sweep job answers ``Queued``/``Running`` before it
    does its work: a batch job then runs the deployment's uploaded scoring script over the
    uploaded input and writes ``predictions.csv``; a sweep job runs one wave of trials (the
    user's training script, as a subprocess) per read until its budget is spent.

    ``clock`` is where scoring requests are stamped, so the Azure Monitor metrics the fake
    answers follow it: a test that shares one clock with a rollout (and with the provider's
    ``clock``) bakes "1m" steps without sleeping through them.
    """

    def __init__(
        self,
        *,
        resolve_environments: bool = True,
        shared_key_access: bool = True,
        subscription_id: str = "00000000-0000-0000-0000-000000000000",
        resource_group: str = "rg-fake",
        workspace: str = "ws-fake",
        location: str = "eastus",
        in_progress_polls: int = 1,
        poll_retry_after: str = "0.01",
        storage_account: str = "fakestore",
        container: str = "azureml-blobstore-fake",
        workdir: str | Path | None = None,
        seed: int = 0,
        load_model: Callable[[Path], Any] | None = None,
        job_polls: int = 2,
        clock: Callable[[], float] = time.time,
    ):
        self.service = FakeAzureMLService(
            clock=clock,
            subscription_id=subscription_id,
            resource_group=resource_group,
            workspace=workspace,
            location=location,
            in_progress_polls=in_progress_polls,
            poll_retry_after=poll_retry_after,
            storage_account=storage_account,
            container=container,
            seed=seed,
            load_model=load_model,
            job_polls=job_polls,
            resolve_environments=resolve_environments,
            shared_key_access=shared_key_access,
        )
        self._workdir = Path(workdir) if workdir else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._mock: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeAzureML:
        """Start intercepting Azure hostnames (idempotent)."""
        import responses

        if self._mock is not None:
            return self
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cs-fake-azureml-")
            self._workdir = Path(self._tmp.name)
        self.service.workdir = self._workdir
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for method in ("GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"):
            mock.add_callback(method, _HOSTS, callback=self._callback)
        mock.start()
        self._mock = mock
        return self

    def stop(self) -> None:
        """Stop intercepting and drop temporary files (idempotent)."""
        self.service.close()
        if self._mock is not None:
            self._mock.stop()
            self._mock.reset()
            self._mock = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._workdir = None

    def __enter__(self) -> FakeAzureML:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _callback(self, request: Any) -> tuple[int, dict[str, str], Any]:
        import requests

        data = request_body(request)
        answer = self.service.handle(request.method, request.url, request.headers, data)
        if answer == "reset_scoring":
            raise requests.ConnectionError("Connection reset by peer")
        if answer == "timeout_scoring":
            raise requests.ReadTimeout("Read timed out")
        return answer

    def serve_http(self) -> Any:
        """A context manager serving this fake on a local port for other processes (they
        install ``relay(address)``); yields the address ``127.0.0.1:PORT``."""
        from cloudserve_azureml.testing._http import serve

        return serve(self.service)

    # -- clients pointed at the fake ---------------------------------------------------------

    @property
    def subscription_id(self) -> str:
        return self.service.subscription_id

    @property
    def resource_group(self) -> str:
        return self.service.resource_group

    @property
    def workspace(self) -> str:
        return self.service.workspace

    def credential(self) -> FakeCredential:
        """A credential the fake accepts."""
        return FakeCredential()

    def ml_client(self, *, polling_interval: float = 0.01, retry_total: int = 0) -> Any:
        """A real ``azure.ai.ml.MLClient`` for the fake workspace, with fast polls."""
        from azure.ai.ml import MLClient

        return MLClient(
            self.credential(),
            self.subscription_id,
            self.resource_group,
            self.workspace,
            polling_interval=polling_interval,
            retry_total=retry_total,
            show_progress=False,
            enable_telemetry=False,
        )

    # -- fault injection -----------------------------------------------------------------------

    def inject(
        self,
        fault: str,
        *,
        times: int = 1,
        message: str = "injected failure",
        retry_after: str = "1",
        status: int = 503,
    ) -> None:
        """Make the fake misbehave.

        ``throttle``: the next ``times`` API calls answer 429 with ``Retry-After``.
        ``unavailable``: the next ``times`` API calls answer ``status`` (503 or 500).
        ``fail_operation``: the next ``times`` long-running PUTs end ``Failed`` with ``message``.
        ``fail_deployment``: the next ``times`` deployment PUTs are refused (400, ``message``),
        after the endpoint and assets already exist.
        ``unavailable_poll``: the next ``times`` polls of a long-running operation answer
        ``status`` (503 or 500) — a blip in the middle of a deploy.
        ``reset_scoring`` / ``timeout_scoring``: the next ``times`` scoring requests die with a
        reset connection / a read timeout.
        """
        f = self.service.faults
        with self.service.lock:
            if fault == "throttle":
                f.throttle, f.throttle_retry_after = times, retry_after
            elif fault == "unavailable":
                f.unavailable, f.unavailable_status = times, status
            elif fault == "fail_operation":
                f.fail_operation.extend([message] * times)
            elif fault == "fail_deployment":
                f.fail_deployment_put.extend([message] * times)
            elif fault == "unavailable_poll":
                f.unavailable_poll, f.unavailable_status = times, status
            elif fault in ("reset_scoring", "timeout_scoring"):
                f.scoring_errors.extend([fault] * times)
            else:
                raise ValueError(f"unknown fault {fault!r}")

    def degrade(self, deployment: str, *, error_rate: float = 0.0, latency_ms: float = 0.0) -> None:
        """Make one deployment (it may not exist yet) fail ``error_rate`` of its scoring
        requests (a 424 "model error" with the container's 500, spread evenly) and answer
        ``latency_ms`` later; both show in its Azure Monitor metrics."""
        if not 0 <= error_rate <= 1 or latency_ms < 0:
            raise ValueError("error_rate is a fraction in [0, 1] and latency_ms is >= 0")
        with self.service.lock:
            self.service.faults.deployment_faults[deployment.lower()] = (
                error_rate,
                latency_ms / 1000,
            )

    # -- state, for assertions -------------------------------------------------------------------

    def resource(self, key: str) -> dict[str, Any] | None:
        """A stored ARM resource by its path under the workspace (``onlineEndpoints/ep``)."""
        with self.service.lock:
            return self.service.get(key)

    def endpoints(self) -> list[dict[str, Any]]:
        """Every online endpoint."""
        with self.service.lock:
            return self.service.children("onlineEndpoints")

    def deployments(self, endpoint: str) -> list[dict[str, Any]]:
        """The online deployments of ``endpoint``."""
        with self.service.lock:
            return self.service.children(f"onlineEndpoints/{endpoint}/deployments")

    def traffic(self, endpoint: str) -> dict[str, int]:
        """The endpoint's traffic split (deployment → percent)."""
        res = self.resource(f"onlineEndpoints/{endpoint}")
        if res is None:
            raise KeyError(endpoint)
        return {k: int(v) for k, v in (res["properties"].get("traffic") or {}).items()}

    def batch_endpoints(self) -> list[dict[str, Any]]:
        """Every batch endpoint."""
        with self.service.lock:
            return self.service.children("batchEndpoints")

    def batch_deployments(self, endpoint: str) -> list[dict[str, Any]]:
        """The batch deployments of ``endpoint``."""
        with self.service.lock:
            return self.service.children(f"batchEndpoints/{endpoint}/deployments")

    def job(self, name: str) -> dict[str, Any] | None:
        """A stored job (batch, sweep or trial) as the fake holds it, without advancing it."""
        return self.resource(f"jobs/{name}")

    def child_jobs(self, parent: str) -> list[dict[str, Any]]:
        """The trial jobs a sweep job has started so far, in order."""
        with self.service.lock:
            state = self.service.jobs.states.get(parent.lower())
            names = state.trials if state is not None else []
            return [r for r in (self.service.get(f"jobs/{n}") for n in names) if r is not None]

    def blob(self, path: str) -> bytes | None:
        """A blob of the workspace's default datastore, by its path in the container."""
        with self.service.lock:
            found = self.service.blobs.blobs.get(
                (self.service.storage_account, self.service.container, path)
            )
            return found.data if found is not None else None

    def model_versions(self, name: str) -> list[str]:
        """Registered versions of model ``name``."""
        with self.service.lock:
            return sorted(r["name"] for r in self.service.children(f"models/{name}/versions"))

    def leftovers(self) -> list[str]:
        """Every resource of a kind cloudserve creates that still exists."""
        return self.service.owned()

    def scoring_requests(self) -> list[ScoringRecord]:
        """Every scoring request the fake answered."""
        with self.service.lock:
            return list(self.service.scoring)

    @property
    def retail_prices(self) -> FakeRetailPrices:
        """The fake Azure Retail Prices API: its items, ``page_size``, ``set_price``,
        ``remove`` and the ``queries`` it answered (injected faults apply to it too)."""
        return self.service.prices

    def rejected(self) -> list[tuple[str, str, str]]:
        """(method, url, why) of every change the fake refused with a 400 (a fake that accepts
        what Azure refuses is a bug; a test can assert nothing else was refused)."""
        with self.service.lock:
            return list(self.service.rejected)

    def settle_mirror(self, timeout: float = 30.0) -> None:
        """Wait until the mirrored copies of the requests answered so far are scored (the
        fake scores them off the caller's path, as Azure does)."""
        self.service.settle_mirror(timeout)

    def requests_made(self) -> list[tuple[str, str]]:
        """(method, url) of every request the fake saw, in order."""
        with self.service.lock:
            return list(self.service.requests)
