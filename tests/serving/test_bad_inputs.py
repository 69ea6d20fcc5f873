"""Bad input is the caller's fault: a 4xx naming the problem, never a 5xx or a traceback.

Two sources of bad input, each sent to every route that takes a body:
- the checked-in corpus in ``bad_inputs/`` (``index.json`` says the route, content type, status
  and the words the error must hold), and
- a seeded property-based generator (hypothesis) of JSON documents, CSV, JSON Lines, NPY and raw
  bytes under every content type and encoding.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from cloudserve.serving import BackgroundServer
from cloudserve.testing.parity import make_titanic_model
from conftest import LogWatch

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = json.loads((CORPUS / "index.json").read_text())
VERTEX_ROUTE = "/v1/endpoints/e/deployedModels/m:predict"
ROUTES = ["/invocations", "/predict", "/score", VERTEX_ROUTE, "/v2/models/churn/infer"]


class Servers(dict):
    """Clients by corpus model name. A TorchScript or ONNX model (``torch-linear``: the
    ``linear`` one of the ``torch_models`` fixture) is built and served when a case first needs
    it, so a missing framework skips only its own cases."""

    def __init__(self, stack: ExitStack) -> None:
        super().__init__()
        self._stack = stack

    def client(self, model: str, request: pytest.FixtureRequest) -> httpx.Client:
        if model not in self:
            framework, _, name = model.partition("-")
            directory = request.getfixturevalue(f"{framework}_models")[name]
            server = self._stack.enter_context(
                BackgroundServer(directory, predict_route=VERTEX_ROUTE)
            )
            self[model] = self._stack.enter_context(httpx.Client(base_url=server.url, timeout=30))
        return self[model]


@pytest.fixture(scope="module")
def servers(sklearn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    titanic = make_titanic_model(tmp_path_factory.mktemp("titanic") / "model")
    with (
        ExitStack() as stack,
        BackgroundServer(sklearn_dir, predict_route=VERTEX_ROUTE) as numeric,
        BackgroundServer(titanic, predict_route=VERTEX_ROUTE, model_name="churn") as named,
        httpx.Client(base_url=numeric.url, timeout=30) as numeric_client,
        httpx.Client(base_url=named.url, timeout=30) as named_client,
    ):
        clients = Servers(stack)
        clients.update(numeric=numeric_client, titanic=named_client)
        yield clients


def _post(client: httpx.Client, route: str, body: bytes, ctype: str, encoding: str | None = None):
    headers = {"content-type": ctype}
    if encoding:
        headers["content-encoding"] = encoding
    return client.post(route, content=body, headers=headers)


def _assert_named_4xx(r: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text}"
    if status is not None:
        assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] and body["code"] and len(body["error_id"]) == 16, body
    return body


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus_case_is_a_4xx_naming_the_problem(
    servers: Servers, log_watch: LogWatch, case: dict, request: pytest.FixtureRequest
):
    body = (CORPUS / case["file"]).read_bytes()
    r = _post(
        servers.client(case["model"], request),
        case["route"],
        body,
        case["content_type"],
        case.get("content_encoding"),
    )
    error = _assert_named_4xx(r, case["status"])
    assert case["words"] in error["error"], error
    assert log_watch.tracebacks() == []
    # one line for the refusal, naming its error id
    lines = [rec.getMessage() for rec in log_watch.records if error["error_id"] in rec.getMessage()]
    assert len(lines) == 1, lines


def test_every_corpus_case_also_fails_on_every_body_route(
    servers: Servers, log_watch: LogWatch, request: pytest.FixtureRequest
):
    for case in CASES:
        if case["route"].startswith("/v2/"):
            continue
        body = (CORPUS / case["file"]).read_bytes()
        for route in ROUTES[:-1]:
            r = _post(
                servers.client(case["model"], request),
                route,
                body,
                case["content_type"],
                case.get("content_encoding"),
            )
            _assert_named_4xx(r, case["status"])
    assert log_watch.tracebacks() == []


def test_the_server_still_answers_after_the_corpus(servers):
    ok = servers["numeric"].post("/invocations", json=[[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


# -- the seeded generator ---------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "nan", "inf", "-inf", "NaN", "female", "1.5", "1e999", "S"]),
    st.text(max_size=8),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.sampled_from(
                [
                    "instances",
                    "inputs",
                    "parameters",
                    "data",
                    "dataframe_split",
                    "columns",
                    "dataframe_records",
                    "name",
                    "shape",
                    "datatype",
                    "method",
                    "Age",
                    "Sex",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)
_v2_tensor = st.fixed_dictionaries(
    {
        "name": st.text(max_size=4),
        "shape": st.lists(st.integers(min_value=-1, max_value=7), max_size=3),
        "datatype": st.sampled_from(
            ["INT8", "UINT8", "INT64", "UINT64", "FP16", "FP32", "FP64", "BOOL", "BYTES", "X"]
        ),
        "data": st.lists(_scalars, max_size=12),
    }
)
_v2_doc = st.fixed_dictionaries(
    {"inputs": st.lists(_v2_tensor, max_size=3)}, optional={"parameters": _json}
)
_csv_cell = st.sampled_from(["", "1", "2.5", "nan", "inf", "female", '"a,b"', "x", "-0", " 3 "])
_csv = st.lists(st.lists(_csv_cell, min_size=1, max_size=8), max_size=5).map(
    lambda rows: "\n".join(",".join(r) for r in rows).encode()
)


def _npy(values: list) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(values, dtype=np.float64))
    return buf.getvalue()


_bodies = st.one_of(
    _json.map(lambda d: json.dumps(d).encode()),
    _v2_doc.map(lambda d: json.dumps(d).encode()),
    _csv,
    st.lists(_json, max_size=4).map(lambda ls: "\n".join(json.dumps(v) for v in ls).encode()),
    st.lists(st.lists(st.floats(width=64), min_size=1, max_size=7), min_size=1, max_size=3)
    .filter(lambda rows: len({len(r) for r in rows}) == 1)
    .map(_npy),
    st.binary(max_size=64),
    st.binary(max_size=40).map(gzip.compress),
)
_content_types = st.sampled_from(
    [
        "application/json",
        "",
        "text/csv",
        "application/jsonlines",
        "application/x-npy",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ]
)


@pytest.mark.slow
@seed(20261127)
@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    model=st.sampled_from(["numeric", "titanic"]),
    route=st.sampled_from(ROUTES),
    body=_bodies,
    ctype=_content_types,
    encoding=st.sampled_from([None, None, None, "gzip", "identity", "br"]),
    accept=st.sampled_from([None, "application/json", "text/csv", "application/jsonlines", "x/y"]),
)
def test_generated_input_never_gets_a_5xx(
    servers, log_watch: LogWatch, model, route, body, ctype, encoding, accept
):
    headers = {"content-type": ctype}
    if encoding:
        headers["content-encoding"] = encoding
    if accept:
        headers["accept"] = accept
    r = servers[model].post(route, content=body, headers=headers)
    assert r.status_code < 500, f"{r.status_code} for {body[:200]!r} ({ctype}): {r.text}"
    if r.status_code != 200:
        _assert_named_4xx(r)
    assert log_watch.tracebacks() == []
