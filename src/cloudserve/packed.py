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

from cloudserve.errors import OperationFailed

__all__ = ["TaggedState", "pack", "unpack"]


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


class TaggedState:
    """A JSON object kept in a resource's tags: ``PREFIX00``, ``PREFIX01`` … hold the pieces of
    :func:`pack` and ``PREFIXn`` their count (no count tag: no state).

    ``what`` names the state and ``provider`` the provider in errors (``OperationFailed``);
    ``cloud`` names the service and ``max_tags`` its tags-per-resource limit.
    """

    def __init__(
        self,
        prefix: str,
        *,
        what: str,
        provider: str,
        cloud: str,
        width: int = 256,
        max_tags: int = 50,
    ):
        self.prefix, self.what, self.provider = prefix, what, provider
        self.cloud, self.width, self.max_tags = cloud, width, max_tags
        self.count_tag = prefix + "n"

    def owns(self, key: str) -> bool:
        """Whether a tag is one of the state's (callers hide these from users)."""
        return key.startswith(self.prefix)

    def read(self, tags: dict[str, str]) -> dict[str, Any] | None:
        """The state ``tags`` hold, or None; ``OperationFailed`` naming the tags when damaged."""
        if self.count_tag not in tags:
            return None
        try:
            n = int(tags[self.count_tag])
            return unpack([tags[f"{self.prefix}{i:02d}"] for i in range(n)])
        except (KeyError, ValueError) as exc:
            raise OperationFailed(
                f"the {self.what} in the tags {self.prefix}* is damaged: {exc}",
                provider=self.provider,
            ) from exc

    def tags_for(
        self, state: dict[str, Any] | None, *, other_tags: int, resource: str
    ) -> dict[str, str]:
        """The state's tags (empty for None); ``OperationFailed`` when they do not fit beside
        the resource's ``other_tags``."""
        if state is None:
            return {}
        pieces = pack(state, self.width)
        room = self.max_tags - other_tags - 1
        if len(pieces) > room:
            raise OperationFailed(
                f"the {self.what} needs {len(pieces)} tags of {self.width} characters and"
                f" {resource} has room for {max(room, 0)} ({self.cloud} allows"
                f" {self.max_tags} tags a resource)",
                provider=self.provider,
            )
        return {self.count_tag: str(len(pieces))} | {
            f"{self.prefix}{i:02d}": p for i, p in enumerate(pieces)
        }
