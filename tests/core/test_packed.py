"""cloudserve.packed: a JSON object in short strings that any cloud's tag values accept."""

import re

import pytest

from cloudserve.packed import pack, unpack

# the narrowest tag alphabet among the clouds (SageMaker / AWS tag values)
TAG_VALUE = re.compile(r"^[\w.:/=+\-@ ]*$")


def test_a_state_round_trips_through_pieces_of_the_given_width() -> None:
    state = {"history": [{"n": i, "detail": f"figure {i * 7919 % 10007}"} for i in range(300)]}
    pieces = pack(state, 256)
    assert len(pieces) > 1 and all(0 < len(p) <= 256 for p in pieces)
    assert all(TAG_VALUE.match(p) for p in pieces)
    assert unpack(pieces) == state


def test_damaged_or_foreign_pieces_are_a_value_error() -> None:
    pieces = pack({"a": 1}, 8)
    with pytest.raises(ValueError, match="not a packed JSON object"):
        unpack(pieces[1:])
    with pytest.raises(ValueError, match="not an object"):
        unpack(pack([1, 2], 256))  # type: ignore[arg-type]
