"""An online endpoint's server logs: ``online_deployments.get_logs`` for each deployment.

``MLClient.online_deployments.get_logs(name, endpoint_name, lines)`` posts
``…/onlineEndpoints/{endpoint}/deployments/{name}/getLogs`` with ``{"tail": lines}`` and returns
the last ``lines`` lines of the deployment's inference-server container (``containerType``
``InferenceServer``, Azure's default). Every deployment of the endpoint is read, in name order,
each line prefixed with its deployment; of them all the last ``tail`` lines are returned.
The lines carry no common timestamp Azure guarantees, so deployments are not interleaved.
"""

from __future__ import annotations

from cloudserve.errors import InvalidRequest
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = ["endpoint_logs"]

#: the most lines cloudserve asks one deployment for
MAX_TAIL = 10_000


def endpoint_logs(api: AzureApi, name: str, *, tail: int) -> list[str]:
    """The last ``tail`` lines of the endpoint's deployments; a missing endpoint is NotFound."""
    if not 1 <= tail <= MAX_TAIL:
        raise InvalidRequest(f"tail: between 1 and {MAX_TAIL} lines, not {tail}", provider=PROVIDER)
    api.sdk(api.ml.online_endpoints.get, name)  # NotFound for a missing endpoint
    deployments = sorted(
        d.name for d in api.sdk(lambda: list(api.ml.online_deployments.list(name)))
    )
    lines: list[str] = []
    for deployment in deployments:
        text = api.sdk(api.ml.online_deployments.get_logs, deployment, name, tail)
        lines += [f"{deployment}: {line}" for line in str(text).splitlines() if line.strip()]
    return lines[-tail:]
