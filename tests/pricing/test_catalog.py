"""The packaged catalog: every row sourced and dated, and a price for every sized instance."""

from __future__ import annotations

import csv
from datetime import date
from importlib import resources

import pytest

from cloudserve.errors import ConfigError
from cloudserve.pricing import Catalog, load_catalog, packaged_catalog, stale_warnings
from cloudserve.pricing.catalog import COLUMNS
from cloudserve.sizes import SIZES, InstanceChoice

CSV_TEXT = resources.files("cloudserve.pricing").joinpath("data/catalog.csv").read_text("utf-8")
RAW_ROWS = list(csv.DictReader(CSV_TEXT.splitlines()))


def test_catalog_has_the_standard_columns():
    assert tuple(RAW_ROWS[0]) == COLUMNS


@pytest.mark.parametrize("n", range(len(RAW_ROWS)))
def test_every_row_carries_source_and_date(n):
    row = RAW_ROWS[n]
    assert row["source_url"].strip(), f"row {n} has no source: {row}"
    assert date.fromisoformat(row["as_of"]) <= date.today(), f"row {n} has a bad date: {row}"
    assert row["price"].strip(), f"row {n} has no price: {row}"
    assert row["currency"] == "USD"


@pytest.mark.parametrize("missing", ["source_url", "as_of", "price"])
def test_a_row_without_source_date_or_price_fails_to_load(missing):
    bad = dict(RAW_ROWS[0], **{missing: ""})
    lines = [",".join(COLUMNS), ",".join(f'"{bad[c]}"' for c in COLUMNS)]
    with pytest.raises(ConfigError, match=missing):
        Catalog.from_csv("\n".join(lines), origin="bad.csv")


def _sized_instances():
    for size, row in SIZES.items():
        for provider, choice in row.items():
            if isinstance(choice, InstanceChoice):
                yield size, provider, choice


KINDS = {
    "sagemaker": ("hosting", "batch", "training"),
    "vertex": ("hosting", "batch", "training"),
    "azureml": ("hosting", "batch", "training"),
    "local": ("hosting", "batch", "training"),
}


@pytest.mark.parametrize(
    ("size", "provider", "choice"),
    list(_sized_instances()),
    ids=[f"{s}-{p}" for s, p, _ in _sized_instances()],
)
def test_every_sized_instance_has_a_price(size, provider, choice):
    cat = packaged_catalog()
    region = {"sagemaker": "us-east-1", "vertex": "us-central1", "azureml": "eastus"}.get(provider)
    for kind in KINDS[provider]:
        row = cat.find(provider, region, kind, "instance", choice.instance_type)
        assert row is not None, f"{size} on {provider}: no {kind} row for {choice.instance_type}"
        if choice.accelerator_separate:
            acc = cat.find(provider, region, kind, "accelerator", choice.accelerator)
            assert acc is not None, (
                f"{size} on {provider}: no {kind} price for {choice.accelerator}"
            )
        elif choice.accelerator:
            # Priced all-in: the instance row names the GPU it includes.
            assert row.accelerator and row.accelerator_count == choice.accelerator_count


def test_user_catalog_replaces_packaged_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSERVE_STATE_DIR", str(tmp_path))
    user = tmp_path / "pricing" / "catalog.csv"
    user.parent.mkdir(parents=True)
    base = packaged_catalog().find("sagemaker", "us-east-1", "hosting", "instance", "ml.m5.large")
    assert base is not None
    newer = base.model_copy(update={"price": 0.2, "as_of": date(2026, 1, 2), "source_url": "api"})
    user.write_text(Catalog([newer]).to_csv())
    row = load_catalog().find("sagemaker", "us-east-1", "hosting", "instance", "ml.m5.large")
    assert row is not None and row.price == 0.2 and row.source_url == "api"
    assert len(load_catalog()) == len(packaged_catalog())


def test_stale_warning_names_the_date():
    cat = packaged_catalog()
    later = date.fromordinal(max(r.as_of for r in cat).toordinal() + 400)
    lines = stale_warnings(cat, max_age_days=365, today=later)
    assert lines, "a catalog 400 days old must warn"
    assert any("sagemaker prices date from" in ln and "pricing refresh" in ln for ln in lines)
    assert stale_warnings(cat, max_age_days=365, today=max(r.as_of for r in cat)) == []


def test_csv_round_trip_keeps_every_row():
    cat = packaged_catalog()
    again = Catalog.from_csv(cat.to_csv())
    assert sorted(r.key for r in again) == sorted(r.key for r in cat)
    assert {r.key: r for r in again} == {r.key: r for r in cat}
