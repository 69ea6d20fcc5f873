"""A fake Cloud Billing Catalog API: ``GET /v1/services/{service}/skus`` (paged).

SKUs are shaped like the real API's (``skuId``, ``description``, ``category.usageType``,
``serviceRegions``, ``pricingInfo[0].pricingExpression.tieredRates[].unitPrice`` as
``units`` + ``nanos``). Pages hold ``min(pageSize, page_size)`` SKUs (the real maximum is
5000) and carry an opaque ``nextPageToken``; a token the fake did not hand out answers 400.
``currencyCode`` other than USD answers 400 (the fake has no exchange rates).

Seeded for Vertex AI (``C7E2-9256-1C43``) in ``us-central1`` and ``europe-west4``: N1 and G2
core and RAM SKUs and T4 / L4 GPU SKUs for prediction and for training, with Spot and
commitment variants and SKUs of other machine families a refresh must not confuse with them.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from cloudserve_vertex.testing._http import ApiError, Reply, json_reply

__all__ = ["FakeBillingCatalog", "sku"]

VERTEX = "C7E2-9256-1C43"
MAX_PAGE = 5000
REGIONS = {"us-central1": ("Americas", 1.0), "europe-west4": ("EMEA", 1.1)}
# (purpose prefix, resource words, unit) → us-central1 rate
SEED = {
    ("Online/Batch Prediction", "N1 Predefined Instance Core", "h"): 0.03675,
    ("Online/Batch Prediction", "N1 Predefined Instance Ram", "GiBy.h"): 0.0048,
    ("Online/Batch Prediction", "G2 Instance Core", "h"): 0.02563,
    ("Online/Batch Prediction", "G2 Instance Ram", "GiBy.h"): 0.003003,
    ("Online/Batch Prediction", "Nvidia Tesla T4 GPU", "h"): 0.4025,
    ("Online/Batch Prediction", "Nvidia L4 GPU", "h"): 0.6623,
    ("Online/Batch Prediction", "E2 Instance Core", "h"): 0.0251,
    ("Online/Batch Prediction", "N1 Custom Instance Core", "h"): 0.0401,
    ("Custom Training", "N1 Predefined Instance Core", "h"): 0.03655,
    ("Custom Training", "N1 Predefined Instance Ram", "GiBy.h"): 0.0048,
    ("Custom Training", "G2 Instance Core", "h"): 0.02563,
    ("Custom Training", "G2 Instance Ram", "GiBy.h"): 0.003003,
    ("Custom Training", "Nvidia Tesla T4 GPU", "h"): 0.4025,
    ("Custom Training", "Nvidia L4 GPU", "h"): 0.6623,
}


def _money(price: float) -> dict[str, Any]:
    units = int(price)
    return {"currencyCode": "USD", "units": str(units), "nanos": round((price - units) * 1e9)}


def sku(
    description: str,
    price: float,
    *,
    regions: list[str],
    unit: str = "h",
    usage_type: str = "OnDemand",
    service: str = VERTEX,
) -> dict[str, Any]:
    """One SKU as ``services.skus.list`` returns it."""
    sku_id = f"{zlib.crc32((description + str(regions) + usage_type).encode()):08X}"
    sku_id = f"{sku_id[:4]}-{sku_id[4:]}-{zlib.crc32(sku_id.encode()) % 10**4:04d}"
    return {
        "name": f"services/{service}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {
            "serviceDisplayName": "Vertex AI",
            "resourceFamily": "Compute",
            "resourceGroup": "VertexAI",
            "usageType": usage_type,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": unit,
                    "usageUnitDescription": "hour" if unit == "h" else "gibibyte hour",
                    "baseUnit": "s" if unit == "h" else "By.s",
                    "displayQuantity": 1,
                    "tieredRates": [{"startUsageAmount": 0, "unitPrice": _money(price)}],
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2024-06-01T00:00:00Z",
            }
        ],
        "serviceProviderName": "Google",
    }


def _seed() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for region, (area, factor) in REGIONS.items():
        for (purpose, words, unit), base in SEED.items():
            price = round(base * factor, 6)
            text = f"Vertex AI: {purpose} {words} running in {area}"
            out.append(sku(text, price, regions=[region], unit=unit))
            spot = f"Vertex AI: {purpose} Spot Preemptible {words} running in {area}"
            out.append(sku(spot, round(price * 0.3, 6), regions=[region], unit=unit))
            commit = f"Commitment v1: {purpose} {words} in {area} for 1 Year"
            committed = round(price * 0.63, 6)
            out.append(sku(commit, committed, regions=[region], unit=unit, usage_type="Commit1Yr"))
    # Other Vertex AI SKUs (per-character, per-node-hour …) that match no machine.
    out.extend(
        sku(f"Vertex AI: Feature Store online serving node {n}", 0.94, regions=list(REGIONS))
        for n in range(40)
    )
    return out


@dataclass
class FakeBillingCatalog:
    """State of the fake Catalog API: SKUs per service, the page cap, and the queries seen."""

    page_size: int = MAX_PAGE
    skus: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {VERTEX: _seed()})
    queries: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_price(self, description_part: str, price: float, region: str = "us-central1") -> None:
        """Set the rate of the on-demand Vertex AI SKU(s) whose description contains the text."""
        with self.lock:
            hits = [
                s
                for s in self.skus[VERTEX]
                if description_part in s["description"]
                and region in s["serviceRegions"]
                and s["category"]["usageType"] == "OnDemand"
                and "Spot" not in s["description"]
            ]
            if not hits:
                raise KeyError(description_part)
            for s in hits:
                s["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"] = _money(
                    price
                )

    def remove(self, description_part: str) -> None:
        """Drop every Vertex AI SKU whose description contains the text."""
        with self.lock:
            self.skus[VERTEX] = [
                s for s in self.skus[VERTEX] if description_part not in s["description"]
            ]

    def add(self, entry: dict[str, Any], service: str = VERTEX) -> None:
        """Add a SKU (see :func:`sku`)."""
        with self.lock:
            self.skus.setdefault(service, []).append(entry)

    def list_skus(self, service: str, query: dict[str, str]) -> Reply:
        """``GET /v1/services/{service}/skus``."""
        with self.lock:
            self.queries.append(dict(query))
            if service not in self.skus:
                raise ApiError(404, f"Service services/{service} not found.")
            if query.get("currencyCode", "USD") != "USD":
                raise ApiError(400, "the fake Catalog API prices in USD only")
            size = min(int(query.get("pageSize") or MAX_PAGE), MAX_PAGE, self.page_size)
            token = query.get("pageToken", "")
            start = 0
            if token:
                if not token.startswith("skus-after-"):
                    raise ApiError(400, "Invalid page token.")
                start = int(token.removeprefix("skus-after-"))
            items = self.skus[service]
            page = items[start : start + size]
            body: dict[str, Any] = {"skus": page, "nextPageToken": ""}
            if start + size < len(items):
                body["nextPageToken"] = f"skus-after-{start + size}"
        return json_reply(body)
