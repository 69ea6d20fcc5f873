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
    state_dir,
    user_catalog_path,
)
from cloudserve.pricing.estimate import DEFAULT_REGIONS, StalePriceWarning, estimate
from cloudserve.pricing.overrides import CustomPrice, PriceOverrides
from cloudserve.pricing.refresh import ProviderRefresh, RefreshReport, refresh, stale_warnings

__all__ = [
    "DEFAULT_REGIONS",
    "Catalog",
    "CustomPrice",
    "PriceOverrides",
    "PriceRow",
    "ProviderRefresh",
    "RefreshReport",
    "StalePriceWarning",
    "estimate",
    "load_catalog",
    "packaged_catalog",
    "refresh",
    "stale_warnings",
    "state_dir",
    "user_catalog_path",
]
