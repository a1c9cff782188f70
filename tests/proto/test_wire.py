"""Byte-level tests of the sans-IO peer wire connection (BEP 3, 5, 6, 9, 10)."""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest

from hubswarm.errors import LocalProtocolError, MetainfoError, RemoteProtocolError
from hubswarm.limits import BLOCK_SIZE, METADATA_MAX_SIZE, WIRE_MAX_MESSAGE
from hubswarm.proto.wire import PeerConnection, Role, State
from hubswarm.proto.wire_events import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Piece,
    Port,
    Reject,
    Request,
    Suggest,
    Unchoke,
    UnknownMessage,
)
from hubswarm.proto.wire_ext import MetadataAssembler
from hubswarm.proto.wire_frames import bitfield_fits
from hubswarm.proto.wire_handshake import HANDSHAKE_LENGTH, make_reserved

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(1, 21))
PEER_A = b"-HS0001-aaaaaaaaaaaa"
PEER_B = b"-HS0001-bbbbbbbbbbbb"


def make_pair(
    *, fast: bool = True, ext: bool = True, dht: bool = False, remote_fast: bool | None = None
) -> tuple[PeerConnection, PeerConnection]:
    """Two connections joined back to back, handshakes exchanged (as h11's tests do)."""
    a = PeerConnection(
        Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A, fast=fast, extension_protocol=ext
    )
    b = PeerConnection(
        Role.RESPONDER,
        info_hash=INFO_HASH,
        peer_id=PEER_B,
        fast=fast if remote_fast is None else remote_fast,
        extension_protocol=ext,
        dht=dht,
    )
    [hs_a] = b.receive_data(a.handshake())
    [hs_b] = a.receive_data(b.handshake())
    assert isinstance(hs_a, Handshake)
    assert hs_a.peer_id == PEER_A
    assert isinstance(hs_b, Handshake)
    assert hs_b.peer_id == PEER_B
    assert a.state is State.OPEN
    assert b.state is State.OPEN
    return a, b


def transfer(src: PeerConnection, dst: PeerConnection, *events: Event) -> list[Event]:
    """Send ``events`` from ``src`` and return what ``dst`` received."""
    return dst.receive_data(b"".join(src.send(e) for e in events))


def opened_receiver(*, fast: bool = True, num_pieces: int | None = None) -> PeerConnection:
    """A responder that has received a handshake; feed it raw message bytes."""
    conn = PeerConnection(
        Role.RESPONDER, info_hash=INFO_HASH, peer_id=PEER_B, fast=fast, num_pieces=num_pieces
    )
    conn.receive_data(handshake_bytes(fast=fast))
    return conn


def feed_bytewise(conn: PeerConnection, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events


def handshake_bytes(*, info_hash: bytes = INFO_HASH, fast: bool = True, ext: bool = True) -> bytes:
    return (
        b"\x13BitTorrent protocol"
        + make_reserved(extension_protocol=ext, fast=fast, dht=False)
        + info_hash
        + PEER_A
    )


# --- handshake ------------------------------------------------------------------------------


def test_handshake_bytes_and_reserved_bits() -> None:
    conn = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A, fast=True, dht=True)
    hs = conn.handshake()
    assert len(hs) == HANDSHAKE_LENGTH == 68
    assert hs[:20] == b"\x13BitTorrent protocol"
    # BEP 10: reserved[5] & 0x10; BEP 6: reserved[7] & 0x04; BEP 5: reserved[7] & 0x01.
    assert hs[20:28] == b"\x00\x00\x00\x00\x00\x10\x00\x05"
    assert hs[28:48] == INFO_HASH
    assert hs[48:] == PEER_A
    with pytest.raises(LocalProtocolError):
        conn.handshake()


def test_handshake_event_flags() -> None:
    a, _b = make_pair(dht=True)
    hs = a.remote_handshake
    assert hs is not None
    assert hs.extension_protocol
    assert hs.fast
    assert hs.dht
    assert a.supports_fast
    assert a.supports_extensions
    assert a.info_hash == INFO_HASH


def test_fast_needs_both_sides() -> None:
    a, b = make_pair(fast=True, remote_fast=False)
    assert not a.supports_fast
    assert not b.supports_fast
    with pytest.raises(LocalProtocolError):
        a.send(HaveAll())
    b.send(Bitfield(b"\x80"))  # the ordinary bitfield is still fine


def test_initiator_needs_info_hash() -> None:
    with pytest.raises(LocalProtocolError):
        PeerConnection(Role.INITIATOR, info_hash=None, peer_id=PEER_A)


def test_send_before_handshake_is_local_error() -> None:
    conn = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A)
    with pytest.raises(LocalProtocolError):
        conn.send(Interested())
    conn.handshake()
    with pytest.raises(LocalProtocolError):
        conn.send(Handshake(INFO_HASH, PEER_A))


def test_responder_accepts_info_hash_and_drains_pipelined_messages() -> None:
    server = PeerConnection(Role.RESPONDER, info_hash=None, peer_id=PEER_B)
    client = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A)
    data = client.handshake()
    # An honest client may pipeline its bitfield and interest before our handshake arrives;
    # our bits are not known yet, so only BEP 3 messages are legal for it.
    client.receive_data(b"")
    pipelined = b"\x00\x00\x00\x02\x05\xff" + b"\x00\x00\x00\x01\x02"
    events = server.receive_data(data + pipelined)
    assert [type(e) for e in events] == [Handshake]
    assert server.state is State.AWAIT_ACCEPT
    assert server.buffered == len(pipelined)
    with pytest.raises(LocalProtocolError):
        server.handshake()  # info_hash still unknown
    with pytest.raises(LocalProtocolError):
        server.accept(OTHER_HASH)  # must be the hash the peer asked for
    reply = server.accept(INFO_HASH)
    assert reply[28:48] == INFO_HASH
    assert server.state is State.OPEN
    assert server.receive_data(b"") == [Bitfield(b"\xff"), Interested()]
    assert server.peer_interested
    assert client.receive_data(reply)[0] == Handshake(INFO_HASH, PEER_B, server.reserved)


def test_preaccept_buffer_is_bounded() -> None:
    server = PeerConnection(Role.RESPONDER, info_hash=None, peer_id=PEER_B)
    server.receive_data(handshake_bytes())
    with pytest.raises(RemoteProtocolError):
        server.receive_data(b"\0" * (12 * 1024 * 1024))
    assert server.state is State.ERROR
    assert server.buffered == 0


def test_wrong_info_hash_is_remote_error() -> None:
    conn = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=PEER_A)
    conn.handshake()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(handshake_bytes(info_hash=OTHER_HASH))
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.send(KeepAlive())


@pytest.mark.parametrize(
    "data",
    [
        b"\x12BitTorrent protocol",
        b"\x13BitTorrent protocoL",
        b"GET / HTTP/1.1\r\n",
        b"\x00\x00\x00\x01\x02",  # a message before the handshake
    ],
)
def test_bad_pstr_rejected_on_first_bad_byte(data: bytes) -> None:
    conn = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=PEER_B)
    # One byte at a time: caught without waiting for all 68 bytes.
    with pytest.raises(RemoteProtocolError):
        feed_bytewise(conn, data)
    assert conn.state is State.ERROR


# --- byte-for-byte encodings (BEP 3, 5, 6, 10, 9) -------------------------------------------

ENCODINGS: list[tuple[Event, bytes]] = [
    (KeepAlive(), b"\x00\x00\x00\x00"),
    (Choke(), b"\x00\x00\x00\x01\x00"),
    (Unchoke(), b"\x00\x00\x00\x01\x01"),
    (Interested(), b"\x00\x00\x00\x01\x02"),
    (NotInterested(), b"\x00\x00\x00\x01\x03"),
    (Have(258), b"\x00\x00\x00\x05\x04\x00\x00\x01\x02"),
    (
        Request(1, 0x4000, 0x4000),
        b"\x00\x00\x00\x0d\x06\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00",
    ),
    (Piece(2, 16, b"abc"), b"\x00\x00\x00\x0c\x07\x00\x00\x00\x02\x00\x00\x00\x10abc"),
    (
        Cancel(1, 0x4000, 0x4000),
        b"\x00\x00\x00\x0d\x08\x00\x00\x00\x01\x00\x00\x40\x00\x00\x00\x40\x00",
    ),
    (Port(6881), b"\x00\x00\x00\x03\x09\x1a\xe1"),
    (Suggest(7), b"\x00\x00\x00\x05\x0d\x00\x00\x00\x07"),
    (
        Reject(1, 0, 0x4000),
        b"\x00\x00\x00\x0d\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40\x00",
    ),
    (AllowedFast(9), b"\x00\x00\x00\x05\x11\x00\x00\x00\x09"),
]


@pytest.mark.parametrize(("event", "expected"), ENCODINGS)
def test_encoding_bytes(event: Event, expected: bytes) -> None:
    a, b = make_pair()
    assert a.send(event) == expected
    assert b.receive_data(expected) == [event]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Bitfield(b"\xa0"), b"\x00\x00\x00\x02\x05\xa0"),
        (HaveAll(), b"\x00\x00\x00\x01\x0e"),
        (HaveNone(), b"\x00\x00\x00\x01\x0f"),
    ],
)
def test_first_message_encodings(event: Event, expected: bytes) -> None:
    a, b = make_pair()
    assert a.send(event) == expected
    assert b.receive_data(expected) == [event]


def test_extended_handshake_bytes() -> None:
    a, b = make_pair()
    ehs = ExtendedHandshake(m={"ut_metadata": 3}, metadata_size=31235, v="hubswarm 0.1")
    # BEP 10: <len><20><0><bencoded dict>; keys sorted (bencode).
    body = b"d1:md11:ut_metadatai3ee13:metadata_sizei31235e1:v12:hubswarm 0.1e"
    expected = struct.pack(">IBB", 2 + len(body), 20, 0) + body
    assert a.send(ehs) == expected
    assert b.receive_data(expected) == [ehs]
    assert b.remote_extensions == {"ut_metadata": 3}
    assert b.remote_metadata_size == 31235
    assert a.local_extensions == {"ut_metadata": 3}


def test_metadata_message_bytes_use_remote_ids() -> None:
    a, b = make_pair()
    # a says it speaks ut_metadata as 3, b as 5: each side sends with the *other's* id.
    transfer(a, b, ExtendedHandshake(m={"ut_metadata": 3}))
    transfer(b, a, ExtendedHandshake(m={"ut_metadata": 5}, metadata_size=20000))
    # BEP 9 examples: d8:msg_typei0e5:piecei0ee
    body = b"d8:msg_typei0e5:piecei0ee"
    assert a.send(MetadataRequest(0)) == struct.pack(">IBB", 2 + len(body), 20, 5) + body
    assert b.receive_data(a.send(MetadataRequest(0))) == [MetadataRequest(0)]
    reply = b.send(MetadataData(1, 20000, b"x" * (20000 - BLOCK_SIZE)))
    head = b"d8:msg_typei1e5:piecei1e10:total_sizei20000ee"
    assert reply[:6] == struct.pack(">IBB", 2 + len(head) + 20000 - BLOCK_SIZE, 20, 3)
    assert reply[6 : 6 + len(head)] == head
    assert a.receive_data(reply) == [MetadataData(1, 20000, b"x" * (20000 - BLOCK_SIZE))]
    rej = b.send(MetadataReject(0))
    assert rej[6:] == b"d8:msg_typei2e5:piecei0ee"
    assert a.receive_data(rej) == [MetadataReject(0)]


def test_metadata_without_remote_support_is_local_error() -> None:
    a, b = make_pair()
    with pytest.raises(LocalProtocolError):
        a.send(MetadataRequest(0))
    transfer(b, a, ExtendedHandshake(m={"ut_metadata": 2}))
    a.send(MetadataRequest(0))
    transfer(b, a, ExtendedHandshake(m={"ut_metadata": 0}))  # BEP 10: 0 disables
    with pytest.raises(LocalProtocolError):
        a.send(MetadataRequest(0))


def test_unknown_extension_and_message_are_events() -> None:
    a, b = make_pair()
    transfer(b, a, ExtendedHandshake(m={"ut_holepunch": 7}))
    frame = a.send(Extended(7, b"d8:msg_typei0ee"))
    assert frame == struct.pack(">IBB", 17, 20, 7) + b"d8:msg_typei0ee"
    assert b.receive_data(frame) == [Extended(7, b"d8:msg_typei0ee")]
    assert b.receive_data(b"\x00\x00\x00\x03\x63hi") == [UnknownMessage(0x63, b"hi")]
    assert b.state is State.OPEN


def test_flags_follow_messages() -> None:
    a, b = make_pair()
    transfer(a, b, Unchoke(), Interested())
    assert not a.am_choking
    assert a.am_interested
    assert not b.peer_choking
    assert b.peer_interested
    transfer(a, b, Choke(), NotInterested())
    assert b.peer_choking
    assert not b.peer_interested


# --- full exchange: handshake + extended handshake + metadata --------------------------------


def test_metadata_exchange_back_to_back() -> None:
    metadata = bytes(i % 251 for i in range(40_000))  # 3 pieces: 16384, 16384, 7232
    info_hash = hashlib.sha1(metadata).digest()
    seed = PeerConnection(Role.RESPONDER, info_hash=None, peer_id=PEER_B)
    leech = PeerConnection(Role.INITIATOR, info_hash=info_hash, peer_id=PEER_A)
    [hs] = seed.receive_data(leech.handshake())
    assert isinstance(hs, Handshake)
    leech.receive_data(seed.accept(hs.info_hash))
    transfer(seed, leech, ExtendedHandshake(m={"ut_metadata": 1}, metadata_size=len(metadata)))
    transfer(leech, seed, ExtendedHandshake(m={"ut_metadata": 2}))
    size = leech.remote_metadata_size
    assert size == len(metadata)
    assembler = MetadataAssembler(info_hash, size)
    assert assembler.num_pieces == 3
    result = None
    for _ in range(10):  # bounded
        wanted = assembler.wanted()
        if not wanted:
            break
        piece = wanted[0]
        [req] = transfer(leech, seed, MetadataRequest(piece))
        assert isinstance(req, MetadataRequest)
        chunk = metadata[req.piece * BLOCK_SIZE : (req.piece + 1) * BLOCK_SIZE]
        [data] = transfer(seed, leech, MetadataData(req.piece, len(metadata), chunk))
        assert isinstance(data, MetadataData)
        result = assembler.add(data)
    assert result == metadata
    assert assembler.missing() == []


def test_metadata_assembler_resets_on_hash_mismatch() -> None:
    metadata = b"d4:name1:xe"
    asm = MetadataAssembler(b"\x00" * 20, len(metadata))
    with pytest.raises(MetainfoError):
        asm.add(MetadataData(0, len(metadata), metadata))
    assert asm.missing() == [0]
    assert asm.resets == 1
    with pytest.raises(RemoteProtocolError):
        asm.add(MetadataData(0, len(metadata) + 1, metadata + b"x"))
    with pytest.raises(RemoteProtocolError):
        MetadataAssembler(b"\x00" * 20, METADATA_MAX_SIZE + 1)
    # Every missing piece is in flight elsewhere: ask for it anyway (a slow peer must not
    # hold the metadata back).
    assert asm.wanted(in_flight={0}) == [0]


def test_metadata_assembler_wants_pieces_nobody_is_fetching_first() -> None:
    asm = MetadataAssembler(b"\x00" * 20, 3 * BLOCK_SIZE)
    assert asm.wanted() == [0, 1, 2]
    assert asm.wanted(in_flight={0, 2}) == [1]
    asm.add(MetadataData(1, 3 * BLOCK_SIZE, bytes(BLOCK_SIZE)))
    assert asm.wanted(in_flight={0, 2}) == [0, 2]


def test_piece_transfer_and_split_feeding() -> None:
    a, b = make_pair()
    b.set_num_pieces(4)
    events: list[Event] = [
        Bitfield(b"\xf0"),
        Unchoke(),
        Piece(3, 0, bytes(range(256)) * 64),
        Piece(0, BLOCK_SIZE, b"z"),
        KeepAlive(),
    ]
    data = b"".join(a.send(e) for e in events)
    assert feed_bytewise(b, data) == events
    assert b.buffered == 0


def test_a_parsed_piece_is_a_whole_frozen_piece_event() -> None:
    a, b = make_pair()
    b.set_num_pieces(4)
    sent = Piece(2, 3 * BLOCK_SIZE, b"xyz")
    (got,) = b.receive_data(a.send(sent))
    assert type(got) is Piece
    assert got == sent
    assert hash(got) == hash(sent)
    assert repr(got) == repr(sent)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.begin = 0  # type: ignore[misc]


# --- violations -----------------------------------------------------------------------------


def frame(msg_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), msg_id) + payload


VIOLATIONS: list[tuple[str, bytes, bool, int | None]] = [
    # (name, bytes after the handshake, fast agreed, num_pieces)
    ("bitfield not first", frame(2) + frame(5, b"\xff"), True, None),
    ("two bitfields", frame(5, b"\xff") + frame(5, b"\xff"), True, None),
    ("have all after have", frame(4, b"\0\0\0\1") + frame(0x0E), True, None),
    ("have none after bitfield", frame(5, b"\xff") + frame(0x0F), True, None),
    ("have all without fast", frame(0x0E), False, None),
    ("reject without fast", frame(0x10, struct.pack(">III", 0, 0, 1)), False, None),
    ("suggest without fast", frame(0x0D, b"\0\0\0\0"), False, None),
    ("allowed fast without fast", frame(0x11, b"\0\0\0\0"), False, None),
    ("request length 0", frame(6, struct.pack(">III", 0, 0, 0)), True, None),
    ("request > 16 KiB", frame(6, struct.pack(">III", 0, 0, BLOCK_SIZE + 1)), True, None),
    ("request 2 GiB", frame(6, struct.pack(">III", 0, 0, 0x7FFFFFFF)), True, None),
    ("cancel length 0", frame(8, struct.pack(">III", 0, 0, 0)), True, None),
    ("reject > 16 KiB", frame(0x10, struct.pack(">III", 0, 0, BLOCK_SIZE + 1)), True, None),
    ("have index >= num_pieces", frame(4, b"\0\0\0\x0a"), True, 10),
    ("request index >= num_pieces", frame(6, struct.pack(">III", 10, 0, 1)), True, 10),
    ("piece index >= num_pieces", frame(7, struct.pack(">II", 10, 0) + b"x"), True, 10),
    ("bitfield spare bits", frame(5, b"\xff\xe0"), True, 10),
    ("bitfield too short", frame(5, b"\xff"), True, 10),
    ("bitfield too long", frame(5, b"\xff\x00\x00"), True, 10),
    ("have truncated", frame(4, b"\0\0\0"), True, None),
    ("request truncated", frame(6, b"\0" * 11), True, None),
    ("choke with payload", frame(0, b"\0"), True, None),
    ("port short", frame(9, b"\x1a"), True, None),
    ("piece empty block", frame(7, struct.pack(">II", 0, 0)), True, None),
    (
        "piece over one block",
        frame(7, struct.pack(">II", 0, 0) + bytes(BLOCK_SIZE + 1)),
        True,
        None,
    ),
    ("unknown message too large", struct.pack(">IB", WIRE_MAX_MESSAGE + 1, 0x63), True, None),
    ("extended empty", frame(20), True, None),
    ("extended handshake not bencode", frame(20, b"\x00d1:m"), True, None),
    ("extended handshake not a dict", frame(20, b"\x00i1e"), True, None),
    ("extended m id > 255", frame(20, b"\x00d1:md1:xi256eee"), True, None),
    (
        "metadata_size over cap",
        frame(20, b"\x00d13:metadata_sizei" + str(METADATA_MAX_SIZE + 1).encode() + b"ee"),
        True,
        None,
    ),
]


@pytest.mark.parametrize(
    ("data", "fast", "num_pieces"),
    [pytest.param(d, f, n, id=name) for name, d, f, n in VIOLATIONS],
)
def test_violation_raises_and_connection_stays_dead(
    data: bytes, fast: bool, num_pieces: int | None
) -> None:
    conn = opened_receiver(fast=fast, num_pieces=num_pieces)
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(data)
    assert conn.state is State.ERROR
    assert conn.buffered == 0
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(frame(2))
    with pytest.raises(LocalProtocolError):
        conn.handshake()


def test_oversize_prefix_rejected_before_buffering() -> None:
    conn = opened_receiver()
    # 0x7fffffff-byte message: rejected as soon as its id byte is seen, nothing buffered.
    assert conn.receive_data(b"\x7f\xff\xff\xff") == []
    assert conn.buffered == 4
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"\x07" + b"\0" * 65536)
    assert conn.buffered == 0
    conn2 = opened_receiver()
    conn2.receive_data(b"\x00\x00\x40\x09\x07")  # a legal piece header is buffered
    assert conn2.buffered == 5
    huge_bitfield = opened_receiver()
    with pytest.raises(RemoteProtocolError):
        huge_bitfield.receive_data(b"\x7f\xff\xff\xff\x05")


def test_bytes_wanted_counts_the_rest_of_the_frame() -> None:
    conn = opened_receiver()
    assert conn.bytes_wanted() == 1  # nothing buffered
    conn.receive_data(b"\x00\x00")
    assert conn.bytes_wanted() == 2  # the rest of the length prefix
    conn.receive_data(b"\x40\x09")
    assert conn.bytes_wanted() == 1  # the id byte, validated before the body is waited for
    conn.receive_data(b"\x07" + struct.pack(">II", 0, 0) + bytes(100))
    assert conn.bytes_wanted() == 4 + 0x4009 - 5 - 8 - 100
    assert conn.receive_data(bytes(conn.bytes_wanted())) == [Piece(0, 0, bytes(BLOCK_SIZE))]
    assert conn.bytes_wanted() == 1
    conn.receive_data(b"\x7f\xff\xff\xff")
    assert conn.bytes_wanted() == 1  # an oversize prefix: only its id byte is waited for
    fresh = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=PEER_B)
    fresh.receive_data(handshake_bytes()[:10])
    assert fresh.bytes_wanted() == 1  # before the connection is open: no promise


def test_metadata_violations() -> None:
    def ready() -> tuple[PeerConnection, PeerConnection]:
        a, b = make_pair()
        transfer(a, b, ExtendedHandshake(m={"ut_metadata": 1}))
        transfer(b, a, ExtendedHandshake(m={"ut_metadata": 1}, metadata_size=20000))
        return a, b

    bad_bodies = [
        b"d8:msg_typei1e5:piecei0e10:total_sizei20000ee" + b"x" * 10,  # short piece
        b"d8:msg_typei1e5:piecei1e10:total_sizei20000ee" + b"x" * 3617,  # long last piece
        b"d8:msg_typei1e5:piecei2e10:total_sizei20000ee" + b"x",  # piece past the end
        b"d8:msg_typei1e5:piecei0e10:total_sizei30000ee" + b"x" * BLOCK_SIZE,  # size change
        b"d8:msg_typei0ee",  # no piece
        b"d8:msg_typei0e5:piecei-1ee",
        b"le",
        b"d8:msg_type",
    ]
    for body in bad_bodies:
        a, _ = ready()
        with pytest.raises(RemoteProtocolError):
            a.receive_data(frame(20, b"\x01" + body))
        assert a.state is State.ERROR
    a, _ = ready()
    # BEP 9: an unknown msg_type is ignored (surfaced as a generic Extended event).
    assert a.receive_data(frame(20, b"\x01d8:msg_typei9e5:piecei0ee")) == [
        Extended(1, b"d8:msg_typei9e5:piecei0ee")
    ]


def test_extended_without_bep10_is_violation() -> None:
    a, b = make_pair(ext=False)
    with pytest.raises(LocalProtocolError):
        a.send(ExtendedHandshake())
    with pytest.raises(RemoteProtocolError):
        b.receive_data(frame(20, b"\x00de"))


def test_local_misuse() -> None:
    a, _b = make_pair()
    a.set_num_pieces(10)
    with pytest.raises(LocalProtocolError):
        a.send(Have(10))
    with pytest.raises(LocalProtocolError):
        a.send(Bitfield(b"\xff\xff"))  # spare bits set
    with pytest.raises(LocalProtocolError):
        a.set_num_pieces(11)
    a.send(Interested())
    with pytest.raises(LocalProtocolError):
        a.send(Bitfield(b"\xff\xc0"))  # not first any more
    with pytest.raises(LocalProtocolError):
        Request(0, 0, BLOCK_SIZE + 1)
    with pytest.raises(LocalProtocolError):
        Piece(0, 0, b"")
    with pytest.raises(LocalProtocolError):
        a.send(UnknownMessage(7, b""))
    assert a.state is State.OPEN  # our own misuse does not kill the connection


def test_extended_and_port_do_not_take_the_first_slot() -> None:
    # libtorrent sends its extended handshake (and port) before the bitfield.
    a, b = make_pair()
    events = transfer(a, b, ExtendedHandshake(m={"ut_metadata": 1}), Port(1), HaveAll())
    assert [type(e) for e in events] == [ExtendedHandshake, Port, HaveAll]


def test_piece_header_matches_send() -> None:
    a, b = make_pair()
    block = b"q" * 100
    header = a.piece_header(3, 200, len(block))
    assert header + block == a.send(Piece(3, 200, block))
    assert b.receive_data(header + block) == [Piece(3, 200, block)]
    with pytest.raises(LocalProtocolError):
        a.piece_header(0, 0, BLOCK_SIZE + 1)


@pytest.mark.parametrize(
    ("bitfield", "num_pieces", "fits"),
    [
        (b"\xff", 8, True),
        (b"\xff\x80", 9, True),
        (b"\xff\xc0", 9, False),
        (b"\xff", 9, False),
        (b"\xff\x00", 8, False),
    ],
)
def test_bitfield_fits(bitfield: bytes, num_pieces: int, fits: bool) -> None:
    assert bitfield_fits(bitfield, num_pieces) is fits
