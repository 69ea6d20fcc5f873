"""Price refresh from the Azure Retail Prices REST API (no authentication).

Azure ML bills managed online endpoints, batch endpoints (AmlCompute) and training/sweep jobs
at the Linux pay-as-you-go price of the virtual machine they run on; Azure ML adds no surcharge.
So one Retail Prices meter — ``serviceName 'Virtual Machines'``, the instance's ``armSkuName``,
the region's ``armRegionName``, ``priceType 'Consumption'`` — gives the ``hosting``, ``batch``
and ``training`` rows of an instance type. Of the meters that answer, only Linux ones count
(``productName`` not ending in ``Windows``), never Spot or Low Priority, never reservations or
Dev/Test prices, and only the first tier of a ``1 Hour`` meter.

An instance type with no such meter (or only a $0 one) is *missing*: it gets no row — the
catalog keeps its previous, dated row — and is named in
:class:`cloudserve.pricing.MissingPricesWarning`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode

from cloudserve.pricing.refresh import RefreshResult, Shape

__all__ = [
    "KINDS",
    "RETAIL_PRICES_URL",
    "RetailPrices",
    "refresh_prices",
    "rows_for",
]

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
KINDS = ("hosting", "batch", "training")
_EXCLUDED_WORDS = ("Spot", "Low Priority")


def query_url(region: str, instance_type: str, base: str = RETAIL_PRICES_URL) -> str:
    """The first-page URL for one instance type's pay-as-you-go VM meters in ``region``."""
    flt = (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
        f"and armSkuName eq '{instance_type}' and priceType eq 'Consumption'"
    )
    return f"{base}?{urlencode({'$filter': flt})}"


def _usable(item: dict[str, Any]) -> bool:
    names = f"{item.get('skuName', '')} {item.get('meterName', '')}"
    return (
        item.get("type") == "Consumption"
        and not str(item.get("productName", "")).endswith("Windows")
        and not any(word in names for word in _EXCLUDED_WORDS)
        and item.get("unitOfMeasure") == "1 Hour"
        and float(item.get("tierMinimumUnits") or 0) == 0
    )


def pick_meter(items: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The one Linux pay-as-you-go meter among ``items``, or None and why there is none."""
    usable = [i for i in items if _usable(i)]
    if not usable:
        seen = len(items)
        return None, f"no Linux pay-as-you-go hourly meter among {seen} answered"
    primary = [i for i in usable if i.get("isPrimaryMeterRegion", True)] or usable
    prices = {float(i["retailPrice"]) for i in primary}
    if len(prices) > 1:
        return None, f"ambiguous: {len(primary)} Linux meters with prices {sorted(prices)}"
    meter = primary[0]
    if float(meter["retailPrice"]) <= 0:
        return None, f"the API lists {meter.get('meterName')} at 0, taken as unknown"
    return meter, ""


def rows_for(
    instance_type: str, shape: Shape, meter: dict[str, Any], region: str, source: str, as_of: date
) -> list[dict[str, Any]]:
    """The hosting, batch and training rows one VM meter prices (catalog columns)."""
    note = (
        f"Azure Retail Prices API: {meter.get('productName')} / {meter.get('skuName')} "
        f"(meter {meter.get('meterId')}, effective {str(meter.get('effectiveStartDate'))[:10]}); "
        "Azure ML bills the VM's Linux pay-as-you-go price"
    )
    return [
        {
            "provider": "azureml",
            "region": region,
            "kind": kind,
            "item": "instance",
            "instance_type": instance_type,
            "vcpus": shape.vcpus,
            "memory_gib": shape.memory_gib,
            "accelerator": shape.accelerator,
            "accelerator_count": shape.accelerator_count,
            "price": float(meter["retailPrice"]),
            "unit": "hour",
            "currency": meter.get("currencyCode", "USD"),
            "source_url": source,
            "as_of": as_of.isoformat(),
            "note": note,
        }
        for kind in KINDS
    ]


class RetailPrices:
    """Reads the Retail Prices API page by page (``NextPageLink``) through azure-core.

    ``call`` wraps each page request (the provider passes its ``call`` so that errors go
    through its ErrorTable and retry-safe GETs are retried by its policy).
    """

    def __init__(self, call: Callable[..., Any], base_url: str = RETAIL_PRICES_URL):
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import UserAgentPolicy

        self.base_url = base_url
        self._call = call
        # No retry policy in the pipeline: cloudserve's policy is the only one that retries.
        self._client: PipelineClient[Any, Any] = PipelineClient(
            base_url=base_url, policies=[UserAgentPolicy("cloudserve-azureml")]
        )

    def _page(self, url: str) -> dict[str, Any]:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        resp = self._client.send_request(HttpRequest("GET", url))
        if resp.status_code >= 400:
            raise HttpResponseError(
                message=f"Retail Prices API answered {resp.status_code}: {resp.text()[:300]}",
                response=resp,
            )
        return dict(resp.json())

    def items(self, url: str) -> Iterator[dict[str, Any]]:
        """Every item of a query, following ``NextPageLink`` to the last page."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url and next_url not in seen:
            seen.add(next_url)
            doc = self._call(self._page, next_url)
            yield from doc.get("Items") or []
            next_url = doc.get("NextPageLink")

    def refresh(self, region: str, shapes: dict[str, Shape]) -> RefreshResult:
        """Rows for every instance type in ``shapes`` that has a usable meter in ``region``."""
        today = datetime.now(timezone.utc).date()
        out = RefreshResult()
        for instance_type, shape in sorted(shapes.items()):
            url = query_url(region, instance_type, self.base_url)
            meter, why = pick_meter(list(self.items(url)))
            if meter is None:
                out.missing[instance_type] = why
                continue
            out.rows.extend(rows_for(instance_type, shape, meter, region, url, today))
        return out


def refresh_prices(region: str | None, call: Callable[..., Any]) -> RefreshResult:
    """Prices of the catalog's Azure ML instance types in ``region`` (``eastus`` when None),
    each missing one named in a ``MissingPricesWarning``."""
    from cloudserve.pricing import DEFAULT_REGIONS
    from cloudserve.pricing.refresh import instance_shapes, warn_missing

    where = region or DEFAULT_REGIONS["azureml"]
    result = RetailPrices(call).refresh(where, instance_shapes("azureml", KINDS))
    warn_missing("azureml", where, result.missing)
    return result
