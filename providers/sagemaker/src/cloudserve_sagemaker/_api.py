"""How the SageMaker provider talks to AWS: lazy boto3 clients, S3 helpers, and ``Api`` — calls
translated through the error table, retried when safe, long operations waited on.

boto3 is imported here, lazily. botocore is told to make exactly one attempt per call
(``total_max_attempts=1``) so that the provider's :class:`~cloudserve.retry.RetryPolicy` is the
only thing that retries: the number of attempts a user configures is the number that happens,
never multiplied by botocore's own.

The concern modules (``_endpoints``, ``_predict``, ``_batch`` …) take an :class:`Api`, never the
provider object.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tenacity import retry_if_exception_type

from cloudserve.errors import CloudServeError, NotFound, Throttled
from cloudserve.retry import RetryPolicy
from cloudserve_sagemaker._config import SageMakerConfig

__all__ = ["Api", "Clients", "page_token", "split_s3"]

# Sessions are shared per (profile, region): a botocore session caches the parsed service
# models, and parsing SageMaker's takes a few hundred milliseconds per client otherwise.
_SESSIONS: dict[tuple[str | None, str], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(profile: str | None, region: str) -> Any:
    with _SESSIONS_LOCK:
        found = _SESSIONS.get((profile, region))
        if found is None:
            import boto3

            found = boto3.session.Session(profile_name=profile, region_name=region)
            _SESSIONS[(profile, region)] = found
        return found


def page_token(token: str | None) -> dict[str, Any]:
    """``{"NextToken": token}`` for the next page of a listing, ``{}`` for the first."""
    return {"NextToken": token} if token else {}


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class Clients:
    """Lazily built, thread-safe boto3 clients for the services cloudserve uses."""

    def __init__(self, config: SageMakerConfig):
        self.config = config
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _botocore_config(self) -> Any:
        from botocore.config import Config

        cfg = self.config
        return Config(
            region_name=cfg.region,
            retries={"total_max_attempts": 1, "mode": cfg.retry_mode},
            connect_timeout=cfg.connect_timeout_s,
            read_timeout=cfg.read_timeout_s,
            max_pool_connections=max(10, cfg.predict_concurrency * 2),
            s3={"addressing_style": "path"} if cfg.endpoint_url else None,
        )

    def get(self, service: str) -> Any:
        """The client for ``service`` (``sagemaker``, ``sagemaker-runtime``, ``s3`` …)."""
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                url = self.config.service_endpoints.get(service, self.config.endpoint_url)
                session = _session(self.config.profile, self.config.region)
                with _SESSIONS_LOCK:  # creating clients from one session is not thread-safe
                    found = session.client(
                        service, endpoint_url=url, config=self._botocore_config()
                    )
                self._clients[service] = found
            return found

    @property
    def sm(self) -> Any:
        """The SageMaker control-plane client."""
        return self.get("sagemaker")

    @property
    def runtime(self) -> Any:
        """The SageMaker runtime (invocation) client."""
        return self.get("sagemaker-runtime")

    @property
    def s3(self) -> Any:
        """The S3 client."""
        return self.get("s3")

    # -- S3 ---------------------------------------------------------------------------------

    def exists(self, uri: str) -> bool:
        """True when the S3 object exists."""
        from botocore.exceptions import ClientError

        bucket, key = split_s3(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put(self, uri: str, data: bytes) -> None:
        """Write an S3 object (encrypted with the target's KMS key when one is set)."""
        bucket, key = split_s3(uri)
        extra: dict[str, Any] = {}
        if self.config.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key_id}
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def get_bytes(self, uri: str) -> bytes:
        """The bytes of an S3 object."""
        bucket, key = split_s3(uri)
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def list_objects(self, prefix_uri: str) -> list[dict[str, Any]]:
        """Every object under an S3 prefix (``Key``, ``Size``, ``LastModified`` …)."""
        bucket, prefix = split_s3(prefix_uri)
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj for page in pages for obj in page.get("Contents", [])]

    def upload_path(self, path: Path, prefix_uri: str, *, transform: Any = None) -> str:
        """Upload a file, or every file of a directory, under ``prefix_uri``; returns the prefix.

        ``transform(path, data) -> bytes`` may rewrite each file on the way (header stripping).
        """
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        base = path if path.is_dir() else path.parent
        for f in files:
            data = f.read_bytes()
            if transform is not None:
                data = transform(f, data)
            self.put(f"{prefix_uri.rstrip('/')}/{f.relative_to(base).as_posix()}", data)
        return prefix_uri

    def download_prefix(self, prefix_uri: str, into: Path) -> list[Path]:
        """Download every object under ``prefix_uri`` into ``into`` (relative names kept)."""
        bucket, prefix = split_s3(prefix_uri)
        written = []
        for obj in self.list_objects(prefix_uri):
            relative = obj["Key"][len(prefix) :].lstrip("/") or Path(obj["Key"]).name
            target = into / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get_bytes(f"s3://{bucket}/{obj['Key']}"))
            written.append(target)
        return written


class Api:
    """One target's AWS access for the concern modules: its config, clients, the provider's
    ``call`` / ``wait`` / ``translate`` (error table, retry policy, wait settings), and what the
    provider remembers between calls (variant versions, which endpoints are serverless)."""

    name = "sagemaker"

    def __init__(
        self,
        config: SageMakerConfig,
        *,
        target: str,
        call: Callable[..., Any],
        wait: Callable[..., Any],
        translate: Callable[[BaseException], CloudServeError],
        retry_policy: RetryPolicy,
        clock: Callable[[], float] | None = None,
    ):
        self.cfg = config
        #: where metric and capture windows end (tests share a simulated clock with the fake)
        self.clock: Callable[[], float] = clock or time.time
        self.target = target
        self.aws = Clients(config)
        self.call = call
        self.wait = wait
        self.translate = translate
        self.retry_policy = retry_policy
        self.lock = threading.Lock()
        self.versions: dict[str, dict[str, str]] = {}
        self.serverless: dict[str, bool] = {}
        self._pool: ThreadPoolExecutor | None = None

    def sm(self, operation: str, *, retry: bool = True, **params: Any) -> Any:
        """Call a SageMaker control-plane operation, translated and (when safe) retried."""
        return self._send(getattr(self.aws.sm, operation), retry, params)

    def aws_call(self, service: str, operation: str, *, retry: bool = True, **params: Any) -> Any:
        """Call any AWS operation through the same error table and retry policy."""
        return self._send(getattr(self.aws.get(service), operation), retry, params)

    def _send(self, fn: Any, retry: bool, params: dict[str, Any]) -> Any:
        if retry:
            return self.call(fn, **params)
        # A create is not repeated after a 5xx (it may have happened), but a throttled request
        # was refused before it did anything, so that one alone is safe to send again.
        throttled_only = self.retry_policy.retrying().copy(retry=retry_if_exception_type(Throttled))
        return throttled_only(self.call, fn, retry=False, **params)

    def quiet_delete(self, operation: str, **params: Any) -> None:
        """Delete, where what is already gone is success (delete stays idempotent)."""
        with contextlib.suppress(NotFound):
            self.sm(operation, **params)

    def forget(self, endpoint: str) -> None:
        """Drop what is remembered about ``endpoint`` (after a deploy or a delete)."""
        with self.lock:
            self.versions.pop(endpoint, None)
            self.serverless.pop(endpoint, None)

    def executor(self) -> ThreadPoolExecutor:
        """The thread pool that sends prediction chunks concurrently."""
        with self.lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.cfg.predict_concurrency, thread_name_prefix="cloudserve-sm"
                )
            return self._pool

    def close(self) -> None:
        """Stop the prediction thread pool (the boto3 clients need no closing)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
