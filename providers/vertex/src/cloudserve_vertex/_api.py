"""The Vertex AI SDK behind one object: lazy clients, calls with timeouts, LRO waits.

Nothing here is imported from ``google.*`` until a client is first needed. Every GAPIC call
goes through :meth:`VertexApi.rpc`, which adds the target's ``request_timeout_s`` (the v1
clients have no default timeout for most methods) and translates errors through the
provider's table; long-running operations are polled with the target's wait settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cloudserve.errors import NotFound, OperationFailed, Timeout
from cloudserve.sizes import resolve_instance
from cloudserve.waiting import ProgressCallback
from cloudserve_vertex._config import VertexConfig
from cloudserve_vertex._packaging import label_value

__all__ = ["MANAGED", "VertexApi"]

MANAGED = "managed-by"
_CLIENTS = {
    "endpoint": "EndpointServiceClient",
    "model": "ModelServiceClient",
    "prediction": "PredictionServiceClient",
    "job": "JobServiceClient",
}


class VertexApi:
    """Clients, resource names and call helpers for one target."""

    def __init__(
        self,
        config: VertexConfig,
        *,
        name: str,
        call: Callable[..., Any],
        wait: Callable[..., Any],
        translate: Callable[[BaseException], Exception],
    ):
        self.config = config
        self.name = name
        self.call = call
        self._wait = wait
        self.translate = translate
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Registry facts of model versions (immutable once uploaded): ref → facts.
        self.versions: dict[str, dict[str, Any]] = {}

    # -- names ---------------------------------------------------------------------------------

    @property
    def parent(self) -> str:
        return f"projects/{self.config.project}/locations/{self.config.location}"

    @staticmethod
    def resource_id(name: str) -> str:
        return name.lower()

    def endpoint_path(self, name: str) -> str:
        return f"{self.parent}/endpoints/{self.resource_id(name)}"

    def model_path(self, name: str) -> str:
        return f"{self.parent}/models/{self.resource_id(name)}"

    @property
    def local_fake(self) -> bool:
        endpoint = self.config.api_endpoint
        return bool(endpoint and endpoint.startswith("http://"))

    def host(self, public: str) -> str:
        """``public`` (``https://monitoring.googleapis.com``), or the local fake's URL."""
        return self.config.api_endpoint if self.local_fake and self.config.api_endpoint else public

    # -- clients -------------------------------------------------------------------------------

    def credentials(self) -> Any:
        if self.config.credentials == "anonymous":
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        scopes = ["https://www.googleapis.com/auth/cloud-platform"]
        if self.config.credentials == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_file(
                self.config.service_account_file, scopes=scopes
            )
        import google.auth

        creds, _ = google.auth.default(scopes=scopes)
        return creds

    def client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                self._clients[kind] = self._make(kind)
            return self._clients[kind]

    def _make(self, kind: str) -> Any:
        creds = self.credentials()
        if kind == "storage":
            from google.cloud import storage  # type: ignore[attr-defined]

            opts = {"api_endpoint": self.config.api_endpoint} if self.local_fake else None
            return storage.Client(
                project=self.config.project, credentials=creds, client_options=opts
            )
        if kind == "session":
            from google.auth.transport.requests import AuthorizedSession

            return AuthorizedSession(creds)
        from google.cloud import aiplatform_v1

        host = self.config.api_endpoint or f"{self.config.location}-aiplatform.googleapis.com"
        cls = getattr(aiplatform_v1, _CLIENTS[kind])
        return cls(
            transport=self.config.transport,
            credentials=creds,
            client_options={"api_endpoint": host},
        )

    def session(self) -> Any:
        """An authorised ``requests`` session for the REST calls the GAPIC clients lack."""
        return self.client("session")

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for c in clients.values():
            transport = getattr(c, "transport", None)
            if transport is not None:
                transport.close()
            elif hasattr(c, "close"):
                c.close()

    # -- calls ---------------------------------------------------------------------------------

    def rpc(self, kind: str, method: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Call a GAPIC method with the target's request timeout; errors translated."""
        fn = getattr(self.client(kind), method)
        return self.call(fn, retry=retry, timeout=self.config.request_timeout_s, **kwargs)

    def http(self, method: str, url: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """A REST call through the authorised session; an HTTP error raises the google error."""
        from google.api_core import exceptions as gexc

        def send() -> Any:
            resp = self.session().request(
                method, url, timeout=self.config.request_timeout_s, **kwargs
            )
            if resp.status_code >= 400:
                raise gexc.from_http_response(resp)
            return resp

        return self.call(send, retry=retry)

    def get_or_none(self, kind: str, method: str, **kwargs: Any) -> Any | None:
        """A GET that answers None for a resource the service does not have."""
        from google.api_core import exceptions as gexc

        try:
            return self.rpc(kind, method, **kwargs)
        except NotFound as exc:
            if isinstance(exc.__cause__, gexc.NotFound):
                return None
            raise

    def wait_op(
        self,
        op: Any,
        description: str,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Poll an LRO with the target's wait settings; OperationFailed if it ends in error.

        On ``Timeout`` the operation's name is on the error (``.operation``): it still runs.
        """
        try:
            self._wait(
                lambda: self.call(op.done),
                is_done=bool,
                description=description,
                timeout=timeout,
                progress=progress,
                status_of=lambda d: "DONE" if d else "RUNNING",
            )
        except Timeout as exc:
            exc.operation = op.operation.name  # type: ignore[attr-defined]
            raise
        error = op.operation.error
        if error.code:
            raise OperationFailed(
                f"{description} failed: {error.message}", provider=self.name, code=str(error.code)
            )
        return op.result(timeout=0) if op.operation.HasField("response") else None

    # -- shared request parts ------------------------------------------------------------------

    def labels(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        out = {MANAGED: "cloudserve", **self.config.labels}
        for k, v in {**self.config.tags, **(extra or {})}.items():
            out[label_value(k)] = label_value(v)
        return out

    def encryption(self) -> dict[str, Any]:
        key = self.config.encryption_key
        return {"encryption_spec": {"kms_key_name": key}} if key else {}

    def machine(self, compute: Any) -> dict[str, Any]:
        choice = resolve_instance(self.name, compute.size, compute.instance_type)
        spec: dict[str, Any] = {
            "machine_type": compute.instance_type or (choice.instance_type if choice else "")
        }
        accelerator = compute.accelerator or (choice.accelerator if choice else None)
        count = compute.accelerator_count or (choice.accelerator_count if choice else 0)
        if accelerator:
            spec.update(accelerator_type=accelerator, accelerator_count=max(count, 1))
        return spec

    @staticmethod
    def label_filter(key: str, value: str) -> str:
        """A list filter on one label. Keys are quoted: in the filter syntax (AIP-160) a bare
        ``-`` is the negation operator, so ``labels.managed-by`` does not parse as a key."""
        return f'labels."{key}"="{value}"'

    def managed_filter(self) -> str:
        return self.label_filter(MANAGED, "cloudserve")
