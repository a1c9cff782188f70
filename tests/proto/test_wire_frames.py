"""The stateless frame codec (proto/wire_frames.py): round-trips, piece-count checks, garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.limits import BLOCK_SIZE, WIRE_MAX_BITFIELD, WIRE_MAX_MESSAGE
from hubswarm.proto.wire_events import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Have,
    Piece,
    Port,
    Reject,
    Request,
    Suggest,
    UnknownMessage,
)
from hubswarm.proto.wire_frames import (
    BITFIELD,
    EXTENDED,
    FAST_IDS,
    FIXED_LENGTH,
    HAVE,
    PIECE,
    SIMPLE_EVENTS,
    bitfield_spare_ok,
    check_head,
    decode_message,
    encode_message,
    extended_frame,
)

u32 = st.integers(0, 0xFFFFFFFF)
block_len = st.integers(1, BLOCK_SIZE)
_OWN_TYPE = {*FIXED_LENGTH, BITFIELD, PIECE, EXTENDED}
unknown_ids = st.integers(0, 255).filter(lambda i: i not in _OWN_TYPE)

body_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Have, u32),
    st.builds(Suggest, u32),
    st.builds(AllowedFast, u32),
    st.builds(Request, u32, u32, block_len),
    st.builds(Cancel, u32, u32, block_len),
    st.builds(Reject, u32, u32, block_len),
    st.builds(Bitfield, st.binary(max_size=64)),
    st.builds(Port, st.integers(0, 0xFFFF)),
    st.builds(UnknownMessage, unknown_ids, st.binary(max_size=64)),
)


def _decode_frame(frame: bytes, num_pieces: int | None) -> Event:
    (length,) = struct.unpack_from(">I", frame)
    assert length == len(frame) - 4
    msg_id = frame[4]
    check_head(length, msg_id, True, True, num_pieces)
    return decode_message(msg_id, memoryview(frame)[5:], num_pieces)


@given(body_events)
def test_encode_then_decode_round_trips(event: Event) -> None:
    assert _decode_frame(encode_message(event, None), None) == event


@given(st.integers(1, 1000), st.data())
def test_piece_index_is_checked_on_both_sides(num_pieces: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, 2 * num_pieces))
    event = Have(index)
    frame = encode_message(event, None)
    if index < num_pieces:
        assert encode_message(event, num_pieces) == frame
        assert _decode_frame(frame, num_pieces) == event
        return
    with pytest.raises(LocalProtocolError, match="piece index"):
        encode_message(event, num_pieces)
    with pytest.raises(RemoteProtocolError, match="piece index"):
        _decode_frame(frame, num_pieces)


@given(st.integers(1, 64))
def test_bitfield_spare_bits(num_pieces: int) -> None:
    size = (num_pieces + 7) // 8
    last = (0xFF << (-num_pieces % 8)) & 0xFF  # every piece, no spare bit
    clean = Bitfield(b"\xff" * (size - 1) + bytes((last,)))
    assert bitfield_spare_ok(clean.bitfield, num_pieces)
    assert _decode_frame(encode_message(clean, num_pieces), num_pieces) == clean
    if num_pieces % 8:
        dirty = Bitfield(b"\xff" * size)
        assert not bitfield_spare_ok(dirty.bitfield, num_pieces)
        with pytest.raises(LocalProtocolError, match="does not fit"):
            encode_message(dirty, num_pieces)
        with pytest.raises(RemoteProtocolError, match="spare bits"):
            _decode_frame(encode_message(dirty, None), num_pieces)


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 255), st.booleans(), st.booleans())
def test_check_head_takes_only_lengths_a_message_can_have(
    length: int, msg_id: int, fast: bool, extensions: bool
) -> None:
    try:
        check_head(length, msg_id, fast, extensions, None)
    except RemoteProtocolError:
        return
    assert length <= max(WIRE_MAX_MESSAGE, WIRE_MAX_BITFIELD, 9 + BLOCK_SIZE)
    assert msg_id not in FIXED_LENGTH or length == FIXED_LENGTH[msg_id]
    assert fast or msg_id not in FAST_IDS
    assert extensions or msg_id != EXTENDED


@given(st.integers(0, 255), st.binary(max_size=80), st.integers(1, 600) | st.none())
def test_garbage_decodes_or_raises_remote(
    msg_id: int, payload: bytes, num_pieces: int | None
) -> None:
    if msg_id in SIMPLE_EVENTS or msg_id in (PIECE, EXTENDED):
        return  # decoded by the connection itself
    try:
        check_head(1 + len(payload), msg_id, True, True, num_pieces)
        event = decode_message(msg_id, memoryview(payload), num_pieces)
    except RemoteProtocolError:
        return
    assert encode_message(event, num_pieces)[5:] == payload


def test_events_without_a_body_codec_are_refused() -> None:
    for event in (Choke(), Piece(0, 0, b"x"), UnknownMessage(HAVE, b"\0\0\0\0")):
        with pytest.raises(LocalProtocolError):
            encode_message(event, None)


def test_extended_frame() -> None:
    assert extended_frame(3, b"abc") == b"\0\0\0\x05\x14\x03abc"
    with pytest.raises(LocalProtocolError, match="too large"):
        extended_frame(3, bytes(WIRE_MAX_MESSAGE - 1))
