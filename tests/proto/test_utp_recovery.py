"""Loss recovery alone: ACKs, SACKs, duplicate ACKs and timeouts against a send queue."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.proto.utp_packet import (
    EXT_SACK,
    Extension,
    Packet,
    PacketType,
    seq_add,
    seq_lt,
)
from hubswarm.proto.utp_recovery import LossRecovery
from hubswarm.proto.utp_send import (
    MAX_PAYLOAD,
    MAX_UNACKED_PACKETS,
    MtuSearch,
    SendQueue,
    Sent,
)

BIG_WINDOW = 10**9


def sent_window(first: int, count: int, *, now: float = 0.0) -> tuple[LossRecovery, SendQueue]:
    """A recovery whose ``count`` DATA packets from ``first`` on were sent once at ``now``."""
    sendq = SendQueue()
    recovery = LossRecovery(first, sendq, MtuSearch())
    for i in range(count):
        sent = Sent(seq_add(first, i), PacketType.ST_DATA, bytes(100))
        sendq.add(sent)
        sendq.transmitted(sent, now)
    return recovery, sendq


def state(ack_nr: int, sack: bytes | None = None) -> Packet:
    extensions = () if sack is None else (Extension(EXT_SACK, sack),)
    return Packet(PacketType.ST_STATE, 1, 0, 0, BIG_WINDOW, 0, ack_nr, extensions)


def test_an_ack_of_what_was_never_sent_is_implausible() -> None:
    recovery, _ = sent_window(0xFFFE, 4)  # 0xFFFE, 0xFFFF, 0, 1 sent; next is 2
    assert recovery.ack_plausible(1, next_seq=2)
    assert recovery.ack_plausible(0xFFFD, next_seq=2)  # nothing acked yet: old, no news
    assert not recovery.ack_plausible(2, next_seq=2)
    assert not recovery.ack_plausible(seq_add(0xFFFD, -MAX_UNACKED_PACKETS - 1), next_seq=2)


def test_a_cumulative_ack_pops_packets_and_samples_the_round_trip() -> None:
    recovery, sendq = sent_window(100, 5)
    assert recovery.on_ack(state(102), 105, now=0.2, peer_window=BIG_WINDOW)
    assert sorted(sendq.packets) == [103, 104]
    assert sendq.in_flight == sendq.unacked_payload == 200
    assert recovery.rtt.rtt == pytest.approx(0.2)
    assert not recovery.on_ack(state(102), 105, now=0.3, peer_window=BIG_WINDOW)


def test_karn_a_resent_packet_gives_no_round_trip() -> None:
    recovery, sendq = sent_window(7, 1)
    sendq.transmitted(sendq.packets[7], 1.0)  # resent
    assert recovery.on_ack(state(7), 8, now=1.1, peer_window=BIG_WINDOW)  # bytes acked
    assert recovery.rtt.rtt is None


def test_three_duplicate_acks_resend_the_next_packet_once_and_halve_the_window_once() -> None:
    recovery, sendq = sent_window(10, 6)
    recovery.ledbat.cwnd = 40.0 * MAX_PAYLOAD
    for _ in range(5):
        recovery.on_ack(state(9), 16, now=0.1, peer_window=BIG_WINDOW)
    lost = sendq.packets[10]
    assert (lost.need_resend, lost.urgent, lost.fast_resent) == (True, True, True)
    assert sendq.resend_pending == 1
    assert recovery.ledbat.window == 20 * MAX_PAYLOAD


def test_a_sack_of_three_after_a_hole_marks_the_hole_lost_in_one_congestion_event() -> None:
    recovery, sendq = sent_window(0, 8)
    recovery.ledbat.cwnd = 40.0 * MAX_PAYLOAD
    # ack_nr 0; bits for 3, 4, 5, 6 (bit d is seq ack_nr + 2 + d): 1 and 2 are holes.
    recovery.on_ack(state(0, bytes([0b1111_0, 0, 0, 0])), 8, now=0.1, peer_window=BIG_WINDOW)
    assert sorted(sendq.packets) == [1, 2, 7]
    assert [s.need_resend for s in sendq.packets.values()] == [True, True, False]
    assert recovery.ledbat.window == 20 * MAX_PAYLOAD


def test_a_timeout_resends_everything_the_oldest_first() -> None:
    recovery, sendq = sent_window(50, 3)
    recovery.ledbat.cwnd = 10.0 * MAX_PAYLOAD
    recovery.on_timeout(53)
    assert recovery.ledbat.window == MAX_PAYLOAD
    assert [s.need_resend for s in sendq.packets.values()] == [True] * 3
    assert [s.urgent for s in sendq.packets.values()] == [True, False, False]
    assert (sendq.in_flight, sendq.resend_pending) == (0, 3)


def test_zero_and_the_bogus_delay_sample_are_no_samples() -> None:
    recovery, _ = sent_window(0, 0)
    recovery.delay_sample(0, 0.0)
    recovery.delay_sample(0x7FFFFFFF, 0.0)
    assert not recovery.recent_delays
    recovery.delay_sample(5000, 0.0)
    assert list(recovery.recent_delays) == [0]


@given(
    st.integers(0, 0xFFFF),
    st.integers(1, 40),
    st.lists(
        st.tuples(
            st.integers(-45, 45),
            st.one_of(st.none(), st.binary(min_size=4, max_size=8)),
            st.booleans(),
        ),
        max_size=30,
    ),
)
def test_any_ack_sequence_keeps_the_books_straight(
    first: int, count: int, arrivals: list[tuple[int, bytes | None, bool]]
) -> None:
    recovery, sendq = sent_window(first, count)
    next_seq = seq_add(first, count)
    for offset, sack, timeout in arrivals:
        ack_nr = seq_add(first, offset)
        if recovery.ack_plausible(ack_nr, next_seq):
            recovery.on_ack(state(ack_nr, sack), next_seq, now=0.5, peer_window=BIG_WINDOW)
        if timeout and sendq.packets:
            recovery.on_timeout(next_seq)
        packets = list(sendq.packets.values())
        assert sendq.in_flight == sum(len(s.payload) for s in packets if s.in_flight)
        assert sendq.unacked_payload == sum(len(s.payload) for s in packets)
        assert sendq.resend_pending == sum(s.need_resend for s in packets)
        assert recovery.ledbat.window >= MAX_PAYLOAD
        assert all(seq_lt(recovery.acked_seq, s.seq_nr) for s in packets)
