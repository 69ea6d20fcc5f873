"""What the fake's containers write to CloudWatch Logs.

SageMaker sends an endpoint container's stdout/stderr to the log group
``/aws/sagemaker/Endpoints/<EndpointName>``, stream ``<production-variant-name>/<instance-id>``
(https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html). The fake's container
stand-in runs in this process, so it writes for it, into moto's CloudWatch Logs, in that group
and stream: a start-up line when a variant's container comes up, and one access line per
``/invocations`` request it answers (with the error message when it fails), stamped with the
fake's clock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from moto.core import DEFAULT_ACCOUNT_ID

__all__ = ["ContainerLogs"]


class ContainerLogs:
    """Writes container log lines into moto's CloudWatch Logs, one stream per variant."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._streams: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()  # moto's put_log_events is not thread-safe

    def started(self, region: str, endpoint: str, variant: str, model: str) -> None:
        """A variant's container passed its ping check."""
        self.write(
            region,
            endpoint,
            variant,
            f"model {model} loaded from /opt/ml/model; serving on port 8080",
        )

    def request(
        self, region: str, endpoint: str, variant: str, route: str, status: int, error: str = ""
    ) -> None:
        """One request the variant's container answered."""
        line = f'"POST {route} HTTP/1.1" {status}'
        self.write(region, endpoint, variant, f"{line} {error}".rstrip())

    def write(self, region: str, endpoint: str, variant: str, message: str) -> None:
        """Append ``message`` to the variant's stream (group and stream made on first use)."""
        from moto.logs.models import logs_backends

        backend = logs_backends[DEFAULT_ACCOUNT_ID][region]
        group = f"/aws/sagemaker/Endpoints/{endpoint}"
        with self._lock:
            key = (region, endpoint, variant)
            stream = self._streams.get(key)
            if group not in backend.groups:
                backend.create_log_group(group, {})
                stream = None
            if stream is None or stream not in backend.groups[group].streams:
                stream = f"{variant}/i-{uuid.uuid4().hex[:17]}"
                backend.create_log_stream(group, stream)
                self._streams[key] = stream
            event = {"timestamp": int(self.clock() * 1000), "message": message}
            backend.put_log_events(group, stream, [event])
