"""Price refresh from the Google Cloud Billing Catalog API (``services/{id}/skus``).

Vertex AI's SKUs (service ``C7E2-9256-1C43``) are listed once, page by page
(``nextPageToken``), in USD, through the provider's authorised session. Google prices Vertex
AI machines by resource, not by machine type, so a machine's hourly price is assembled:

    machine $/h = vCPUs × (core SKU $/vCPU-hour) + memory GiB × (RAM SKU $/GiB-hour)
                  [+ GPUs × (GPU SKU $/GPU-hour) for machine types that come with their GPUs,
                   such as g2-standard-4 with one NVIDIA L4]

with the core and RAM SKUs of the machine's family (``N1``, ``G2`` … from the machine type's
prefix). Online and batch prediction share SKUs ("Online/Batch Prediction …") and give the
``hosting`` and ``batch`` rows; "Custom Training …" SKUs give the ``training`` rows.
Accelerators attached to N1 machines are add-ons, priced per GPU-hour: they get their own
``accelerator`` rows (``NVIDIA_TESLA_T4``), as the catalog models them.

A SKU is used only when ``category.usageType`` is ``OnDemand``, its ``serviceRegions`` include
the target's location and its description names no Spot, preemptible or commitment price; its
price is the first tier's rate. The Catalog API has no machine-type attribute, so SKUs are
matched by their description (family and ``Core``/``Ram``, or ``Nvidia <model> GPU``).

A machine type or accelerator whose SKUs are not found, are ambiguous or are $0 is *missing*:
it gets no row — the catalog keeps its previous, dated row — and is named in
:class:`cloudserve.pricing.MissingPricesWarning`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from cloudserve.pricing import packaged_catalog
from cloudserve.pricing.refresh import RefreshResult, Shape
from cloudserve.sizes import sizes_for

__all__ = [
    "BILLING_HOST",
    "KINDS",
    "VERTEX_SERVICE_ID",
    "BillingCatalog",
    "addon_accelerators",
]

BILLING_HOST = "https://cloudbilling.googleapis.com"
VERTEX_SERVICE_ID = "C7E2-9256-1C43"
PURPOSES = {"prediction": ("hosting", "batch"), "training": ("training",)}
KINDS = tuple(kind for kinds in PURPOSES.values() for kind in kinds)
_EXCLUDED = re.compile(r"\b(spot|preemptible|commitment|commit)\b", re.I)
_UNITS = {"core": "h", "ram": "GiBy.h", "gpu": "h"}


@dataclass(frozen=True)
class Rate:
    """One SKU's on-demand first-tier rate."""

    sku: str
    description: str
    price: float
    unit: str
    currency: str


def addon_accelerators() -> set[str]:
    """Accelerators priced as add-ons: the packaged catalog's ``vertex`` accelerator rows and
    the accelerators the sizes table attaches separately."""
    addons = {
        row.instance_type
        for row in packaged_catalog()
        if row.provider == "vertex" and row.item == "accelerator" and row.kind in KINDS
    }
    addons.update(
        choice.accelerator
        for choice in sizes_for("vertex").values()
        if choice.accelerator and choice.accelerator_separate
    )
    return addons


def _rate(sku: dict[str, Any]) -> Rate | None:
    infos = sku.get("pricingInfo") or []
    if not infos:
        return None
    expr = infos[0].get("pricingExpression") or {}
    tiers = sorted(expr.get("tieredRates") or [], key=lambda t: float(t.get("startUsageAmount", 0)))
    if not tiers:
        return None
    money = tiers[0].get("unitPrice") or {}
    price = int(money.get("units") or 0) + int(money.get("nanos") or 0) / 1e9
    return Rate(
        sku=str(sku.get("skuId", "")),
        description=str(sku.get("description", "")),
        price=price,
        unit=str(expr.get("usageUnit", "")),
        currency=str(money.get("currencyCode", "USD")),
    )


def _purpose(description: str) -> str | None:
    text = description.lower()
    if "prediction" in text:
        return "prediction"
    if "training" in text:
        return "training"
    return None


def gpu_words(accelerator: str) -> str:
    """``NVIDIA_TESLA_T4`` → ``nvidia tesla t4`` (how SKU descriptions name the GPU)."""
    return accelerator.lower().replace("_", " ")


class SkuIndex:
    """The usable SKUs of one location, looked up by purpose and resource."""

    def __init__(self, skus: list[dict[str, Any]], location: str):
        self.rates: list[tuple[str, Rate]] = []
        for sku in skus:
            category = sku.get("category") or {}
            description = str(sku.get("description", ""))
            purpose = _purpose(description)
            if (
                purpose is None
                or category.get("usageType") != "OnDemand"
                or location not in (sku.get("serviceRegions") or [])
                or _EXCLUDED.search(description)
            ):
                continue
            rate = _rate(sku)
            if rate is not None:
                self.rates.append((purpose, rate))

    def find(self, purpose: str, pattern: re.Pattern[str], unit: str) -> tuple[Rate | None, str]:
        """The one rate whose description matches, or None and why there is none."""
        found = [r for p, r in self.rates if p == purpose and pattern.search(r.description)]
        if not found:
            return None, f"no on-demand {purpose} SKU matching '{pattern.pattern}'"
        prices = sorted({r.price for r in found})
        if len(prices) > 1:
            return None, f"ambiguous: {len(found)} {purpose} SKUs with rates {prices}"
        rate = found[0]
        if rate.unit != unit:
            return None, f"SKU {rate.sku} is priced per {rate.unit}, expected per {unit}"
        if rate.price <= 0:
            return None, f"SKU {rate.sku} lists a rate of 0, taken as unknown"
        if rate.currency != "USD":
            return None, f"SKU {rate.sku} is priced in {rate.currency}, expected USD"
        return rate, ""

    def resource(self, purpose: str, family: str, resource: str) -> tuple[Rate | None, str]:
        """The core or RAM SKU of a machine family (predefined, not custom, machines)."""
        pattern = re.compile(rf"\b{family}\b(?!.*custom instance).*\binstance {resource}\b", re.I)
        return self.find(purpose, pattern, _UNITS[resource])

    def gpu(self, purpose: str, accelerator: str) -> tuple[Rate | None, str]:
        """The per-GPU-hour SKU of an accelerator (``NVIDIA_TESLA_T4``)."""
        pattern = re.compile(rf"\b{re.escape(gpu_words(accelerator))} gpu\b", re.I)
        return self.find(purpose, pattern, _UNITS["gpu"])


@dataclass
class Priced:
    """A computed price and the formula that made it."""

    price: float
    formula: str


def machine_price(index: SkuIndex, purpose: str, machine: str, shape: Shape) -> Priced | str:
    """The machine's hourly price for ``purpose`` (see the module docstring), or why not."""
    if not shape.vcpus or not shape.memory_gib:
        return f"the shape of {machine} (vCPUs, memory) is unknown"
    family = machine.split("-", 1)[0]
    core, why = index.resource(purpose, family, "core")
    if core is None:
        return why
    ram, why = index.resource(purpose, family, "ram")
    if ram is None:
        return why
    price = shape.vcpus * core.price + shape.memory_gib * ram.price
    formula = (
        f"{shape.vcpus:g} vCPU × {core.price:g} (SKU {core.sku}) + "
        f"{shape.memory_gib:g} GiB × {ram.price:g} (SKU {ram.sku})"
    )
    if shape.accelerator and shape.accelerator_count:
        gpu, why = index.gpu(purpose, shape.accelerator)
        if gpu is None:
            return why
        price += shape.accelerator_count * gpu.price
        formula += f" + {shape.accelerator_count} GPU × {gpu.price:g} (SKU {gpu.sku})"
    return Priced(round(price, 6), formula)


class BillingCatalog:
    """Lists the Vertex AI SKUs of the Cloud Billing Catalog API and prices machines from them.

    ``get(url, params)`` is an authorised GET returning the parsed page (the provider's
    ``VertexApi.http``, so errors go through its ErrorTable and pages are retried).
    """

    def __init__(
        self,
        get: Callable[[str, dict[str, str]], dict[str, Any]],
        host: str = BILLING_HOST,
        service_id: str = VERTEX_SERVICE_ID,
    ):
        self._get = get
        self.url = f"{host.rstrip('/')}/v1/services/{service_id}/skus"

    def skus(self) -> Iterator[dict[str, Any]]:
        """Every SKU of the service, following ``nextPageToken`` to the last page."""
        params = {"currencyCode": "USD", "pageSize": "5000"}
        while True:
            page = self._get(self.url, params)
            yield from page.get("skus") or []
            token = page.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}

    def refresh(self, location: str, shapes: dict[str, Shape], addons: set[str]) -> RefreshResult:
        """Machine rows (per kind) and accelerator add-on rows for ``location``."""
        index = SkuIndex(list(self.skus()), location)
        today = datetime.now(timezone.utc).date()
        out = RefreshResult()
        for purpose, kinds in PURPOSES.items():
            for machine, shape in sorted(shapes.items()):
                priced = machine_price(index, purpose, machine, shape)
                if isinstance(priced, str):
                    out.missing[f"{machine} {purpose}"] = priced
                    continue
                out.rows.extend(
                    self._row(machine, shape, "instance", priced, kind, location, today)
                    for kind in kinds
                )
            for accelerator in sorted(addons):
                rate, why = index.gpu(purpose, accelerator)
                if rate is None:
                    out.missing[f"{accelerator} {purpose}"] = why
                    continue
                priced = Priced(rate.price, f"1 GPU × {rate.price:g} (SKU {rate.sku})")
                shape = Shape(accelerator=accelerator, accelerator_count=1)
                out.rows.extend(
                    self._row(accelerator, shape, "accelerator", priced, kind, location, today)
                    for kind in kinds
                )
        return out

    def _row(
        self,
        name: str,
        shape: Shape,
        item: str,
        priced: Priced,
        kind: str,
        location: str,
        as_of: date,
    ) -> dict[str, Any]:
        return {
            "provider": "vertex",
            "region": location,
            "kind": kind,
            "item": item,
            "instance_type": name,
            "vcpus": shape.vcpus,
            "memory_gib": shape.memory_gib,
            "accelerator": shape.accelerator,
            "accelerator_count": shape.accelerator_count,
            "price": priced.price,
            "unit": "hour",
            "currency": "USD",
            "source_url": self.url,
            "as_of": as_of.isoformat(),
            "note": f"Cloud Billing Catalog API, on-demand: {priced.formula}",
        }
