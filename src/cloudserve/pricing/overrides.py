"""User overrides of catalog prices: per-provider discounts, negotiated prices, currency.

Overrides load from a YAML file (``--overrides PATH``, ``CLOUDSERVE_PRICING_OVERRIDES``, or
``pricing/overrides.yaml`` under the state directory)::

    currency: EUR
    fx_rates: {USD: 0.92}          # 1 USD = 0.92 EUR
    discounts: {sagemaker: 0.15}   # 15% off every SageMaker price (savings plan, EDP …)
    max_age_days: 90               # warn when a price used is older than this
    prices:                        # negotiated prices, used instead of the catalog's
      - {provider: azureml, region: eastus, instance_type: Standard_DS3_v2, price: 0.21}
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudserve.config import default_state_dir
from cloudserve.errors import ConfigError
from cloudserve.pricing.catalog import ANY_REGION, PriceRow

__all__ = ["CustomPrice", "PriceOverrides", "default_overrides_path"]

HOURS_PER_MONTH = 730.0


class CustomPrice(BaseModel):
    """A price the user pays instead of the catalog's (a negotiated or private rate)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    instance_type: str
    price: Annotated[float, Field(ge=0)]
    region: str = ANY_REGION
    kind: Literal["hosting", "batch", "training", "network"] = "hosting"
    item: Literal["instance", "accelerator", "egress"] = "instance"
    unit: Literal["hour", "GB"] = "hour"
    currency: str = "USD"
    source: str = "user override"
    as_of: date = Field(default_factory=date.today)

    def to_row(self) -> PriceRow:
        """The override as a catalog row (its source says it is an override)."""
        return PriceRow(
            provider=self.provider,
            region=self.region,
            kind=self.kind,
            item=self.item,
            instance_type=self.instance_type,
            price=self.price,
            unit=self.unit,
            currency=self.currency,
            source_url=self.source,
            as_of=self.as_of,
        )


class PriceOverrides(BaseModel):
    """Discounts, custom prices, display currency and the age at which prices count as stale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    discounts: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=dict)
    prices: list[CustomPrice] = Field(default_factory=list)
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    fx_rates: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    max_age_days: Annotated[int, Field(ge=1)] = 180
    hours_per_month: Annotated[float, Field(gt=0)] = HOURS_PER_MONTH

    def factor(self, provider: str) -> float:
        """What share of the list price is paid on ``provider`` (1 − discount)."""
        return 1.0 - self.discounts.get(provider, 0.0)

    def rate(self, currency: str) -> float | None:
        """Multiplier from ``currency`` to the display currency; None when unknown."""
        if currency == self.currency:
            return 1.0
        return self.fx_rates.get(currency)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceOverrides:
        """Read overrides from YAML; errors name the file and the field."""
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read price overrides: {exc}", file=str(p)) from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(x) for x in first["loc"])
            raise ConfigError(first["msg"], file=str(p), field=field) from None

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceOverrides:
        """Overrides from ``path``, else the env/state-dir file when present, else defaults."""
        chosen = path or os.environ.get("CLOUDSERVE_PRICING_OVERRIDES")
        if chosen:
            return cls.from_file(chosen)
        default = default_overrides_path()
        return cls.from_file(default) if default.is_file() else cls()


def default_overrides_path() -> Path:
    """``pricing/overrides.yaml`` under the state directory."""
    return default_state_dir() / "pricing" / "overrides.yaml"
