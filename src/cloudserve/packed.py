"""A JSON object packed into short strings, for clouds that keep state only in tags or labels.

``pack`` compresses the object (zlib), encodes it base64url (letters, digits, ``-``, ``_``,
``=``, which every cloud's tag alphabet accepts) and cuts it into pieces of at most ``width``
characters; ``unpack`` joins the pieces back. Providers record a rollout's state this way in an
endpoint's tags (SageMaker, Azure ML: 256-character values).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from typing import Any

__all__ = ["pack", "unpack"]


def pack(state: dict[str, Any], width: int) -> list[str]:
    """``state`` as strings of at most ``width`` characters."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    text = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode()
    return [text[i : i + width] for i in range(0, len(text), width)]


def unpack(pieces: Sequence[str]) -> dict[str, Any]:
    """The object ``pack`` cut into ``pieces``; ``ValueError`` when they do not hold one."""
    try:
        state = json.loads(zlib.decompress(base64.urlsafe_b64decode("".join(pieces))))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"not a packed JSON object: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError("not a packed JSON object: the JSON is not an object")
    return state
