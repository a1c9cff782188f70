"""The receiving half of a uTP stream: any arrival order gives the bytes in order, once."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto.utp_packet import sack_seq_nrs, seq_add
from hubswarm.proto.utp_recv import MAX_REORDER_PACKETS, ReceiveBuffer

BIG = 10**9


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.binary(max_size=50), max_size=60),
    st.randoms(use_true_random=False),
    st.floats(0.0, 0.5),
)
def test_any_order_with_duplicates_delivers_in_order_once(
    first: int, chunks: list[bytes], rng: random.Random, dup: float
) -> None:
    buf = ReceiveBuffer(BIG, slack=0)
    buf.ack_nr = seq_add(first, -1)
    fin_seq = seq_add(first, len(chunks))
    arrivals = [(seq_add(first, i), c, False) for i, c in enumerate(chunks)]
    arrivals.append((fin_seq, b"", True))
    arrivals += [a for a in arrivals if rng.random() < dup]
    rng.shuffle(arrivals)
    got = bytearray()
    ends = 0
    for seq_nr, payload, fin in arrivals:
        data, ended = buf.receive(seq_nr, payload, fin=fin)
        got += data
        ends += ended
    assert bytes(got) == b"".join(chunks)
    assert ends == 1
    assert buf.eof
    assert buf.ack_nr == fin_seq
    assert buf.held == 0
    assert buf.unread == len(got)


def test_sack_reports_what_is_held() -> None:
    buf = ReceiveBuffer(BIG, slack=0)
    buf.ack_nr = 0xFFFE
    for seq_nr in (1, 2, 5):
        assert buf.receive(seq_nr, b"x", fin=False) == (b"", False)
    assert list(sack_seq_nrs(buf.ack_nr, buf.sack())) == [1, 2, 5]
    assert buf.receive(0xFFFF, b"a", fin=False) == (b"a", False)
    assert buf.receive(0, b"b", fin=False) == (b"bxx", False)
    assert list(sack_seq_nrs(buf.ack_nr, buf.sack())) == [5]


def test_reach_and_room_are_bounded() -> None:
    buf = ReceiveBuffer(1000, slack=100)
    assert buf.receive(MAX_REORDER_PACKETS + 1, b"far", fin=False) == (b"", False)
    assert buf.held == 0
    assert buf.receive(2, b"x" * 900, fin=False) == (b"", False)
    assert buf.window == 100
    assert buf.receive(3, b"y" * 201, fin=False) == (b"", False)  # past window + slack
    assert buf.held == 1
    assert buf.receive(3, b"y" * 200, fin=False) == (b"", False)
    assert buf.window == 0


def test_a_second_fin_or_data_past_the_fin_is_an_error() -> None:
    buf = ReceiveBuffer(BIG, slack=0)
    buf.receive(5, b"", fin=True)
    with pytest.raises(RemoteProtocolError):
        buf.receive(6, b"late", fin=False)
    with pytest.raises(RemoteProtocolError):
        buf.receive(4, b"", fin=True)
    assert buf.receive(5, b"", fin=True) == (b"", False)  # a repeat is fine
