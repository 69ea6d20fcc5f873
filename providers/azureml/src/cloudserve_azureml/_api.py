"""Lazy Azure clients and the call / translate / wait plumbing every concern module uses.

azure-ai-ml, azure-identity and azure-storage-blob are imported on first use. Every SDK call
runs through :meth:`AzureApi.sdk` (stdout noise → logging, native errors → the cloudserve tree);
the retrying is azure-core's own ``RetryPolicy``, set from the target's retry settings, which
retries GET/PUT/DELETE — every poll of a long-running operation among them — and never a POST.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cloudserve.errors import CloudServeError, NotFound, OperationFailed
from cloudserve.waiting import ProgressCallback
from cloudserve_azureml._config import AzureMLConfig

__all__ = ["ARM", "PROVIDER", "AzureApi"]

log = logging.getLogger("cloudserve.azureml")
T = TypeVar("T")

ARM = "https://management.azure.com"
PROVIDER = "azureml"
ASSET_API_VERSION = "2024-10-01"


class _LogWriter(io.TextIOBase):
    """A stdout stand-in that sends the SDK's prints to logging, line by line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.info("azure-ai-ml: %s", line.strip())
        return len(text)


class AzureApi:
    """The workspace's clients, built once, and the ways cloudserve calls them.

    ``call``, ``wait`` and ``translate`` are the provider's own (its error table and retry
    policy, its wait settings); this class adds what is Azure-specific around them.
    """

    def __init__(
        self,
        cfg: AzureMLConfig,
        *,
        call: Callable[..., Any],
        wait: Callable[..., Any],
        translate: Callable[[BaseException], CloudServeError],
        credential: Any = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg
        # Where metric windows end (tests share one clock with the fake and the rollout).
        self.clock = clock
        self.call = call
        self.wait = wait
        self.translate = translate
        self._credential = credential
        self._ml: Any = None
        self._arm: Any = None
        self._tmp = tempfile.TemporaryDirectory(prefix="cloudserve-azureml-")
        # What predictions need from ARM, per endpoint (see _predict); dropped by deploys.
        self.scoring_targets: dict[str, Any] = {}
        # Batch job → the local output it fills (see _batch).
        self.batch_outputs: dict[str, str] = {}

    @property
    def workdir(self) -> Path:
        """A private temporary directory for the code this process uploads."""
        return Path(self._tmp.name)

    @property
    def credential(self) -> Any:
        """The Azure credential (built once from the config unless one was passed in)."""
        if self._credential is None:
            from azure import identity

            if self.cfg.credential == "service_principal":
                # the config's validator guarantees all three for a service principal
                assert self.cfg.tenant_id and self.cfg.client_id and self.cfg.client_secret
                self._credential = identity.ClientSecretCredential(
                    self.cfg.tenant_id,
                    self.cfg.client_id,
                    self.cfg.client_secret.get_secret_value(),
                )
            else:
                self._credential = identity.DefaultAzureCredential()
        return self._credential

    def retry_settings(self) -> dict[str, Any]:
        """azure-core ``RetryPolicy`` settings from the target's retry settings."""
        r = self.cfg.retry
        return {
            "retry_total": r.max_attempts - 1,
            "retry_backoff_factor": r.initial_backoff_s,
            "retry_backoff_max": r.max_backoff_s,
        }

    @property
    def ml(self) -> Any:
        """The ``MLClient`` for the workspace, with azure-core's retries on."""
        if self._ml is None:
            with _quiet():
                from azure.ai.ml import MLClient

                kwargs: dict[str, Any] = {}
                if self.cfg.sdk_polling_interval_s is not None:
                    kwargs["polling_interval"] = self.cfg.sdk_polling_interval_s
                self._ml = MLClient(
                    self.credential,
                    self.cfg.subscription_id,
                    self.cfg.resource_group,
                    self.cfg.workspace,
                    show_progress=False,
                    enable_telemetry=False,
                    **self.retry_settings(),
                    **kwargs,
                )
            _route_sdk_loggers_to_logging()
        return self._ml

    def sdk(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the SDK quietly, translating errors (the SDK's pipeline does the retrying)."""

        def quiet() -> T:
            with _quiet():
                return fn(*args, **kwargs)

        return self.call(quiet, retry=False)  # type: ignore[no-any-return]

    def lro(
        self,
        begin: Callable[..., Any],
        *args: Any,
        wait: bool = True,
        deadline: float | None = None,
        progress: ProgressCallback | None = None,
        what: str = "operation",
        **kwargs: Any,
    ) -> Any:
        """Start an ARM long-running operation and, with ``wait``, see it to its end.

        The SDK's poller polls (its requests retried by the pipeline); this waits on it with the
        target's wait settings, reports ``progress`` and gives up at ``deadline`` (a
        ``time.monotonic()`` value) with ``Timeout``. A failed operation is ``OperationFailed``.
        """
        from azure.core.exceptions import HttpResponseError

        poller = self.sdk(begin, *args, **kwargs)
        if not wait:
            return poller
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        self.wait(
            lambda: poller,
            is_done=lambda p: p.done(),
            description=what,
            timeout=remaining,
            progress=progress,
            status_of=lambda p: str(p.status()),
        )
        try:
            return self.sdk(poller.result)
        except CloudServeError as exc:  # a failed operation's final poll answers 200
            cause = exc.__cause__
            if isinstance(cause, HttpResponseError) and (cause.status_code or 500) < 300:
                raise OperationFailed(
                    f"{what} failed: {cause.message or cause}", provider=PROVIDER
                ) from cause
            raise

    def _arm_client(self) -> Any:
        if self._arm is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import (
                BearerTokenCredentialPolicy,
                HeadersPolicy,
                RetryPolicy,
            )

            self._arm = PipelineClient(
                base_url=ARM,
                policies=[
                    HeadersPolicy(),
                    RetryPolicy(**self.retry_settings()),
                    BearerTokenCredentialPolicy(
                        self.credential, "https://management.azure.com/.default"
                    ),
                ],
            )
        return self._arm

    def arm(self, method: str, resource_id: str, **params: str) -> Any:
        """One raw ARM REST call (for routes the SDK does not wrap); JSON body or None."""
        from azure.core.rest import HttpRequest

        def send() -> Any:
            req = HttpRequest(method, f"{ARM}{resource_id}", params=params)
            resp = self._arm_client().send_request(req)
            resp.raise_for_status()
            return resp.json() if resp.text() else None

        return self.call(send, retry=False)  # the pipeline's RetryPolicy retries

    @property
    def workspace_id(self) -> str:
        """The workspace's ARM id."""
        return (
            f"/subscriptions/{self.cfg.subscription_id}/resourceGroups/{self.cfg.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.cfg.workspace}"
        )

    def datastore_container(self, name: str | None = None) -> Any:
        """A blob ``ContainerClient`` for a datastore (the workspace default when ``name`` is
        None): with its account key when it has one; with the caller's Microsoft Entra
        credential when the workspace's storage has shared-key access disabled (the datastore
        then holds no key, and asking for its secrets fails)."""
        from azure.storage.blob import ContainerClient

        get = self.ml.datastores.get_default if name is None else self.ml.datastores.get
        args = () if name is None else (name,)
        store = self.sdk(get, *args)
        credential: Any = self.credential
        if type(store.credentials).__name__ == "AccountKeyConfiguration":
            credential = self.sdk(get, *args, include_secrets=True).credentials.account_key
        return ContainerClient(
            account_url=f"https://{store.account_name}.blob.{store.endpoint}",
            container_name=store.container_name,
            credential=credential,
        )

    def ensure_asset(self, operations: Any, asset: Any, created: list[str]) -> Any:
        """The asset version, created when it does not exist yet (and only then recorded in
        ``created``: a rollback must not delete a version another deployment uses)."""
        try:
            return self.sdk(operations.get, asset.name, asset.version)
        except NotFound:
            pass
        made = self.sdk(operations.create_or_update, asset)
        created.append(f"asset:{made.id}")
        return made

    def delete_asset(self, asset_id: str) -> None:
        """Delete a model / environment / code / data version by ARM id (missing is fine)."""
        path = asset_id[asset_id.index("/subscriptions/") :]
        with contextlib.suppress(NotFound):
            self.arm("DELETE", path, **{"api-version": ASSET_API_VERSION})

    def close(self) -> None:
        """Drop the clients and temporary files."""
        self._ml = None
        self._arm = None
        self._tmp.cleanup()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The SDK prints progress and colour resets; they belong in logging, not the terminal.
    writer = _LogWriter()
    with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
        yield


def _route_sdk_loggers_to_logging() -> None:
    """Let the SDK's loggers propagate instead of writing to the terminal themselves.

    azure-ai-ml gives some module loggers their own stream handler and ``propagate=False``
    ("Check: endpoint … exists"); removing those handlers leaves the messages to the
    application's logging configuration.
    """
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if not name.startswith("azure.ai.ml") or not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
