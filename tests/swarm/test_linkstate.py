"""The session's record of a link (pure): have-sets before and after the metadata."""

from __future__ import annotations

import pytest

from hubswarm.errors import RemoteProtocolError
from hubswarm.swarm.linkstate import LinkState


def test_haves_before_the_metadata_become_the_have_set() -> None:
    st = LinkState()
    st.remember_have(3)
    st.remember_have(1)
    has = st.adopt(8)
    assert has is not None
    assert list(has) == [1, 3]
    assert st.pending_haves == set()
    assert not st.is_seed
    assert st.adopt(8) is None  # once


def test_a_bitfield_or_have_all_before_the_metadata() -> None:
    st = LinkState(pending_bitfield=bytes([0b1010_0000]))
    has = st.adopt(3)
    assert has is not None
    assert list(has) == [0, 2]
    everything = LinkState(pending_all=True)
    assert everything.adopt(5) is not None
    assert everything.is_seed


def test_a_have_beyond_the_last_piece_or_a_wrong_bitfield_is_a_violation() -> None:
    st = LinkState()
    st.remember_have(9)
    with pytest.raises(RemoteProtocolError):
        st.adopt(8)
    with pytest.raises(RemoteProtocolError):
        LinkState(pending_bitfield=b"\xff\xff").adopt(8)


def test_a_late_bitfield_adds_only_new_pieces() -> None:
    st = LinkState(pending_bitfield=bytes([0b1000_0000]))
    st.adopt(4)
    assert st.merge_late(bytes([0b1100_0000]), everything=False) == [1]
    assert st.merge_late(b"", everything=True) == [2, 3]
    assert st.is_seed
