"""SageMaker's prebuilt framework images: their URIs and what each one holds.

URIs come from ``_image_uris.json``, generated from the SageMaker Python SDK's
``image_uri_config`` (``scripts/generate_image_table.py``; a test diffs it against the installed
SDK): every version and every region the SDK lists, with the SDK's own tag rule. The library
versions inside the serving images — what decides whether an image can load a model — come from
the images' build files, cited per row; an image whose versions could not be read from its
build files is never chosen by route selection (it can still be named with
``framework_version``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from cloudserve.errors import InvalidRequest

__all__ = ["SERVING_IMAGES", "ServingImage", "image_uri", "regions", "table"]

_SKLEARN = "https://github.com/aws/sagemaker-scikit-learn-container"
_XGBOOST = "https://github.com/aws/sagemaker-xgboost-container"


@dataclass(frozen=True)
class ServingImage:
    """One prebuilt serving image version and the libraries (and Python) inside it."""

    framework: str
    version: str
    python: str
    libraries: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def describe(self) -> str:
        """``1.2-1 (scikit-learn 1.2.1, numpy 1.24.1, Python 3.9)``."""
        libs = ", ".join(f"{k} {v}" for k, v in self.libraries.items())
        return f"{self.version} ({libs}, Python {self.python})"


# Oldest first. Sources: each branch's requirements.txt and docker/<version>/base/Dockerfile.cpu.
SERVING_IMAGES: dict[str, tuple[ServingImage, ...]] = {
    "sklearn": (
        ServingImage(
            "sklearn",
            "1.0-1",
            "3.8",
            {"scikit-learn": "1.0.2", "numpy": "1.24.1", "pandas": "1.1.3"},
            f"{_SKLEARN}/tree/1.0-1",
        ),
        ServingImage(
            "sklearn",
            "1.2-1",
            "3.9",
            {"scikit-learn": "1.2.1", "numpy": "1.24.1", "pandas": "1.1.3"},
            f"{_SKLEARN}/tree/1.2-1",
        ),
        ServingImage(
            "sklearn",
            "1.4-2-py312",
            "3.12",
            {"scikit-learn": "1.4.2", "numpy": "2.1.0", "pandas": "2.3.2"},
            f"{_SKLEARN}/tree/release-1.4-2-py312",
        ),
        ServingImage(
            "sklearn",
            "1.9-0",
            "3.12",
            {"scikit-learn": "1.9.0", "numpy": "2.5.1", "pandas": "2.2.3"},
            f"{_SKLEARN}/commit/eae7b6b (master: 'bump scikit-learn to 1.9.0')",
        ),
    ),
    "xgboost": (
        ServingImage(
            "xgboost",
            "1.5-1",
            "3.8",
            {"xgboost": "1.5.2", "numpy": "1.24.4", "pandas": "1.5.3"},
            f"{_XGBOOST}/tree/1.5-1",
        ),
        ServingImage(
            "xgboost",
            "1.7-1",
            "3.9",
            {"xgboost": "1.7.4", "numpy": "1.24.1", "pandas": "1.2.4"},
            f"{_XGBOOST}/tree/1.7-1",
        ),
        ServingImage(
            "xgboost",
            "3.0-5",
            "3.10",
            {"xgboost": "3.0.5", "numpy": "2.1.0", "pandas": "2.2.3"},
            f"{_XGBOOST}/tree/release-3.0.5",
        ),
    ),
}


@functools.cache
def table() -> dict[str, Any]:
    """The generated image table (``_image_uris.json``)."""
    text = resources.files("cloudserve_sagemaker").joinpath("_image_uris.json").read_text()
    return dict(json.loads(text))


def regions(framework: str, scope: str = "inference") -> set[str]:
    """Every region with a published ``framework`` image for ``scope``."""
    t = table()
    rows = t["frameworks"][framework][scope]["versions"].values()
    return {region for row in rows for region in t["registries"][row["registries"]]}


def image_uri(
    framework: str,
    version: str,
    region: str,
    *,
    scope: str = "inference",
    processor: str = "cpu",
) -> str:
    """The ECR URI the SageMaker Python SDK gives for this image (``image_uris.retrieve``).

    ``scope`` is ``inference`` (serving) or ``training`` (training and tuning jobs). Raises
    InvalidRequest naming what is known when the framework, version or region is not listed.
    """
    t = table()
    frameworks = t["frameworks"]
    if framework not in frameworks:
        raise InvalidRequest(
            f"framework '{framework}' has no prebuilt SageMaker container; use the container "
            "route (ModelSpec(image=...) or the target's serving_image)",
            provider="sagemaker",
        )
    config = frameworks[framework][scope]
    resolved = config["aliases"].get(version, version)
    row = config["versions"].get(resolved)
    if row is None:
        known = ", ".join(config["versions"])
        raise InvalidRequest(
            f"{framework} {scope} image version '{version}' is not published (known: {known})",
            provider="sagemaker",
        )
    accounts = t["registries"][row["registries"]]
    if region not in accounts:
        raise InvalidRequest(
            f"no prebuilt {framework} {resolved} image is published in region {region} "
            f"(published in {len(accounts)} regions); use the container route",
            provider="sagemaker",
        )
    suffixes = row["tag_suffixes"]
    # As the SDK: the tag starts with the version asked for (an alias such as "2.1" stays "2.1")
    tag = (row["tag_prefix"] or version) + (suffixes.get(processor, suffixes.get("cpu", "")))
    host = t["hosts"][region]
    return f"{accounts[region]}.dkr.{host}/{row['repository']}:{tag}"
