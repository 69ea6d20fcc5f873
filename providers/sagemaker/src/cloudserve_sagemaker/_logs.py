"""An endpoint's server logs, read from CloudWatch Logs.

SageMaker sends what an endpoint's containers write to stdout/stderr to the log group
``/aws/sagemaker/Endpoints/<EndpointName>``, one stream per variant and instance,
``<production-variant-name>/<instance-id>`` (asynchronous endpoints add ``…/data-log``).
Every stream of the group is read from its end (``GetLogEvents``, ``startFromHead=false``,
``limit=tail``), the events are merged by time and the last ``tail`` returned, oldest first,
each line prefixed with its stream so variants and instances stay apart.
"""

from __future__ import annotations

from cloudserve.errors import InvalidRequest, NotFound
from cloudserve_sagemaker._api import Api

__all__ = ["endpoint_logs", "log_group"]

#: GetLogEvents returns at most this many events a call
MAX_TAIL = 10_000


def log_group(endpoint: str) -> str:
    """The CloudWatch Logs group SageMaker writes ``endpoint``'s container output to."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def endpoint_logs(p: Api, name: str, *, tail: int) -> list[str]:
    """The last ``tail`` lines of every variant's containers, oldest first; an endpoint that
    has logged nothing yet has none, a missing endpoint is NotFound."""
    if not 1 <= tail <= MAX_TAIL:
        raise InvalidRequest(f"tail: between 1 and {MAX_TAIL} lines, not {tail}", provider=p.name)
    p.sm("describe_endpoint", EndpointName=name)  # NotFound for a missing endpoint
    group = log_group(name)
    try:
        streams = p.pages("logs", "describe_log_streams", "logStreams", logGroupName=group)
    except NotFound:
        return []  # the group appears with the first line a container writes
    events: list[tuple[int, int, str, str]] = []
    for stream in streams:
        page = p.aws_call(
            "logs",
            "get_log_events",
            logGroupName=group,
            logStreamName=stream["logStreamName"],
            startFromHead=False,
            limit=tail,
        )
        events += [
            (e["timestamp"], i, stream["logStreamName"], e["message"].rstrip("\n"))
            for i, e in enumerate(page.get("events", []))
        ]
    events.sort(key=lambda e: (e[0], e[2], e[1]))
    return [f"{stream}: {message}" for _, _, stream, message in events[-tail:]]
