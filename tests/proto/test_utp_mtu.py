"""Packet size: EXT_MAX_DATAGRAM in the handshake and path MTU discovery by probes (MtuSearch)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError
from hubswarm.proto.utp import (
    MAX_DATAGRAM_IN,
    MAX_PACKET_SIZE,
    Connected,
    Data,
    UtpConnection,
)
from hubswarm.proto.utp_packet import (
    EXT_MAX_DATAGRAM,
    MAX_DATAGRAM_MAGIC,
    Extension,
    Packet,
    PacketType,
    UtpPacketError,
    decode,
    encode,
    max_datagram_extension,
    max_datagram_of,
)
from hubswarm.proto.utp_send import MTU_RESOLUTION, MtuSearch

LOOPBACK = 65507  # what the shell reads from the kernel for 127.0.0.1


def handshake(
    *, a_in: int | None, b_in: int | None, path: int = LOOPBACK
) -> tuple[UtpConnection, UtpConnection, bytes, bytes]:
    """Initiator ``a`` and responder ``b`` announcing ``a_in`` / ``b_in``; the SYN and STATE."""
    rng = random.Random(7)
    a = UtpConnection.initiator(rng, max_datagram_in=a_in)
    a.set_path_max_datagram(path)
    (syn,) = a.connect(0.0)
    b = UtpConnection.accept(decode(syn), 0.0, rng, max_datagram_in=b_in)
    b.set_path_max_datagram(path)
    (state,) = b.datagrams_to_send(0.0)
    assert a.receive_datagram(state, 0.0) == [Connected()]
    return a, b, syn, state


def transfer(
    a: UtpConnection,
    b: UtpConnection,
    data: bytes,
    *,
    drop: int | None = None,
    sizes: list[int] | None = None,
) -> bytes:
    """Move ``data`` from a to b, dropping the first datagram larger than ``drop`` once and
    noting the size of each datagram a sends in ``sizes``; return what b delivered. Bounded
    in rounds."""
    a.send(data)
    got = bytearray()
    now = 0.0
    for _ in range(2000):
        now += 0.01
        for datagram in a.datagrams_to_send(now):
            if sizes is not None:
                sizes.append(len(datagram))
            if drop is not None and len(datagram) > drop:
                drop = None
                continue
            for event in b.receive_datagram(datagram, now):
                if isinstance(event, Data):
                    got += event.data
                    b.acknowledge_received_data(len(event.data))
        for datagram in b.datagrams_to_send(now):
            a.receive_datagram(datagram, now)
        a.on_timeout(now)
        if len(got) == len(data) and not a.in_flight:
            break
    return bytes(got)


# --- MtuSearch ------------------------------------------------------------------------------


def test_the_search_tries_the_ceiling_first_and_stops_there_when_it_arrives() -> None:
    mtu = MtuSearch()
    assert mtu.next_probe() is None  # no ceiling above the floor: nothing to probe
    mtu.set_ceiling(LOOPBACK)
    assert mtu.next_probe() == LOOPBACK
    mtu.sent(5, LOOPBACK)
    assert mtu.next_probe() is None  # one probe at a time
    mtu.acked()
    assert mtu.floor == LOOPBACK
    assert mtu.next_probe() is None


@given(st.integers(MAX_PACKET_SIZE, LOOPBACK), st.integers(MAX_PACKET_SIZE + 1, LOOPBACK))
def test_the_search_converges_on_the_path_mtu_and_never_passes_it(path: int, ceiling: int) -> None:
    mtu = MtuSearch()
    mtu.set_ceiling(ceiling)
    for seq in range(64):  # bisection: about log2(64 KiB / 64) = 10 probes
        probe = mtu.next_probe()
        if probe is None:
            break
        assert MAX_PACKET_SIZE < probe <= ceiling
        mtu.sent(seq, probe)
        if probe <= path:
            mtu.acked()
        else:
            mtu.lost()
    assert mtu.next_probe() is None
    assert mtu.floor <= min(path, ceiling)
    assert mtu.floor > min(path, ceiling) - MTU_RESOLUTION


# --- the extension --------------------------------------------------------------------------


def test_the_extension_round_trips_and_a_strangers_is_ignored() -> None:
    syn = Packet(PacketType.ST_SYN, 1, 2, 0, 3, 4, 0, (max_datagram_extension(MAX_DATAGRAM_IN),))
    assert max_datagram_of(decode(encode(syn))) == MAX_DATAGRAM_IN
    for data in (b"hs\x05", b"xy\xff\xe3", MAX_DATAGRAM_MAGIC + b"\x00\x00\x00"):
        other = Packet(PacketType.ST_SYN, 1, 2, 0, 3, 4, 0, (Extension(EXT_MAX_DATAGRAM, data),))
        assert max_datagram_of(decode(encode(other))) is None
    with pytest.raises(LocalProtocolError):
        max_datagram_extension(1 << 16)
    with pytest.raises(LocalProtocolError):
        UtpConnection.initiator(random.Random(0), max_datagram_in=MAX_PACKET_SIZE - 1)


def test_a_responder_announces_only_to_a_syn_that_announced_no_larger_than_it() -> None:
    # libtorrent's SYN carries no extension: the bare 20-byte STATE answers it.
    _, _, syn, state = handshake(a_in=None, b_in=MAX_DATAGRAM_IN)
    assert len(syn) == len(state) == 20
    # Ours: the SYN-ACK carries the extension too, exactly as large as the SYN.
    _, _, syn, state = handshake(a_in=MAX_DATAGRAM_IN, b_in=MAX_DATAGRAM_IN)
    assert len(state) == len(syn) > 20
    assert max_datagram_of(decode(state)) == MAX_DATAGRAM_IN


# --- on the wire ----------------------------------------------------------------------------


def test_two_announcing_peers_on_loopback_grow_to_the_path_mtu() -> None:
    a, b, _, _ = handshake(a_in=MAX_DATAGRAM_IN, b_in=MAX_DATAGRAM_IN)
    data = random.Random(1).randbytes(2 * 1024 * 1024)
    assert transfer(a, b, data) == data
    assert a.packet_size == LOOPBACK


@pytest.mark.parametrize(("a_in", "b_in"), [(MAX_DATAGRAM_IN, None), (None, MAX_DATAGRAM_IN)])
def test_a_peer_that_announces_nothing_never_gets_more_than_1400_bytes(
    a_in: int | None, b_in: int | None
) -> None:
    # As libtorrent: it reads into a 1500-byte buffer, a larger datagram would be truncated.
    a, b, _, _ = handshake(a_in=a_in, b_in=b_in)
    data = random.Random(2).randbytes(512 * 1024)
    sizes: list[int] = []
    assert transfer(a, b, data, sizes=sizes) == data
    assert max(sizes) <= MAX_PACKET_SIZE
    assert a.packet_size == MAX_PACKET_SIZE


def test_a_path_that_drops_large_datagrams_keeps_the_floor_and_the_stream_whole() -> None:
    # The kernel said 65507 but something on the way drops the first probe; the probe's
    # bytes are resent and the search bisects downwards.
    a, b, _, _ = handshake(a_in=MAX_DATAGRAM_IN, b_in=MAX_DATAGRAM_IN)
    data = random.Random(3).randbytes(1024 * 1024)
    assert transfer(a, b, data, drop=MAX_PACKET_SIZE) == data
    assert a._mtu.ceiling < LOOPBACK


@given(st.binary(min_size=20, max_size=80))
def test_reading_the_extension_of_any_decodable_datagram_never_fails(data: bytes) -> None:
    try:
        packet = decode(bytes([0x41]) + data[1:])  # a SYN, version 1, the rest arbitrary
    except UtpPacketError:
        return
    size = max_datagram_of(packet)
    assert size is None or 0 <= size <= 0xFFFF
