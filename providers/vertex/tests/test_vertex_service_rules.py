"""Rules of the real service the provider must follow: request logging, private endpoints,
tuning values, Cloud Monitoring, errors and timeouts, deploy timeouts, list filters."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from vertex_harness import churn_model as model

from cloudserve.client import Client
from cloudserve.errors import (
    Aborted,
    AlreadyExists,
    AuthError,
    InvalidRequest,
    ServiceUnavailable,
    Timeout,
    UnsupportedOperation,
)
from cloudserve.provider import Capability
from cloudserve.resources import JobStatus
from cloudserve.specs import (
    Compute,
    DataCapture,
    IntRange,
    ModelSpec,
    Objective,
    TrainSpec,
    TuningSpec,
)
from cloudserve.testing import TRAIN_SCRIPT, sample_rows
from cloudserve_vertex import VertexProvider
from cloudserve_vertex._errors import ERROR_TABLE
from cloudserve_vertex.testing import FakeVertex


def _paths(fake: FakeVertex) -> list[str]:
    return [urlsplit(u).path for _, u in fake.requests_made()]


# -- 3: request-response logging goes where Vertex can create the table ------------------------


def test_data_capture_works_on_a_fresh_project_and_after_a_redeploy(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    for _ in range(2):  # deploy, delete, deploy again: the second must not hit an old table
        client.deploy(model(tmp_path), "ep", data_capture=DataCapture(sampling_rate=1.0))
        cfg = fake.endpoint("ep")["predictRequestResponseLoggingConfig"]
        assert cfg["bigqueryDestination"]["outputUri"] == "bq://fake-project"
        rows = sample_rows(3, seed=4)
        client.predict("ep", rows)
        assert client.provider.captured_inputs("ep", 3600)[-3:] == rows
        client.delete_endpoint("ep")
    assert ("fake-project", "logging_ep_ep") in fake.service.bigquery.datasets


def test_a_full_table_reference_is_refused_before_any_request(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    capture = DataCapture(destination="bq://fake-project.logs.requests")
    with pytest.raises(InvalidRequest, match=r"bq://PROJECT\.DATASET"):
        client.deploy(model(tmp_path), "ep", data_capture=capture)
    assert fake.requests_made() == []


# -- 4: private endpoints ---------------------------------------------------------------------


def test_private_endpoints_declare_what_they_cannot_do(fake: FakeVertex, tmp_path: Path) -> None:
    provider = VertexProvider(fake.config(network="projects/1/global/networks/vpc"))
    client = Client(provider)
    assert not provider.supports(Capability.TRAFFIC_SPLIT)
    assert VertexProvider.supports(Capability.TRAFFIC_SPLIT), "public targets keep it"
    with pytest.raises(UnsupportedOperation, match="private"):
        client.set_traffic("ep", {"v1": 100})
    with pytest.raises(InvalidRequest, match="private"):
        client.deploy(model(tmp_path), "ep", traffic=10)
    assert fake.requests_made() == [], "refused before any request"

    ep = client.deploy(model(tmp_path), "ep")
    stored = fake.endpoint("ep")
    assert stored["network"] == "projects/1/global/networks/vpc"
    assert stored["trafficSplit"] == {}
    assert ep.traffic == {"v1": 100} and ep.url.endswith("/endpoints/ep:predict")
    assert ep.url.startswith(f"{fake.url}/private/")
    rows = sample_rows(4)
    assert len(client.predict("ep", rows).outputs) == 4
    assert not [p for p in _paths(fake) if p.startswith("/v1/") and p.endswith(":predict")]
    report = client.metrics("ep", "1h")
    assert report.invocations == 1 and "private" in (report.source or "")
    before = len(fake.requests_made())
    with pytest.raises(InvalidRequest, match="one deployed model"):
        client.deploy(model(tmp_path, "2"), "ep")
    assert all(m == "GET" for m, _ in fake.requests_made()[before:])
    client.delete_endpoint("ep")
    assert fake.leftovers() == []


# -- 5: tuning with an IntRange step ----------------------------------------------------------


def test_int_range_with_a_step_reaches_the_script_as_an_int(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)  # argparse: --depth type=int
    spec = TuningSpec(
        train=TrainSpec(entrypoint=str(script)),
        search_space={"depth": IntRange(low=2, high=10, step=2)},
        objective=Objective(metric="val_score"),
        max_trials=3,
        strategy="grid",
    )
    job = client.tune(spec)
    [stored] = fake.tuning_jobs()
    assert stored["studySpec"]["parameters"][0]["discreteValueSpec"]["values"] == [
        2.0,
        4.0,
        6.0,
        8.0,
        10.0,
    ]
    done = job.wait(timeout=120)
    assert done.status is JobStatus.SUCCEEDED
    assert all(t.status is JobStatus.SUCCEEDED for t in done.trials), [
        t.message for t in done.trials
    ]
    assert [t.params["depth"] for t in done.trials] == [2, 4, 6]
    assert all(type(t.params["depth"]) is int for t in done.trials)


def test_tuning_needs_a_training_image(fake: FakeVertex, tmp_path: Path) -> None:
    client = Client(VertexProvider(fake.config(training_image=None)))
    spec = TuningSpec(
        train=TrainSpec(entrypoint=str(tmp_path / "train.py")),
        search_space={"depth": IntRange(low=2, high=4)},
        objective=Objective(metric="val_score"),
    )
    with pytest.raises(InvalidRequest, match=r"train\.image"):
        client.tune(spec)
    assert fake.requests_made() == []


# -- 6: metrics -------------------------------------------------------------------------------


def test_latency_is_the_total_series_and_short_windows_align_over_60s(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path), "ep")
    for _ in range(3):
        client.predict("ep", sample_rows(2))
    fake.inject("slow", times=1, delay_s=0.05)
    client.predict("ep", sample_rows(2))
    report = client.metrics("ep", 30)
    assert report.invocations == 4
    latencies = sorted(r.latency_ms for r in fake.predictions())
    assert report.p99_ms == pytest.approx(float(np.percentile(latencies, 99)))
    assert report.per_variant["v1"].p99_ms == report.p99_ms
    queries = [parse_qs(urlsplit(u).query) for _, u in fake.requests_made() if "/timeSeries" in u]
    assert {q["aggregation.alignmentPeriod"][0] for q in queries} == {"60s"}
    latency_queries = [q for q in queries if "prediction_latencies" in q["filter"][0]]
    assert all('latency_type = "total"' in q["filter"][0] for q in latency_queries)


# -- 9: records, NaN and output types ----------------------------------------------------------


def test_dataframe_with_nan_and_integer_outputs(fake: FakeVertex, client: Client, tmp_path: Path):
    pd = pytest.importorskip("pandas")
    import joblib
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    frame.iloc[::5, 0] = np.nan
    clf = HistGradientBoostingClassifier(max_iter=10).fit(frame, (frame["b"] > 0).astype(int))
    directory = tmp_path / "hgb"
    directory.mkdir()
    joblib.dump(clf, directory / "model.joblib")
    client.deploy(ModelSpec(name="hgb", artifact=str(directory), framework="sklearn"), "ep")
    query = frame.head(6)[["c", "a", "b"]]  # another column order, NaN in the first row
    out = client.predict("ep", query).outputs
    assert out == clf.predict(frame.head(6)).tolist()
    assert all(type(o) is int for o in out), "classes come back as ints, not 1.0"


# -- 10: errors, retries and timeouts ---------------------------------------------------------


def test_a_409_aborted_is_retried_and_a_409_already_exists_is_not(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path), "ep")
    fake.inject("aborted", times=2)
    assert client.get_endpoint("ep").traffic == {"v1": 100}
    fake.inject("aborted", times=100)
    with pytest.raises(Aborted) as info:
        client.get_endpoint("ep")
    assert info.value.retryable
    fake.inject("aborted", times=0)
    import requests
    from google.api_core import exceptions as gexc

    resp = requests.Response()
    resp.status_code = 409
    resp._content = b'{"error": {"code": 409, "message": "exists", "status": "ALREADY_EXISTS"}}'
    resp.request = requests.Request("POST", "https://x/v1/endpoints").prepare()
    err = ERROR_TABLE.translate(gexc.from_http_response(resp), provider="vertex")
    assert isinstance(err, AlreadyExists) and not err.retryable


def test_transport_failures_are_retryable_and_a_refused_token_is_not() -> None:
    import requests
    from google.auth import exceptions as auth_exc

    token_unreachable = auth_exc.TransportError("Failed to connect to oauth2.googleapis.com")
    assert isinstance(
        ERROR_TABLE.translate(token_unreachable, provider="vertex"), ServiceUnavailable
    )
    refused = auth_exc.RefreshError("invalid_grant: Token has been expired or revoked.")
    assert isinstance(ERROR_TABLE.translate(refused, provider="vertex"), AuthError)
    cut = requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
    err = ERROR_TABLE.translate(cut, provider="vertex")
    assert isinstance(err, ServiceUnavailable) and err.__cause__ is cut


def test_every_request_has_a_timeout(fake: FakeVertex, tmp_path: Path) -> None:
    client = Client(VertexProvider(fake.config(request_timeout_s=0.3)))
    client.deploy(model(tmp_path), "ep")
    fake.inject("slow", times=50, delay_s=2.0)
    start = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        client.predict("ep", sample_rows(1))
    assert time.monotonic() - start < 10, "bounded by request_timeout_s × attempts"
    fake.service.faults.slow.clear()


# -- also settled: deploy timeouts, label filters ---------------------------------------------


def test_a_deploy_that_times_out_is_left_running_and_named(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    fake.service.operation_polls_by_type["DeployModelResponse"] = 10_000
    with pytest.raises(Timeout) as info:
        client.deploy(model(tmp_path), "ep", timeout=0.5)
    message = str(info.value)
    assert "/operations/" in message and "nothing was rolled back" in message
    assert fake.endpoint("ep") is not None, "not deleted under the running DeployModel"
    assert fake.model_versions("churn"), "the version it deploys is kept"
    fake.settle()
    client.delete_endpoint("ep")
    assert fake.leftovers() == []


def test_list_filters_quote_hyphenated_label_keys(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path), "ep")
    assert [e.name for e in client.list_endpoints()] == ["ep"]
    filters = [parse_qs(urlsplit(u).query).get("filter", [""])[0] for _, u in fake.requests_made()]
    assert 'labels."managed-by"="cloudserve"' in filters
    assert not [f for f in filters if "labels.managed-by" in f]


def test_canary_still_works_on_public_endpoints(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    client.deploy(model(tmp_path, "1"), "ep", Compute())
    assert client.deploy(model(tmp_path, "2"), "ep", traffic=20).traffic == {"v1": 80, "v2": 20}


def test_batch_csv_and_jsonl_columns_go_by_name(
    fake: FakeVertex, client: Client, tmp_path: Path
) -> None:
    pd = pytest.importorskip("pandas")
    import joblib
    import orjson
    from sklearn.linear_model import LogisticRegression
    from vertex_harness import VertexHarness

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    clf = LogisticRegression().fit(frame, (frame["a"] - frame["c"] > 0).astype(int))
    directory = tmp_path / "named"
    directory.mkdir()
    joblib.dump(clf, directory / "model.joblib")
    spec = ModelSpec(name="named", artifact=str(directory), framework="sklearn")
    want = clf.predict(frame.head(8)).tolist()
    shuffled = frame.head(8)[["c", "a", "b"]]
    csv_in = tmp_path / "in.csv"
    shuffled.to_csv(csv_in, index=False)
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in shuffled.to_dict("records")))
    for source, out in ((csv_in, tmp_path / "out-csv"), (jsonl_in, tmp_path / "out-jsonl")):
        done = client.batch_predict(spec, source, out).wait(timeout=60)
        assert done.status is JobStatus.SUCCEEDED
        assert VertexHarness().read_batch_output(str(out)) == want, source.suffix


def test_private_endpoint_on_the_google_hosts(tmp_path: Path) -> None:
    """Through ``responses`` the private predictHttpUri is answered in-process too."""
    with FakeVertex(workdir=tmp_path / "fake").intercept() as fake:
        provider = VertexProvider(fake.config(network="projects/1/global/networks/vpc"))
        client = Client(provider)
        ep = client.deploy(model(tmp_path), "ep")
        assert ep.url.startswith("https://us-central1-aiplatform.googleapis.com/private/v1/")
        assert len(client.predict("ep", sample_rows(3)).outputs) == 3
        client.delete_endpoint("ep")
        assert fake.leftovers() == [] and fake.rejected() == []
        provider.close()
