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


def test_tagged_state_round_trip_and_limits() -> None:
    import random

    import pytest

    from cloudserve.errors import OperationFailed
    from cloudserve.packed import TaggedState

    st = TaggedState(
        "cs:ro:", what="rollout state", provider="p", cloud="Somecloud", width=16, max_tags=10
    )
    state = {"steps": [10, 50, 100], "endpoint": "churn"}
    tags = st.tags_for(state, other_tags=2, resource="ep")
    assert all(st.owns(k) for k in tags) and not st.owns("team")
    assert all(len(v) <= 16 for v in tags.values())
    assert st.read({"team": "x", **tags}) == state
    assert st.read({"team": "x"}) is None and st.tags_for(None, other_tags=9, resource="ep") == {}
    with pytest.raises(OperationFailed, match=r"rollout state in the tags cs:ro:\* is damaged"):
        st.read({**tags, "cs:ro:00": "garbage"})
    rng = random.Random(0)
    noisy = {"blob": "".join(rng.choice("abcdefghij") for _ in range(400))}  # does not compress
    with pytest.raises(OperationFailed, match=r"has room for 7 \(Somecloud allows 10 tags"):
        st.tags_for(noisy, other_tags=2, resource="ep")
