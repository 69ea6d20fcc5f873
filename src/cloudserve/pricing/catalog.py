"""The price catalog: on-demand prices per provider, region, service kind and instance type.

Every row names its ``source_url`` and the date it was taken (``as_of``); a row without them
is rejected when the catalog loads. The packaged catalog (``data/catalog.csv``) is merged with
the user catalog that ``cloudserve pricing refresh`` writes under the state directory; a
refreshed row replaces the packaged row with the same key.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloudserve.config import default_state_dir
from cloudserve.errors import ConfigError

__all__ = [
    "COLUMNS",
    "Catalog",
    "PriceKey",
    "PriceRow",
    "load_catalog",
    "user_catalog_path",
]

Kind = Literal["hosting", "batch", "training", "network"]
Item = Literal["instance", "accelerator", "egress"]
PriceKey = tuple[str, str, str, str, str]

COLUMNS = (
    "provider",
    "region",
    "kind",
    "item",
    "instance_type",
    "vcpus",
    "memory_gib",
    "accelerator",
    "accelerator_count",
    "price",
    "unit",
    "currency",
    "source_url",
    "as_of",
    "note",
)
ANY_REGION = "*"


class PriceRow(BaseModel):
    """One on-demand price: what it is for, how much, where it came from and when.

    ``region`` ``*`` matches every region. ``item`` is ``instance`` (a machine, GPU included
    where the cloud sells it that way), ``accelerator`` (an add-on priced per accelerator, as on
    Vertex AI) or ``egress`` (per GB).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Annotated[str, Field(min_length=1)]
    region: Annotated[str, Field(min_length=1)]
    kind: Kind
    item: Item = "instance"
    instance_type: Annotated[str, Field(min_length=1)]
    vcpus: float | None = None
    memory_gib: float | None = None
    accelerator: str | None = None
    accelerator_count: int = 0
    price: Annotated[float, Field(ge=0)]
    unit: Literal["hour", "GB"] = "hour"
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    source_url: Annotated[str, Field(min_length=1)]
    as_of: date
    note: str | None = None

    @field_validator("vcpus", "memory_gib", "accelerator", "note", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("accelerator_count", mode="before")
    @classmethod
    def _blank_is_zero(cls, value: Any) -> Any:
        return 0 if value in ("", None) else value

    @property
    def key(self) -> PriceKey:
        """What the row prices: (provider, region, kind, item, instance_type)."""
        return (self.provider, self.region, self.kind, self.item, self.instance_type)

    def age_days(self, today: date | None = None) -> int:
        """Days since the price was taken."""
        return ((today or date.today()) - self.as_of).days

    def to_csv_row(self) -> dict[str, str]:
        """The row as CSV cells (blank for missing values)."""
        data = self.model_dump(mode="json")
        return {c: "" if data[c] is None else str(data[c]) for c in COLUMNS}


class Catalog:
    """Price rows indexed by what they price. Later rows replace earlier ones with the same key."""

    def __init__(self, rows: Iterable[PriceRow] = ()):
        self._rows: dict[PriceKey, PriceRow] = {}
        for row in rows:
            self._rows[row.key] = row

    def __iter__(self) -> Iterator[PriceRow]:
        return iter(self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def merged(self, rows: Iterable[PriceRow]) -> Catalog:
        """A new catalog with ``rows`` added, replacing rows with the same key."""
        return Catalog([*self, *rows])

    def find(
        self, provider: str, region: str | None, kind: str, item: str, instance_type: str
    ) -> PriceRow | None:
        """The row for exactly this item in ``region`` (or an any-region row), else None."""
        for reg in (region, ANY_REGION):
            if reg is None:
                continue
            row = self._rows.get((provider, reg, kind, item, instance_type))
            if row is not None:
                return row
        return None

    def regions(self, provider: str) -> list[str]:
        """Regions the catalog has prices for, for one provider."""
        return sorted({r.region for r in self if r.provider == provider})

    def providers(self) -> list[str]:
        """Providers the catalog has prices for."""
        return sorted({r.provider for r in self})

    def stale(self, max_age_days: int, today: date | None = None) -> dict[str, date]:
        """Provider → the oldest ``as_of`` among its rows older than ``max_age_days``."""
        out: dict[str, date] = {}
        for row in self:
            if row.age_days(today) > max_age_days:
                oldest = out.get(row.provider)
                out[row.provider] = row.as_of if oldest is None else min(oldest, row.as_of)
        return out

    def to_csv(self) -> str:
        """The catalog as CSV text with the standard columns."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in sorted(self, key=lambda r: r.key):
            writer.writerow(row.to_csv_row())
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str, *, origin: str = "<catalog>") -> Catalog:
        """Parse catalog CSV; a row missing its source, date or price raises ConfigError."""
        return cls(parse_rows(csv.DictReader(io.StringIO(text)), origin=origin))


def parse_rows(records: Iterable[dict[str, Any]], *, origin: str) -> list[PriceRow]:
    """Validate raw records (CSV dicts or a provider's ``refresh_prices()`` output) as rows."""
    rows: list[PriceRow] = []
    for n, record in enumerate(records, start=1):
        clean = {k: v for k, v in record.items() if k is not None}
        try:
            rows.append(PriceRow.model_validate(clean))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"price row {n} of {origin} is invalid: {field}: {first['msg']}", field=field
            ) from None
    return rows


def user_catalog_path() -> Path:
    """The user catalog that ``pricing refresh`` writes (it need not exist)."""
    return default_state_dir() / "pricing" / "catalog.csv"


def packaged_catalog() -> Catalog:
    """The catalog shipped with cloudserve."""
    text = resources.files("cloudserve.pricing").joinpath("data/catalog.csv").read_text("utf-8")
    return Catalog.from_csv(text, origin="cloudserve/pricing/data/catalog.csv")


def load_catalog(path: str | Path | None = None, *, include_user: bool = True) -> Catalog:
    """The packaged catalog, merged with the user catalog (refreshed prices) when present.

    With ``path``, that file is merged instead of the default user catalog.
    """
    catalog = packaged_catalog()
    extra = Path(path) if path is not None else (user_catalog_path() if include_user else None)
    if extra is not None and extra.is_file():
        catalog = catalog.merged(
            Catalog.from_csv(extra.read_text(encoding="utf-8"), origin=str(extra))
        )
    return catalog
