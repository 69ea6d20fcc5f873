"""Price refresh from the AWS Price List Query API (``pricing.get_products``) via boto3.

The API is served from ``us-east-1`` whatever region is priced. For each SageMaker instance
type the catalog or ``cloudserve.sizes`` names, one query asks for the ``AmazonSageMaker``
products with ``productFamily = ML Instance``, the target's ``regionCode`` and that
``instanceName`` (following ``NextToken`` to the last page). Of the answer, the ``component``
picks the catalog kind — ``Hosting`` → ``hosting``, ``Batch Transform`` → ``batch``,
``Training`` → ``training`` (``Notebook``, ``Processing`` … are ignored) — and the price is the
``OnDemand`` term's hourly (``Hrs``) USD rate; ``Reserved`` terms and savings plans are not
used. SageMaker prices the instance with its GPUs, so each row is one ``instance`` item.

An (instance type, kind) pair with no on-demand product, a $0 rate or several conflicting
rates is *missing*: it gets no row — the catalog keeps its previous, dated row — and is named
in :class:`cloudserve.pricing.MissingPricesWarning`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from cloudserve.pricing.refresh import RefreshResult, Shape
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._config import SageMakerConfig

__all__ = ["KINDS", "PRICING_REGION", "PriceList", "refresh_prices"]

PRICING_REGION = "us-east-1"
SERVICE_CODE = "AmazonSageMaker"
COMPONENTS = {"Hosting": "hosting", "Batch Transform": "batch", "Training": "training"}
# The usage-type prefix of each component's meter (``USE1-Host:ml.m5.large``).
USAGE = {"hosting": "Host:", "batch": "Tsform:", "training": "Train:"}
KINDS = tuple(COMPONENTS.values())


@dataclass(frozen=True)
class Offer:
    """One on-demand hourly rate of a product."""

    kind: str
    price: float
    currency: str
    sku: str
    usagetype: str
    effective: str
    attributes: dict[str, str]


def pricing_client(cfg: SageMakerConfig) -> Any:
    """A boto3 ``pricing`` client in us-east-1 (``endpoint_url`` / ``service_endpoints``
    ``pricing`` honoured); botocore makes one attempt, cloudserve's policy retries."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=cfg.profile, region_name=PRICING_REGION)
    config = Config(
        region_name=PRICING_REGION,
        retries={"total_max_attempts": 1, "mode": cfg.retry_mode},
        connect_timeout=cfg.connect_timeout_s,
        read_timeout=cfg.read_timeout_s,
    )
    url = cfg.service_endpoints.get("pricing", cfg.endpoint_url)
    return session.client("pricing", endpoint_url=url, config=config)


def offers(document: dict[str, Any]) -> Iterator[Offer]:
    """The on-demand hourly rates of one price-list document (a parsed ``PriceList`` item)."""
    product = document.get("product") or {}
    attrs = {k: str(v) for k, v in (product.get("attributes") or {}).items()}
    kind = COMPONENTS.get(attrs.get("component", ""))
    if product.get("productFamily") != "ML Instance" or kind is None:
        return
    for term in ((document.get("terms") or {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            if dim.get("unit") not in ("Hrs", "Hours", "hour"):
                continue
            for currency, value in (dim.get("pricePerUnit") or {}).items():
                yield Offer(
                    kind=kind,
                    price=float(value),
                    currency=currency,
                    sku=str(product.get("sku") or term.get("sku") or ""),
                    usagetype=attrs.get("usagetype", ""),
                    effective=str(term.get("effectiveDate", ""))[:10],
                    attributes=attrs,
                )


def pick(kind: str, candidates: list[Offer]) -> tuple[Offer | None, str]:
    """The one on-demand USD rate for ``kind``, or None and why there is none."""
    found = [o for o in candidates if o.kind == kind and o.currency == "USD"]
    if not found:
        return None, "no on-demand hourly USD product"
    preferred = [o for o in found if USAGE[kind] in o.usagetype] or found
    prices = sorted({o.price for o in preferred})
    if len(prices) > 1:
        return None, f"ambiguous: {len(preferred)} products with rates {prices}"
    if prices[0] <= 0:
        return None, "the API lists a rate of 0, taken as unknown"
    return preferred[0], ""


def _number(text: str | None) -> float | None:
    match = re.match(r"\s*([\d.]+)", text or "")
    return float(match.group(1)) if match else None


def row(
    instance_type: str, shape: Shape, offer: Offer, region: str, source: str, as_of: date
) -> dict[str, Any]:
    """One catalog row (catalog columns) for an instance type's kind."""
    attrs = offer.attributes
    gpus = _number(attrs.get("gpu"))
    return {
        "provider": "sagemaker",
        "region": region,
        "kind": offer.kind,
        "item": "instance",
        "instance_type": instance_type,
        "vcpus": _number(attrs.get("vCpu")) or shape.vcpus,
        "memory_gib": _number(attrs.get("memory")) or shape.memory_gib,
        "accelerator": shape.accelerator,
        "accelerator_count": int(gpus) if gpus is not None else shape.accelerator_count,
        "price": offer.price,
        "unit": "hour",
        "currency": offer.currency,
        "source_url": source,
        "as_of": as_of.isoformat(),
        "note": (
            f"AWS Price List API GetProducts {SERVICE_CODE}: sku {offer.sku}, "
            f"{offer.usagetype}, on-demand, effective {offer.effective}"
        ),
    }


class PriceList:
    """Reads SageMaker ML instance prices page by page through a boto3 ``pricing`` client.

    ``call`` wraps each page request (the provider's ``call``: its ErrorTable and retries).
    """

    def __init__(self, client: Any, call: Callable[..., Any]):
        self.client = client
        self._call = call

    def documents(self, region: str, instance_type: str) -> Iterator[dict[str, Any]]:
        """Every price-list document for one instance type in ``region``, all pages."""
        filters = [
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
        ]
        return self.pages(ServiceCode=SERVICE_CODE, Filters=filters)

    def pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every parsed ``PriceList`` document of a ``GetProducts`` query, following
        ``NextToken`` to the last page."""
        params = {"FormatVersion": "aws_v1", "MaxResults": 100, **params}
        while True:
            page = self._call(self.client.get_products, **params)
            for item in page.get("PriceList") or []:
                yield json.loads(item) if isinstance(item, str) else item
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token

    def refresh(self, region: str, shapes: dict[str, Shape]) -> RefreshResult:
        """Rows for every (instance type, kind) with a usable on-demand rate in ``region``."""
        today = datetime.now(timezone.utc).date()
        source = str(self.client.meta.endpoint_url)
        out = RefreshResult()
        for instance_type, shape in sorted(shapes.items()):
            candidates = [o for d in self.documents(region, instance_type) for o in offers(d)]
            for kind in KINDS:
                offer, why = pick(kind, candidates)
                if offer is None:
                    out.missing[f"{instance_type} {kind}"] = why
                    continue
                out.rows.append(row(instance_type, shape, offer, region, source, today))
        return out


def refresh_prices(api: Api) -> RefreshResult:
    """Price the catalog's SageMaker instance types in ``api``'s region (see the module doc)."""
    from cloudserve.pricing.refresh import instance_shapes, warn_missing

    reader = PriceList(pricing_client(api.cfg), api.call)
    result = reader.refresh(api.cfg.region, instance_shapes("sagemaker", KINDS))
    warn_missing(api.name, api.cfg.region, result.missing)
    return result
