"""A WSGI layer in front of moto's server that adds what moto 5.2 lacks for SageMaker.

moto stays the source of truth: every request it can answer goes to it, and this layer only
changes moto's own objects (an endpoint's status, a job's counters) or answers the operations
moto does not implement (``UpdateEndpoint``, ``ListTrainingJobsForHyperParameterTuningJob``,
``CreateMonitoringSchedule`` …) from moto's state. What it adds:

- endpoints that stay ``Creating`` / ``Updating`` for a set number of ``DescribeEndpoint`` polls;
  a failed update rolls back to the previous config and reports ``FailureReason`` (as AWS does);
- faults: throttling (``ThrottlingException``), 503s, failed endpoints / jobs, and a failure of
  the next ``CreateEndpoint`` (after the model and endpoint config exist);
- ``InvokeEndpoint`` answered by the deployed model (see ``_container``), with CloudWatch
  ``AWS/SageMaker`` metrics and S3 data capture written the way SageMaker writes them, stamped
  with the fake's clock (``FakeState.clock``), and degraded variants (``FakeState.degraded``)
  that fail a share of requests or report added latency;
- shadow variants (``ShadowProductionVariants``, which moto drops): kept per endpoint config,
  described back, and mirrored to — the shadow's weight against the production variant's is
  the share of ``InvokeEndpoint`` requests also sent to it; its answer is discarded, and with
  data capture on, both answers are captured under their variant with the request's
  ``InferenceId`` and one shared ``eventId``;
- ``AddTags`` that overwrites a key already there (moto appends a duplicate) and refuses more
  than 50 user tags a resource, as SageMaker does;
- ``InvokeEndpointAsync`` reading its input from S3 and writing the output object;
- batch transform jobs that really transform their S3 input (Line split, MultiRecord batches);
- tuning jobs whose trials run the training script with sampled hyperparameters;
- the AWS Price List API's ``GetProducts`` (``AWSPriceListService.*``, see ``_pricing``).
"""

from __future__ import annotations

import io
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID

from cloudserve.testing.fakes import Degradation
from cloudserve_sagemaker._validate import has_local_storage
from cloudserve_sagemaker.testing._container import ContainerError, ContainerPool
from cloudserve_sagemaker.testing._pricing import FakePriceList
from cloudserve_sagemaker.testing._validator import message, validator_for

__all__ = ["FakeState", "Middleware", "RecordedRequest", "RejectedRequest"]

# JSON-protocol services by their X-Amz-Target prefix (botocore's ``targetPrefix``).
JSON_SERVICES = {
    "SageMaker": "sagemaker",
    "AnyScaleFrontendService": "application-autoscaling",
    "AWSPriceListService": "pricing",
    "GraniteServiceVersion20100801": "cloudwatch",
}

PAYLOAD_LIMIT = 6 * 1024 * 1024
SERVERLESS_PAYLOAD_LIMIT = 4 * 1024 * 1024
_INVOKE = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>invocations|async-invocations)$")
_REGION = re.compile(r"Credential=[^/]+/\d+/([^/]+)/")

StartResponse = Callable[..., Any]


@dataclass
class RecordedRequest:
    """One request the fake received: operation (or runtime route), endpoint, body size."""

    operation: str
    endpoint: str | None
    size: int
    status: int = 200


@dataclass(frozen=True)
class RejectedRequest:
    """A request the service-model validator refused: service, operation, the message sent."""

    service: str
    operation: str
    message: str


@dataclass(frozen=True)
class _Request:
    """What an invocation sent: body, content type, accept, and its ``InferenceId``."""

    body: bytes
    content_type: str
    accept: str
    inference_id: str | None = None


@dataclass
class _Pending:
    polls: int
    final: str
    reason: str | None = None
    rollback: Callable[[], None] | None = None


#: SageMaker's limit of user tags a resource (keys starting ``aws:`` do not count)
MAX_TAGS = 50


@dataclass
class FakeState:
    """Faults to inject and what the fake has seen; shared by the middleware and its owner."""

    creating_polls: int = 0
    updating_polls: int = 0
    job_polls: int = 0
    throttle: int = 0
    unavailable: int = 0
    fail_endpoint: str | None = None
    fail_create_endpoint: str | None = None
    fail_job: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    rejected: list[RejectedRequest] = field(default_factory=list)
    pending: dict[str, _Pending] = field(default_factory=dict)
    job_countdown: dict[str, int] = field(default_factory=dict)
    trials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: endpoint config name → its ShadowProductionVariants (moto keeps none)
    shadows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: variant name → injected fault (see ``FakeSageMaker.degrade``)
    degraded: dict[str, Degradation] = field(default_factory=dict)
    #: what stamps metrics and captures (seconds since the epoch)
    clock: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        """The fake's time, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def operations(self, name: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, all or of one operation."""
        with self.lock:
            return [r for r in self.requests if name is None or r.operation == name]


def _json_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
    return status, headers, body


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Middleware:
    """WSGI middleware around moto's ``DomainDispatcherApplication``."""

    def __init__(
        self, app: Any, state: FakeState, workdir: Path, price_list: FakePriceList | None = None
    ):
        self.app = app
        self.state = state
        self.price_list = price_list or FakePriceList()
        self.containers = ContainerPool(workdir / "containers")
        self.workdir = workdir
        self.rng = random.Random(0)
        self.mirror_rng = random.Random(1)
        self._capture_counter = 0
        self._handlers: dict[str, Callable[[dict[str, Any], str], Any]] = {
            "UpdateEndpoint": self._update_endpoint,
            "ListTrainingJobsForHyperParameterTuningJob": self._list_tuning_trials,
            "CreateMonitoringSchedule": self._create_monitoring_schedule,
            "AddTags": self._add_tags,
        }

    # -- WSGI plumbing --------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        path = environ.get("PATH_INFO", "")
        invoke = _INVOKE.match(path) if environ.get("REQUEST_METHOD") == "POST" else None
        refused = self._validate(environ, target, invoke)
        if refused is not None:
            return _respond(start_response, *refused)
        if target.startswith("AWSPriceListService."):
            return self._pricing(environ, start_response, target.split(".", 1)[1])
        if not (invoke or target.startswith("SageMaker.")):
            return self.app(environ, start_response)
        body = _read_body(environ)
        if target.startswith("SageMaker."):
            op = target.split(".", 1)[1]
            params = json.loads(body or b"{}")
            endpoint = params.get("EndpointName")
        elif invoke:
            op, params = (
                ("InvokeEndpointAsync" if "async" in invoke["kind"] else "InvokeEndpoint"),
                {},
            )
            endpoint = invoke["name"]
        region = _region(environ)
        record = RecordedRequest(op, endpoint, len(body))
        with self.state.lock:
            self.state.requests.append(record)
        fault = self._fault()
        if fault is not None:
            record.status = fault[0]
            return _respond(start_response, *fault)
        if invoke:
            status, headers, out = self._invoke(environ, body, invoke["name"], op, region)
            record.status = status
            return _respond(start_response, status, headers, out)
        return self._api(environ, start_response, op, params, region, record)

    def _validate(
        self, environ: dict[str, Any], target: str, invoke: re.Match[str] | None
    ) -> tuple[int, dict[str, str], bytes] | None:
        """``ValidationException`` for a request that breaks its service model, as the service
        answers it (see ``_validator``); None for a valid request or one of another service."""
        prefix, _, op = target.partition(".")
        service = JSON_SERVICES.get(prefix)
        if service is not None:
            try:
                params = json.loads(_read_body(environ) or b"{}")
            except ValueError:
                return _json_error(400, "SerializationException", "Malformed JSON body")
            code = "ValidationException"
        elif invoke is not None:
            service, code = "sagemaker-runtime", "ValidationError"
            op = "InvokeEndpointAsync" if "async" in invoke["kind"] else "InvokeEndpoint"
            params = _runtime_params(environ, op, invoke["name"], _read_body(environ))
        else:
            return None
        found = validator_for(service).validate(op, params)
        if not found:
            return None
        text = message(found)
        with self.state.lock:
            self.state.rejected.append(RejectedRequest(service, op, text))
        return _json_error(400, code, text)

    def _pricing(
        self, environ: dict[str, Any], start_response: StartResponse, op: str
    ) -> Iterable[bytes]:
        body = _read_body(environ)
        record = RecordedRequest(op, None, len(body))
        with self.state.lock:
            self.state.requests.append(record)
        fault = self._fault()
        if fault is None:
            status, code, out = self.price_list.handle(op, json.loads(body or b"{}"))
            message = str(out.get("Message") or out.get("message") or "")
            fault = _json_error(status, code, message) if code else None
        if fault is not None:
            record.status = fault[0]
            return _respond(start_response, *fault)
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return _respond(start_response, 200, headers, json.dumps(out).encode())

    def _fault(self) -> tuple[int, dict[str, str], bytes] | None:
        with self.state.lock:
            if self.state.throttle > 0:
                self.state.throttle -= 1
                return _json_error(400, "ThrottlingException", "Rate exceeded")
            if self.state.unavailable > 0:
                self.state.unavailable -= 1
                return _json_error(503, "ServiceUnavailable", "Service is unavailable (injected)")
        return None

    def _api(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        op: str,
        params: dict[str, Any],
        region: str,
        record: RecordedRequest,
    ) -> Iterable[bytes]:
        handler = self._handlers.get(op)
        if handler is not None:
            status, headers, out = handler(params, region)
            record.status = status
            return _respond(start_response, status, headers, out)
        early = self._before(op, params, region)
        if early is not None:
            record.status = early[0]
            return _respond(start_response, *early)
        status_line, headers, out = _call(self.app, environ)
        record.status = int(status_line.split()[0])
        if record.status < 300:
            self._after(op, params, region)
            described = self._with_shadows(op, out, region)
            if described is not None:
                out = described
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(out))))
        start_response(status_line, headers)
        return [out]

    def _with_shadows(self, op: str, out: bytes, region: str) -> bytes | None:
        """moto's description with the shadow variants it does not keep; None: unchanged."""
        if op not in ("DescribeEndpointConfig", "DescribeEndpoint"):
            return None
        body = json.loads(out)
        with self.state.lock:
            rows = self.state.shadows.get(body.get("EndpointConfigName", ""))
        if not rows:
            return None
        if op == "DescribeEndpointConfig":
            body["ShadowProductionVariants"] = rows
        else:
            body["ShadowProductionVariants"] = [_summary(r) for r in rows]
        return json.dumps(body).encode()

    # -- hooks around moto ------------------------------------------------------------------

    def _before(
        self, op: str, params: dict[str, Any], region: str
    ) -> tuple[int, dict[str, str], bytes] | None:
        sm = _sagemaker(region)
        if op == "DescribeEndpoint":
            self._advance(params["EndpointName"], region)
        elif op in ("DescribeTransformJob", "DescribeHyperParameterTuningJob"):
            self._advance_job(
                params.get("TransformJobName") or params["HyperParameterTuningJobName"], op, region
            )
        duplicates = {
            "CreateModel": ("ModelName", sm._models, "model"),
            "CreateEndpointConfig": (
                "EndpointConfigName",
                sm.endpoint_configs,
                "endpoint configuration",
            ),
            "CreateEndpoint": ("EndpointName", sm.endpoints, "endpoint"),
            "CreateTransformJob": ("TransformJobName", sm.transform_jobs, "transform job"),
        }
        if op in duplicates:
            key, table, kind = duplicates[op]
            if params[key] in table:
                arn = _arn(region, kind.replace(" ", "-"), params[key])
                return _json_error(
                    400, "ValidationException", f'Cannot create already existing {kind} "{arn}".'
                )
        shadow = _shadow_refusal(op, params, sm)
        if shadow is not None:
            return _json_error(400, "ValidationException", shadow)
        local = _local_storage_refusal(op, params)
        if local is not None:
            return _json_error(400, "ValidationException", local)
        if op == "CreateEndpoint" and self.state.fail_create_endpoint is not None:
            message, self.state.fail_create_endpoint = self.state.fail_create_endpoint, None
            return _json_error(400, "ResourceLimitExceeded", message)
        return None

    def _after(self, op: str, params: dict[str, Any], region: str) -> None:
        if op == "CreateEndpointConfig" and params.get("ShadowProductionVariants"):
            with self.state.lock:
                self.state.shadows[params["EndpointConfigName"]] = [
                    dict(r) for r in params["ShadowProductionVariants"]
                ]
        elif op == "DeleteEndpointConfig":
            with self.state.lock:
                self.state.shadows.pop(params["EndpointConfigName"], None)
        if op == "CreateEndpoint":
            name = params["EndpointName"]
            reason, self.state.fail_endpoint = self.state.fail_endpoint, None
            reason = reason or self._health(params["EndpointConfigName"], region)
            final = "Failed" if reason else "InService"
            self._schedule(name, region, "Creating", self.state.creating_polls, final, reason)
        elif op == "UpdateEndpointWeightsAndCapacities":
            self._schedule(
                params["EndpointName"], region, "Updating", self.state.updating_polls, "InService"
            )
        elif op == "CreateTransformJob":
            self._run_transform(params["TransformJobName"], region)
        elif op == "CreateHyperParameterTuningJob":
            self._run_tuning(params["HyperParameterTuningJobName"], region)

    def _schedule(
        self,
        name: str,
        region: str,
        during: str,
        polls: int,
        final: str,
        reason: str | None = None,
        rollback: Callable[[], None] | None = None,
    ) -> None:
        endpoint = _sagemaker(region).endpoints[name]
        pending = _Pending(polls, final, reason, rollback)
        if polls <= 0:
            _finish(endpoint, pending)
            return
        endpoint.endpoint_status = during
        with self.state.lock:
            self.state.pending[name] = pending

    def _advance(self, name: str, region: str) -> None:
        with self.state.lock:
            pending = self.state.pending.get(name)
            if pending is None:
                return
            if pending.polls > 0:  # this poll still sees Creating / Updating
                pending.polls -= 1
                return
            del self.state.pending[name]
        endpoint = _sagemaker(region).endpoints.get(name)
        if endpoint is not None:
            _finish(endpoint, pending)

    def _advance_job(self, name: str, op: str, region: str) -> None:
        with self.state.lock:
            left = self.state.job_countdown.get(name)
            if left is None:
                return
            if left > 0:  # this poll still sees InProgress
                self.state.job_countdown[name] = left - 1
                return
            del self.state.job_countdown[name]
        sm = _sagemaker(region)
        if op == "DescribeTransformJob":
            job = sm.transform_jobs[name]
            job.transform_job_status = "Failed" if job.failure_reason else "Completed"
        else:
            tuning = sm.hyper_parameter_tuning_jobs[name]
            tuning.hyper_parameter_tuning_job_status = (
                "Failed" if tuning.failure_reason else "Completed"
            )

    # -- operations moto lacks ---------------------------------------------------------------

    def _update_endpoint(
        self, params: dict[str, Any], region: str
    ) -> tuple[int, dict[str, str], bytes]:
        sm = _sagemaker(region)
        name, config_name = params["EndpointName"], params["EndpointConfigName"]
        endpoint = sm.endpoints.get(name)
        if endpoint is None:
            return _json_error(400, "ValidationException", f'Could not find endpoint "{name}".')
        config = sm.endpoint_configs.get(config_name)
        if config is None:
            return _json_error(
                400,
                "ValidationException",
                f'Could not find endpoint configuration "{config_name}".',
            )
        if endpoint.endpoint_status != "InService":
            return _json_error(
                400, "ValidationException", f'Cannot update in-progress endpoint "{name}".'
            )
        before = (
            endpoint.endpoint_config_name,
            endpoint.production_variants,
            endpoint.data_capture_config,
        )

        def rollback() -> None:
            (
                endpoint.endpoint_config_name,
                endpoint.production_variants,
                endpoint.data_capture_config,
            ) = before

        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.data_capture_config = config.data_capture_config
        endpoint.failure_reason = None
        endpoint.last_modified_time = _now()
        reason, self.state.fail_endpoint = self.state.fail_endpoint, None
        reason = reason or self._health(config_name, region)
        self._schedule(
            name, region, "Updating", self.state.updating_polls, "InService", reason, rollback
        )
        return (
            200,
            {"Content-Type": "application/x-amz-json-1.1"},
            json.dumps({"EndpointArn": endpoint.arn}).encode(),
        )

    def _add_tags(self, params: dict[str, Any], region: str) -> tuple[int, dict[str, str], bytes]:
        arn = params["ResourceArn"]
        try:
            resource = _sagemaker(region)._get_resource_from_arn(arn)
        except Exception:  # moto raises its own not-found errors
            return _json_error(400, "ValidationException", f"Resource {arn} does not exist.")
        merged = {t["Key"]: t.get("Value", "") for t in resource.tags}
        merged.update({t["Key"]: t.get("Value", "") for t in params["Tags"]})
        user = [k for k in merged if not k.startswith("aws:")]
        if len(user) > MAX_TAGS:
            return _json_error(
                400,
                "ValidationException",
                f"Resource {arn} would have {len(user)} tags; a resource can have at most "
                f"{MAX_TAGS} user tags.",
            )
        resource.tags = [{"Key": k, "Value": v} for k, v in merged.items()]
        body = json.dumps({"Tags": params["Tags"]}).encode()
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, body

    def _create_monitoring_schedule(
        self, params: dict[str, Any], region: str
    ) -> tuple[int, dict[str, str], bytes]:
        name = params["MonitoringScheduleName"]
        arn = _arn(region, "monitoring-schedule", name)
        return (
            200,
            {"Content-Type": "application/x-amz-json-1.1"},
            json.dumps({"MonitoringScheduleArn": arn}).encode(),
        )

    def _list_tuning_trials(
        self, params: dict[str, Any], region: str
    ) -> tuple[int, dict[str, str], bytes]:
        name = params["HyperParameterTuningJobName"]
        if name not in _sagemaker(region).hyper_parameter_tuning_jobs:
            return _json_error(
                400,
                "ResourceNotFound",
                f"Amazon SageMaker can't find a tuning job with name {name}",
            )
        with self.state.lock:
            summaries = list(self.state.trials.get(name, []))
        body = json.dumps({"TrainingJobSummaries": summaries}, default=_iso).encode()
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, body

    # -- runtime --------------------------------------------------------------------------------

    def _invoke(
        self, environ: dict[str, Any], body: bytes, name: str, op: str, region: str
    ) -> tuple[int, dict[str, str], bytes]:
        sm = _sagemaker(region)
        endpoint = sm.endpoints.get(name)
        if endpoint is None:
            return _json_error(
                400,
                "ValidationError",
                f"Endpoint {name} of account {DEFAULT_ACCOUNT_ID} not found.",
            )
        config = sm.endpoint_configs[endpoint.endpoint_config_name]
        is_async = bool(config.async_inference_config)
        if endpoint.endpoint_status not in ("InService", "Updating"):
            return _json_error(
                400,
                "ValidationError",
                f"Endpoint {name} is not in service ({endpoint.endpoint_status}).",
            )
        if is_async != (op == "InvokeEndpointAsync"):
            kind = "asynchronous" if is_async else "real-time"
            return _json_error(
                400,
                "ValidationError",
                f"Endpoint {name} is a {kind} endpoint; {op} is not supported on it.",
            )
        if len(body) > PAYLOAD_LIMIT and op == "InvokeEndpoint":
            return _json_error(
                413,
                "ValidationError",
                f"Received payload of {len(body)} bytes exceeds the 6 MB limit.",
            )
        variant = self._pick_variant(endpoint, environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_VARIANT"))
        if variant is None:
            return _json_error(
                400, "ValidationError", "The target variant is not present on the endpoint."
            )
        row = next(v for v in config.production_variants if v["VariantName"] == variant)
        if row.get("ServerlessConfig") and len(body) > SERVERLESS_PAYLOAD_LIMIT:
            return _json_error(
                413,
                "ValidationError",
                f"Received payload of {len(body)} bytes exceeds the 4 MB limit of serverless "
                "endpoints.",
            )
        if op == "InvokeEndpointAsync":
            return self._invoke_async(environ, endpoint, config, variant, region)
        request = _Request(
            body,
            environ.get("CONTENT_TYPE") or "application/json",
            environ.get("HTTP_ACCEPT") or "application/json",
            environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"),
        )
        try:
            out, out_type = self._answer(region, name, config, variant, request)
        except ContainerError as exc:
            message = (
                f'Received client error ({exc.status}) from primary with message "{exc.message}".'
            )
            payload = {
                "message": message,
                "OriginalStatusCode": exc.status,
                "OriginalMessage": exc.message,
                "LogStreamArn": f"arn:aws:logs:{region}:{DEFAULT_ACCOUNT_ID}:log-group:"
                f"/aws/sagemaker/Endpoints/{name}",
            }
            return (
                424,
                {"Content-Type": "application/json", "x-amzn-ErrorType": "ModelError"},
                json.dumps(payload).encode(),
            )
        event_id = self._capture(region, endpoint, variant, request, out, out_type)
        self._mirror(region, endpoint, config, variant, request, event_id)
        return 200, {"Content-Type": out_type, "x-Amzn-Invoked-Production-Variant": variant}, out

    def _answer(
        self, region: str, endpoint: str, config: Any, variant: str, request: _Request
    ) -> tuple[bytes, str]:
        """The variant's model answers the request (or an injected fault fails it); the
        invocation's datapoints go to CloudWatch either way."""
        with self.state.lock:
            fault = self.state.degraded.get(variant)
            fails = fault is not None and fault.fails_next()
        added = fault.latency_ms / 1000 if fault is not None else 0.0
        started = time.perf_counter()
        try:
            if fails:
                raise ContainerError(500, "the model server answered 500 (injected failure)")
            container = self._container(config, variant, region)
            answer = container.invoke(request.body, request.content_type, request.accept)
        except ContainerError as exc:
            took = time.perf_counter() - started + added
            self._publish(region, endpoint, variant, took, error=exc.status)
            raise
        self._publish(region, endpoint, variant, time.perf_counter() - started + added)
        return answer

    def _pick_variant(self, endpoint: Any, wanted: str | None) -> str | None:
        names = [v["VariantName"] for v in endpoint.production_variants]
        if wanted:
            return wanted if wanted in names else None
        weights = [float(v.get("CurrentWeight") or 0) for v in endpoint.production_variants]
        if sum(weights) <= 0:
            weights = [1.0] * len(names)
        return self.rng.choices(names, weights=weights)[0]

    def _rows(self, config: Any) -> list[dict[str, Any]]:
        """The config's production variants, then its shadow variants."""
        with self.state.lock:
            shadows = list(self.state.shadows.get(config.endpoint_config_name, []))
        return [*config.production_variants, *shadows]

    def _container(self, config: Any, variant: str, region: str) -> Any:
        sm = _sagemaker(region)
        row = next(v for v in self._rows(config) if v["VariantName"] == variant)
        model = sm._models.get(row["ModelName"])
        if model is None:
            raise ContainerError(500, f"model {row['ModelName']} does not exist")
        return self._model_container(model)

    def _model_container(self, model: Any, extra_env: dict[str, str] | None = None) -> Any:
        """The model's container; a transform job's ``Environment`` is added to the model's."""
        url = model.primary_container.get("ModelDataUrl")
        if not url:
            raise ContainerError(500, f"model {model.model_name} has no ModelDataUrl")
        env = {**(model.primary_container.get("Environment") or {}), **(extra_env or {})}
        return self.containers.get(_s3_get(url), env, _s3_get)

    def _health(self, config_name: str, region: str) -> str | None:
        """Why the config's containers would fail SageMaker's ping check, or None."""
        config = _sagemaker(region).endpoint_configs.get(config_name)
        for row in self._rows(config) if config is not None else []:
            try:
                self._container(config, row["VariantName"], region)
            except ContainerError as exc:
                return (
                    f"The primary container for production variant {row['VariantName']} did "
                    f"not pass the ping health check. ({exc.message})"
                )
        return None

    def _invoke_async(
        self, environ: dict[str, Any], endpoint: Any, config: Any, variant: str, region: str
    ) -> tuple[int, dict[str, str], bytes]:
        source = environ.get("HTTP_X_AMZN_SAGEMAKER_INPUTLOCATION", "")
        inference_id = environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID") or str(uuid.uuid4())
        output = config.async_inference_config["OutputConfig"]
        out_uri = f"{output['S3OutputPath'].rstrip('/')}/{inference_id}.out"
        fail_base = output.get("S3FailurePath", output["S3OutputPath"]).rstrip("/")
        fail_uri = f"{fail_base}/{inference_id}-error.out"
        content_type = environ.get("HTTP_X_AMZN_SAGEMAKER_CONTENT_TYPE") or "application/json"
        accept = environ.get("HTTP_X_AMZN_SAGEMAKER_ACCEPT") or "application/json"
        try:
            out, _ = self._container(config, variant, region).invoke(
                _s3_get(source), content_type, accept
            )
            _s3_put(out_uri, out)
        except ContainerError as exc:
            _s3_put(fail_uri, json.dumps({"error": exc.message, "status": exc.status}).encode())
        headers = {
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-OutputLocation": out_uri,
            "X-Amzn-SageMaker-FailureLocation": fail_uri,
        }
        return (
            202,
            headers,
            json.dumps({"InferenceId": inference_id, "OutputLocation": out_uri}).encode(),
        )

    def _publish(
        self, region: str, endpoint: str, variant: str, seconds: float, error: int | None = None
    ) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        dims = [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": variant},
        ]
        micros = seconds * 1e6
        data = [
            {"MetricName": "Invocations", "Value": 1.0, "Unit": "None"},
            {
                "MetricName": "Invocation4XXErrors",
                "Value": float(error is not None and error < 500),
                "Unit": "None",
            },
            {
                "MetricName": "Invocation5XXErrors",
                "Value": float(error is not None and error >= 500),
                "Unit": "None",
            },
            {"MetricName": "ModelLatency", "Value": micros, "Unit": "Microseconds"},
            {
                "MetricName": "OverheadLatency",
                "Value": min(micros * 0.05, 2000.0),
                "Unit": "Microseconds",
            },
        ]
        # moto keeps metric timestamps naive (UTC) and compares them with naive query bounds.
        stamp = self.state.now().replace(tzinfo=None)
        for d in data:
            d.update({"Dimensions": dims, "Timestamp": stamp})
        cloudwatch_backends[DEFAULT_ACCOUNT_ID][region].put_metric_data("AWS/SageMaker", data)

    def _capture(
        self,
        region: str,
        endpoint: Any,
        variant: str,
        request: _Request,
        out: bytes,
        out_type: str,
        event_id: str | None = None,
    ) -> str | None:
        """Write the capture of one answered request; its ``eventId`` (None: not captured).
        A mirrored request's shadow answer passes the production capture's ``event_id``."""
        cfg = endpoint.data_capture_config or {}
        if not cfg.get("EnableCapture"):
            return None
        if event_id is None:
            with self.state.lock:
                self._capture_counter += 1
                n = self._capture_counter
            # Deterministic sampling: every k-th request for a percentage of 100/k.
            pct = int(cfg.get("InitialSamplingPercentage", 100))
            if pct <= 0 or (n * pct) // 100 == ((n - 1) * pct) // 100:
                return None
            event_id = str(uuid.uuid4())
        modes = {o.get("CaptureMode") for o in cfg.get("CaptureOptions", [])}
        capture: dict[str, Any] = {}
        if "Input" in modes:
            capture["endpointInput"] = _capture_part(request.body, request.content_type, "INPUT")
        if "Output" in modes:
            capture["endpointOutput"] = _capture_part(out, out_type, "OUTPUT")
        when = self.state.now()
        metadata = {"eventId": event_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if request.inference_id:
            metadata["inferenceId"] = request.inference_id
        event = {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}
        stamp = f"{when:%Y/%m/%d/%H}/{when:%M-%S-%f}-{uuid.uuid4().hex[:8]}"
        key = f"{endpoint.endpoint_name}/{variant}/{stamp}.jsonl"
        _s3_put(
            cfg["DestinationS3Uri"].rstrip("/") + "/" + key, (json.dumps(event) + "\n").encode()
        )
        return event_id

    def _mirror(
        self,
        region: str,
        endpoint: Any,
        config: Any,
        production: str,
        request: _Request,
        event_id: str | None,
    ) -> None:
        """Send the request to the config's shadow variant too, for the share its weight
        gives against the production variant's; the answer is captured, never returned."""
        with self.state.lock:
            shadows = list(self.state.shadows.get(config.endpoint_config_name, []))
        if not shadows:
            return
        shadow = shadows[0]
        base = next(
            (float(r.get("InitialVariantWeight", 1.0)) for r in config.production_variants
             if r["VariantName"] == production),
            1.0,
        )  # fmt: skip
        share = float(shadow.get("InitialVariantWeight", 1.0)) / base if base > 0 else 0.0
        if self.mirror_rng.random() >= share:
            return
        variant = shadow["VariantName"]
        try:
            out, out_type = self._answer(region, endpoint.endpoint_name, config, variant, request)
        except ContainerError:
            return  # the caller already has production's answer; CloudWatch has the error
        if event_id is not None:
            self._capture(region, endpoint, variant, request, out, out_type, event_id)

    # -- jobs -------------------------------------------------------------------------------

    def _run_transform(self, name: str, region: str) -> None:
        from cloudserve_sagemaker.testing._jobs import run_transform

        sm = _sagemaker(region)
        job = sm.transform_jobs[name]
        reason, self.state.fail_job = self.state.fail_job, None
        if reason is None:
            model = sm._models[job.model_name]
            reason = run_transform(job, lambda: self._model_container(model, job.environment))
        job.failure_reason = reason or ""
        self._hold_job(name, lambda status: setattr(job, "transform_job_status", status), reason)

    def _run_tuning(self, name: str, region: str) -> None:
        from cloudserve_sagemaker.testing._jobs import run_tuning

        tuning = _sagemaker(region).hyper_parameter_tuning_jobs[name]
        reason, self.state.fail_job = self.state.fail_job, None
        trials = [] if reason else run_tuning(tuning, self.workdir / "tuning" / name, _s3_get)
        with self.state.lock:
            self.state.trials[name] = trials
        _summarise_tuning(tuning, trials)
        if reason:
            tuning.failure_reason = reason
        elif not any(t.get("FinalHyperParameterTuningJobObjectiveMetric") for t in trials):
            tuning.failure_reason = "No training job succeeded with an objective metric."
        self._hold_job(
            name,
            lambda s: setattr(tuning, "hyper_parameter_tuning_job_status", s),
            tuning.failure_reason or None,
        )

    def _hold_job(self, name: str, set_status: Callable[[str], None], reason: str | None) -> None:
        polls = self.state.job_polls
        if polls > 0:
            set_status("InProgress")
            with self.state.lock:
                self.state.job_countdown[name] = polls
        else:
            set_status("Failed" if reason else "Completed")


def _summarise_tuning(tuning: Any, trials: list[dict[str, Any]]) -> None:
    done = [t for t in trials if t["TrainingJobStatus"] == "Completed"]
    scored = [t for t in done if t.get("FinalHyperParameterTuningJobObjectiveMetric")]
    tuning.training_job_status_counters = {
        "Completed": len(done),
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": len(trials) - len(done),
        "Stopped": 0,
    }
    tuning.objective_status_counters = {
        "Succeeded": len(scored),
        "Pending": 0,
        "Failed": len(trials) - len(scored),
    }
    if not scored:
        tuning.best_training_job = None
        tuning.OverallBestTrainingJob = None
        return
    objective = tuning.hyper_parameter_tuning_job_config["HyperParameterTuningJobObjective"]
    pick = max if objective["Type"] == "Maximize" else min
    best = pick(scored, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    tuning.best_training_job = best
    tuning.OverallBestTrainingJob = best


def _shadow_refusal(op: str, params: dict[str, Any], sm: Any) -> str | None:
    """SageMaker's rule for ``ShadowProductionVariants`` (CreateEndpointConfig): with it, one
    production variant and one shadow variant, whose model must exist."""
    shadows = params.get("ShadowProductionVariants") if op == "CreateEndpointConfig" else None
    if not shadows:
        return None
    rows = params.get("ProductionVariants", [])
    if len(rows) != 1 or len(shadows) != 1:
        return (
            "If you use ShadowProductionVariants, you can only specify one variant for "
            "ProductionVariants and one variant for ShadowProductionVariants."
        )
    if shadows[0]["VariantName"] == rows[0]["VariantName"]:
        return f"Variant name {rows[0]['VariantName']} is used more than once."
    if shadows[0]["ModelName"] not in sm._models:
        return f'Could not find model "{shadows[0]["ModelName"]}".'
    return None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A ProductionVariantSummary of a shadow variant as DescribeEndpoint lists it."""
    weight = float(row.get("InitialVariantWeight", 1.0))
    count = int(row.get("InitialInstanceCount", 1))
    return {
        "VariantName": row["VariantName"],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": count,
        "DesiredInstanceCount": count,
    }


def _local_storage_refusal(op: str, params: dict[str, Any]) -> str | None:
    """SageMaker refuses a KMS key for the volumes of instances with local NVMe storage."""
    if op == "CreateEndpointConfig" and params.get("KmsKeyId"):
        for row in params.get("ProductionVariants", []):
            if has_local_storage(row.get("InstanceType")):
                return (
                    f"The instance type {row['InstanceType']} has local storage, which is "
                    "encrypted by the instance; KmsKeyId is not supported for it."
                )
    if op == "CreateTransformJob":
        resources = params.get("TransformResources", {})
        if resources.get("VolumeKmsKeyId") and has_local_storage(resources.get("InstanceType")):
            return (
                f"The instance type {resources['InstanceType']} has local storage, which is "
                "encrypted by the instance; VolumeKmsKeyId is not supported for it."
            )
    return None


def _finish(endpoint: Any, pending: _Pending) -> None:
    # A failed update rolls back to the previous config and stays InService with a
    # FailureReason; a failed create ends Failed.
    if pending.reason and pending.rollback is not None:
        pending.rollback()
    endpoint.endpoint_status = pending.final
    if pending.reason:
        endpoint.failure_reason = pending.reason
    endpoint.last_modified_time = _now()


def _capture_part(data: bytes, content_type: str, mode: str) -> dict[str, str]:
    kind = content_type.split(";")[0].strip().lower()
    encoding = "CSV" if kind == "text/csv" else "JSON" if "json" in kind else "BASE64"
    if encoding == "BASE64":
        import base64

        text = base64.b64encode(data).decode()
    else:
        text = data.decode()
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def _arn(region: str, kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{DEFAULT_ACCOUNT_ID}:{kind}/{name}"


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(type(value).__name__)


def _sagemaker(region: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[DEFAULT_ACCOUNT_ID][region]


def _split_uri(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    return bucket, key


def _s3() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def _s3_get(uri: str) -> bytes:
    """The bytes of an S3 object held by moto; ContainerError when it is missing."""
    bucket, key = _split_uri(uri)
    try:
        obj = _s3().get_object(bucket, key)
    except Exception as exc:  # moto raises its own MissingBucket / MissingKey
        raise ContainerError(500, f"could not read {uri}: {type(exc).__name__}") from exc
    if obj is None:
        raise ContainerError(500, f"could not read {uri}: no such key")
    return bytes(obj.value)


def _s3_put(uri: str, data: bytes) -> None:
    bucket, key = _split_uri(uri)
    _s3().put_object(bucket, key, data)


def s3_list(prefix_uri: str) -> list[str]:
    """Every object URI under an S3 prefix held by moto, sorted."""
    bucket, prefix = _split_uri(prefix_uri)
    try:
        keys = _s3().get_bucket(bucket).keys.keys()
    except Exception:
        return []
    return sorted(f"s3://{bucket}/{k}" for k in keys if k.startswith(prefix))


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    body = stream.read(length) if length else b""
    if not length and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return body


def _runtime_params(environ: dict[str, Any], op: str, endpoint: str, body: bytes) -> dict[str, Any]:
    """The members of a runtime request, read back from its path, headers and body the way
    the rest-json protocol placed them (``location`` / ``locationName`` of each member)."""
    shape = validator_for("sagemaker-runtime").model.operation_model(op).input_shape
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        if where == "uri":
            params[name] = endpoint
        elif where == "header":
            header = member.serialization["name"].upper().replace("-", "_")
            value = environ.get(header if header == "CONTENT_TYPE" else f"HTTP_{header}")
            if value is not None:
                params[name] = int(value) if member.type_name == "integer" else value
        elif name == shape.serialization.get("payload") and body:
            # Over 6 MB is the front door's 413 (see ``_invoke``), not a member violation.
            params[name] = body if len(body) <= PAYLOAD_LIMIT else b""
    return params


def _region(environ: dict[str, Any]) -> str:
    found = _REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else "us-east-1"


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    captured: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, headers

    chunks = app(environ, start)
    try:
        out = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()
    return captured["status"], captured["headers"], out


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    413: "Payload Too Large",
    424: "Failed Dependency",
    503: "Service Unavailable",
}


def _respond(
    start_response: StartResponse, status: int, headers: dict[str, str], body: bytes
) -> list[bytes]:
    start_response(
        f"{status} {_REASONS.get(status, 'Status')}",
        [*headers.items(), ("Content-Length", str(len(body)))],
    )
    return [body]
