"""A fake Azure Retail Prices API (``GET https://prices.azure.com/api/retail/prices``).

It holds a list of price items shaped like the real API's, evaluates the OData ``$filter``
subset price queries use (``eq``/``ne`` on the filterable fields, ``and``, ``or``, ``not`` and
parentheses; values are case-sensitive as in API version 2023-01-01-preview and later) and pages
the answer ``page_size`` items at a time with an absolute ``NextPageLink`` carrying ``$skip``,
as the real service does (100 a page). A filter it cannot parse answers 400.

Seeded with the Azure ML instance types of the packaged catalog in ``eastus`` and
``westeurope``, each with the meters the real API returns for a VM size: Linux and Windows
pay-as-you-go, Spot and Low Priority variants, a Dev/Test price and a one-year reservation.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["PRICES_HOST", "FakeRetailPrices", "FilterError", "parse_filter"]

PRICES_HOST = re.compile(r"https://prices\.azure\.com(?::443)?/api/retail/prices")
BASE = "https://prices.azure.com:443/api/retail/prices"

# Filter names that differ from the item's field name.
_FIELD_ALIASES = {"priceType": "type", "productid": "productId"}
_FILTERABLE = {
    "armRegionName",
    "location",
    "meterId",
    "meterName",
    "productId",
    "skuId",
    "productName",
    "skuName",
    "serviceName",
    "serviceId",
    "serviceFamily",
    "type",
    "armSkuName",
    "currencyCode",
}

# Linux pay-as-you-go $/hour the fake starts with, per region (eastus as on the price pages).
SEED_PRICES = {
    "Standard_DS2_v2": ("DSv2 Series", "DS2 v2", 0.146),
    "Standard_DS3_v2": ("DSv2 Series", "DS3 v2", 0.293),
    "Standard_DS4_v2": ("DSv2 Series", "DS4 v2", 0.585),
    "Standard_NC4as_T4_v3": ("NCasT4_v3 Series", "NC4as T4 v3", 0.526),
    "Standard_NV36ads_A10_v5": ("NVadsA10v5 Series", "NV36ads A10 v5", 3.2),
}
REGIONS = {"eastus": ("US East", 1.0), "westeurope": ("EU West", 1.1)}


class FilterError(ValueError):
    """The ``$filter`` is not one the fake (or the service) understands."""


_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|([A-Za-z_][A-Za-z0-9_]*))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"cannot parse $filter at: {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.group(1):
            out.append(("(", "("))
        elif m.group(2):
            out.append((")", ")"))
        elif m.group(3) is not None:
            out.append(("str", m.group(3).replace("''", "'")))
        else:
            out.append(("word", m.group(4)))
    return out


def parse_filter(text: str) -> Any:
    """The predicate ``item -> bool`` of an OData filter (the subset described above)."""
    toks = _tokens(text)
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise FilterError("unexpected end of $filter")
        pos += 1
        return toks[pos - 1]

    def word_is(value: str) -> bool:
        tok = peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == value

    def expr_or() -> Any:
        left = expr_and()
        while word_is("or"):
            take()
            right = expr_and()
            left = (lambda a, b: lambda i: a(i) or b(i))(left, right)
        return left

    def expr_and() -> Any:
        left = unary()
        while word_is("and"):
            take()
            right = unary()
            left = (lambda a, b: lambda i: a(i) and b(i))(left, right)
        return left

    def unary() -> Any:
        if word_is("not"):
            take()
            inner = unary()
            return lambda i: not inner(i)
        if peek() == ("(", "("):
            take()
            inner = expr_or()
            if take() != (")", ")"):
                raise FilterError("missing ')' in $filter")
            return inner
        return comparison()

    def comparison() -> Any:
        kind, name = take()
        if kind != "word":
            raise FilterError(f"expected a field name in $filter, got {name!r}")
        fname = _FIELD_ALIASES.get(name, name)
        if fname not in _FILTERABLE:
            raise FilterError(f"'{name}' is not a filterable field")
        kind, op = take()
        if kind != "word" or op.lower() not in ("eq", "ne"):
            raise FilterError(f"unsupported operator {op!r} in $filter")
        kind, value = take()
        if kind != "str":
            raise FilterError(f"expected a quoted value after {name} {op}")
        if op.lower() == "eq":
            return lambda i: str(i.get(fname, "")) == value
        return lambda i: str(i.get(fname, "")) != value

    predicate = expr_or()
    if pos != len(toks):
        raise FilterError(f"unexpected {toks[pos][1]!r} in $filter")
    return predicate


def _vm_items(arm_sku: str, series: str, sku: str, price: float, region: str) -> list[dict]:
    location, factor = REGIONS[region]
    base = round(price * factor, 4)
    common = {
        "currencyCode": "USD",
        "tierMinimumUnits": 0.0,
        "armRegionName": region,
        "location": location,
        "effectiveStartDate": "2024-05-01T00:00:00Z",
        "serviceName": "Virtual Machines",
        "serviceId": "DZH313Z7MMC8",
        "serviceFamily": "Compute",
        "unitOfMeasure": "1 Hour",
        "isPrimaryMeterRegion": True,
        "armSkuName": arm_sku,
    }
    variants = [
        # (productName, skuName/meterName, type, price, extra)
        (f"Virtual Machines {series}", sku, "Consumption", base, {}),
        (f"Virtual Machines {series} Windows", sku, "Consumption", round(base * 1.9, 4), {}),
        (f"Virtual Machines {series}", f"{sku} Spot", "Consumption", round(base * 0.2, 4), {}),
        (
            f"Virtual Machines {series}",
            f"{sku} Low Priority",
            "Consumption",
            round(base * 0.2, 4),
            {},
        ),
        (f"Virtual Machines {series}", sku, "DevTestConsumption", round(base * 0.8, 4), {}),
        (
            f"Virtual Machines {series}",
            sku,
            "Reservation",
            round(base * 5000, 2),
            {"reservationTerm": "1 Year", "unitOfMeasure": "1 Hour"},
        ),
    ]
    items = []
    for n, (product, name, kind, value, extra) in enumerate(variants):
        meter = f"{zlib.crc32(f'{region}/{arm_sku}/{n}'.encode()):010d}"
        items.append(
            {
                **common,
                "retailPrice": value,
                "unitPrice": value,
                "meterId": f"meter-{meter}",
                "meterName": name,
                "productId": f"DZH318Z0{zlib.crc32(product.encode()) % 10**4:04d}",
                "skuId": f"DZH318Z0/{meter[:4]}",
                "productName": product,
                "skuName": name,
                "type": kind,
                **extra,
            }
        )
    return items


def _filler(count: int) -> list[dict[str, Any]]:
    """Unrelated meters (storage) so that unfiltered queries page."""
    return [
        {
            "currencyCode": "USD",
            "tierMinimumUnits": 0.0,
            "retailPrice": 0.05,
            "unitPrice": 0.05,
            "armRegionName": "eastus",
            "location": "US East",
            "effectiveStartDate": "2024-01-01T00:00:00Z",
            "meterId": f"storage-{n}",
            "meterName": f"P{n} LRS Disk",
            "productId": "DZH317F1HKN0",
            "skuId": f"DZH317F1HKN0/{n:04d}",
            "productName": "Premium SSD Managed Disks",
            "skuName": f"P{n} LRS",
            "serviceName": "Storage",
            "serviceId": "DZH317F1HKN0",
            "serviceFamily": "Storage",
            "unitOfMeasure": "1/Month",
            "type": "Consumption",
            "isPrimaryMeterRegion": True,
            "armSkuName": "",
        }
        for n in range(count)
    ]


@dataclass
class FakeRetailPrices:
    """The fake API's state: items, page size, and every query it answered."""

    page_size: int = 100
    items: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if not self.items:
            for region in REGIONS:
                for arm_sku, (series, sku, price) in SEED_PRICES.items():
                    self.items.extend(_vm_items(arm_sku, series, sku, price, region))
            self.items.extend(_filler(150))

    # -- test controls --------------------------------------------------------------------------

    def set_price(self, arm_sku: str, price: float, region: str = "eastus") -> None:
        """Set the Linux pay-as-you-go price of a VM size the fake holds in ``region``."""
        with self.lock:
            matched = False
            for item in self.items:
                if (
                    item["armSkuName"] == arm_sku
                    and item["armRegionName"] == region
                    and item["type"] == "Consumption"
                    and not item["productName"].endswith("Windows")
                    and item["skuName"] == item["meterName"]
                    and "Spot" not in item["skuName"]
                    and "Low Priority" not in item["skuName"]
                ):
                    item["retailPrice"] = item["unitPrice"] = price
                    matched = True
            if not matched:
                raise KeyError(f"the fake has no {arm_sku} meters in {region}")

    def remove(self, arm_sku: str, region: str | None = None) -> None:
        """Drop every meter of a VM size (in one region, or all)."""
        with self.lock:
            self.items = [
                i
                for i in self.items
                if not (i["armSkuName"] == arm_sku and region in (None, i["armRegionName"]))
            ]

    # -- the API --------------------------------------------------------------------------------

    def handle(self, method: str, url: str) -> tuple[int, dict[str, str], str]:
        """Answer one request to the Retail Prices API."""
        if method != "GET":
            return _error(405, "MethodNotAllowed", f"{method} is not supported")
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        with self.lock:
            self.queries.append(query)
            try:
                predicate = parse_filter(query["$filter"]) if "$filter" in query else None
            except FilterError as exc:
                return _error(400, "InvalidFilter", str(exc))
            currency = query.get("currencyCode", "USD").strip("'")
            if currency != "USD":
                return _error(400, "InvalidCurrency", "the fake prices in USD only")
            matched = [i for i in self.items if predicate is None or predicate(i)]
            skip = int(query.get("$skip", "0") or 0)
            page = matched[skip : skip + self.page_size]
        body: dict[str, Any] = {
            "BillingCurrency": "USD",
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": page,
            "NextPageLink": None,
            "Count": len(page),
        }
        if skip + self.page_size < len(matched):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            body["NextPageLink"] = f"{BASE}?{urlencode({**rest, '$skip': skip + self.page_size})}"
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    body = {"Error": {"Code": code, "Message": message}}
    return status, {"Content-Type": "application/json"}, json.dumps(body)
