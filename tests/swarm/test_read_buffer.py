"""A link's read buffer grows with what arrives and shrinks back on an idle link (peer.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import Event, Have, Piece
from hubswarm.swarm.peer import READ_CHUNK, READ_CHUNK_MIN, WireProtocol

INFO_HASH = bytes(range(20))
PIECES = 8
BLOCK = 16 * 1024


def _stream(messages: list[Event]) -> bytes:
    """The bytes an initiator sends: its handshake, then ``messages``."""
    theirs = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20)
    mirror = PeerConnection(
        Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"b" * 20, num_pieces=PIECES
    )
    out = [theirs.handshake()]
    mirror.receive_data(out[0])
    theirs.receive_data(mirror.handshake())
    out += [theirs.send(m) for m in messages]
    return b"".join(out)


def _ours() -> PeerConnection:
    return PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"b" * 20, num_pieces=PIECES)


def _read(protocol: WireProtocol, data: bytes, sizehint: int, cap: int | None = None) -> int:
    """Deliver ``data`` as a transport does: into get_buffer(), at most ``cap`` per read;
    the largest buffer it was given."""
    view = memoryview(data)
    largest = 0
    while view:
        buf = protocol.get_buffer(sizehint)
        largest = max(largest, len(buf))
        n = min(len(buf), len(view), cap or len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]
    return largest


def _messages(blocks: int, haves: int) -> list[Event]:
    pieces: list[Event] = [Piece(i % PIECES, 0, bytes([i]) * BLOCK) for i in range(blocks)]
    return [*pieces, *(Have(i % PIECES) for i in range(haves))]


def test_a_socket_read_buffer_grows_to_the_cap_and_shrinks_on_small_reads() -> None:
    protocol = WireProtocol(_ours())
    assert len(protocol.get_buffer(-1)) == READ_CHUNK_MIN
    data = _stream(_messages(blocks=64, haves=0))  # 1 MiB: full reads all the way
    assert _read(protocol, data, sizehint=-1) == READ_CHUNK
    # Then a HAVE at a time (9 bytes): each read halves the buffer, down to the floor.
    have = _stream([Have(3)])[68:]
    for _ in range(12):
        _read(protocol, have, sizehint=-1)
    assert len(protocol.get_buffer(-1)) == READ_CHUNK_MIN
    assert protocol.error is None


def test_a_transport_that_knows_the_size_gets_a_buffer_that_fits() -> None:
    protocol = WireProtocol(_ours())
    assert len(protocol.get_buffer(BLOCK + 13)) >= BLOCK + 13
    assert len(protocol.get_buffer(10 * READ_CHUNK)) == READ_CHUNK


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(0, 20),
    haves=st.integers(0, 40),
    cap=st.one_of(st.none(), st.integers(1, 40_000)),
    sizehint=st.sampled_from([-1, 0, 100, BLOCK + 13]),
)
def test_events_are_the_same_whatever_the_reads_and_resizes(
    blocks: int, haves: int, cap: int | None, sizehint: int
) -> None:
    data = _stream(_messages(blocks, haves))
    protocol = WireProtocol(_ours())
    _read(protocol, data, sizehint, cap)
    assert protocol.error is None
    assert protocol.events == _ours().receive_data(data)
    assert READ_CHUNK_MIN <= len(protocol.get_buffer(-1)) <= READ_CHUNK


@pytest.mark.parametrize("size", [READ_CHUNK_MIN - 1, READ_CHUNK_MIN + 1, READ_CHUNK + 1])
def test_buffer_sizes_are_powers_of_two_within_bounds(size: int) -> None:
    protocol = WireProtocol(_ours())
    n = len(protocol.get_buffer(size))
    assert n & (n - 1) == 0
    assert max(READ_CHUNK_MIN, min(size, READ_CHUNK)) <= n <= READ_CHUNK
