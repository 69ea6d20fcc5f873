"""Price catalog, estimator, overrides and refresh.

>>> from cloudserve.pricing import estimate
>>> est = estimate(deploy_spec, provider="sagemaker", region="us-east-1")
>>> est.hourly, est.monthly, est.lines       # hourly is None when a price is unknown

Every catalog row carries its source and the date it was taken; an unknown price is reported
as unknown with a reason, never as $0.
"""

from __future__ import annotations

from cloudserve.pricing.catalog import (
    Catalog,
    PriceRow,
    load_catalog,
    packaged_catalog,
    user_catalog_path,
)
from cloudserve.pricing.estimate import DEFAULT_REGIONS, StalePriceWarning, estimate
from cloudserve.pricing.overrides import CustomPrice, PriceOverrides
from cloudserve.pricing.refresh import (
    MissingPricesWarning,
    ProviderRefresh,
    RefreshReport,
    RefreshResult,
    Shape,
    instance_shapes,
    refresh,
    stale_warnings,
    warn_missing,
)

__all__ = [
    "DEFAULT_REGIONS",
    "Catalog",
    "CustomPrice",
    "MissingPricesWarning",
    "PriceOverrides",
    "PriceRow",
    "ProviderRefresh",
    "RefreshReport",
    "RefreshResult",
    "Shape",
    "StalePriceWarning",
    "estimate",
    "instance_shapes",
    "load_catalog",
    "packaged_catalog",
    "refresh",
    "stale_warnings",
    "user_catalog_path",
    "warn_missing",
]
