"""``BatchSpec.parameters`` on SageMaker's container route: a transform job sends no
per-request parameters, so the job sets them once in its environment
(``CLOUDSERVE_BATCH_PARAMETERS``) and the serving image answers every request that carries none
with them — the serving runtime itself is checked here, over HTTP, as the image runs it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from cloudserve.serving import BackgroundServer, load_model
from cloudserve.testing import make_sklearn_model, sample_rows


def post(url: str, body: dict[str, object]) -> list[object]:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        data = json.loads(answer.read())
    return data["predictions"] if isinstance(data, dict) else data


def test_the_serving_image_answers_with_the_jobs_default_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = make_sklearn_model(tmp_path / "model")
    rows = sample_rows(3)
    model = load_model(model_dir)
    labels = model.predict(rows)
    probabilities = model.predict(rows, {"method": "predict_proba"})
    assert probabilities != labels
    monkeypatch.setenv("CLOUDSERVE_BATCH_PARAMETERS", json.dumps({"method": "predict_proba"}))
    with BackgroundServer(model_dir, max_batch_size=1) as server:
        assert post(server.url, {"instances": rows}) == probabilities  # the job's default
        asked = {"instances": rows, "parameters": {"method": "predict"}}
        assert post(server.url, asked) == labels  # a request's own parameters win
    monkeypatch.setenv("CLOUDSERVE_BATCH_PARAMETERS", "[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        BackgroundServer(model_dir)
