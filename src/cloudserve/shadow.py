"""Shadow traffic: how a mirrored variant answered, compared with production.

``client.deploy(model, endpoint, shadow=20)`` deploys a variant that answers no caller while a
fifth of the endpoint's requests are also sent to it. Each mirrored request is kept as a
:class:`~cloudserve.resources.ShadowPair` (one request id, both answers, both latencies); this
module turns the pairs of a window into a :class:`~cloudserve.resources.ShadowReport`: the
agreement rate of the outputs, latencies and errors on each side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cloudserve.resources import ShadowPair, ShadowReport

__all__ = ["outputs_agree", "shadow_report"]

#: How many disagreeing pairs a report keeps as examples.
EXAMPLES = 5


def outputs_agree(a: Any, b: Any, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Whether two answers are the same: equal labels, numbers within a tolerance, same shape."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            outputs_agree(x, y, rel_tol=rel_tol, abs_tol=abs_tol) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(outputs_agree(a[k], b[k]) for k in a)
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(a == b)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def shadow_report(
    pairs: Sequence[ShadowPair],
    *,
    endpoint: str,
    provider: str,
    window_s: float,
    production_invocations: int,
) -> ShadowReport:
    """Join the window's mirrored pairs into one report."""
    answered = [p for p in pairs if p.production_error is None and p.shadow_error is None]
    disagree = [p for p in answered if not outputs_agree(p.production_outputs, p.shadow_outputs)]
    prod_ms = [p.production_latency_ms for p in pairs if p.production_latency_ms is not None]
    shadow_ms = [p.shadow_latency_ms for p in pairs if p.shadow_latency_ms is not None]
    variants = {p.shadow_variant for p in pairs}
    return ShadowReport(
        endpoint=endpoint,
        provider=provider,
        window_s=window_s,
        shadow_variant=variants.pop() if len(variants) == 1 else None,
        mirrored=len(pairs),
        production_invocations=production_invocations,
        both_answered=len(answered),
        agreement_rate=(len(answered) - len(disagree)) / len(answered) if answered else None,
        production_p50_ms=_percentile(prod_ms, 50),
        production_p99_ms=_percentile(prod_ms, 99),
        shadow_p50_ms=_percentile(shadow_ms, 50),
        shadow_p99_ms=_percentile(shadow_ms, 99),
        production_errors=sum(p.production_error is not None for p in pairs),
        shadow_errors=sum(p.shadow_error is not None for p in pairs),
        disagreements=disagree[:EXAMPLES],
    )
