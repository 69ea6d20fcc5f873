"""Refresh prices from the clouds' pricing APIs into the user catalog.

Each provider package implements ``Provider.refresh_prices()`` against its cloud's public
pricing API (capability ``PRICING_REFRESH``) and returns a :class:`RefreshResult`: catalog rows
and what had no usable price. This module validates
those rows (a row without source or date is refused), merges them into the user catalog under
the state directory — a refreshed row replaces the row with the same key — and reports what
happened per provider. One provider failing does not stop the others.

It also holds what the providers' pricing readers share: :class:`Shape`, :class:`RefreshResult`,
:func:`instance_shapes`, :class:`MissingPricesWarning` and :func:`warn_missing`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloudserve.errors import CloudServeError, ConfigError
from cloudserve.pricing.catalog import (
    Catalog,
    load_catalog,
    packaged_catalog,
    parse_rows,
    user_catalog_path,
)
from cloudserve.provider import Capability, Provider
from cloudserve.sizes import sizes_for

__all__ = [
    "MissingPricesWarning",
    "ProviderRefresh",
    "RefreshReport",
    "RefreshResult",
    "Shape",
    "instance_shapes",
    "refresh",
    "stale_warnings",
    "warn_missing",
]


class MissingPricesWarning(UserWarning):
    """Some instance types had no usable price in the pricing API; they were left unchanged."""


@dataclass(frozen=True)
class Shape:
    """What an instance type is, as the catalog and ``cloudserve.sizes`` record it: vCPUs,
    memory and the GPUs that come with it (if any)."""

    vcpus: float | None = None
    memory_gib: float | None = None
    accelerator: str | None = None
    accelerator_count: int = 0


@dataclass
class RefreshResult:
    """Rows ready for the catalog, and what had no usable price (item → reason)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def instance_shapes(provider: str, kinds: Iterable[str]) -> dict[str, Shape]:
    """Every instance type that the packaged catalog prices for ``provider`` under one of
    ``kinds``, or that the sizes table names for it, with its shape (catalog first).

    A sizes-table accelerator that is attached and priced separately is not part of the
    machine's shape.
    """
    wanted = set(kinds)
    shapes: dict[str, Shape] = {}
    for row in packaged_catalog():
        if row.provider == provider and row.item == "instance" and row.kind in wanted:
            shapes[row.instance_type] = Shape(
                row.vcpus, row.memory_gib, row.accelerator, row.accelerator_count
            )
    for choice in sizes_for(provider).values():
        if choice.accelerator and choice.accelerator_separate:
            shape = Shape(choice.vcpus, choice.memory_gib)
        else:
            shape = Shape(
                choice.vcpus, choice.memory_gib, choice.accelerator, choice.accelerator_count
            )
        shapes.setdefault(choice.instance_type, shape)
    return shapes


def warn_missing(provider: str, region: str, missing: dict[str, str]) -> None:
    """Name, in a :class:`MissingPricesWarning` to the caller of ``refresh_prices()``, what a
    refresh found no price for (its old rows stay)."""
    if missing:
        listed = "; ".join(f"{t}: {why}" for t, why in sorted(missing.items()))
        warnings.warn(
            MissingPricesWarning(
                f"{provider} pricing refresh found no price in {region} for {listed}; "
                "their catalog rows were left as they were (unknown where there are none)"
            ),
            stacklevel=3,
        )


class ProviderRefresh(BaseModel):
    """The outcome for one provider: rows merged, or why it was skipped or failed.

    ``missing`` names what the provider's pricing API had no usable price for (item → reason,
    from its :class:`RefreshResult`); those catalog rows were left as they were.
    """

    model_config = ConfigDict(extra="forbid")

    provider: str
    rows: int = 0
    status: str = "refreshed"
    reason: str | None = None
    missing: dict[str, str] = Field(default_factory=dict)


class RefreshReport(BaseModel):
    """What ``refresh`` did, per provider, and the user catalog it wrote."""

    model_config = ConfigDict(extra="forbid")

    path: str
    results: list[ProviderRefresh] = Field(default_factory=list)

    @property
    def refreshed(self) -> list[str]:
        """Providers whose rows were merged."""
        return [r.provider for r in self.results if r.status == "refreshed"]


def refresh(
    providers: Iterable[str | Provider] | None = None,
    *,
    path: str | Path | None = None,
) -> RefreshReport:
    """Call ``refresh_prices()`` on each provider and merge the rows into the user catalog.

    ``providers`` are provider names (built from the first configured target of that provider,
    else its default config) or provider instances; default: every provider cloudserve knows.
    """
    target = Path(path) if path is not None else user_catalog_path()
    report = RefreshReport(path=str(target))
    existing = _read(target)
    fresh: list = []
    for item in providers if providers is not None else _known_providers():
        name = item if isinstance(item, str) else item.name
        try:
            provider = _instance(item)
            if not provider.supports(Capability.PRICING_REFRESH):
                report.results.append(
                    ProviderRefresh(
                        provider=name,
                        status="skipped",
                        reason=provider.reason(Capability.PRICING_REFRESH),
                    )
                )
                continue
            result = provider.refresh_prices()
            if not isinstance(result, RefreshResult):
                raise CloudServeError(
                    f"{name}.refresh_prices() returned {type(result).__name__}, "
                    "not a RefreshResult",
                    provider=name,
                )
            rows = parse_rows(result.rows, origin=f"{name}.refresh_prices()")
            _check_owner(rows, name)
        except CloudServeError as exc:
            report.results.append(
                ProviderRefresh(
                    provider=name, status="failed", reason=f"{type(exc).__name__}: {exc}"
                )
            )
            continue
        fresh.extend(rows)
        report.results.append(
            ProviderRefresh(provider=name, rows=len(rows), missing=dict(result.missing))
        )
    if fresh:
        _write(target, existing.merged(fresh))
    return report


def stale_warnings(
    catalog: Catalog | None = None, max_age_days: int = 180, today: date | None = None
) -> list[str]:
    """One line per provider whose catalog rows are older than ``max_age_days``."""
    cat = catalog if catalog is not None else load_catalog()
    today = today or date.today()
    return [
        f"{provider} prices date from {oldest.isoformat()} ({(today - oldest).days} days old, "
        f"more than {max_age_days}); run `cloudserve pricing refresh --provider {provider}`"
        for provider, oldest in sorted(cat.stale(max_age_days, today).items())
    ]


def _known_providers() -> list[str]:
    from cloudserve.registry import available

    return sorted(available())


def _instance(item: str | Provider) -> Provider:
    if isinstance(item, Provider):
        return item
    from cloudserve.config import load_targets
    from cloudserve.registry import get_provider_class

    cls = get_provider_class(item)
    try:
        targets = load_targets()
    except ConfigError:
        targets = None
    if targets is not None:
        for tname, block in targets.targets.items():
            if block.get("provider") == item:
                from cloudserve.client import connect

                return connect(tname).provider
    try:
        config = cls.config_cls.model_validate({"provider": item})
    except ValueError as exc:
        raise ConfigError(
            f"no target configures provider {item} and its defaults are incomplete: {exc}"
        ) from None
    return cls(config)


def _check_owner(rows: list, name: str) -> None:
    for row in rows:
        if row.provider != name:
            raise ConfigError(f"{name}.refresh_prices() returned a row for provider {row.provider}")


def _read(path: Path) -> Catalog:
    if not path.is_file():
        return Catalog()
    return Catalog.from_csv(path.read_text(encoding="utf-8"), origin=str(path))


def _write(path: Path, catalog: Catalog) -> None:
    # Write then rename, so a crash never leaves a half-written catalog behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".catalog-", suffix=".csv")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(catalog.to_csv())
    os.replace(tmp, path)
