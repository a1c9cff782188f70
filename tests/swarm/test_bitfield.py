"""Bitfield: wire layout (BEP 3), spare bits, counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import RemoteProtocolError
from hubswarm.swarm.bitfield import Bitfield


def test_bit_order_is_high_bit_first() -> None:
    bf = Bitfield(10)
    bf.set(0)
    bf.set(9)
    assert bf.to_bytes() == b"\x80\x40"
    assert list(bf) == [0, 9]
    assert bf.count() == 2
    assert 9 in bf
    assert 8 not in bf
    bf.clear(0)
    assert list(bf) == [9]
    assert bf.count() == 1


def test_all_and_none() -> None:
    assert Bitfield.all(10).to_bytes() == b"\xff\xc0"
    assert Bitfield.all(10).is_complete
    assert Bitfield.none(10).is_empty
    assert Bitfield.all(16).to_bytes() == b"\xff\xff"
    assert list(Bitfield.all(3).missing()) == []
    assert list(Bitfield.none(3).missing()) == [0, 1, 2]


def test_from_bytes_rejects_spare_bits_and_bad_length() -> None:
    with pytest.raises(RemoteProtocolError):
        Bitfield.from_bytes(b"\xff\xe0", 10)  # bit 10 is spare
    with pytest.raises(RemoteProtocolError):
        Bitfield.from_bytes(b"\xff", 10)
    assert Bitfield.from_bytes(b"\xff\xc0", 10).count() == 10


def test_index_errors() -> None:
    bf = Bitfield(3)
    with pytest.raises(IndexError):
        bf.set(3)
    with pytest.raises(IndexError):
        _ = bf[-1]


@given(
    st.integers(0, 200).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, max(0, n - 1))))
    )
)
def test_roundtrip(case: tuple[int, set[int]]) -> None:
    n, indices = case
    indices = {i for i in indices if i < n}
    bf = Bitfield.from_indices(n, indices)
    back = Bitfield.from_bytes(bf.to_bytes(), n)
    assert back == bf
    assert set(back) == indices
    assert back.count() == len(indices)
    assert set(back.missing()) == set(range(n)) - indices
