"""The stateful fake Azure ML service: ARM workspace routes, LROs, scoring, faults.

Every request the real ``azure-ai-ml`` MLClient (and azure-storage-blob, and cloudserve's own
scoring calls) sends through ``requests`` is answered here through ``responses``. Resources
under the workspace live in one generic ARM store keyed by their path, so a PUT, GET, list or
DELETE works for any collection; the collections Azure runs as long-running operations
(online/batch endpoints and deployments) answer through ``Azure-AsyncOperation`` with a
configurable number of ``InProgress`` polls.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cloudserve_azureml._errors import MODEL_REASON_HEADER, MODEL_STATUS_HEADER
from cloudserve_azureml._packaging import valid_name
from cloudserve_azureml.testing._blob import BLOB_HOST, BlobStore, Response
from cloudserve_azureml.testing._container import EntryScript, RuntimeContainer, mount_model
from cloudserve_azureml.testing._images import build_error
from cloudserve_azureml.testing._jobs import FakeJobs
from cloudserve_azureml.testing._prices import PRICES_HOST, FakeRetailPrices
from cloudserve_azureml.testing._schemas import schema_error

ARM = "https://management.azure.com"
RP = "Microsoft.MachineLearningServices"
LRO_KINDS = {
    "onlineendpoints",
    "onlineendpoints/deployments",
    "batchendpoints",
    "batchendpoints/deployments",
}
# Collections whose leftovers count as "what cloudserve created" (the workspace's own
# datastores and the fake's seeded compute are not).
OWNED_KINDS = LRO_KINDS | {
    "models/versions",
    "environments/versions",
    "codes/versions",
    "data/versions",
}
SCORING_HOST = re.compile(r"https://([a-z0-9-]+)\.([a-z0-9]+)\.inference\.ml\.azure\.com/(.*)")
API_HOST = re.compile(r"https://([a-z0-9]+)\.api\.azureml\.ms(/[^?]*)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body)


def arm_error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """An ARM error answer, shaped as azure-core's ARM error format expects."""
    return _json(
        status,
        {"error": {"code": code, "message": message}},
        {"x-ms-error-code": code, **(headers or {})},
    )


@dataclass
class Operation:
    """A long-running operation tracked by ``Azure-AsyncOperation``."""

    id: str
    key: str
    kind: str  # "put" or "delete"
    remaining: int
    error: str | None = None
    status: str = "InProgress"


@dataclass
class Faults:
    """Pending injected faults; each counter is consumed one request at a time."""

    throttle: int = 0
    throttle_retry_after: str = "1"
    unavailable: int = 0
    unavailable_status: int = 503
    fail_operation: list[str] = field(default_factory=list)
    fail_deployment_put: list[str] = field(default_factory=list)
    unavailable_poll: int = 0
    scoring_errors: list[str] = field(default_factory=list)
    # deployment (lower case) → (fraction of its scoring requests that fail, added latency in s)
    deployment_faults: dict[str, tuple[float, float]] = field(default_factory=dict)
    deployment_calls: dict[str, int] = field(default_factory=dict)


@dataclass
class ScoringRecord:
    """One scoring request, as Azure Monitor would count it."""

    time: float
    endpoint: str
    deployment: str
    status: int
    latency_ms: float


class FakeAzureMLService:
    """State and request handlers of the fake (used through ``testing.FakeAzureML``)."""

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        location: str,
        in_progress_polls: int,
        poll_retry_after: str,
        storage_account: str,
        container: str,
        seed: int = 0,
        load_model: Callable[[Path], Any] | None = None,
        job_polls: int = 2,
        resolve_environments: bool = True,
        shared_key_access: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.clock = clock
        self.resolve_environments = resolve_environments
        self.shared_key_access = shared_key_access
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self.location = location
        self.in_progress_polls = in_progress_polls
        self.poll_retry_after = poll_retry_after
        self.storage_account = storage_account
        self.container = container
        self.lock = threading.RLock()
        self.resources: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.blobs = BlobStore()
        self.faults = Faults()
        self.scoring: list[ScoringRecord] = []
        self.requests: list[tuple[str, str]] = []
        self.rejected: list[tuple[str, str, str]] = []  # (method, url, why) of refused changes
        self._mirror_pool: ThreadPoolExecutor | None = None
        self._mirroring: set[Future[Response]] = set()
        # (deployment key, collection) → (blob path, when, record): the collector's open batch
        self._batches: dict[tuple[str, str], tuple[str, float, dict[str, Any]]] = {}
        self.rng = random.Random(seed)
        self.workdir: Path | None = None
        self._containers: dict[str, Any] = {}
        self._load_model = load_model
        self.jobs = FakeJobs(self, job_polls)
        self.prices = FakeRetailPrices()
        self._seed()

    # -- paths -------------------------------------------------------------------------------

    @property
    def workspace_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{RP}/workspaces/{self.workspace}"
        )

    @property
    def storage_account_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Storage/storageAccounts/{self.storage_account}"
        )

    def resource_id(self, key: str) -> str:
        """The ARM id of a resource from its store key (``onlineEndpoints/ep``)."""
        return f"{self.workspace_id}/{key}"

    @staticmethod
    def kind_of(key: str) -> str:
        """``onlineEndpoints/ep/deployments/d`` → ``onlineendpoints/deployments``."""
        parts = key.split("/")
        return "/".join(p.lower() for p in parts[0::2])

    @staticmethod
    def norm(key: str) -> str:
        return key.lower()

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored resource at ``key`` (case-insensitive), or None."""
        return self.resources.get(self.norm(key))

    def children(self, collection_key: str) -> list[dict[str, Any]]:
        """Resources directly inside a collection path (``onlineEndpoints/ep/deployments``)."""
        prefix = self.norm(collection_key) + "/"
        return [
            r
            for k, r in sorted(self.resources.items())
            if k.startswith(prefix) and "/" not in k[len(prefix) :]
        ]

    # -- seeding -----------------------------------------------------------------------------

    def _seed(self) -> None:
        self._store(
            "datastores/workspaceblobstore",
            {
                "properties": {
                    "datastoreType": "AzureBlob",
                    "accountName": self.storage_account,
                    "containerName": self.container,
                    "endpoint": "core.windows.net",
                    "protocol": "https",
                    "isDefault": True,
                    "serviceDataAccessAuthIdentity": "None",
                    "credentials": {
                        "credentialsType": "AccountKey" if self.shared_key_access else "None"
                    },
                }
            },
        )
        self._store(
            "computes/cpu-cluster",
            {
                "properties": {
                    "computeType": "AmlCompute",
                    "provisioningState": "Succeeded",
                    "properties": {
                        "vmSize": "Standard_DS3_v2",
                        "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0},
                    },
                }
            },
        )

    def workspace_body(self) -> dict[str, Any]:
        api = f"https://{self.location}.api.azureml.ms"
        return {
            "id": self.workspace_id,
            "name": self.workspace,
            "type": f"{RP}/workspaces",
            "location": self.location,
            "kind": "Default",
            "identity": {"type": "SystemAssigned"},
            "sku": {"name": "Basic", "tier": "Basic"},
            "properties": {
                "friendlyName": self.workspace,
                "workspaceId": str(uuid.UUID(int=0)),
                "discoveryUrl": f"{api}/discovery",
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{self.workspace_id}",
                "storageAccount": self.storage_account_id,
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
            },
        }

    # -- generic ARM store ---------------------------------------------------------------------

    def _store(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = key.split("/")
        res = {
            "id": self.resource_id(key),
            "name": parts[-1],
            "type": f"{RP}/workspaces/" + "/".join(parts[0::2]),
            "properties": dict(body.get("properties") or {}),
            "systemData": {
                "createdAt": _now(),
                "createdBy": "fake",
                "createdByType": "User",
                "lastModifiedAt": _now(),
            },
        }
        for extra in ("location", "tags", "identity", "sku", "kind"):
            if extra in body:
                res[extra] = body[extra]
        res.setdefault("tags", {})
        self.resources[self.norm(key)] = res
        return res

    def owned(self) -> list[str]:
        """Every resource of a kind cloudserve creates, as store keys."""
        with self.lock:
            return [
                r["id"][len(self.workspace_id) + 1 :]
                for k, r in sorted(self.resources.items())
                if self.kind_of(k) in OWNED_KINDS
            ]

    # -- request entry point -------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Any, body: bytes) -> Response:
        """Answer one HTTP request (the ``responses`` callback calls this)."""
        with self.lock:
            self.requests.append((method, url))
            fault = self._consume_fault(url)
        if fault is not None:
            return fault
        if SCORING_HOST.match(url):
            return self.score(method, url, headers, body)
        if PRICES_HOST.match(url):
            return self.prices.handle(method, url)
        with self.lock:
            if API_HOST.match(url):
                return self._workspace_api(method, url)
            if BLOB_HOST.match(url):
                if not self.shared_key_access and headers.get("Authorization", "").startswith(
                    "SharedKey"
                ):
                    return 403, {"x-ms-error-code": "KeyBasedAuthenticationNotPermitted"}, b""
                return self.blobs.handle(method, url, headers, body)
            if url.startswith(ARM):
                answer = self._arm(method, url, headers, body)
                if method != "GET" and answer[0] == 400:
                    try:
                        why = json.loads(answer[2]).get("error", {}).get("message", "")
                    except ValueError:
                        why = str(answer[2])[:300]
                    self.rejected.append((method, url, why))
                return answer
        return arm_error(404, "NotFound", f"the fake does not serve {method} {url}")

    def _consume_fault(self, url: str) -> Any:
        f = self.faults
        if SCORING_HOST.match(url) and f.scoring_errors:
            return f.scoring_errors.pop(0)
        if "mfeOperationsStatus" in url and f.unavailable_poll > 0:
            f.unavailable_poll -= 1
            return arm_error(f.unavailable_status, "ServiceUnavailable", "the service blinked")
        if BLOB_HOST.match(url) or "/operations/" in url or "mfeOperationsStatus" in url:
            return None  # other faults hit the API calls a client makes, not polls or uploads
        if f.throttle > 0:
            f.throttle -= 1
            return arm_error(
                429,
                "TooManyRequests",
                "request rate is too high",
                {"Retry-After": f.throttle_retry_after},
            )
        if f.unavailable > 0:
            f.unavailable -= 1
            return arm_error(
                f.unavailable_status, "ServiceUnavailable", "the service is unavailable"
            )
        return None

    # -- ARM -----------------------------------------------------------------------------------

    def _arm(self, method: str, url: str, headers: Any, body: bytes) -> Response:
        parts = urlsplit(url)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        m = re.match(
            r"^/subscriptions/[^/]+/providers/"
            + RP
            + r"/locations/[^/]+/mfeOperations(?:Status|Results)/([^/]+)$",
            path,
            re.I,
        )
        if m:
            return self._poll(m.group(1))
        prefix = self.workspace_id
        if not path.lower().startswith(prefix.lower()):
            return arm_error(404, "ResourceNotFound", f"no such resource {path}")
        rest = path[len(prefix) :].strip("/")
        if (
            rest.lower().startswith("providers/microsoft.insights/")
            or "/providers/microsoft.insights/metrics" in rest.lower()
        ):
            return self._metrics(rest, query)
        if not rest:
            if method == "GET":
                return _json(200, self.workspace_body())
            return arm_error(405, "MethodNotAllowed", "the fake workspace is read-only")
        segs = rest.split("/")
        payload = json.loads(body) if body else {}
        if method == "POST":
            return self._action("/".join(segs[:-1]), segs[-1], payload)
        if len(segs) % 2 == 1:
            if method == "GET":
                return self._list(rest, query)
            return arm_error(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "GET":
            return self._get(rest)
        if method == "PUT":
            return self._put(rest, payload)
        if method == "PATCH":
            return self._patch(rest, payload)
        if method == "DELETE":
            return self._delete(rest)
        return arm_error(405, "MethodNotAllowed", method)

    def _get(self, key: str) -> Response:
        res = self.get(key)
        if res is None:
            return arm_error(404, "ResourceNotFound", f"{key} was not found")
        if self.kind_of(key) == "jobs":
            self.jobs.read(res["name"])
        for op in list(self.operations.values()):
            if op.key == self.norm(key) and op.status == "InProgress":
                self._advance(op)
        res = self.get(key)
        if res is None:
            return arm_error(404, "ResourceNotFound", f"{key} was not found")
        return _json(200, res)

    def _list(self, collection: str, query: dict[str, str]) -> Response:
        items = self.children(collection)
        if query.get("isDefault", "").lower() == "true":
            items = [i for i in items if i["properties"].get("isDefault")]
        if collection.lower().endswith("/versions"):
            items = sorted(items, key=lambda r: _version_key(r["name"]), reverse=True)
        return _json(200, {"value": items})

    def _put(self, key: str, payload: dict[str, Any]) -> Response:
        kind = self.kind_of(key)
        existed = self.get(key) is not None
        busy = [
            op
            for op in self.operations.values()
            if op.key == self.norm(key) and op.status == "InProgress" and op.remaining > 0
        ]
        if kind in LRO_KINDS and busy:
            return arm_error(
                409,
                "Conflict",
                "Conflict of operation, another operation on same entity is already running",
            )
        check = self._validate_put(kind, key, payload)
        if check is not None:
            return check
        old = self.get(key)
        res = self._store(key, payload)
        self._containers.pop(self.norm(key), None)  # an update restarts the container
        if old is not None:
            res["systemData"]["createdAt"] = old["systemData"]["createdAt"]
        self._complete_put(kind, key, res, payload)
        refused = schema_error(kind, res)
        if refused is not None:  # the SDK's own schema refuses it: store nothing
            if old is None:
                self.resources.pop(self.norm(key), None)
            else:
                self.resources[self.norm(key)] = old
            return arm_error(400, "UserError", refused)
        if kind == "jobs":
            self.jobs.put_job(res, old)
        if kind.endswith("/versions"):
            self._ensure_container(key)
        if kind not in LRO_KINDS:
            res["properties"].setdefault("provisioningState", "Succeeded")
            return _json(201 if not existed else 200, res)
        res["properties"]["provisioningState"] = "Updating" if existed else "Creating"
        error = None
        if self.faults.fail_operation:
            error = self.faults.fail_operation.pop(0)
        if error is None and kind.endswith("/deployments"):
            error = self._image_build_error(payload)
        op = self._operation(key, "put", error)
        return _json(201 if not existed else 200, res, self._op_headers(op))

    def _validate_put(self, kind: str, key: str, payload: dict[str, Any]) -> Response | None:
        props = payload.get("properties") or {}
        name = key.rsplit("/", 1)[-1]
        bad_tags = tag_error(payload.get("tags") or {})
        if bad_tags is not None:
            return arm_error(400, "InvalidTag", bad_tags)
        if kind in LRO_KINDS and not valid_name(name):
            return arm_error(
                400,
                "BadArgument",
                f"'{name}': endpoint and deployment names are 3-32 characters, a letter first, "
                "letters, digits and '-', not ending in '-'",
            )
        if kind == "onlineendpoints":
            traffic = props.get("traffic") or {}
            deployments = {d["name"].lower() for d in self.children(key + "/deployments")}
            unknown = [n for n in traffic if n.lower() not in deployments]
            if unknown:
                return arm_error(
                    400, "BadArgument", f"traffic names deployments that do not exist: {unknown}"
                )
            unready = [
                d["name"]
                for d in self.children(key + "/deployments")
                if int(traffic.get(d["name"], 0) or 0) > 0
                and d["properties"].get("provisioningState") != "Succeeded"
            ]
            if unready:
                return arm_error(
                    400,
                    "BadArgument",
                    f"traffic can only go to deployments that succeeded, not yet {unready}",
                )
            total = sum(int(v) for v in traffic.values())
            if traffic and total not in (0, 100):
                return arm_error(400, "BadArgument", f"traffic must sum to 100, got {total}")
            why = mirror_error(traffic, props.get("mirrorTraffic") or {}, deployments)
            if why is not None:
                return arm_error(400, "BadArgument", why)
        if kind in ("onlineendpoints/deployments", "batchendpoints/deployments"):
            parent = key.rsplit("/", 2)[0]
            if self.get(parent) is None:
                return arm_error(404, "ResourceNotFound", f"endpoint {parent} was not found")
            if self.faults.fail_deployment_put:
                msg = self.faults.fail_deployment_put.pop(0)
                return arm_error(400, "BadArgument", msg)
            model = props.get("model")
            if model and self._asset(model) is None:
                return arm_error(400, "BadArgument", f"model {model} was not found")
            if kind == "onlineendpoints/deployments" and not props.get("instanceType"):
                return arm_error(400, "BadArgument", "instanceType is required")
        return None

    def _complete_put(
        self, kind: str, key: str, res: dict[str, Any], payload: dict[str, Any]
    ) -> None:
        props = res["properties"]
        name = key.split("/")[1]
        if kind == "onlineendpoints":
            host = f"https://{name}.{self.location}.inference.ml.azure.com"
            props["scoringUri"] = f"{host}/score"
            props["swaggerUri"] = f"{host}/swagger.json"
            props.setdefault("authMode", "Key")
            props.setdefault("traffic", {})
            props.setdefault("properties", {})
            res.setdefault("location", self.location)
            res.setdefault(
                "identity",
                {
                    "type": "SystemAssigned",
                    "principalId": str(uuid.uuid4()),
                    "tenantId": str(uuid.UUID(int=1)),
                },
            )
            self.keys.setdefault(self.norm(key), (secrets.token_hex(16), secrets.token_hex(16)))
        elif kind == "batchendpoints":
            props["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/jobs"
            props.setdefault("authMode", "AADToken")
            props.setdefault("defaults", {})
            res.setdefault("location", self.location)
        elif kind == "onlineendpoints/deployments":
            props.setdefault("scaleSettings", {"scaleType": "Default"})
            # ARM answers enums in their canonical case (the SDK sends "enabled", reads "Enabled")
            for coll in ((props.get("dataCollector") or {}).get("collections") or {}).values():
                mode = str(coll.get("dataCollectionMode", "")).lower()
                if mode in ("enabled", "disabled"):
                    coll["dataCollectionMode"] = mode.capitalize()
            props.setdefault("endpointComputeType", "Managed")
            res.setdefault("location", self.location)
            res.setdefault("sku", {"name": "Default", "capacity": 1})
        elif kind == "batchendpoints/deployments":
            res.setdefault("location", self.location)
        elif kind.endswith("/versions"):
            props.setdefault("isArchived", False)
            props.setdefault("properties", {})
            props.setdefault("tags", {})
            if kind == "models/versions":
                props.setdefault("flavors", {})

    def _image_build_error(self, payload: dict[str, Any]) -> str | None:
        """Why Azure could not build the deployment's image (its environment's pip lines do not
        resolve on the package index), or None."""
        if not self.resolve_environments:
            return None
        env = self._asset((payload.get("properties") or {}).get("environmentId") or "")
        conda = (env or {}).get("properties", {}).get("condaFile")
        return build_error(conda) if conda else None

    def _ensure_container(self, key: str) -> None:
        container = key.rsplit("/", 2)[0]
        if self.get(container) is None:
            self._store(container, {"properties": {"isArchived": False}})
        latest = max((r["name"] for r in self.children(container + "/versions")), key=_version_key)
        self.get(container)["properties"]["latestVersion"] = latest  # type: ignore[index]

    def _patch(self, key: str, payload: dict[str, Any]) -> Response:
        res = self.get(key)
        if res is None:
            return arm_error(404, "ResourceNotFound", f"{key} was not found")
        merged = {**res, "properties": {**res["properties"], **(payload.get("properties") or {})}}
        for extra in ("tags", "sku", "identity"):
            if extra in payload:
                merged[extra] = payload[extra]
        return self._put(key, merged)

    def _delete(self, key: str) -> Response:
        kind = self.kind_of(key)
        res = self.get(key)
        if res is None:
            return 204, {}, b""
        if kind == "onlineendpoints/deployments":
            endpoint = self.get(key.rsplit("/", 2)[0]) or {"properties": {}}
            share = {k.lower(): v for k, v in (endpoint["properties"].get("traffic") or {}).items()}
            if share.get(res["name"].lower(), 0) > 0:
                return arm_error(
                    400,
                    "BadArgument",
                    f"deployment {res['name']} still takes traffic; move it first",
                )
        if kind not in LRO_KINDS:
            self._remove(key)
            return 200, {}, b""
        res["properties"]["provisioningState"] = "Deleting"
        op = self._operation(key, "delete", None)
        return (
            202,
            {**self._op_headers(op), "Location": self._op_url(op, "mfeOperationsResults")},
            b"",
        )

    def _remove(self, key: str) -> None:
        prefix = self.norm(key)
        for k in [k for k in self.resources if k == prefix or k.startswith(prefix + "/")]:
            del self.resources[k]
        self.keys.pop(prefix, None)
        self._containers.pop(prefix, None)
        if self.kind_of(key).endswith("/versions"):
            container = key.rsplit("/", 2)[0]
            if not self.children(container + "/versions"):
                self.resources.pop(self.norm(container), None)
            else:
                self._ensure_container(key)

    # -- long-running operations ----------------------------------------------------------------

    def _operation(self, key: str, kind: str, error: str | None) -> Operation:
        op = Operation(
            id=uuid.uuid4().hex,
            key=self.norm(key),
            kind=kind,
            remaining=self.in_progress_polls,
            error=error,
        )
        self.operations[op.id] = op
        if op.remaining == 0:
            self._advance(op)
        return op

    def _op_url(self, op: Operation, route: str = "mfeOperationsStatus") -> str:
        return (
            f"{ARM}/subscriptions/{self.subscription_id}/providers/{RP}/locations/{self.location}"
            f"/{route}/{op.id}?api-version=2023-04-01"
        )

    def _op_headers(self, op: Operation) -> dict[str, str]:
        # No Retry-After here: the SDK deserialises it as an int on PUT answers.
        return {"Azure-AsyncOperation": self._op_url(op)}

    def _advance(self, op: Operation) -> None:
        if op.status != "InProgress":
            return
        if op.remaining > 0:
            op.remaining -= 1
            return
        res = self.resources.get(op.key)
        if op.kind == "delete":
            self._remove(op.key)
            op.status = "Succeeded"
        elif op.error is not None:
            op.status = "Failed"
            if res is not None:
                res["properties"]["provisioningState"] = "Failed"
        else:
            op.status = "Succeeded"
            if res is not None:
                res["properties"]["provisioningState"] = "Succeeded"

    def _poll(self, op_id: str) -> Response:
        op = self.operations.get(op_id)
        if op is None:
            return arm_error(404, "NotFound", f"operation {op_id} not found")
        self._advance(op)
        body: dict[str, Any] = {
            "id": op.id,
            "name": op.id,
            "status": op.status,
            "startTime": _now(),
        }
        if op.status == "Failed":
            body["error"] = {"code": "DeploymentFailed", "message": op.error}
        return _json(
            200, body, {"Retry-After": self.poll_retry_after} if op.status == "InProgress" else None
        )

    # -- POST actions ------------------------------------------------------------------------

    def _action(self, key: str, action: str, payload: dict[str, Any]) -> Response:
        if action.lower() == "startpendingupload":
            return self._pending_upload(key)
        res = self.get(key) if key else None
        if res is None:
            return arm_error(404, "ResourceNotFound", f"{key} was not found")
        kind = self.kind_of(key)
        act = action.lower()
        if kind == "onlineendpoints" and act == "listkeys":
            primary, secondary = self.keys[self.norm(key)]
            return _json(200, {"primaryKey": primary, "secondaryKey": secondary})
        if kind == "onlineendpoints" and act == "regeneratekeys":
            self.keys[self.norm(key)] = (secrets.token_hex(16), secrets.token_hex(16))
            return 202, {}, b""
        if kind == "datastores" and act == "listsecrets":
            if not self.shared_key_access:
                return arm_error(
                    400, "KeyBasedAuthenticationNotPermitted", "the datastore holds no key"
                )
            return _json(200, {"secretsType": "AccountKey", "key": "ZmFrZWtleQ=="})
        if kind == "onlineendpoints/deployments" and act == "getlogs":
            return _json(200, {"content": f"fake logs of {key}"})
        return arm_error(400, "BadArgument", f"the fake does not know action {action} on {kind}")

    def _pending_upload(self, key: str) -> Response:
        """A temporary blob location for a code/data asset upload (SAS-authorised)."""
        # Like Azure: a fresh temporary container per upload, authorised by a container SAS.
        blob_uri = f"https://{self.storage_account}.blob.core.windows.net/{uuid.uuid4().hex}"
        return _json(
            200,
            {
                "pendingUploadId": uuid.uuid4().hex,
                "pendingUploadType": "TemporaryBlobReference",
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": self.storage_account_id,
                    "credential": {
                        "credentialType": "SAS",
                        "sasUri": f"{blob_uri}?sv=2021-08-06&sig=fake",
                    },
                },
            },
        )

    # -- assets ------------------------------------------------------------------------------

    def _asset(self, ref: Any) -> dict[str, Any] | None:
        """The stored asset an ARM id (or an ``{"assetId": …}`` reference) points to."""
        if isinstance(ref, dict):
            ref = ref.get("assetId") or ""
        m = re.search(r"/workspaces/[^/]+/(.+)$", ref)
        return self.get(m.group(1)) if m else None  # the SDK sends ARM ids, not name:version

    def materialize_code(self, asset: dict[str, Any], dest: Path) -> Path:
        """Copy a code asset's uploaded files into ``dest``."""
        uri = str(asset["properties"]["codeUri"])
        if uri.startswith("azureml://"):
            return self.materialize(uri, dest)
        parts = urlsplit(uri)  # https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX
        container, _, prefix = unquote(parts.path).lstrip("/").partition("/")
        blobs = self.blobs.under(parts.netloc.split(".")[0], container, prefix.rstrip("/"))
        if not blobs:
            raise FileNotFoundError(f"nothing uploaded under {uri}")
        for name, data in blobs.items():
            target = dest / name[len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest

    def datastore_blobs(self, uri: str) -> tuple[str, dict[str, bytes]]:
        """(prefix, blob name → bytes) under an ``azureml://…/datastores/NAME/paths/P`` URI."""
        m = re.search(r"datastores/([^/]+)/paths/(.*)$", uri)
        if not m:
            raise ValueError(f"not a datastore URI: {uri}")
        prefix = m.group(2).rstrip("/")
        return prefix, self.blobs.under(self.storage_account, self.container, prefix)

    def materialize(self, uri: str, dest: Path) -> Path:
        """Copy the blobs under a datastore URI into ``dest``; return the model directory."""
        prefix, blobs = self.datastore_blobs(uri)
        if not blobs:
            raise FileNotFoundError(f"nothing uploaded under {uri}")
        if len(blobs) == 1 and next(iter(blobs)) == prefix:
            target = dest / Path(prefix).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blobs[prefix])
            return dest
        for name, data in blobs.items():
            target = dest / name[len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return dest

    def mount_deployment_model(self, dep: dict[str, Any], root: Path) -> Path:
        """Lay the deployment's registered model out under ``root`` as Azure mounts it."""
        model = self._asset(dep["properties"].get("model") or "")
        if model is None:
            raise LookupError(f"deployment {dep['name']} has no registered model")
        prefix, blobs = self.datastore_blobs(model["properties"]["modelUri"])
        if not blobs:
            raise FileNotFoundError(f"nothing uploaded for model {model['id']}")
        name, version = model["id"].split("/models/")[1].split("/versions/")
        return mount_model(blobs, prefix, name, version, root)

    def scoring_container(self, key: str) -> Any:
        """The deployment's running scoring container (started on first use, then kept).

        Framework route: the uploaded entry script, initialised as Azure's inference server
        initialises it. Container route (a custom image): the cloudserve runtime, which finds
        the model under ``AZUREML_MODEL_DIR`` itself.
        """
        cached = self._containers.get(self.norm(key))
        if cached is not None:
            return cached
        with self.lock:
            dep = self.get(key)
            if dep is None:
                raise LookupError(key)
            assert self.workdir is not None
            root = self.workdir / "deployments" / uuid.uuid4().hex
            model_dir = self.mount_deployment_model(dep, root)
            props = dep["properties"]
            env = dict(props.get("environmentVariables") or {})
            code = props.get("codeConfiguration") or {}
            script = None
            if code.get("codeId"):
                asset = self._asset(code["codeId"])
                if asset is None:
                    raise LookupError(f"code asset {code['codeId']} was not found")
                script = self.materialize_code(asset, root / "code") / code["scoringScript"]
        if script is not None:
            started: Any = EntryScript(script, model_dir, env, self._collector_sink(key))
        else:
            started = RuntimeContainer(model_dir, self._load_model)
        self._containers[self.norm(key)] = started
        return started

    # -- scoring -----------------------------------------------------------------------------

    def score(self, method: str, url: str, headers: Any, body: bytes) -> Response:
        m = SCORING_HOST.match(url)
        assert m is not None
        name = m.group(1)
        with self.lock:
            batch = self._endpoint_key(name, "batchendpoints")
            if batch is not None and m.group(3).split("?")[0] == "jobs":
                return self._invoke_batch(batch, headers, body)
            key = self._endpoint_key(name)
            if key is None:
                return _json(404, {"message": f"endpoint {name} not found"})
            primary, secondary = self.keys.get(key, ("", ""))
            auth = headers.get("Authorization", "")
            if auth not in (f"Bearer {primary}", f"Bearer {secondary}"):
                return _json(401, {"message": "key is missing or invalid"})
            named = headers.get("azureml-model-deployment")
            deployment = self._route(key, named)
            if deployment is None:
                return _json(
                    404, {"message": "no deployment takes traffic or the named one is missing"}
                )
            dep_key = f"{key}/deployments/{deployment}"
            # only requests that name no deployment are mirrored
            mirror = None if named else self._mirror_target(key)
        status, out_headers, out = self._answer(name, deployment, dep_key, headers, body)
        if mirror is not None:
            self._send_mirror(name, mirror, f"{key}/deployments/{mirror}", headers, body)
        return status, {**out_headers, "azureml-model-deployment": deployment}, out

    def _answer(
        self, name: str, deployment: str, dep_key: str, headers: Any, body: bytes
    ) -> Response:
        """One deployment's answer to a scoring request, counted for Azure Monitor."""
        start = time.perf_counter()
        failing = self._deployment_fault(deployment)
        out: bytes | str
        if failing:
            status, out_headers, out = (
                424,
                {
                    "Content-Type": "application/json",
                    MODEL_STATUS_HEADER: "500",
                    MODEL_REASON_HEADER: "model_error",
                },
                json.dumps({"message": "injected model failure"}).encode(),
            )
        else:
            status, out_headers, out = self._run_model(dep_key, headers, body)
        latency = (time.perf_counter() - start) * 1000
        with self.lock:
            self.scoring.append(ScoringRecord(self.clock(), name, deployment, status, latency))
        return status, out_headers, out

    def _mirror_target(self, key: str) -> str | None:
        """The deployment this request is also sent to: the endpoint's mirror deployment, drawn
        with its share (called under the lock)."""
        mirror = self.resources[key]["properties"].get("mirrorTraffic") or {}
        deps = {d["name"].lower(): d["name"] for d in self.children(key + "/deployments")}
        for dep, share in mirror.items():
            if int(share) and self.rng.random() * 100 < int(share) and dep.lower() in deps:
                return deps[dep.lower()]
        return None

    def _send_mirror(self, name: str, dep: str, dep_key: str, headers: Any, body: bytes) -> None:
        """Score a copy of the request on the mirror deployment, off the caller's path; its
        answer is discarded (``settle_mirror`` waits for the copies in flight)."""
        copy = dict(headers.items())
        with self.lock:
            if self._mirror_pool is None:
                self._mirror_pool = ThreadPoolExecutor(4, "fake-azureml-mirror")
            future = self._mirror_pool.submit(self._answer, name, dep, dep_key, copy, body)
            self._mirroring.add(future)
        future.add_done_callback(self._mirrored)

    def _mirrored(self, future: Future[Response]) -> None:
        with self.lock:
            self._mirroring.discard(future)

    def settle_mirror(self, timeout: float = 30.0) -> None:
        """Wait until every mirrored copy sent so far has been scored."""
        with self.lock:
            pending = list(self._mirroring)
        if pending:
            wait(pending, timeout=timeout)

    def close(self) -> None:
        """Finish the mirrored copies in flight and stop their threads."""
        with self.lock:
            pool, self._mirror_pool = self._mirror_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _deployment_fault(self, deployment: str) -> bool:
        """Apply an injected per-deployment fault: sleep its added latency; ``True`` when this
        request is one of the share that fails (spread evenly: the k-th of every 1/rate)."""
        with self.lock:
            rate, delay_s = self.faults.deployment_faults.get(deployment.lower(), (0.0, 0.0))
            n = self.faults.deployment_calls.get(deployment.lower(), 0) + 1
            self.faults.deployment_calls[deployment.lower()] = n
        if delay_s:
            time.sleep(delay_s)
        return int(n * rate) > int((n - 1) * rate)

    def _endpoint_key(self, name: str, kind: str = "onlineendpoints") -> str | None:
        for k, r in self.resources.items():
            if self.kind_of(k) == kind and r["name"].lower() == name.lower():
                return k
        return None

    def _invoke_batch(self, endpoint_key: str, headers: Any, body: bytes) -> Response:
        """A batch endpoint's ``/jobs`` POST: start a batch job (AAD token, not a key)."""
        if not headers.get("Authorization", "").startswith("Bearer "):
            return _json(401, {"message": "an Azure AD token is required"})
        try:
            payload = json.loads(body or b"{}")
            job = self.jobs.invoke_batch(
                endpoint_key, headers.get("azureml-model-deployment"), payload
            )
        except (ValueError, LookupError) as exc:
            return _json(400, {"error": {"code": "BadArgument", "message": str(exc)}})
        return _json(200, job)

    def _workspace_api(self, method: str, url: str) -> Response:
        """The workspace's data-plane host: discovery and run history (child runs)."""
        m = API_HOST.match(url)
        assert m is not None
        host, path = f"https://{m.group(1)}.api.azureml.ms", m.group(2)
        if path == "/discovery":
            return _json(
                200,
                {
                    "api": host,
                    "catalog": host,
                    "experimentation": host,
                    "history": host,
                    "hyperdrive": host,
                    "labeling": host,
                    "modelmanagement": host,
                    "pipelines": host,
                    "studiohost": host,
                },
            )
        child = re.match(r"^/history/v1\.0/.*/runs/([^/]+)/children$", path)
        if child and method in ("GET", "POST"):
            if self.get(f"jobs/{child.group(1)}") is None:
                return arm_error(404, "NotFound", f"run {child.group(1)} was not found")
            return _json(200, {"value": self.jobs.children(child.group(1))})
        return arm_error(404, "NotFound", f"the fake does not serve {method} {url}")

    def _route(self, key: str, wanted: str | None) -> str | None:
        deps = {d["name"].lower(): d["name"] for d in self.children(key + "/deployments")}
        if wanted:
            return deps.get(wanted.lower())
        traffic = {
            k: int(v)
            for k, v in (self.resources[key]["properties"].get("traffic") or {}).items()
            if int(v) > 0
        }
        if not traffic:
            return None
        names = sorted(traffic)
        return deps.get(self.rng.choices(names, weights=[traffic[n] for n in names])[0].lower())

    def _run_model(self, dep_key: str, headers: Any, body: bytes) -> Response:
        """The container's answer; a non-200 one comes back as Azure's 424 "Model Error"."""
        try:
            container = self.scoring_container(dep_key)
        except Exception as exc:  # a model or script that cannot start: the container is down
            status, out_headers, out = 502, {}, json.dumps({"message": str(exc)}).encode()
        else:
            wanted = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
            status, out_headers, out = container.score(wanted, body)
        if status == 200:
            return 200, {"Content-Type": out_headers.get("Content-Type", "application/json")}, out
        return (
            424,
            {
                "Content-Type": "application/json",
                MODEL_STATUS_HEADER: str(status),
                MODEL_REASON_HEADER: "model_error",
            },
            out,
        )

    def _collector_sink(self, dep_key: str) -> Callable[[str, list[dict[str, Any]]], None]:
        """Where the deployment's ``Collector(name).collect(df)`` calls write: a JSON Lines blob
        under ``modelDataCollector/ENDPOINT/DEPLOYMENT/NAME/yyyy/MM/dd/HH/``, records in
        ``"data"`` — only for a collection the deployment's data collector enables. As Azure's
        collector does, calls that come within a second of each other (on the fake's clock) are
        batched into one JSON object, their records together in its ``"data"``."""

        def write(name: str, records: list[dict[str, Any]]) -> None:
            with self.lock:
                dep = self.get(dep_key)
                if dep is None:
                    return
                collector = dep["properties"].get("dataCollector") or {}
                wanted = (collector.get("collections") or {}).get(name) or {}
                mode = str(wanted.get("dataCollectionMode", wanted.get("enabled", ""))).lower()
                if mode not in ("enabled", "true"):
                    return
                now = self.clock()
                batch = self._batches.get((dep_key, name))
                if batch is not None and now - batch[1] < 1.0:
                    path, _, record = batch
                    record["data"].extend(records)
                else:
                    stamp = datetime.fromtimestamp(now, timezone.utc)
                    path = (
                        f"modelDataCollector/{dep_key.split('/')[1]}/{dep['name']}/{name}/"
                        f"{stamp:%Y/%m/%d/%H}/{uuid.uuid4().hex}.jsonl"
                    )
                    record = {
                        "specversion": "1.0",
                        "time": stamp.isoformat(),
                        "correlationid": uuid.uuid4().hex,
                        "data": list(records),
                    }
                    self._batches[(dep_key, name)] = (path, now, record)
                line = json.dumps(record) + "\n"
                self.blobs.put(self.storage_account, self.container, path, line.encode())

        return write

    # -- Azure Monitor ------------------------------------------------------------------------

    def _metrics(self, rest: str, query: dict[str, str]) -> Response:
        m = re.match(r"^onlineEndpoints/([^/]+)/providers/microsoft\.insights/metrics$", rest, re.I)
        if not m:
            return arm_error(404, "ResourceNotFound", f"no metrics at {rest}")
        name = m.group(1)
        if self._endpoint_key(name) is None:
            return arm_error(404, "ResourceNotFound", f"endpoint {name} was not found")
        from cloudserve_azureml.testing._monitor import metrics_body

        return _json(200, metrics_body(self, name, query))


#: Azure Resource Manager's tag limits: 50 tags a resource, a name up to 512 characters and a
#: value up to 256 (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations)
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256


#: Azure's cap on an endpoint's mirrored traffic, in total
MAX_MIRROR = 50


def mirror_error(
    traffic: dict[str, Any], mirror: dict[str, Any], deployments: set[str]
) -> str | None:
    """Why Azure refuses an endpoint's ``mirrorTraffic``, or ``None`` (safe rollout, "Test the
    deployment with mirrored traffic": one deployment at most 50 %, live or mirrored not both;
    https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints)."""
    unknown = [n for n in mirror if n.lower() not in deployments]
    if unknown:
        return f"mirror traffic names deployments that do not exist: {unknown}"
    shares = {n.lower(): int(v) for n, v in mirror.items()}
    if any(v < 0 or v > 100 for v in shares.values()):
        return f"mirror traffic values are percentages: {mirror}"
    if sum(shares.values()) > MAX_MIRROR:
        return f"mirror traffic must sum to at most {MAX_MIRROR}, got {sum(shares.values())}"
    mirrored = [n for n, v in shares.items() if v]
    if len(mirrored) > 1:
        return f"traffic can be mirrored to one deployment only, not {mirrored}"
    live = {n.lower() for n, v in traffic.items() if int(v)}
    both = [n for n in mirrored if n in live]
    if both:
        return f"a deployment takes live or mirrored traffic, not both: {both}"
    return None


def tag_error(tags: dict[str, Any]) -> str | None:
    """Why ARM refuses these tags, or ``None``."""
    if len(tags) > MAX_TAGS:
        return f"{len(tags)} tags: a resource takes at most {MAX_TAGS}"
    for k, v in tags.items():
        if len(k) > MAX_TAG_NAME or any(c in k for c in "<>%&\\?/"):
            return f"tag name {k[:40]!r} is longer than {MAX_TAG_NAME} or has one of <>%&\\?/"
        if len(str(v)) > MAX_TAG_VALUE:
            return f"tag {k!r}: value of {len(str(v))} characters, at most {MAX_TAG_VALUE}"
    return None


def _version_key(version: str) -> tuple[int, Any]:
    return (0, int(version)) if version.isdigit() else (1, version)
