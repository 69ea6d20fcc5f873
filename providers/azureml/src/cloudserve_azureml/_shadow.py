"""Shadow variants on Azure ML: an endpoint's ``mirror_traffic``, and the request log that lets a
shadow report join each mirrored answer with the live one.

Azure's rules for mirrored traffic (safe rollout, "Test the deployment with mirrored traffic",
https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints):
one deployment of an endpoint receives mirrored traffic, at most 50 % of it; a deployment takes
live or mirrored traffic, not both; only requests sent to the endpoint without naming a deployment
are mirrored; the mirrored answers are discarded ("without using returned scoring", the ARM
``mirrorTraffic`` description). All of it is checked before anything changes.

Azure keeps the mirrored answers nowhere a client can read them, so cloudserve's ``score.py``
writes one row per request to the ``cloudserve_requests`` custom-logging collection of the
deployment's data collector (``azureml-ai-monitoring``'s ``Collector``): the request id, the
answer, the error, the time spent in ``run()``. Azure stores it under
``modelDataCollector/ENDPOINT/DEPLOYMENT/cloudserve_requests/yyyy/MM/dd/HH/*.jsonl``
(https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data). The id is
the one cloudserve's client puts in each request's body (and ``x-ms-client-request-id``): a
mirrored request is a copy of the request, so the shadow scores the same body and logs the same id.
The live deployments must log too: a shadow deploy turns the log on for the ones that do not
(an in-place update of each), before the shadow deployment is created.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from cloudserve.errors import InvalidRequest
from cloudserve.resources import ShadowPair
from cloudserve_azureml import _packaging as pkg
from cloudserve_azureml._api import PROVIDER, AzureApi

__all__ = [
    "REQUEST_LOG",
    "TAG_SHADOW",
    "add_request_log",
    "check",
    "logs_requests",
    "mirror_of",
    "request_log_collection",
    "shadow_pairs",
]

#: The custom-logging collection ``score.py`` writes each request to (``CLOUDSERVE_REQUEST_LOG``)
REQUEST_LOG = "cloudserve_requests"
LOG_ENV = "CLOUDSERVE_REQUEST_LOG"
#: Deployment tag of a variant deployed as a shadow (its mirrored share when it was deployed)
TAG_SHADOW = "cloudserve-shadow"


def mirror_of(ep: Any) -> dict[str, int]:
    """The endpoint's mirrored shares by deployment name (lower case), zeros left out."""
    mirror = getattr(ep, "mirror_traffic", None) or {}
    return {k.lower(): int(v) for k, v in mirror.items() if int(v)}


def _live(ep: Any) -> dict[str, int]:
    return {k.lower(): int(v) for k, v in (ep.traffic or {}).items() if int(v)}


def logs_requests(dep: Any) -> bool:
    """Whether a deployment's ``score.py`` writes the request log and its collector keeps it."""
    env = getattr(dep, "environment_variables", None) or {}
    collections = getattr(getattr(dep, "data_collector", None), "collections", None) or {}
    wanted = collections.get(REQUEST_LOG)
    enabled = str(getattr(wanted, "enabled", "")).lower() == "true"
    return env.get(LOG_ENV) == "1" and enabled


def request_log_collection() -> dict[str, Any]:
    """The data-collector collection the request log needs."""
    from azure.ai.ml.entities import DeploymentCollection

    return {REQUEST_LOG: DeploymentCollection(enabled="true")}


def check(ep: Any, deployments: dict[str, Any], dep_name: str) -> list[Any]:
    """Refuse a shadow deploy Azure or the shadow report cannot honour, before any change;
    returns the live deployments (whose request log must be on)."""
    name = ep.name
    live = _live(ep)
    if dep_name.lower() in live:
        raise InvalidRequest(
            f"{dep_name} takes {live[dep_name.lower()]}% of {name}'s live traffic; an Azure"
            " deployment takes live or mirrored traffic, not both",
            provider=PROVIDER,
        )
    others = {k: v for k, v in mirror_of(ep).items() if k != dep_name.lower()}
    if others:
        raise InvalidRequest(
            f"{name} already mirrors {others} and Azure mirrors to one deployment of an endpoint;"
            " promote or delete that shadow first",
            provider=PROVIDER,
        )
    by_lower = {n.lower(): d for n, d in deployments.items()}
    serving = [by_lower[k] for k in sorted(live) if k in by_lower]
    if not serving:
        raise InvalidRequest(
            f"a shadow mirrors the requests {name}'s live deployments answer, and it has none;"
            " deploy the live variant first",
            provider=PROVIDER,
        )
    images = [d.name for d in serving if getattr(d, "code_configuration", None) is None]
    if images:
        raise InvalidRequest(
            f"live deployments {images} of {name} are served by an image, which writes no request"
            " log for the shadow report; only score.py deployments can be shadowed",
            provider=PROVIDER,
        )
    return serving


def add_request_log(api: AzureApi, dep: Any) -> bool:
    """Change a live deployment (the entity, not yet Azure's) so that it writes the request log:
    its environment gains the collector's packages (a new version), its ``score.py`` the
    switch, its data collector the collection. ``False`` when it logs already."""
    if logs_requests(dep):
        return False
    from azure.ai.ml.entities import DataCollector, Environment

    env_id = str(dep.environment)
    env_name, env_version = env_id.split("/environments/")[1].split("/versions/")
    env = api.sdk(api.ml.environments.get, env_name, env_version)
    conda = json.loads(json.dumps(env.conda_file))  # a deep copy
    for section in conda.get("dependencies", []):
        if isinstance(section, dict) and "pip" in section:
            present = {_dist(line) for line in section["pip"]}
            section["pip"] += [
                line for line in pkg.capture_requirements() if _dist(line) not in present
            ]
    if conda != env.conda_file:
        new_env = Environment(
            name=env_name,
            version=pkg.content_version(conda, env.image),
            image=env.image,
            conda_file=conda,
        )
        dep.environment = api.ensure_asset(api.ml.environments, new_env, []).id
    dep.environment_variables = {**(dep.environment_variables or {}), LOG_ENV: "1"}
    collector = dep.data_collector
    if collector is None:
        dep.data_collector = DataCollector(collections=request_log_collection())
    else:
        collector.collections = {**(collector.collections or {}), **request_log_collection()}
    return True


def _dist(line: str) -> str:
    """The distribution a pip line names (``pandas==2.2.3`` → ``pandas``)."""
    return re.split(r"[<>=!~;\[\s]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _records(api: AzureApi, endpoint: str, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """The request-log rows written since ``since``, by deployment (lower case)."""
    container = api.datastore_container()
    prefix = f"modelDataCollector/{endpoint}/"
    hour = since.replace(minute=0, second=0, microsecond=0)

    def read() -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {}
        for blob in container.list_blobs(name_starts_with=prefix):
            parts = blob.name[len(prefix) :].split("/")
            # DEPLOYMENT/cloudserve_requests/yyyy/MM/dd/HH/INSTANCE.jsonl
            if len(parts) != 7 or parts[1] != REQUEST_LOG:
                continue
            year, month, day, hour_of = (int(p) for p in parts[2:6])
            folder = datetime(year, month, day, hour_of, tzinfo=timezone.utc)
            if folder < hour:
                continue
            text = container.download_blob(blob.name).readall().decode()
            for line in text.splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                # the collector's own stamp places a record in the window (the row's ``ts`` is
                # the container's clock)
                stamp = datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
                if stamp < since:
                    continue
                data = record.get("data")
                if not isinstance(data, list):  # over 4 MB Azure stores a link instead: left out
                    continue
                for row in data:
                    if isinstance(row, dict) and row.get("request_id"):
                        rows.setdefault(parts[0].lower(), []).append({**row, "_time": stamp})
        return rows

    return api.call(read)


def _outputs(row: dict[str, Any]) -> list[Any] | None:
    text = row.get("outputs")
    return json.loads(text)["predictions"] if text else None


def shadow_pairs(
    api: AzureApi, endpoint: str, window_s: float, deployments: dict[str, Any]
) -> list[ShadowPair]:
    """Each request a shadow deployment logged over the window beside the live deployment's
    log of the same request id, oldest first."""
    from cloudserve_azureml._endpoints import variant

    ep = api.sdk(api.ml.online_endpoints.get, endpoint)
    shadows = set(mirror_of(ep)) | {
        n.lower() for n, d in deployments.items() if (d.tags or {}).get(TAG_SHADOW)
    }
    names = {n.lower(): variant(d, 0).name for n, d in deployments.items()}
    since = datetime.fromtimestamp(api.clock(), timezone.utc) - timedelta(seconds=window_s)
    rows = _records(api, endpoint, since)
    live: dict[str, tuple[str, dict[str, Any]]] = {}
    for dep, logged in rows.items():
        if dep in shadows:
            continue
        for row in sorted(logged, key=lambda r: float(r.get("ts") or 0)):
            seen = live.get(row["request_id"])
            if seen is None or seen[1].get("error") or not row.get("error"):
                live[row["request_id"]] = (dep, row)  # a retried request: its last answer
    pairs = []
    for dep in sorted(shadows & set(rows)):
        for row in rows[dep]:
            found = live.get(row["request_id"])
            if found is None:  # sent to the shadow by name, or the live log missed it
                continue
            prod_dep, prod = found
            pairs.append(
                ShadowPair(
                    request_id=row["request_id"],
                    ts=prod["_time"].timestamp(),
                    production_variant=names.get(prod_dep, prod_dep),
                    shadow_variant=names.get(dep, dep),
                    production_outputs=_outputs(prod),
                    shadow_outputs=_outputs(row),
                    production_latency_ms=prod.get("latency_ms"),
                    shadow_latency_ms=row.get("latency_ms"),
                    production_error=prod.get("error"),
                    shadow_error=row.get("error"),
                )
            )
    return sorted(pairs, key=lambda p: p.ts)
