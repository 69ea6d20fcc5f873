"""Every provider maps HTTP statuses through the one table in ``cloudserve.errors``, plus the
overrides it declares (Azure ML's 424, Vertex's retryable 409 ABORTED)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cloudserve.errors import (
    HTTP_STATUS_ERRORS,
    Aborted,
    AlreadyExists,
    AuthError,
    CloudServeError,
    ErrorTable,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Throttled,
    http_status_error,
)
from cloudserve.local.predict import WorkerAnswer
from cloudserve.provider import Provider

STATUSES = (400, 401, 403, 404, 406, 409, 410, 412, 413, 415, 422, 424, 429, 500, 502, 503, 504)


def test_the_table():
    assert http_status_error(404) is NotFound
    assert http_status_error(401) is AuthError and http_status_error(403) is AuthError
    assert http_status_error(409) is AlreadyExists
    assert http_status_error(429) is Throttled
    assert http_status_error(418) is InvalidRequest
    assert (
        http_status_error(503) is ServiceUnavailable
        and http_status_error(599) is ServiceUnavailable
    )
    assert http_status_error(302) is CloudServeError
    assert http_status_error(409, {409: Aborted}) is Aborted
    assert Aborted.retryable and not AlreadyExists.retryable


def test_a_table_refuses_http_statuses_among_its_codes():
    with pytest.raises(TypeError, match="http_overrides"):
        ErrorTable({424: ServiceUnavailable}, extract=lambda exc: None)  # type: ignore[dict-item]


def _local() -> tuple[type[Provider], Callable[[int], BaseException]]:
    from cloudserve.local import LocalProvider

    return LocalProvider, lambda status: WorkerAnswer(status, f"worker answered {status}")


def _sagemaker() -> tuple[type[Provider], Callable[[int], BaseException]]:
    pytest.importorskip("cloudserve_sagemaker")
    from botocore.exceptions import ClientError

    from cloudserve_sagemaker import SageMakerProvider

    def native(status: int) -> BaseException:
        # an answer without an AWS error code (an S3 HEAD, a proxy): only the status says
        return ClientError(
            {"Error": {"Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
        )

    return SageMakerProvider, native


def _vertex() -> tuple[type[Provider], Callable[[int], BaseException]]:
    pytest.importorskip("cloudserve_vertex")
    import requests
    from google.api_core import exceptions as gexc

    from cloudserve_vertex import VertexProvider

    def native(status: int) -> BaseException:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps({"error": {"code": status, "message": "m"}}).encode()
        response.request = requests.Request("POST", "http://vertex.test/v1/x").prepare()
        return gexc.from_http_response(response)

    return VertexProvider, native


def _azureml() -> tuple[type[Provider], Callable[[int], BaseException]]:
    pytest.importorskip("cloudserve_azureml")
    from azure.core.exceptions import HttpResponseError

    from cloudserve_azureml import AzureMLProvider

    def native(status: int) -> BaseException:
        err = HttpResponseError(message="m")
        err.status_code = status
        return err

    return AzureMLProvider, native


PROVIDERS = {"local": _local, "sagemaker": _sagemaker, "vertex": _vertex, "azureml": _azureml}
# Statuses a cloud means something else by: each provider must declare at least these.
MUST_OVERRIDE = {"local": set(), "sagemaker": set(), "vertex": {409}, "azureml": {424}}


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_maps_http_statuses_through_the_table(name):
    cls, native = PROVIDERS[name]()
    table = cls.error_table
    assert isinstance(table, ErrorTable), f"{name} has no error table"
    assert MUST_OVERRIDE[name] <= set(table.http_overrides), table.http_overrides
    for status in STATUSES:
        err = table.translate(native(status), provider=cls.name)
        want = http_status_error(status, table.http_overrides)
        assert type(err) is want, f"{name}: HTTP {status} became {type(err).__name__}"
        assert err.provider == name and err.code == str(status)
        assert err.__cause__ is not None
    for status, cls_ in HTTP_STATUS_ERRORS.items():
        if status not in table.http_overrides:
            assert table.error_class(status) is cls_
