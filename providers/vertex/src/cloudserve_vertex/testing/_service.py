"""The stateful core of the fake Vertex AI service: routes, resources, operations, faults.

Requests arrive as ``(method, url, headers, body)`` from either front end (``responses`` or the
local HTTP server) and leave as a :class:`~cloudserve_vertex.testing._http.Reply`. JSON follows
the REST mapping the GAPIC clients use: camelCase field names, enums as integers, int64 as
strings.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from cloudserve.testing.fakes import Degradation
from cloudserve_vertex.testing._batch import number, run_batch
from cloudserve_vertex.testing._bigquery import FakeBigQuery
from cloudserve_vertex.testing._billing import FakeBillingCatalog
from cloudserve_vertex.testing._gcs import FakeGCS
from cloudserve_vertex.testing._http import ApiError, Reply, error_reply, json_reply, rpc_code

_V1 = "type.googleapis.com/google.cloud.aiplatform.v1."
_EMPTY = "type.googleapis.com/google.protobuf.Empty"
_LOC = r"projects/([^/]+)/locations/([^/]+)"
# A private endpoint's predictHttpUri (inside the VPC on Vertex; a path of the fake here).
_PRIVATE = re.compile(r"^/private/v1/projects/[^/]+/locations/[^/]+/endpoints/([^/:]+):predict$")
DEDICATED_RESOURCES = 1

# JobState values (google.cloud.aiplatform.v1.JobState).
PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED = 2, 3, 4, 5, 6, 7
ENDED = (SUCCEEDED, FAILED, CANCELLED)
#: the page size a list answers with when the request names none
DEFAULT_PAGE_SIZE = 100
# Trial.State values.
TRIAL_ACTIVE, TRIAL_SUCCEEDED, TRIAL_INFEASIBLE = 2, 4, 5


def now() -> str:
    """An RFC 3339 timestamp, as the API writes them."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Faults:
    """Pending misbehaviour, consumed request by request."""

    throttle: int = 0
    throttle_retry_after: str | None = None
    unavailable: int = 0
    aborted: int = 0
    fail_operation: list[str] = field(default_factory=list)
    fail_deploy: list[str] = field(default_factory=list)
    fail_job: list[str] = field(default_factory=list)
    slow: list[float] = field(default_factory=list)


@dataclass
class Operation:
    """A long-running operation: not done for ``polls_left`` polls, then ``effect`` runs."""

    name: str
    response_type: str
    effect: Callable[[], dict[str, Any]]
    polls_left: int
    failure: str | None = None
    done: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "done": self.done}
        if self.done:
            out.update(self.result)
        return out


@dataclass
class PredictRecord:
    """One online prediction the fake answered (feeds metrics and request-response logging)."""

    endpoint_id: str
    deployed_model_id: str | None
    time: float
    latency_ms: float
    status: int
    instances: list[Any]
    predictions: list[Any] | None


class FakeVertexService:
    """Everything the fake knows and every route it answers."""

    def __init__(
        self,
        *,
        project: str,
        location: str,
        operation_polls: int,
        job_polls: int,
        workdir: Path | None,
        seed: int,
        load_model: Callable[[Path], Any] | None,
    ):
        self.project = project
        self.location = location
        self.operation_polls = operation_polls
        self.job_polls = job_polls
        self.workdir = workdir
        self.lock = threading.RLock()
        self.gcs = FakeGCS()
        self.billing = FakeBillingCatalog()
        self.faults = Faults()
        self.models: dict[str, dict[str, dict[str, Any]]] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.batch_jobs: dict[str, dict[str, Any]] = {}
        self.tuning_jobs: dict[str, dict[str, Any]] = {}
        self.predictions: list[PredictRecord] = []
        # BigQuery tables written by request-response logging: (project, dataset, table) → rows.
        self.bigquery = FakeBigQuery()
        # Where predictHttpUri of private endpoints points (set by the front end).
        self.base_url = f"https://{location}-aiplatform.googleapis.com"
        self.requests: list[tuple[str, str]] = []
        # requests the discovery-document check refused: (method, path, message)
        self.rejected: list[tuple[str, str, str]] = []
        self.batch_shard_rows = 1000  # rows per prediction.results file
        # polls before done per operation kind ("DeployModelResponse": 10_000 = never in a test)
        self.operation_polls_by_type: dict[str, int] = {}
        # prebuilt image ("sklearn-cpu.1-5") → a Python with that image's libraries
        self.prebuilt_python: dict[str, str] = {}
        self._job_polls: dict[str, int] = {}
        self._last_version: dict[str, int] = {}
        self._ids = itertools.count(1001)
        self._rng = random.Random(seed)
        self._load_model = load_model
        self._loaded: dict[str, Any] = {}
        self._routes = self._build_routes()
        # the time predictions are recorded at (Cloud Monitoring's clock); tests replace it
        self.clock: Callable[[], float] = time.time
        # deployed model display name → an injected fault (see FakeVertex.degrade)
        self.degraded: dict[str, Degradation] = {}

    # -- dispatch ----------------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {_text(k).lower(): _text(v) for k, v in (headers.items() if headers else [])}
        parts = urlsplit(url)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self.lock:
            self.requests.append((method, url))
            delay = self.faults.slow.pop(0) if self.faults.slow else 0.0
        if delay:
            time.sleep(delay)
        try:
            if self.gcs.handles(path):
                return self.gcs.handle(method, path, query, headers, body).as_tuple()
            if fault := self._take_fault():
                return fault.as_tuple()
            if private := _PRIVATE.match(path):
                return self.private_predict(private[1], headers=headers, body=body).as_tuple()
            self.validate(method, path, query, body)
            return self._route(method, path, query, headers, body).as_tuple()
        except ApiError as exc:
            return error_reply(exc.status, exc.message).as_tuple()

    def validate(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        """Check the request against the API's discovery document (400 when it does not fit).

        LRO polls arrive at ``/ui/{name}`` (the REST transport's path); the document declares
        the same method at ``/v1/{name}``.
        """
        from cloudserve_vertex.testing._discovery import DiscoveryValidator

        if path.startswith("/v1/services/"):
            doc = "cloudbilling.v1"
        elif path.startswith(("/v1/", "/ui/")):
            doc, path = "aiplatform.v1", "/v1/" + path[4:]
        elif path.startswith("/v3/"):
            doc = "monitoring.v3"
        elif path.startswith("/bigquery/v2/"):
            doc = "bigquery.v2"
        else:
            raise ApiError(400, f"no Google API serves {method} {path}")
        try:
            DiscoveryValidator.shipped(doc).check(method, path, query, body)
        except ApiError as exc:
            with self.lock:
                self.rejected.append((method, path, exc.message))
            raise

    def _take_fault(self) -> Reply | None:
        with self.lock:
            f = self.faults
            if f.throttle > 0:
                f.throttle -= 1
                extra = {"Retry-After": f.throttle_retry_after} if f.throttle_retry_after else {}
                return error_reply(429, "Quota exceeded (injected throttle)", extra)
            if f.unavailable > 0:
                f.unavailable -= 1
                return error_reply(503, "The service is currently unavailable (injected)")
            if f.aborted > 0:
                f.aborted -= 1
                return error_reply(409, "Concurrent update; retry (injected)", name="ABORTED")
        return None

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., Reply]]]:
        table: list[tuple[str, str, Callable[..., Reply]]] = [
            ("GET", r"^/(?:ui|v1)/(.+/operations/[^/]+)$", self.get_operation),
            ("POST", rf"^/v1/{_LOC}/models:upload$", self.upload_model),
            ("GET", rf"^/v1/{_LOC}/models$", self.list_models),
            ("GET", rf"^/v1/{_LOC}/models/([^/:]+):listVersions$", self.list_versions),
            ("DELETE", rf"^/v1/{_LOC}/models/([^/:]+):deleteVersion$", self.delete_version),
            ("GET", rf"^/v1/{_LOC}/models/([^/:]+)$", self.get_model),
            ("DELETE", rf"^/v1/{_LOC}/models/([^/:]+)$", self.delete_model),
            ("POST", rf"^/v1/{_LOC}/endpoints$", self.create_endpoint),
            ("GET", rf"^/v1/{_LOC}/endpoints$", self.list_endpoints),
            ("GET", rf"^/v1/{_LOC}/endpoints/([^/:]+)$", self.get_endpoint),
            ("PATCH", rf"^/v1/{_LOC}/endpoints/([^/:]+)$", self.update_endpoint),
            ("DELETE", rf"^/v1/{_LOC}/endpoints/([^/:]+)$", self.delete_endpoint),
            ("POST", rf"^/v1/{_LOC}/endpoints/([^/:]+):deployModel$", self.deploy_model),
            ("POST", rf"^/v1/{_LOC}/endpoints/([^/:]+):undeployModel$", self.undeploy_model),
            ("POST", rf"^/v1/{_LOC}/endpoints/([^/:]+):predict$", self.predict),
            ("POST", rf"^/v1/{_LOC}/endpoints/([^/:]+):rawPredict$", self.raw_predict),
            ("POST", rf"^/v1/{_LOC}/batchPredictionJobs$", self.create_batch_job),
            ("GET", rf"^/v1/{_LOC}/batchPredictionJobs$", self.list_batch_jobs),
            ("GET", rf"^/v1/{_LOC}/batchPredictionJobs/([^/:]+)$", self.get_batch_job),
            (
                "POST",
                rf"^/v1/{_LOC}/batchPredictionJobs/([^/:]+):cancel$",
                self.cancel_batch_job,
            ),
            ("DELETE", rf"^/v1/{_LOC}/batchPredictionJobs/([^/:]+)$", self.delete_batch_job),
            ("POST", rf"^/v1/{_LOC}/hyperparameterTuningJobs$", self.create_tuning_job),
            ("GET", rf"^/v1/{_LOC}/hyperparameterTuningJobs$", self.list_tuning_jobs),
            ("GET", rf"^/v1/{_LOC}/hyperparameterTuningJobs/([^/:]+)$", self.get_tuning_job),
            (
                "POST",
                rf"^/v1/{_LOC}/hyperparameterTuningJobs/([^/:]+):cancel$",
                self.cancel_tuning_job,
            ),
            ("GET", r"^/v3/projects/([^/]+)/timeSeries$", self.list_time_series),
            ("GET", r"^/v1/services/([^/]+)/skus$", self.list_skus),
            (
                "GET",
                r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data$",
                self.bigquery.list_rows,
            ),
        ]
        return [(m, re.compile(p), fn) for m, p, fn in table]

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> Reply:
        for m, pattern, fn in self._routes:
            if m == method and (match := pattern.match(path)):
                args = match.groups()
                if pattern.pattern.startswith(f"^/v1/{_LOC}"):
                    self._check_location(args[0], args[1])
                    args = args[2:]
                return fn(*args, query=query, headers=headers, body=body)
        raise ApiError(404, f"the fake Vertex AI service has no route for {method} {path}")

    def _check_location(self, project: str, location: str) -> None:
        if (project, location) != (self.project, self.location):
            raise ApiError(
                404,
                f"unknown location projects/{project}/locations/{location} (fake serves "
                f"projects/{self.project}/locations/{self.location})",
            )

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _new_id(self) -> str:
        return str(next(self._ids))

    # -- operations --------------------------------------------------------------------------

    def start_operation(
        self,
        resource: str,
        response_type: str,
        effect: Callable[[], dict[str, Any]],
        *,
        failure: str | None = None,
    ) -> Reply:
        """Register an LRO on ``resource`` and answer with its not-done view."""
        with self.lock:
            if failure is None and self.faults.fail_operation:
                failure = self.faults.fail_operation.pop(0)
            op = Operation(
                name=f"{resource}/operations/{self._new_id()}",
                response_type=response_type,
                effect=effect,
                polls_left=self.operation_polls_by_type.get(
                    response_type.rsplit(".", 1)[-1], self.operation_polls
                ),
                failure=failure,
            )
            self.operations[op.name] = op
            if op.polls_left <= 0:
                self._finish(op)
            return json_reply(op.view())

    def _finish(self, op: Operation) -> None:
        op.done = True
        if op.failure is not None:
            op.result = {"error": {"code": 13, "message": op.failure}}
            return
        try:
            response = op.effect()
        except ApiError as exc:
            op.result = {"error": {"code": rpc_code(exc.status), "message": exc.message}}
            return
        op.result = {"response": {"@type": op.response_type, **response}}

    def running(self, resource: str, response_type: str) -> list[str]:
        """Names of the not-done operations of ``response_type`` on ``resource``."""
        return [
            op.name
            for op in self.operations.values()
            if not op.done
            and op.name.startswith(resource + "/operations/")
            and op.response_type.endswith(response_type)
        ]

    def get_operation(self, name: str, **_: Any) -> Reply:
        with self.lock:
            op = self.operations.get(name)
            if op is None:
                raise ApiError(404, f"Operation {name} not found")
            if not op.done:
                op.polls_left -= 1
                if op.polls_left <= 0:
                    self._finish(op)
            return json_reply(op.view())

    def settle(self) -> None:
        """Finish every pending operation now (as if enough polls had happened)."""
        with self.lock:
            for op in list(self.operations.values()):
                if not op.done:
                    self._finish(op)

    # -- models ------------------------------------------------------------------------------

    def _model_name(self, model_id: str) -> str:
        return f"{self.parent}/models/{model_id}"

    def _split_model_ref(self, ref: str) -> tuple[str, str | None]:
        """``projects/…/models/m@3`` or ``m`` → (``m``, ``"3"`` or None)."""
        tail = ref.rsplit("/", 1)[-1]
        model_id, _, version = tail.partition("@")
        return model_id, version or None

    def model_version(self, ref: str, version: str | None = None) -> dict[str, Any]:
        """The stored version a reference names (the default version when none is given)."""
        model_id, at = self._split_model_ref(ref)
        versions = self.models.get(model_id)
        if not versions:
            raise ApiError(404, f"Model {self._model_name(model_id)} not found.")
        wanted = version or at
        if wanted is None or wanted == "default":
            wanted = next(v for v, m in versions.items() if "default" in m["versionAliases"])
        elif wanted not in versions:
            by_alias = [v for v, m in versions.items() if wanted in m["versionAliases"]]
            if not by_alias:
                raise ApiError(404, f"Model {self._model_name(model_id)}@{wanted} not found.")
            wanted = by_alias[0]
        return versions[wanted]

    def upload_model(self, body: bytes, **_: Any) -> Reply:
        req = orjson.loads(body)
        model = dict(req.get("model") or {})
        parent_model = req.get("parentModel")
        if not model.get("displayName"):
            raise ApiError(400, "model.display_name is required")
        if not (model.get("containerSpec") or {}).get("imageUri"):
            raise ApiError(400, "model.container_spec.image_uri is required")
        artifact = model.get("artifactUri")
        if artifact and not self.gcs.read_uri(artifact.rstrip("/") + "/"):
            raise ApiError(400, f"artifact_uri {artifact} contains no objects")
        with self.lock:
            if parent_model:
                model_id = self._split_model_ref(parent_model)[0]
                if model_id not in self.models:
                    raise ApiError(404, f"Parent model {parent_model} not found.")
            else:
                model_id = req.get("modelId") or self._new_id()
                if model_id in self.models:
                    raise ApiError(409, f"Model {self._model_name(model_id)} already exists.")

        def effect() -> dict[str, Any]:
            versions = self.models.setdefault(model_id, {})
            # Version ids only grow, even after deletions, as on Vertex.
            version_id = str(self._last_version.get(model_id, 0) + 1)
            self._last_version[model_id] = int(version_id)
            aliases = list(model.get("versionAliases") or [])
            if not versions or "default" in aliases:
                for other in versions.values():
                    other["versionAliases"] = [a for a in other["versionAliases"] if a != "default"]
                aliases = ["default", *[a for a in aliases if a != "default"]]
            stamp = now()
            versions[version_id] = {
                **model,
                "name": self._model_name(model_id),
                "versionId": version_id,
                "versionAliases": aliases,
                "versionCreateTime": stamp,
                "versionUpdateTime": stamp,
                "createTime": stamp,
                "updateTime": stamp,
                "supportedDeploymentResourcesTypes": [DEDICATED_RESOURCES],
                "deployedModels": [],
            }
            return {"model": self._model_name(model_id), "modelVersionId": version_id}

        return self.start_operation(self._model_name(model_id), _V1 + "UploadModelResponse", effect)

    def get_model(self, ref: str, **_: Any) -> Reply:
        with self.lock:
            return json_reply(self.model_version(ref))

    def list_models(self, query: dict[str, str], **_: Any) -> Reply:
        with self.lock:
            out = [self.model_version(m) for m in self.models if self.models[m]]
        return json_reply({"models": _filtered(out, query.get("filter", ""))})

    def list_versions(self, ref: str, query: dict[str, str], **_: Any) -> Reply:
        with self.lock:
            model_id = self._split_model_ref(ref)[0]
            if model_id not in self.models:
                raise ApiError(404, f"Model {self._model_name(model_id)} not found.")
            out = list(self.models[model_id].values())
        return json_reply({"models": _filtered(out, query.get("filter", ""))})

    def delete_version(self, ref: str, **_: Any) -> Reply:
        with self.lock:
            model_id, version = self._split_model_ref(ref)
            target = self.model_version(ref)
            versions = self.models[model_id]
            if version is None:
                raise ApiError(400, "deleteVersion needs a version: models/ID@VERSION")
            if target["deployedModels"]:
                raise ApiError(412, f"Model version {ref} is deployed; undeploy it first.")
            if len(versions) == 1:
                raise ApiError(412, "Deleting the only version in the Model is not allowed.")

        def effect() -> dict[str, Any]:
            removed = versions.pop(target["versionId"], None)
            if removed and "default" in removed["versionAliases"]:
                latest = versions[max(versions, key=int)]
                latest["versionAliases"] = ["default", *latest["versionAliases"]]
            return {}

        return self.start_operation(self._model_name(model_id), _EMPTY, effect)

    def delete_model(self, ref: str, **_: Any) -> Reply:
        with self.lock:
            model_id = self._split_model_ref(ref)[0]
            if model_id not in self.models:
                raise ApiError(404, f"Model {self._model_name(model_id)} not found.")
            if any(v["deployedModels"] for v in self.models[model_id].values()):
                raise ApiError(412, f"Model {ref} has deployed versions; undeploy them first.")

        def effect() -> dict[str, Any]:
            self.models.pop(model_id, None)
            return {}

        return self.start_operation(self._model_name(model_id), _EMPTY, effect)

    # -- endpoints ---------------------------------------------------------------------------

    def _endpoint_name(self, endpoint_id: str) -> str:
        return f"{self.parent}/endpoints/{endpoint_id}"

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        ep = self.endpoints.get(endpoint_id)
        if ep is None:
            raise ApiError(404, f"Endpoint {self._endpoint_name(endpoint_id)} not found.")
        return ep

    def create_endpoint(self, query: dict[str, str], body: bytes, **_: Any) -> Reply:
        req = orjson.loads(body)
        endpoint_id = query.get("endpointId") or self._new_id()
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}|[1-9][0-9]{0,8}", endpoint_id):
            raise ApiError(400, f"invalid endpoint_id {endpoint_id!r}")
        if not req.get("displayName"):
            raise ApiError(400, "endpoint.display_name is required")
        with self.lock:
            if endpoint_id in self.endpoints:
                raise ApiError(409, f"Endpoint {self._endpoint_name(endpoint_id)} already exists.")
            logging = req.get("predictRequestResponseLoggingConfig") or {}
            if logging.get("enabled"):
                uri = (logging.get("bigqueryDestination") or {}).get("outputUri", "")
                self.bigquery.create_logging_table(endpoint_id, req["displayName"], uri)

        def effect() -> dict[str, Any]:
            if endpoint_id in self.endpoints:
                raise ApiError(409, f"Endpoint {self._endpoint_name(endpoint_id)} already exists.")
            stamp = now()
            ep = {
                **req,
                "name": self._endpoint_name(endpoint_id),
                "deployedModels": [],
                "trafficSplit": {},
                "etag": self._new_id(),
                "createTime": stamp,
                "updateTime": stamp,
            }
            self.endpoints[endpoint_id] = ep
            return ep

        return self.start_operation(self._endpoint_name(endpoint_id), _V1 + "Endpoint", effect)

    def get_endpoint(self, endpoint_id: str, **_: Any) -> Reply:
        with self.lock:
            return json_reply(self.endpoint(endpoint_id))

    def list_endpoints(self, query: dict[str, str], **_: Any) -> Reply:
        with self.lock:
            out = list(self.endpoints.values())
        return json_reply({"endpoints": _filtered(out, query.get("filter", ""))})

    def update_endpoint(
        self, endpoint_id: str, query: dict[str, str], body: bytes, **_: Any
    ) -> Reply:
        req = orjson.loads(body)
        mask = [p for p in query.get("updateMask", "").split(",") if p]
        if not mask:
            raise ApiError(400, "update_mask is required")
        with self.lock:
            ep = self.endpoint(endpoint_id)
            for path in mask:
                key = _camel(path)
                if key == "trafficSplit":
                    self._check_split(ep, req.get("trafficSplit") or {})
                elif key not in (
                    "displayName",
                    "description",
                    "labels",
                    "predictRequestResponseLoggingConfig",
                ):
                    raise ApiError(400, f"field {path} cannot be updated")
            for path in mask:
                key = _camel(path)
                ep[key] = req.get(key) or ({} if key in ("labels", "trafficSplit") else None)
            ep["updateTime"] = now()
            ep["etag"] = self._new_id()
            return json_reply(ep)

    def _check_split(self, ep: dict[str, Any], split: dict[str, Any]) -> None:
        if ep.get("network") and split:
            raise ApiError(400, "A private endpoint does not support traffic_split")
        ids = {d["id"] for d in ep["deployedModels"]}
        unknown = set(split) - ids
        if unknown:
            raise ApiError(400, f"traffic_split names unknown deployed models: {sorted(unknown)}")
        total = sum(int(v) for v in split.values())
        if split and total != 100:
            raise ApiError(400, f"traffic_split must sum to 100, got {total}")
        if any(int(v) < 0 for v in split.values()):
            raise ApiError(400, "traffic_split values must be non-negative")

    def delete_endpoint(self, endpoint_id: str, **_: Any) -> Reply:
        with self.lock:
            ep = self.endpoint(endpoint_id)
            if ep["deployedModels"]:
                raise ApiError(412, "Endpoint has deployed models; undeploy them first.")
            if self.running(ep["name"], "DeployModelResponse"):
                raise ApiError(400, f"Endpoint {ep['name']} has an ongoing DeployModel operation.")

        def effect() -> dict[str, Any]:
            self.endpoints.pop(endpoint_id, None)
            return {}

        return self.start_operation(self._endpoint_name(endpoint_id), _EMPTY, effect)

    def deploy_model(self, endpoint_id: str, body: bytes, **_: Any) -> Reply:
        req = orjson.loads(body)
        deployed = dict(req.get("deployedModel") or {})
        split = {k: int(v) for k, v in (req.get("trafficSplit") or {}).items()}
        with self.lock:
            ep = self.endpoint(endpoint_id)
            version = self.model_version(deployed.get("model", ""), deployed.get("modelVersionId"))
            resources = deployed.get("dedicatedResources")
            if not resources or not (resources.get("machineSpec") or {}).get("machineType"):
                raise ApiError(400, "dedicated_resources.machine_spec.machine_type is required")
            lo = int(resources.get("minReplicaCount") or 0)
            hi = int(resources.get("maxReplicaCount") or lo)
            if lo < 1 or hi < lo:
                raise ApiError(400, f"invalid replica counts min={lo} max={hi}")
            private = bool(ep.get("network"))
            if private and (split or ep["deployedModels"]):
                raise ApiError(
                    400,
                    "A private endpoint holds one deployed model and takes no traffic_split",
                )
            if split:
                known = {d["id"] for d in ep["deployedModels"]} | {"0"}
                if set(split) - known or sum(split.values()) != 100:
                    raise ApiError(400, f"invalid traffic_split {split}")
            failure = self.faults.fail_deploy.pop(0) if self.faults.fail_deploy else None
            model_id = self._split_model_ref(deployed["model"])[0]

        def effect() -> dict[str, Any]:
            dm_id = self._new_id()
            entry = {
                **deployed,
                "id": dm_id,
                "model": self._model_name(model_id),
                "modelVersionId": version["versionId"],
                "dedicatedResources": {**resources, "maxReplicaCount": hi},
                "createTime": now(),
            }
            self.loaded(entry)  # the container must load the model, or the deploy fails
            if private:
                base = f"{self.base_url}/private/v1/{ep['name']}"
                entry["privateEndpoints"] = {
                    "predictHttpUri": f"{base}:predict",
                    "healthHttpUri": base,
                }
            ep["deployedModels"].append(entry)
            if split and not private:
                ep["trafficSplit"] = {(dm_id if k == "0" else k): v for k, v in split.items()}
            elif not ep["trafficSplit"] and not private:
                ep["trafficSplit"] = {dm_id: 100}
            version["deployedModels"].append({"endpoint": ep["name"], "deployedModelId": dm_id})
            ep["updateTime"] = now()
            return {"deployedModel": entry}

        return self.start_operation(
            ep["name"], _V1 + "DeployModelResponse", effect, failure=failure
        )

    def undeploy_model(self, endpoint_id: str, body: bytes, **_: Any) -> Reply:
        req = orjson.loads(body)
        dm_id = req.get("deployedModelId", "")
        split = {k: int(v) for k, v in (req.get("trafficSplit") or {}).items()}
        with self.lock:
            ep = self.endpoint(endpoint_id)
            dm = next((d for d in ep["deployedModels"] if d["id"] == dm_id), None)
            if dm is None:
                raise ApiError(404, f"Deployed model {dm_id} not found in {ep['name']}.")
            others = [d for d in ep["deployedModels"] if d["id"] != dm_id]
            if split:
                if dm_id in split or sum(split.values()) != 100:
                    raise ApiError(400, f"invalid traffic_split {split} for undeploy")
            elif others and ep["trafficSplit"].get(dm_id, 0) > 0:
                raise ApiError(
                    400, f"Deployed model {dm_id} still receives traffic; move it first."
                )

        def effect() -> dict[str, Any]:
            ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != dm_id]
            ep["trafficSplit"] = split or {
                k: v for k, v in ep["trafficSplit"].items() if k != dm_id
            }
            model_id = self._split_model_ref(dm["model"])[0]
            version = self.models.get(model_id, {}).get(dm["modelVersionId"])
            if version is not None:
                version["deployedModels"] = [
                    r for r in version["deployedModels"] if r["deployedModelId"] != dm_id
                ]
            ep["updateTime"] = now()
            return {}

        return self.start_operation(ep["name"], _V1 + "UndeployModelResponse", effect)

    # -- prediction --------------------------------------------------------------------------

    def _pick(self, ep: dict[str, Any], headers: Any) -> dict[str, Any]:
        if ep.get("network") and ep["deployedModels"]:
            return ep["deployedModels"][0]
        split = {k: v for k, v in ep["trafficSplit"].items() if v > 0}
        if not split:
            raise ApiError(400, f"Endpoint {ep['name']} has no deployed model receiving traffic.")
        chosen = self._rng.choices(list(split), weights=list(split.values()))[0]
        return next(d for d in ep["deployedModels"] if d["id"] == chosen)

    def loaded(self, dm: dict[str, Any]) -> Any:
        """The deployed model as its container serves it (cached per model version).

        A prebuilt image (``…/vertex-ai/prediction/sklearn-cpu.1-5:latest``) runs Google's
        predictor steps (:mod:`._prebuilt`); any other image is taken to be the cloudserve
        runtime, which downloads the artifact from ``AIP_STORAGE_URI`` (the model's
        ``artifactUri``) and serves it with ``cloudserve.serving.load_model``.
        """
        from cloudserve_vertex.testing._prebuilt import PrebuiltPredictor, prebuilt_of

        model_id = self._split_model_ref(dm["model"])[0]
        key = f"{model_id}@{dm['modelVersionId']}"
        with self.lock:
            if key in self._loaded:
                return self._loaded[key]
            version = self.models[model_id][dm["modelVersionId"]]
        artifact = version.get("artifactUri")
        if not artifact:
            raise ApiError(400, "the fake can only serve models that have an artifact_uri")
        local = self.materialize(artifact, key)
        prebuilt = prebuilt_of((version.get("containerSpec") or {}).get("imageUri", ""))
        if prebuilt is not None:
            image, framework, at = prebuilt
            python = self.prebuilt_python.get(image)
            model: Any = PrebuiltPredictor(local, image, framework, at, python)
        elif self._load_model is not None:
            model = self._load_model(local)
        else:
            from cloudserve.serving import load_model

            try:
                model = load_model(local)
            except Exception as exc:  # the container never becomes healthy
                raise ApiError(400, f"Model server never became ready: {exc}") from exc
        with self.lock:
            self._loaded[key] = model
        return model

    def materialize(self, uri: str, key: str) -> Path:
        """Copy the objects under ``uri`` into a local directory (what the container sees)."""
        if self.workdir is None:
            raise RuntimeError("the fake has no working directory; start it first")
        target = self.workdir / "artifacts" / key.replace("@", "-v")
        prefix = uri.removeprefix("gs://").partition("/")[2].rstrip("/") + "/"
        for obj in self.gcs.read_uri(uri.rstrip("/") + "/"):
            dest = target / obj.name[len(prefix) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(obj.data)
        return target

    def run_model(
        self, dm: dict[str, Any], instances: list[Any], parameters: Any = None
    ) -> list[Any]:
        """Predictions of a deployed model; a model error is the caller's 400."""
        from cloudserve_vertex.testing._prebuilt import PrebuiltPredictor

        model = self.loaded(dm)
        try:
            if isinstance(model, PrebuiltPredictor) or parameters:
                return list(model.predict(instances, parameters))
            return list(model.predict(instances))
        except ApiError:
            raise
        except Exception as exc:
            raise ApiError(400, f"{type(exc).__name__}: {exc}") from exc

    def predict(self, endpoint_id: str, headers: Any, body: bytes, **_: Any) -> Reply:
        with self.lock:
            if self.endpoint(endpoint_id).get("network"):
                raise ApiError(
                    400,
                    f"Endpoint {self._endpoint_name(endpoint_id)} is a private endpoint: send "
                    "predictions to its deployed model's predictHttpUri inside the VPC",
                )
        return self._answer_predict(endpoint_id, headers, body)

    def private_predict(self, endpoint_id: str, headers: Any, body: bytes, **_: Any) -> Reply:
        """``predictHttpUri`` of a private endpoint (reached only inside the VPC on Vertex)."""
        with self.lock:
            if not self.endpoint(endpoint_id).get("network"):
                raise ApiError(404, "not a private endpoint")
        return self._answer_predict(endpoint_id, headers, body)

    def _answer_predict(self, endpoint_id: str, headers: Any, body: bytes) -> Reply:
        req = orjson.loads(body or b"{}")
        instances = req.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "instances must be a non-empty list")
        preds, dm = self._predict_recorded(endpoint_id, headers, instances, req.get("parameters"))
        model_id = self._split_model_ref(dm["model"])[0]
        return json_reply(
            {
                "predictions": preds,
                "deployedModelId": dm["id"],
                "model": dm["model"],
                "modelVersionId": dm["modelVersionId"],
                "modelDisplayName": self.models[model_id][dm["modelVersionId"]]["displayName"],
            }
        )

    def _predict_recorded(
        self, endpoint_id: str, headers: Any, instances: list[Any], parameters: Any = None
    ) -> tuple[list[Any], dict[str, Any]]:
        start = time.perf_counter()
        with self.lock:
            ep = self.endpoint(endpoint_id)
            dm = self._pick(ep, headers)
            fault = self.degraded.get(dm.get("displayName", ""))
            fails = fault is not None and fault.fails_next()
        status, preds = 200, None
        try:
            preds = self.run_model(dm, instances, parameters)
            if fails:
                preds = None
                raise ApiError(500, "the model server answered 500 (injected failure)")
            return preds, dm
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            record = PredictRecord(
                endpoint_id,
                dm["id"],
                self.clock(),
                (time.perf_counter() - start) * 1000 + (fault.latency_ms if fault else 0.0),
                status,
                instances,
                preds,
            )
            with self.lock:
                self.predictions.append(record)
                if preds is not None and self._sampled(ep):
                    self.bigquery.log(ep, dm, instances, preds, record.time)

    def _sampled(self, ep: dict[str, Any]) -> bool:
        """Whether request-response logging keeps this request (its ``samplingRate``)."""
        cfg = ep.get("predictRequestResponseLoggingConfig") or {}
        return bool(cfg.get("enabled")) and self._rng.random() < float(cfg.get("samplingRate") or 0)

    def raw_predict(self, endpoint_id: str, headers: Any, body: bytes, **_: Any) -> Reply:
        ctype = (headers.get("content-type") or "application/json").split(";")[0].strip()
        if ctype == "application/json":
            payload = orjson.loads(body or b"{}")
            instances = payload.get("instances") if isinstance(payload, dict) else payload
        elif ctype == "text/csv":
            instances = [[number(c) for c in row] for row in csv.reader(io.StringIO(body.decode()))]
        else:
            raise ApiError(400, f"the fake's container accepts JSON or CSV, not {ctype}")
        if not isinstance(instances, list) or not instances:
            raise ApiError(400, "the payload holds no instances")
        preds, dm = self._predict_recorded(endpoint_id, headers, instances)
        return json_reply(
            {"predictions": preds},
            headers={
                "X-Vertex-AI-Deployed-Model-Id": dm["id"],
                "X-Vertex-AI-Model": dm["model"],
                "X-Vertex-AI-Model-Version-Id": dm["modelVersionId"],
            },
        )

    # -- batch prediction --------------------------------------------------------------------

    def create_batch_job(self, body: bytes, **_: Any) -> Reply:
        req = orjson.loads(body)
        fmt = (req.get("inputConfig") or {}).get("instancesFormat")
        if fmt not in ("jsonl", "csv"):
            raise ApiError(400, f"instances_format {fmt!r} is not supported by the fake")
        uris = ((req.get("inputConfig") or {}).get("gcsSource") or {}).get("uris") or []
        prefix = ((req.get("outputConfig") or {}).get("gcsDestination") or {}).get(
            "outputUriPrefix"
        )
        if not uris or not prefix:
            raise ApiError(
                400, "input_config.gcs_source.uris and output_config.gcs_destination are required"
            )
        with self.lock:
            self.model_version(req.get("model", ""), req.get("modelVersionId"))
            job_id = self._new_id()
            stamp = now()
            job = {
                **req,
                "name": f"{self.parent}/batchPredictionJobs/{job_id}",
                "state": PENDING,
                "createTime": stamp,
                "updateTime": stamp,
            }
            self.batch_jobs[job_id] = job
            self._job_polls[job["name"]] = self.job_polls
            return json_reply(job)

    def get_batch_job(self, job_id: str, **_: Any) -> Reply:
        job = self._job(self.batch_jobs, "BatchPredictionJob", job_id)
        self._advance(job, lambda j: run_batch(j, self))
        return json_reply(job)

    def list_batch_jobs(self, query: dict[str, str], **_: Any) -> Reply:
        with self.lock:
            jobs = list(self.batch_jobs.values())
        return _page(_filtered(jobs, query.get("filter", "")), query, "batchPredictionJobs")

    def cancel_batch_job(self, job_id: str, **_: Any) -> Reply:
        job = self._job(self.batch_jobs, "BatchPredictionJob", job_id)
        return self._cancel(job)

    def _job(self, table: dict[str, dict[str, Any]], kind: str, job_id: str) -> dict[str, Any]:
        """A batch or tuning job by id, or the API's 404 naming its kind."""
        with self.lock:
            job = table.get(job_id)
        if job is None:
            raise ApiError(404, f"{kind} {job_id} not found.")
        return job

    def _cancel(self, job: dict[str, Any]) -> Reply:
        """``:cancel``: a job not yet ended goes CANCELLING (CANCELLED at its next read); an
        ended one is refused with FAILED_PRECONDITION."""
        with self.lock:
            if job["state"] in ENDED:
                return error_reply(
                    400,
                    f"{job['name']} has ended (state {job['state']}) and cannot be cancelled.",
                    name="FAILED_PRECONDITION",
                )
            job["state"] = CANCELLING
            job["updateTime"] = now()
        return json_reply({})

    def delete_batch_job(self, job_id: str, **_: Any) -> Reply:
        job = self._job(self.batch_jobs, "BatchPredictionJob", job_id)

        def effect() -> dict[str, Any]:
            self.batch_jobs.pop(job_id, None)
            return {}

        return self.start_operation(job["name"], _EMPTY, effect)

    def _advance(self, job: dict[str, Any], run: Callable[[dict[str, Any]], None]) -> None:
        """Move a job one poll along: PENDING → RUNNING → SUCCEEDED / FAILED."""
        with self.lock:
            if job["state"] in ENDED:
                return
            if job["state"] == CANCELLING:
                # the API reference: a cancelled tuning job gets error.code 1 (CANCELLED); a
                # cancelled batch job only its state (files it wrote stay)
                job["state"] = CANCELLED
                if "/hyperparameterTuningJobs/" in job["name"]:
                    job["error"] = {"code": 1, "message": "CANCELLED"}
                job["endTime"] = job["updateTime"] = now()
                return
            left = self._job_polls.get(job["name"], 0) - 1
            self._job_polls[job["name"]] = left
            if left > 0:
                job["state"] = RUNNING
                job.setdefault("startTime", now())
                return
            failure = self.faults.fail_job.pop(0) if self.faults.fail_job else None
            job.setdefault("startTime", now())
        if failure is not None:
            job.update(state=FAILED, error={"code": 13, "message": failure})
        else:
            try:
                run(job)
                job["state"] = SUCCEEDED
            except ApiError as exc:
                job.update(
                    state=FAILED, error={"code": rpc_code(exc.status), "message": exc.message}
                )
        job["endTime"] = job["updateTime"] = now()

    # -- hyperparameter tuning ----------------------------------------------------------------

    def create_tuning_job(self, body: bytes, **_: Any) -> Reply:
        from cloudserve_vertex.testing._trials import validate_tuning_job

        req = orjson.loads(body)
        validate_tuning_job(req)
        with self.lock:
            job_id = self._new_id()
            stamp = now()
            job = {
                **req,
                "name": f"{self.parent}/hyperparameterTuningJobs/{job_id}",
                "state": PENDING,
                "trials": [],
                "createTime": stamp,
                "updateTime": stamp,
            }
            self.tuning_jobs[job_id] = job
            self._job_polls[job["name"]] = self.job_polls
            return json_reply(job)

    def list_tuning_jobs(self, query: dict[str, str], **_: Any) -> Reply:
        with self.lock:
            jobs = list(self.tuning_jobs.values())
        return _page(_filtered(jobs, query.get("filter", "")), query, "hyperparameterTuningJobs")

    def cancel_tuning_job(self, job_id: str, **_: Any) -> Reply:
        job = self._job(self.tuning_jobs, "HyperparameterTuningJob", job_id)
        return self._cancel(job)

    def get_tuning_job(self, job_id: str, **_: Any) -> Reply:
        from cloudserve_vertex.testing._trials import run_trials

        job = self._job(self.tuning_jobs, "HyperparameterTuningJob", job_id)
        self._advance(job, lambda j: run_trials(j, self))
        return json_reply(job)

    # -- Cloud Monitoring -----------------------------------------------------------------------

    def list_time_series(self, project: str, query: dict[str, str], **_: Any) -> Reply:
        from cloudserve_vertex.testing._monitoring import time_series

        if project != self.project:
            raise ApiError(404, f"unknown project {project}")
        with self.lock:
            records = list(self.predictions)
        return json_reply({"timeSeries": time_series(records, query, self)})

    # -- Cloud Billing Catalog ------------------------------------------------------------------

    def list_skus(self, service: str, query: dict[str, str], **_: Any) -> Reply:
        return self.billing.list_skus(service, query)

    def close(self) -> None:
        """Stop the prebuilt containers' worker processes."""
        from cloudserve_vertex.testing._prebuilt import PrebuiltPredictor

        with self.lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for model in loaded:
            if isinstance(model, PrebuiltPredictor):
                model.close()

    def is_private(self, endpoint_id: str) -> bool:
        with self.lock:
            return bool((self.endpoints.get(endpoint_id) or {}).get("network"))

    # -- inspection ----------------------------------------------------------------------------

    def owned(self) -> list[str]:
        """Models, endpoints and staged artifacts that still exist."""
        with self.lock:
            out = [f"model:{m}@{v}" for m, vs in self.models.items() for v in vs]
            out += [f"endpoint:{e}" for e in self.endpoints]
            out += [f"gs://{b}/{n}" for (b, n) in self.gcs.objects if "/models/" in f"/{n}"]
            return sorted(out)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _camel(path: str) -> str:
    head, *rest = path.split("_")
    return head + "".join(p.title() for p in rest)


_LABEL_CLAUSE = re.compile(
    r'^labels\.(?:"(?P<quoted>[^"]+)"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))\s*=\s*"?(?P<value>[^"]*)"?$'
)


def _page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> Reply:
    """One page of a listing (``pageSize``, ``pageToken`` → ``nextPageToken``)."""
    size = int(query.get("pageSize") or DEFAULT_PAGE_SIZE)
    start = int(query.get("pageToken") or 0)
    body: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return json_reply(body)


def _filtered(items: list[dict[str, Any]], expr: str) -> list[dict[str, Any]]:
    """Apply AND-ed ``labels.key="value"`` / ``display_name="x"`` filters (AIP-160 syntax: a
    bare key is letters, digits and ``_``; any other key must be quoted, ``labels."a-b"``)."""
    out = items
    for clause in [c.strip() for c in re.split(r"\s+AND\s+", expr) if c.strip()]:
        if clause.startswith("labels."):
            m = _LABEL_CLAUSE.match(clause)
            if m is None:
                raise ApiError(
                    400,
                    f"Invalid filter {clause!r}: quote label keys that are not "
                    'plain identifiers, e.g. labels."managed-by"="x"',
                )
            label, value = m["quoted"] or m["bare"], m["value"]
            out = [i for i in out if (i.get("labels") or {}).get(label) == value]
            continue
        key, _, value = clause.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if key in ("display_name", "displayName"):
            out = [i for i in out if i.get("displayName") == value]
        else:
            raise ApiError(400, f"the fake does not support the filter {clause!r}")
    return out
