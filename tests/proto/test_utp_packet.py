"""uTP packet codec (BEP 29): round trips, exact bytes, garbage, truncation, demultiplexing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.proto import bencode
from hubswarm.proto.utp_packet import (
    EXT_SACK,
    HEADER_SIZE,
    MAX_EXTENSIONS,
    Extension,
    Packet,
    PacketType,
    UtpPacketError,
    decode,
    encode,
    looks_like_utp,
    sack_bitmask,
    sack_seq_nrs,
    seq_add,
    seq_diff,
    seq_lt,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
extensions = st.lists(
    st.builds(Extension, st.integers(1, 255), st.binary(max_size=255)), max_size=MAX_EXTENSIONS
).map(tuple)
packets = st.builds(
    Packet,
    st.sampled_from(PacketType),
    u16,
    u32,
    u32,
    u32,
    u16,
    u16,
    extensions,
    st.binary(max_size=1500),
)


@given(packets)
def test_every_packet_round_trips(packet: Packet) -> None:
    data = encode(packet)
    assert len(data) == packet.size
    assert decode(data) == packet
    assert looks_like_utp(data)


def test_header_layout_is_bep29() -> None:
    packet = Packet(
        PacketType.ST_DATA,
        connection_id=0x1234,
        timestamp_microseconds=0x01020304,
        timestamp_difference_microseconds=0x05060708,
        wnd_size=0x00100000,
        seq_nr=0xABCD,
        ack_nr=0x0102,
        extensions=(Extension(EXT_SACK, b"\x01\x00\x00\x80"),),
        payload=b"hi",
    )
    assert encode(packet) == (
        b"\x01"  # type ST_DATA (0) << 4 | version 1
        b"\x01"  # first extension: selective ACK
        b"\x12\x34"
        b"\x01\x02\x03\x04"
        b"\x05\x06\x07\x08"
        b"\x00\x10\x00\x00"
        b"\xab\xcd"
        b"\x01\x02"
        b"\x00\x04\x01\x00\x00\x80"  # next extension none, length 4, bitmask
        b"hi"
    )
    syn = encode(Packet(PacketType.ST_SYN, 7, 0, 0, 0, 1, 0))
    assert syn[0] == 0x41
    assert len(syn) == HEADER_SIZE


@given(st.binary(max_size=300))
def test_garbage_raises_only_the_typed_error(data: bytes) -> None:
    assert issubclass(UtpPacketError, RemoteProtocolError)
    try:
        packet = decode(data)
    except UtpPacketError:
        return
    assert encode(packet) == data


@given(packets, st.data())
def test_truncated_packets_raise_or_decode_to_a_shorter_payload(
    packet: Packet, data: st.DataObject
) -> None:
    wire = encode(packet)
    cut = data.draw(st.integers(0, len(wire) - 1)) if wire else 0
    try:
        got = decode(wire[:cut])
    except UtpPacketError:
        return
    # Only the payload (which has no length field) may be cut silently.
    assert got.extensions == packet.extensions
    assert packet.payload.startswith(got.payload)


@given(packets, st.integers(0, 19), st.integers(0, 255))
def test_corrupted_header_bytes_never_crash(packet: Packet, index: int, value: int) -> None:
    wire = bytearray(encode(packet))
    wire[index] = value
    try:
        got = decode(bytes(wire))
    except UtpPacketError:
        return  # refused with the typed error: the only other outcome allowed
    # Whatever decodes is a packet the codec can write again, unchanged.
    assert decode(encode(got)) == got


def test_bad_version_and_type() -> None:
    good = encode(Packet(PacketType.ST_STATE, 1, 2, 3, 4, 5, 6))
    with pytest.raises(UtpPacketError, match="version"):
        decode(bytes([0x22]) + good[1:])
    with pytest.raises(UtpPacketError, match="type"):
        decode(bytes([0x51]) + good[1:])
    with pytest.raises(UtpPacketError, match="shorter"):
        decode(good[:19])


def test_extension_length_is_checked_before_slicing() -> None:
    head = struct.pack(">BBHIIIHH", 0x21, EXT_SACK, 1, 0, 0, 0, 0, 0)
    with pytest.raises(UtpPacketError, match="runs past"):
        decode(head + b"\x00\xff" + b"\x00" * 10)
    with pytest.raises(UtpPacketError, match="header runs past"):
        decode(head + b"\x00")


def test_unknown_extensions_are_kept_and_skipped() -> None:
    head = struct.pack(">BBHIIIHH", 0x01, 3, 1, 0, 0, 0, 0, 0)
    got = decode(head + b"\x07\x04\x00\x00\x00\x02" + b"\x00\x01z" + b"payload")
    assert got.extensions == (Extension(3, b"\x00\x00\x00\x02"), Extension(7, b"z"))
    assert got.sack is None
    assert got.payload == b"payload"


def test_extension_chain_is_bounded() -> None:
    head = struct.pack(">BBHIIIHH", 0x21, 9, 1, 0, 0, 0, 0, 0)
    chain = b"\x09\x00" * (MAX_EXTENSIONS + 1)
    with pytest.raises(UtpPacketError, match="extensions"):
        decode(head + chain)
    assert len(decode(head + b"\x09\x00" * (MAX_EXTENSIONS - 1) + b"\x00\x00").extensions) == (
        MAX_EXTENSIONS
    )


def test_building_an_invalid_packet_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        Packet(PacketType.ST_DATA, 0x10000, 0, 0, 0, 0, 0)
    with pytest.raises(LocalProtocolError):
        Packet(PacketType.ST_DATA, 0, 0, 0, 0, -1, 0)
    with pytest.raises(LocalProtocolError):
        Extension(0, b"")
    with pytest.raises(LocalProtocolError):
        Extension(1, b"x" * 256)


def test_krpc_never_looks_like_utp() -> None:
    ping = bencode.encode({b"t": b"aa", b"y": b"q", b"q": b"ping", b"a": {b"id": b"x" * 20}})
    assert not looks_like_utp(ping)
    assert not looks_like_utp(b"d1:ad2:id20:" + b"x" * 40)
    assert not looks_like_utp(b"\x41" * 19)  # too short for a header
    assert looks_like_utp(b"\x41" + b"\x00" * 19)


@given(st.binary(max_size=100))
def test_looks_like_utp_agrees_with_the_header_check(data: bytes) -> None:
    if looks_like_utp(data):
        assert data[0] & 0x0F == 1
        assert data[0] >> 4 <= 4
    else:
        with pytest.raises(UtpPacketError):
            decode(data)


# --- selective ACK bitmask and sequence arithmetic ------------------------------------------


@given(u16, st.sets(st.integers(2, 300), max_size=40), st.sampled_from([4, 8, 32]))
def test_sack_bitmask_round_trips(ack_nr: int, offsets: set[int], max_bytes: int) -> None:
    received = {seq_add(ack_nr, d) for d in offsets}
    mask = sack_bitmask(ack_nr, received, max_bytes)
    assert len(mask) % 4 == 0
    assert len(mask) <= max_bytes
    covered = {seq_add(ack_nr, d) for d in offsets if d - 2 < len(mask) * 8}
    assert set(sack_seq_nrs(ack_nr, mask)) == covered


def test_sack_bit_order_is_libtorrents() -> None:
    # Bit 0 of byte 0 is ack_nr + 2; ack_nr + 1 is the missing packet.
    assert sack_bitmask(100, [102], 32) == b"\x01\x00\x00\x00"
    assert sack_bitmask(100, [109, 127], 32) == b"\x80\x00\x00\x02"
    assert len(sack_bitmask(100, [134], 32)) == 8
    assert sack_bitmask(100, [101, 100, 50], 32) == b""
    assert list(sack_seq_nrs(0xFFFF, b"\x03")) == [1, 2]


@given(u16, st.integers(-0x7FFF, 0x7FFF))
def test_seq_arithmetic_wraps(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert seq_diff(b, a) == n
    assert seq_lt(a, b) == (n > 0)
