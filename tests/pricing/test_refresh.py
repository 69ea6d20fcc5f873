"""The core side of ``pricing refresh``: merge a provider's rows into the user catalog."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal

import pytest

from cloudserve.cli import main
from cloudserve.config import default_state_dir
from cloudserve.errors import ServiceUnavailable
from cloudserve.local import LocalConfig
from cloudserve.pricing import (
    MissingPricesWarning,
    RefreshResult,
    Shape,
    instance_shapes,
    load_catalog,
    refresh,
    user_catalog_path,
    warn_missing,
)
from cloudserve.provider import Capability, Provider, ProviderConfig
from cloudserve.registry import register, unregister
from cloudserve.sizes import sizes_for


class PricedConfig(ProviderConfig):
    provider: Literal["priced"] = "priced"


class PricedProvider(Provider):
    """A provider whose 'pricing API' is a class attribute the test sets."""

    name = "priced"
    config_cls = PricedConfig
    capabilities = frozenset({Capability.DEPLOY, Capability.PREDICT, Capability.PRICING_REFRESH})
    answer: ClassVar[list[dict[str, Any]] | Exception] = []
    missing: ClassVar[dict[str, str]] = {}

    def refresh_prices(self) -> RefreshResult:
        if isinstance(self.answer, Exception):
            raise self.answer
        # As the cloud providers do: report what had no price, and warn about it.
        warn_missing(self.name, "r1", self.missing)
        return RefreshResult(rows=list(self.answer), missing=dict(self.missing))

    def deploy(self, spec, **kw):
        raise NotImplementedError

    def get_endpoint(self, name):
        raise NotImplementedError

    def list_endpoints(self):
        return []

    def delete_endpoint(self, name, *, wait=True):
        return None

    def predict(self, endpoint, instances, **kw):
        raise NotImplementedError


class UnpricedConfig(ProviderConfig):
    provider: Literal["unpriced"] = "unpriced"


class UnpricedProvider(PricedProvider):
    name = "unpriced"
    config_cls = UnpricedConfig
    capabilities = frozenset({Capability.DEPLOY, Capability.PREDICT})
    unsupported: ClassVar = {Capability.PRICING_REFRESH: "unpriced has no pricing API"}


def row(instance: str, price: float, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "priced",
        "region": "r1",
        "kind": "hosting",
        "instance_type": instance,
        "price": price,
        "currency": "USD",
        "source_url": "https://prices.example/api",
        "as_of": "2026-11-20",
        **extra,
    }


@pytest.fixture(autouse=True)
def providers(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    register(PricedProvider)
    register(UnpricedProvider)
    PricedProvider.answer = []
    PricedProvider.missing = {}
    yield
    unregister("priced")
    unregister("unpriced")


def test_refresh_writes_the_user_catalog_and_estimates_use_it():
    PricedProvider.answer = [row("big", 1.5), row("small", 0.5)]
    report = refresh(["priced"])
    assert report.refreshed == ["priced"] and report.results[0].rows == 2
    assert user_catalog_path().is_file()
    found = load_catalog().find("priced", "r1", "hosting", "instance", "big")
    assert found is not None and found.price == 1.5 and found.as_of == date(2026, 11, 20)


def test_a_second_refresh_replaces_rows_by_key_and_keeps_the_rest():
    PricedProvider.answer = [row("big", 1.5), row("small", 0.5)]
    refresh(["priced"])
    PricedProvider.answer = [row("big", 1.2, as_of="2026-11-21")]
    refresh(["priced"])
    cat = load_catalog()
    big = cat.find("priced", "r1", "hosting", "instance", "big")
    small = cat.find("priced", "r1", "hosting", "instance", "small")
    assert big is not None and big.price == 1.2 and str(big.as_of) == "2026-11-21"
    assert small is not None and small.price == 0.5


def test_rows_without_source_are_refused_and_nothing_is_written():
    PricedProvider.answer = [row("big", 1.5, source_url="")]
    report = refresh(["priced"])
    assert report.results[0].status == "failed"
    assert "source_url" in (report.results[0].reason or "")
    assert not user_catalog_path().exists()


def test_rows_for_another_provider_are_refused():
    PricedProvider.answer = [row("big", 1.5, provider="sagemaker")]
    report = refresh(["priced"])
    assert report.results[0].status == "failed"
    assert "sagemaker" in (report.results[0].reason or "")


def test_an_api_failure_is_reported_and_others_still_refresh():
    PricedProvider.answer = ServiceUnavailable("pricing API down", provider="priced")
    report = refresh(["priced", "unpriced"])
    by_name = {r.provider: r for r in report.results}
    assert by_name["priced"].status == "failed" and "pricing API down" in by_name["priced"].reason
    assert by_name["unpriced"].status == "skipped"
    assert by_name["unpriced"].reason == "unpriced has no pricing API"


def test_cli_pricing_refresh(capsys):
    PricedProvider.answer = [row("big", 1.5)]
    assert main(["pricing", "refresh", "--provider", "priced", "--provider", "unpriced"]) == 0
    out = capsys.readouterr().out
    assert "refreshed" in out and "skipped" in out
    assert main(["pricing", "show", "--provider", "priced", "--json"]) == 0
    assert "prices.example" in capsys.readouterr().out


def test_what_had_no_price_is_reported_per_provider():
    PricedProvider.answer = [row("big", 1.5)]
    PricedProvider.missing = {"huge": "no on-demand product"}
    with pytest.warns(MissingPricesWarning, match="huge: no on-demand product"):
        report = refresh(["priced", "unpriced"])
    by_name = {r.provider: r for r in report.results}
    assert by_name["priced"].missing == {"huge": "no on-demand product"}
    assert by_name["priced"].rows == 1
    assert by_name["unpriced"].missing == {}


def test_cli_pricing_refresh_lists_what_had_no_price(capsys):
    PricedProvider.answer = [row("big", 1.5)]
    PricedProvider.missing = {"huge": "ambiguous"}
    assert main(["pricing", "refresh", "--provider", "priced"]) == 0
    captured = capsys.readouterr()
    assert "huge: ambiguous" in captured.out
    assert "MissingPricesWarning" not in captured.err
    assert main(["pricing", "refresh", "--provider", "priced", "--json"]) == 0
    assert '"huge": "ambiguous"' in capsys.readouterr().out


def test_instance_shapes_take_the_catalog_kinds_and_the_sizes_table():
    shapes = instance_shapes("sagemaker", ("hosting", "batch", "training"))
    assert shapes["ml.g4dn.xlarge"].accelerator_count == 1
    only_sizes = {c.instance_type for c in sizes_for("sagemaker").values()}
    assert set(instance_shapes("sagemaker", ())) == only_sizes
    # Vertex attaches the T4 of gpu.t4 separately: the machine's shape has no GPU.
    vertex = instance_shapes("vertex", ("hosting", "batch", "training"))
    assert vertex["n1-standard-4"] == Shape(4, 15)


def test_the_user_catalog_and_the_local_provider_share_the_state_directory(tmp_path):
    assert default_state_dir() == tmp_path / "state"
    assert user_catalog_path().parent.parent == default_state_dir()
    assert LocalConfig().state_dir == default_state_dir()
