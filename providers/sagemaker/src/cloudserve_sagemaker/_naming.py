"""Names and tags of what cloudserve creates in SageMaker.

SageMaker names are unique per account and region, at most 63 characters of letters, digits
and hyphens. cloudserve derives them from the endpoint, the variant and a hash of what they
hold, so the same spec always maps to the same names (that is what makes a repeated deploy a
no-op) and every resource carries the ``cloudserve:endpoint`` tag that delete looks for.
"""

from __future__ import annotations

import re
import time
import uuid

__all__ = [
    "ENDPOINT_TAG",
    "MANAGED_TAG",
    "config_name",
    "job_name",
    "model_name",
    "tags",
    "trim",
]

MANAGED_TAG = "cloudserve:managed"
ENDPOINT_TAG = "cloudserve:endpoint"
MAX_NAME = 63


def trim(name: str, limit: int = MAX_NAME) -> str:
    """``name`` cut to ``limit`` characters without a trailing hyphen."""
    return re.sub(r"-+$", "", name[:limit])


def model_name(endpoint: str, variant: str, digest: str) -> str:
    """The SageMaker model serving ``variant`` of ``endpoint`` with content hash ``digest``."""
    suffix = f"-{digest[:10]}"
    return trim(f"{endpoint}-{variant}", MAX_NAME - len(suffix)) + suffix


def config_name(endpoint: str, digest: str) -> str:
    """The endpoint config of ``endpoint`` whose variants hash to ``digest``."""
    suffix = f"-c{digest[:10]}"
    return trim(endpoint, MAX_NAME - len(suffix)) + suffix


def job_name(kind: str, base: str, limit: int = MAX_NAME) -> str:
    """A unique job name: ``cs-<kind>-<base>-<time><random>`` within ``limit`` characters."""
    suffix = f"-{time.strftime('%m%d%H%M%S')}{uuid.uuid4().hex[:4]}"
    return trim(f"cs-{kind}-{base}", limit - len(suffix)) + suffix


def tags(extra: dict[str, str], endpoint: str | None = None) -> list[dict[str, str]]:
    """SageMaker ``Tags``: the user's, the managed marker and the owning endpoint."""
    merged = {**extra, MANAGED_TAG: "true"}
    if endpoint:
        merged[ENDPOINT_TAG] = endpoint
    return [{"Key": k, "Value": v} for k, v in sorted(merged.items())]
