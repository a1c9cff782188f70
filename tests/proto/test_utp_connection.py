"""UtpConnection byte by byte: handshake, SYN floods, timers, ACKs, bounds and errors."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.proto.ledbat import INITIAL_RTO, MAX_RTO, MIN_RTO
from hubswarm.proto.utp import (
    DEFAULT_RECV_WINDOW,
    FIN_RESENDS,
    MAX_PAYLOAD,
    MAX_REORDER_PACKETS,
    MAX_UNACKED_PACKETS,
    NUM_RESENDS,
    SYN_RECV_TIMEOUT,
    SYN_RESENDS,
    Closed,
    Connected,
    ConnectionReset,
    Data,
    EndOfStream,
    State,
    TimedOut,
    UtpConnection,
)
from hubswarm.proto.utp_packet import (
    HEADER_SIZE,
    Packet,
    PacketType,
    decode,
    encode,
    sack_seq_nrs,
    seq_add,
)


def pair(
    seed: int = 0, now: float = 0.0, **accept_kwargs: int
) -> tuple[UtpConnection, UtpConnection]:
    """A connected initiator ``a`` and responder ``b`` (b confirmed by a's first DATA)."""
    rng = random.Random(seed)
    a = UtpConnection.initiator(rng)
    (syn,) = a.connect(now)
    b = UtpConnection.accept(decode(syn), now, rng, **accept_kwargs)
    (state,) = b.datagrams_to_send(now)
    assert a.receive_datagram(state, now) == [Connected()]
    return a, b


def confirm(a: UtpConnection, b: UtpConnection, now: float) -> None:
    a.send(b"hello")
    (data,) = a.datagrams_to_send(now)
    assert b.receive_datagram(data, now) == [Connected(), Data(b"hello")]
    b.acknowledge_received_data(5)
    (ack,) = b.datagrams_to_send(now)
    assert a.receive_datagram(ack, now) == []


def packets(datagrams: list[bytes]) -> list[Packet]:
    return [decode(d) for d in datagrams]


# --- handshake ------------------------------------------------------------------------------


def test_handshake_ids_and_numbers_follow_bep29() -> None:
    rng = random.Random(1)
    a = UtpConnection.initiator(rng, recv_id=0xFFFF)
    assert a.send_id == 0  # recv_id + 1, wrapping
    (syn_bytes,) = a.connect(10.0)
    syn = decode(syn_bytes)
    assert syn.type is PacketType.ST_SYN
    assert syn.connection_id == 0xFFFF  # the SYN carries the initiator's recv_id
    assert syn.ack_nr == 0
    assert syn.timestamp_microseconds == 10_000_000
    assert len(syn_bytes) == HEADER_SIZE
    assert a.state is State.SYN_SENT

    b = UtpConnection.accept(syn, 10.001, rng)
    assert (b.recv_id, b.send_id) == (0, 0xFFFF)
    assert b.state is State.SYN_RECV
    (state_bytes,) = b.datagrams_to_send(10.001)
    state = decode(state_bytes)
    assert state.type is PacketType.ST_STATE
    assert state.connection_id == a.recv_id
    assert state.ack_nr == syn.seq_nr
    assert state.timestamp_difference_microseconds == 1000  # echoes the SYN's delay
    assert len(state_bytes) == HEADER_SIZE

    assert a.receive_datagram(state_bytes, 10.002) == [Connected()]
    assert a.state is State.CONNECTED
    a.send(b"ping")
    (data_bytes,) = a.datagrams_to_send(10.002)
    data = decode(data_bytes)
    assert data.type is PacketType.ST_DATA
    assert data.connection_id == b.recv_id
    assert data.seq_nr == seq_add(syn.seq_nr, 1)
    assert data.ack_nr == seq_add(state.seq_nr, -1)  # STATE does not consume a seq_nr
    assert data.payload == b"ping"

    assert b.receive_datagram(data_bytes, 10.003) == [Connected(), Data(b"ping")]
    b.send(b"pong")
    (reply_bytes,) = b.datagrams_to_send(10.003)
    reply = decode(reply_bytes)
    assert reply.seq_nr == state.seq_nr  # the responder's first DATA takes the STATE's seq_nr
    assert reply.ack_nr == data.seq_nr
    assert a.receive_datagram(reply_bytes, 10.004) == [Data(b"pong")]


def test_a_reset_answer_to_the_syn_is_a_refusal() -> None:
    rng = random.Random(2)
    a = UtpConnection.initiator(rng)
    (syn,) = a.connect(0.0)
    reset = Packet(PacketType.ST_RESET, a.recv_id, 1, 0, 0, 77, decode(syn).seq_nr)
    assert a.receive_datagram(encode(reset), 0.1) == [ConnectionReset()]
    assert a.state is State.RESET
    assert a.timeout_at() is None


# --- SYN floods --------------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=1400)),
        min_size=1,
        max_size=50,
    )
)
def test_each_spoofed_syn_gets_at_most_one_header_sized_state(
    syns: list[tuple[int, int, bytes]],
) -> None:
    rng = random.Random(3)
    for conn_id, seq_nr, payload in syns:
        syn = Packet(PacketType.ST_SYN, conn_id, 123, 0, 0, seq_nr, 0, (), payload)
        b = UtpConnection.accept(syn, 5.0, rng)
        out = b.datagrams_to_send(5.0)
        assert [len(d) for d in out] == [HEADER_SIZE]
        assert decode(out[0]).type is PacketType.ST_STATE
        assert b.datagrams_to_send(5.1) == []
        # Queued data waits for the initiator to prove its address.
        b.send(b"x" * 5000)
        assert b.datagrams_to_send(5.2) == []
        # A repeated SYN (our STATE lost) gets one more STATE, no more.
        assert b.receive_datagram(encode(syn), 6.0) == []
        assert [len(d) for d in b.datagrams_to_send(6.0)] == [HEADER_SIZE]
        # Nobody confirms: it gives up silently, never retransmitting.
        deadline = b.timeout_at()
        assert deadline == 6.0 + SYN_RECV_TIMEOUT
        assert b.on_timeout(deadline) == [TimedOut()]
        assert b.datagrams_to_send(deadline) == []
        assert b.state is State.TIMED_OUT


def test_a_syn_for_someone_else_is_not_answered() -> None:
    _a, b = pair()
    other = Packet(PacketType.ST_SYN, (b.send_id + 7) & 0xFFFF, 1, 0, 0, 5, 0)
    assert b.receive_datagram(encode(other), 0.1) == []
    assert b.datagrams_to_send(0.1) == []
    assert b.state is State.SYN_RECV


def test_accept_needs_a_syn() -> None:
    with pytest.raises(LocalProtocolError):
        UtpConnection.accept(Packet(PacketType.ST_DATA, 1, 0, 0, 0, 0, 0), 0.0, random.Random())


# --- timers ---------------------------------------------------------------------------------


def test_unanswered_syn_backs_off_and_gives_up() -> None:
    a = UtpConnection.initiator(random.Random(4))
    sent_at = [0.0]
    a.connect(0.0)
    events: list[object] = []
    while a.state is State.SYN_SENT:
        deadline = a.timeout_at()
        assert deadline is not None
        events += a.on_timeout(deadline)
        resent = a.datagrams_to_send(deadline)
        if resent:
            assert [decode(d).type for d in resent] == [PacketType.ST_SYN]
            sent_at.append(deadline)
    assert events == [TimedOut()]
    assert len(sent_at) == 1 + SYN_RESENDS
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert gaps == [INITIAL_RTO * 2**i for i in range(SYN_RESENDS)]


def test_data_timeouts_back_off_exponentially_then_give_up() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.send(b"z" * 10 * MAX_PAYLOAD)
    first = a.datagrams_to_send(1.0)
    assert first
    assert a.timeout_at() == 1.0 + MIN_RTO  # rtt of 0 measured: the 500 ms floor
    retransmits: list[tuple[float, int]] = []
    events: list[object] = []
    while a.state is State.CONNECTED:
        deadline = a.timeout_at()
        assert deadline is not None
        events += a.on_timeout(deadline)
        out = packets(a.datagrams_to_send(deadline))
        if a.state is State.CONNECTED:
            # After a timeout the window is one packet: only the oldest goes again.
            assert [p.seq_nr for p in out] == [decode(first[0]).seq_nr]
            retransmits.append((deadline, len(out)))
    assert events == [TimedOut()]
    assert len(retransmits) == NUM_RESENDS
    times = [1.0] + [t for t, _ in retransmits]
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert gaps == pytest.approx([min(MAX_RTO, MIN_RTO * 2**i) for i in range(NUM_RESENDS)])
    assert a.datagrams_to_send(100.0) == []
    assert a.timeout_at() is None


def test_an_ack_resets_the_back_off() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.send(b"q" * MAX_PAYLOAD)
    (_lost,) = a.datagrams_to_send(1.0)
    assert a.on_timeout(1.5) == []
    (again,) = a.datagrams_to_send(1.5)
    assert a.timeout_at() == pytest.approx(1.5 + 2 * MIN_RTO)
    assert b.receive_datagram(again, 1.6) == [Data(b"q" * MAX_PAYLOAD)]
    assert a.receive_datagram(b.datagrams_to_send(1.6)[0], 1.7) == []
    assert a.timeout_at() is None  # nothing outstanding
    a.send(b"r")
    a.datagrams_to_send(2.0)
    assert a.timeout_at() == pytest.approx(2.0 + MIN_RTO)


def test_fin_is_retried_then_given_up() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.close()
    (fin,) = packets(a.datagrams_to_send(1.0))
    assert fin.type is PacketType.ST_FIN
    assert a.state is State.FIN_SENT
    count = 0
    while a.state is State.FIN_SENT:
        deadline = a.timeout_at()
        assert deadline is not None
        a.on_timeout(deadline)
        count += len(a.datagrams_to_send(deadline))
    assert count == FIN_RESENDS
    assert a.state is State.TIMED_OUT


# --- acknowledgements -----------------------------------------------------------------------


def test_three_duplicate_acks_trigger_fast_retransmit() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.send(b"d" * 5 * MAX_PAYLOAD)
    out = packets(a.datagrams_to_send(1.0))
    # a's window is small right after the handshake; take what it sent.
    assert len(out) >= 1
    first = out[0]
    dup = Packet(
        PacketType.ST_STATE, a.recv_id, 1, 0, DEFAULT_RECV_WINDOW, 0, seq_add(first.seq_nr, -1)
    )
    for _ in range(2):
        a.receive_packet(dup, 1.01)
        assert a.datagrams_to_send(1.01) == []
    a.receive_packet(dup, 1.02)
    resent = packets(a.datagrams_to_send(1.02))
    assert [p.seq_nr for p in resent][:1] == [first.seq_nr]
    assert resent[0].payload == first.payload
    # Only once per packet: more duplicates do not resend it again.
    a.receive_packet(dup, 1.03)
    assert all(p.seq_nr != first.seq_nr for p in packets(a.datagrams_to_send(1.03)))


def test_selective_acks_out_and_in() -> None:
    a, b = pair(seed=9)
    confirm(a, b, 0.0)
    # Grow a's window so that it sends several packets at once.
    a._recovery.ledbat.cwnd = 10 * MAX_PAYLOAD
    a.send(bytes(range(256)) * 30)
    out = a.datagrams_to_send(1.0)
    assert len(out) >= 5
    seqs = [decode(d).seq_nr for d in out]
    # The first packet is lost; b gets the rest and reports them selectively.
    delivered: list[object] = []
    for d in out[1:]:
        delivered += b.receive_datagram(d, 1.05)
    assert delivered == []
    assert b.reorder_buffered == len(out) - 1
    (ack,) = packets(b.datagrams_to_send(1.05))
    assert ack.ack_nr == seq_add(seqs[0], -1)
    assert ack.sack is not None
    assert len(ack.sack) % 4 == 0
    assert list(sack_seq_nrs(ack.ack_nr, ack.sack)) == seqs[1:]
    # a frees the selectively acked packets and resends the hole at once.
    assert a.receive_packet(ack, 1.1) == []
    assert a.in_flight == 0
    resent = packets(a.datagrams_to_send(1.1))
    assert resent[0].seq_nr == seqs[0]
    got = b.receive_packet(resent[0], 1.15)
    assert got == [Data(b"".join(decode(d).payload for d in out))]
    assert b.reorder_buffered == 0


def test_duplicates_are_delivered_once_and_acked_again() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.send(b"once")
    (d,) = a.datagrams_to_send(1.0)
    assert b.receive_datagram(d, 1.1) == [Data(b"once")]
    assert len(b.datagrams_to_send(1.1)) == 1
    assert b.receive_datagram(d, 1.2) == []
    (ack,) = packets(b.datagrams_to_send(1.2))
    assert ack.type is PacketType.ST_STATE
    assert ack.ack_nr == decode(d).seq_nr


def test_forged_acks_and_foreign_ids_are_dropped() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.send(b"abc")
    a.datagrams_to_send(1.0)
    ahead = Packet(PacketType.ST_STATE, a.recv_id, 1, 0, 9999, 0, seq_add(a.seq_nr, 5))
    assert a.receive_packet(ahead, 1.1) == []
    assert a.unacked_bytes == 3
    wrong_id = Packet(
        PacketType.ST_RESET, (a.recv_id + 1) & 0xFFFF, 1, 0, 0, 0, seq_add(a.seq_nr, -1)
    )
    assert a.receive_packet(wrong_id, 1.1) == []
    forged_reset = Packet(PacketType.ST_RESET, a.recv_id, 1, 0, 0, 0, seq_add(a.seq_nr, 9))
    assert a.receive_packet(forged_reset, 1.1) == []
    assert a.state is State.CONNECTED


# --- bounds ---------------------------------------------------------------------------------


def test_the_reorder_buffer_and_the_receive_window_are_bounded() -> None:
    a, b = pair(recv_window=64 * 1024)
    confirm(a, b, 0.0)
    base = seq_add(a.seq_nr, -1)  # the last seq_nr b received in order
    # Out-of-order packets far ahead, then a flood inside the reorder window.
    far = _data(a, seq_add(base, MAX_REORDER_PACKETS + 10), b"x" * 100)
    assert b.receive_packet(far, 1.0) == []
    assert b.reorder_buffered == 0
    for i in range(2, 2000):
        b.receive_packet(_data(a, seq_add(base, i), b"y" * MAX_PAYLOAD), 1.0)
    assert b.reorder_buffered <= MAX_REORDER_PACKETS
    assert b.reorder_buffered * MAX_PAYLOAD <= 64 * 1024 + MAX_PAYLOAD
    assert b.receive_window == 0
    (ack,) = packets(b.datagrams_to_send(1.0))
    assert ack.wnd_size == 0
    assert ack.size <= 1400


def _data(a: UtpConnection, seq_nr: int, payload: bytes) -> Packet:
    """A DATA packet as ``a`` would send it to its peer."""
    return Packet(
        PacketType.ST_DATA,
        a.send_id,
        1,
        0,
        DEFAULT_RECV_WINDOW,
        seq_nr,
        a.ack_nr,
        (),
        payload,
    )


def test_an_unread_window_closes_and_reopens_with_an_update() -> None:
    a, b = pair(recv_window=4 * MAX_PAYLOAD)
    confirm(a, b, 0.0)
    a._recovery.ledbat.cwnd = 20 * MAX_PAYLOAD
    a.send(b"w" * 10 * MAX_PAYLOAD)
    received = 0
    now = 1.0
    for _ in range(6):
        for d in a.datagrams_to_send(now):
            for e in b.receive_datagram(d, now):
                assert isinstance(e, Data)
                received += len(e.data)
        for d in b.datagrams_to_send(now):
            a.receive_datagram(d, now)
        now += 0.1
    assert received <= 5 * MAX_PAYLOAD
    assert b.receive_window < MAX_PAYLOAD
    assert a.in_flight <= MAX_PAYLOAD
    b.acknowledge_received_data(received)
    (update,) = packets(b.datagrams_to_send(now))
    assert update.type is PacketType.ST_STATE
    assert update.wnd_size >= 4 * MAX_PAYLOAD - MAX_PAYLOAD
    with pytest.raises(LocalProtocolError):
        b.acknowledge_received_data(1)


def test_the_send_buffer_and_unacked_packets_are_bounded() -> None:
    rng = random.Random(11)
    a = UtpConnection.initiator(rng, send_buffer=50_000)
    a.send(b"s" * 50_000)
    assert a.send_buffer_free == 0
    with pytest.raises(LocalProtocolError):
        a.send(b"!")
    big = UtpConnection.initiator(rng)
    (syn,) = big.connect(0.0)
    peer = UtpConnection.accept(decode(syn), 0.0, rng, recv_window=0xFFFFFFFF)
    big.receive_datagram(peer.datagrams_to_send(0.0)[0], 0.0)
    big._recovery.ledbat.cwnd = 1e12
    big._peer_wnd = 0xFFFFFFFF
    big.send(bytes(big.send_buffer_free))
    sent = big.datagrams_to_send(0.1)
    assert len(sent) == MAX_UNACKED_PACKETS
    assert big.datagrams_to_send(0.2) == []


def test_misuse_is_a_local_error() -> None:
    a, _b = pair()
    with pytest.raises(LocalProtocolError):
        a.connect(0.0)
    a.close()
    with pytest.raises(LocalProtocolError):
        a.send(b"late")
    idle = UtpConnection.initiator(random.Random(1))
    with pytest.raises(LocalProtocolError):
        idle.receive_datagram(b"\x21" + bytes(19), 0.0)
    with pytest.raises(LocalProtocolError):
        UtpConnection(recv_id=70000, send_id=1, rng=random.Random())


# --- errors, FIN and reset --------------------------------------------------------------------


def test_a_malformed_datagram_puts_the_connection_in_error() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    with pytest.raises(RemoteProtocolError):
        b.receive_datagram(b"\x21\x01" + bytes(18) + b"\x00\x09", 1.0)
    assert b.state is State.ERROR
    assert b.timeout_at() is None
    assert b.datagrams_to_send(1.0) == []
    a.send(b"x")
    (valid,) = a.datagrams_to_send(1.0)
    with pytest.raises(RemoteProtocolError):
        b.receive_datagram(valid, 1.0)


def test_data_after_the_fin_is_a_violation() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.close()
    (fin,) = packets(a.datagrams_to_send(1.0))
    assert b.receive_packet(fin, 1.0) == [EndOfStream()]
    assert b.remote_eof
    bogus = _data(a, seq_add(fin.seq_nr, 1), b"more")
    with pytest.raises(RemoteProtocolError):
        b.receive_packet(bogus, 1.1)
    assert b.state is State.ERROR


def test_half_close_then_time_wait_acks_a_repeated_fin() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    a.close()
    (fin_a,) = a.datagrams_to_send(1.0)
    assert b.receive_datagram(fin_a, 1.0) == [EndOfStream()]
    # b may still send after the peer's FIN (half close).
    b.send(b"tail")
    out = b.datagrams_to_send(1.0)
    events = [e for d in out for e in a.receive_datagram(d, 1.1)]
    assert events == [Data(b"tail")]
    for d in a.datagrams_to_send(1.1):
        assert b.receive_datagram(d, 1.1) == []
    b.close()
    (fin_b,) = b.datagrams_to_send(1.2)
    assert a.receive_datagram(fin_b, 1.2) == [EndOfStream(), Closed()]
    assert a.state is State.CLOSED
    # a's ack of b's FIN is lost; b repeats its FIN and CLOSED a still acks it.
    a.datagrams_to_send(1.2)
    assert b.on_timeout(b.timeout_at() or 0.0) == []
    (again,) = b.datagrams_to_send(10.0)
    assert a.receive_datagram(again, 10.0) == []
    (ack,) = a.datagrams_to_send(10.0)
    assert b.receive_datagram(ack, 10.1) == [Closed()]
    assert b.state is State.CLOSED


def test_abort_sends_one_reset_and_the_peer_stops() -> None:
    a, b = pair()
    confirm(a, b, 0.0)
    (reset,) = b.abort(1.0)
    assert decode(reset).type is PacketType.ST_RESET
    assert decode(reset).connection_id == a.recv_id
    assert b.state is State.RESET
    assert b.abort(1.0) == []
    a.send(b"pending")
    a.datagrams_to_send(1.0)
    assert a.receive_datagram(reset, 1.1) == [ConnectionReset()]
    assert a.state is State.RESET
    assert a.send_buffered == 0
    assert a.receive_datagram(reset, 1.2) == []


def test_a_blind_spoofer_cannot_confirm_a_syn() -> None:
    rng = random.Random(12)
    syn = Packet(PacketType.ST_SYN, 500, 1, 0, 0, 42, 0)
    b = UtpConnection.accept(syn, 0.0, rng)
    (state,) = packets(b.datagrams_to_send(0.0))
    # The spoofer knows the ids and its own seq_nr, but not our random seq_nr.
    for guess in range(0, 0x10000, 97):
        if guess == seq_add(state.seq_nr, -1):
            continue
        data = Packet(PacketType.ST_DATA, b.recv_id, 2, 0, 9999, 43, guess, (), b"hi")
        assert b.receive_packet(data, 0.1) == []
    assert b.state is State.SYN_RECV
    assert b.datagrams_to_send(0.1) == []
    real = Packet(
        PacketType.ST_DATA, b.recv_id, 2, 0, 9999, 43, seq_add(state.seq_nr, -1), (), b"hi"
    )
    assert b.receive_packet(real, 0.2) == [Connected(), Data(b"hi")]
