"""A fake AWS Price List Query API (``AWSPriceListService.GetProducts``), which moto lacks.

JSON 1.1 protocol, as the real service speaks it: ``POST /`` with
``X-Amz-Target: AWSPriceListService.GetProducts`` and a JSON body (``ServiceCode``,
``Filters``, ``FormatVersion``, ``MaxResults`` ≤ 100, ``NextToken``). The answer's
``PriceList`` is a list of JSON *strings*, each a product with its ``OnDemand`` (and, for some,
``Reserved``) terms, shaped like the real ``aws_v1`` documents. Filters of type ``TERM_MATCH``
/ ``EQUALS`` match an attribute exactly (case-insensitive, as AWS does) — the product's
``productFamily`` or any of ``product.attributes``.

Seeded with the SageMaker instance types of the packaged catalog in ``us-east-1`` and
``eu-west-1``, each priced for ``Hosting``, ``Batch Transform`` and ``Training`` (plus the
``Notebook`` and ``Processing`` components and an ``ML Storage`` product, which a refresh must
ignore).
"""

from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakePriceList", "ProductKey"]

REGIONS = {
    "us-east-1": ("US East (N. Virginia)", "USE1-", 1.0),
    "eu-west-1": ("EU (Ireland)", "EU-", 1.12),
}
# (instance, vCPU, memory GiB, GPUs) → on-demand $/hour in us-east-1
SEED = {
    "ml.m5.large": (2, 8, 0, 0.115),
    "ml.m5.xlarge": (4, 16, 0, 0.23),
    "ml.m5.2xlarge": (8, 32, 0, 0.461),
    "ml.g4dn.xlarge": (4, 16, 1, 0.736),
    "ml.g5.xlarge": (4, 16, 1, 1.408),
    "ml.g6.xlarge": (4, 16, 1, 1.1267),
}
COMPONENTS = {
    "Hosting": ("Host", 1.0),
    "Batch Transform": ("Tsform", 1.0),
    "Training": ("Train", 1.0),
    "Notebook": ("Notebk", 1.05),
    "Processing": ("Processing", 1.0),
}
MAX_RESULTS = 100

ProductKey = tuple[str, str, str]  # (regionCode, instanceName, component)


def _sku(*parts: str) -> str:
    return f"{zlib.crc32('/'.join(parts).encode()):08X}SKU"[:16]


def product(
    region: str,
    instance: str,
    component: str,
    price: float,
    *,
    vcpu: int,
    memory: float,
    gpu: int,
    reserved: bool = False,
) -> dict[str, Any]:
    """One price-list document for an ML instance component, as GetProducts returns it."""
    location, prefix, _ = REGIONS.get(region, (region, "", 1.0))
    usage, _ = COMPONENTS.get(component, (component, 1.0))
    sku = _sku(region, instance, component)
    term = "JRTCKXETXF"
    doc: dict[str, Any] = {
        "product": {
            "productFamily": "ML Instance",
            "attributes": {
                "servicecode": "AmazonSageMaker",
                "servicename": "Amazon SageMaker",
                "location": location,
                "locationType": "AWS Region",
                "regionCode": region,
                "instanceName": instance,
                "instanceType": instance,
                "component": component,
                "vCpu": str(vcpu),
                "memory": f"{memory:g} GiB",
                "gpu": str(gpu),
                "usagetype": f"{prefix}{usage}:{instance}",
                "operation": "RunInstance",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {
            "OnDemand": {
                f"{sku}.{term}": {
                    "priceDimensions": {
                        f"{sku}.{term}.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${price:g} per {usage}:{instance} in {location}",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{term}.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{price:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2024-06-01T00:00:00Z",
                    "offerTermCode": term,
                    "termAttributes": {},
                }
            }
        },
        "version": "20240601000000",
        "publicationDate": "2024-06-01T00:00:00Z",
    }
    if reserved:
        doc["terms"]["Reserved"] = {
            f"{sku}.4NA7Y494T4": {
                "priceDimensions": {
                    f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                        "unit": "Hrs",
                        "pricePerUnit": {"USD": f"{price * 0.6:.10f}"},
                        "description": "reserved (savings plan) rate",
                    }
                },
                "sku": sku,
                "offerTermCode": "4NA7Y494T4",
                "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "No Upfront"},
            }
        }
    return doc


def _seed() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for region, (_, _, factor) in REGIONS.items():
        for instance, (vcpu, memory, gpu, base) in SEED.items():
            for component, (_, extra) in COMPONENTS.items():
                price = round(base * factor * extra, 4)
                shape = {"vcpu": vcpu, "memory": memory, "gpu": gpu}
                docs.append(
                    product(
                        region, instance, component, price, reserved=component == "Hosting", **shape
                    )
                )
        docs.append(
            {
                "product": {
                    "productFamily": "ML Storage",
                    "attributes": {"regionCode": region, "servicecode": "AmazonSageMaker"},
                    "sku": _sku(region, "storage"),
                },
                "serviceCode": "AmazonSageMaker",
                "terms": {},
            }
        )
    return docs


def _matches(doc: dict[str, Any], filters: list[dict[str, str]]) -> bool:
    prod = doc["product"]
    attrs = {"productFamily": prod.get("productFamily", ""), **prod.get("attributes", {})}
    for f in filters:
        value = attrs.get(f["Field"])
        if value is None or str(value).lower() != str(f["Value"]).lower():
            return False
    return True


@dataclass
class FakePriceList:
    """State of the fake Price List API: its documents, the calls seen, and ``page_size`` —
    the most products one page holds whatever ``MaxResults`` asks (set it low to force paging).
    """

    page_size: int = MAX_RESULTS
    documents: list[dict[str, Any]] = field(default_factory=_seed)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test controls --------------------------------------------------------------------------

    def set_price(self, instance: str, component: str, price: float, region: str = "us-east-1"):
        """Set the on-demand $/hour of one instance component (it must exist in the fake)."""
        with self.lock:
            for doc in self.documents:
                if _matches(doc, _filters(region, instance, component)):
                    for term in doc["terms"]["OnDemand"].values():
                        for dim in term["priceDimensions"].values():
                            dim["pricePerUnit"] = {"USD": f"{price:.10f}"}
                    return
        raise KeyError((region, instance, component))

    def remove(self, instance: str, component: str | None = None) -> None:
        """Drop an instance type's products (one component, or all), in every region."""
        with self.lock:
            self.documents = [
                d
                for d in self.documents
                if not (
                    d["product"].get("attributes", {}).get("instanceName") == instance
                    and component in (None, d["product"]["attributes"].get("component"))
                )
            ]

    def add(self, doc: dict[str, Any]) -> None:
        """Add a price-list document (see :func:`product`)."""
        with self.lock:
            self.documents.append(doc)

    # -- the API --------------------------------------------------------------------------------

    def handle(self, operation: str, params: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        """(status, error code or "", body) for one Price List API call."""
        with self.lock:
            self.calls.append({"operation": operation, **params})
            if operation != "GetProducts":
                return 400, "UnknownOperationException", {"message": f"fake lacks {operation}"}
            return self._get_products(params)

    def _get_products(self, params: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        size = int(params.get("MaxResults") or MAX_RESULTS)
        if not 1 <= size <= MAX_RESULTS:
            return 400, "InvalidParameterException", {"Message": "MaxResults must be 1-100"}
        if params.get("FormatVersion", "aws_v1") != "aws_v1":
            return 400, "InvalidParameterException", {"Message": "FormatVersion must be aws_v1"}
        filters = params.get("Filters") or []
        for f in filters:
            if f.get("Type") not in ("TERM_MATCH", "EQUALS"):
                message = f"the fake supports TERM_MATCH/EQUALS filters, not {f.get('Type')}"
                return 400, "InvalidParameterException", {"Message": message}
        service = params.get("ServiceCode", "")
        matched = [
            d for d in self.documents if d.get("serviceCode") == service and _matches(d, filters)
        ]
        start = 0
        if params.get("NextToken"):
            try:
                start = int(str(params["NextToken"]).removeprefix("page:"))
            except ValueError:
                return 400, "InvalidNextTokenException", {"Message": "invalid NextToken"}
        size = min(size, self.page_size)
        page = matched[start : start + size]
        body: dict[str, Any] = {
            "FormatVersion": "aws_v1",
            "PriceList": [json.dumps(d) for d in page],
        }
        if start + size < len(matched):
            body["NextToken"] = f"page:{start + size}"
        return 200, "", body


def _filters(region: str, instance: str, component: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance},
        {"Type": "TERM_MATCH", "Field": "component", "Value": component},
    ]
