"""Shadow traffic on the local provider: production answers unchanged, about the requested
share mirrored, and a report with the agreement rate."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloudserve as cs
from cloudserve.client import Client
from cloudserve.packaging import write_manifest

PREDICTOR = """\
from cloudserve.serving import Predictor


class Scorer(Predictor):
    def load(self, path):
        pass

    def predict(self, rows):
        # version 2 disagrees with version 1 on rows whose first value is odd
        return [sum(r) + ({skew} if int(r[0]) % 2 else 0) for r in rows]
"""


def model(root: Path, version: str, skew: float = 0.0) -> cs.ModelSpec:
    d = root / f"v{version}"
    d.mkdir(parents=True)
    (d / "scorer.py").write_text(PREDICTOR.format(skew=skew))
    write_manifest(d, framework="custom", version=version, predictor="scorer:Scorer")
    return cs.ModelSpec(name="sh", version=version, artifact=str(d), framework="custom")


@pytest.fixture
def shadowed(client: Client, tmp_path: Path) -> Client:
    client.deploy(model(tmp_path, "1"), "sh", variant="v1")
    ep = client.deploy(model(tmp_path, "2", skew=100.0), "sh", variant="v2", shadow=20)
    assert ep.traffic == {"v1": 100, "v2": 0}
    assert ep.variant("v2").shadow == 20
    return client


def test_production_answers_are_unchanged_and_a_share_is_mirrored(shadowed: Client) -> None:
    n = 300
    for i in range(n):
        pred = shadowed.predict("sh", [[float(i), 1.0]])
        assert pred.outputs == [float(i) + 1.0] and pred.variant == "v1"
    report = shadowed.shadow_report("sh", window="1h")
    assert report.shadow_variant == "v2"
    assert report.production_invocations == n
    # binomial(300, 0.2): mean 60, sd 6.9 — far tails only
    assert 25 <= report.mirrored <= 100, report.mirrored
    assert report.shadow_errors == 0 and report.production_errors == 0
    assert report.both_answered == report.mirrored
    assert report.agreement_rate is not None and 0.25 < report.agreement_rate < 0.75
    assert report.disagreements and all(
        p.shadow_outputs[0] - p.production_outputs[0] == 100 for p in report.disagreements
    )
    assert report.shadow_p50_ms is not None and report.production_p50_ms is not None


def test_identical_shadow_agrees_everywhere(client: Client, tmp_path: Path) -> None:
    client.deploy(model(tmp_path, "1"), "sh", variant="v1")
    client.deploy(model(tmp_path, "2"), "sh", variant="v2", shadow=100)
    for i in range(20):
        client.predict("sh", [[float(i), 2.0]])
    report = client.shadow_report("sh")
    assert report.mirrored == 20 and report.agreement_rate == 1.0


def test_promoting_the_shadow_ends_mirroring(shadowed: Client) -> None:
    ep = shadowed.set_traffic("sh", {"v1": 0, "v2": 100})
    assert ep.variant("v2").shadow == 0
    before = shadowed.shadow_report("sh").mirrored
    for i in range(30):
        assert shadowed.predict("sh", [[1.0, float(i)]]).variant == "v2"
    assert shadowed.shadow_report("sh").mirrored == before


def test_shadow_rules_are_checked_before_anything_is_created(
    client: Client, tmp_path: Path
) -> None:
    v1 = model(tmp_path, "1")
    with pytest.raises(cs.InvalidRequest, match="none to mirror"):
        client.deploy(v1, "sh", shadow=10)
    with pytest.raises(cs.InvalidRequest, match="takes no traffic"):
        client.deploy(v1, "sh", traffic=10, shadow=10)
    assert client.list_endpoints() == [] or all(
        e.name != "sh" or not e.variants for e in client.list_endpoints()
    )


def test_cli_deploys_a_shadow_and_reports_it(
    shadowed: Client, tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from cloudserve.cli import main

    monkeypatch.setenv("CLOUDSERVE_LOCAL__STATE_DIR", str(state_dir))
    monkeypatch.delenv("CLOUDSERVE_CONFIG", raising=False)
    monkeypatch.delenv("CLOUDSERVE_TARGET", raising=False)
    v3 = model(tmp_path, "3")
    args = ["deploy", v3.artifact, "--name", "sh", "--version", "3", "--framework", "custom"]
    assert main([*args, "--endpoint", "sh", "--variant", "v3", "--shadow", "50", "--json"]) == 0
    assert '"shadow": 50' in capsys.readouterr().out
    for i in range(10):
        shadowed.predict("sh", [[2.0, float(i)]])
    assert main(["shadow", "sh", "--json"]) == 0
    assert '"mirrored"' in capsys.readouterr().out
