"""Shadow traffic on SageMaker: the mirrored requests of a window, joined from data capture.

A shadow deploy (``deploy(..., shadow=20)``) puts the new variant in the endpoint config's
``ShadowProductionVariants`` beside the one production variant, with data capture of inputs and
outputs on. SageMaker writes each variant's captures under its own folder,
``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``. cloudserve sends an ``InferenceId``
with every ``InvokeEndpoint`` ("if you provide a value, it is added to the captured data"), so
a production capture and the shadow capture of the same request carry the same
``eventMetadata.inferenceId``; requests without one (sent by other clients) are joined by
``eventId`` when both captures share it. What the documentation does not say — that the
mirrored copy keeps the caller's ``InferenceId`` — is noted in ``docs/providers/sagemaker.md``.

Which variant was the shadow is read from the endpoint config: its ``ShadowProductionVariants``
and the ``cloudserve:shadow`` tag the shadow deploy set (kept when the shadow is promoted, so
the pairs mirrored before the promotion still count).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cloudserve.resources import ShadowPair
from cloudserve_sagemaker import _endpoints as endpoints
from cloudserve_sagemaker._api import Api
from cloudserve_sagemaker._monitor import capture_events, decode_part

__all__ = ["SHADOW_TAG", "shadow_pairs"]

SHADOW_TAG = endpoints.SHADOW_TAG


def _shadow_names(api: Api, endpoint: str) -> set[str]:
    current = endpoints.describe_current(api, endpoint, missing_ok=False)
    assert current is not None
    config = current["config"]
    names = {r["VariantName"] for r in config.get("ShadowProductionVariants") or []}
    tag = endpoints.list_tags(api, config["EndpointConfigArn"]).get(SHADOW_TAG)
    return names | ({tag} if tag else set())


def _key(event: dict[str, Any]) -> str | None:
    meta = event.get("eventMetadata") or {}
    return meta.get("inferenceId") or meta.get("eventId")


def _outputs(event: dict[str, Any]) -> list[Any] | None:
    from cloudserve import codecs

    part = (event.get("captureData") or {}).get("endpointOutput")
    return codecs.decode_predictions(*decode_part(part)) if part else None


def _time(event: dict[str, Any]) -> float:
    text = (event.get("eventMetadata") or {}).get("inferenceTime", "")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def shadow_pairs(api: Api, endpoint: str, window_s: float) -> list[ShadowPair]:
    """Each request mirrored over the window: production's captured answer beside the
    shadow's, oldest first. Latencies are CloudWatch's (per variant), not per request."""
    shadows = _shadow_names(api, endpoint)
    production: dict[str, tuple[str, dict[str, Any]]] = {}
    mirrored: dict[str, tuple[str, dict[str, Any]]] = {}
    for variant, event in capture_events(api, endpoint, window_s, why="shadow"):
        key = _key(event)
        if key is not None:
            (mirrored if variant in shadows else production)[key] = (variant, event)
    pairs = []
    for key, (shadow, event) in mirrored.items():
        found = production.get(key)
        if found is None:
            continue
        variant, prod = found
        pairs.append(
            ShadowPair(
                request_id=key,
                ts=_time(prod),
                production_variant=variant,
                shadow_variant=shadow,
                production_outputs=_outputs(prod),
                shadow_outputs=_outputs(event),
            )
        )
    return sorted(pairs, key=lambda p: p.ts)
