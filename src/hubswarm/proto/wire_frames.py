"""The peer wire's message frames as bytes: ids, lengths, layouts, a stateless codec.

After the handshake every message is ``<u32 length><u8 id><body>`` (length 0: keep-alive).
This module holds what a frame is whatever the connection's history: the message ids (BEP 3,
5, 6, 10), the exact length of each fixed-size message, the ready-made
bytes and events of the id-only messages, BEP 3's bitfield rules, the check of a length prefix
against its id (made *before* a body is buffered), and the encoder and decoder of the
messages with a body whose bytes depend on nothing but the piece count.

:class:`~hubswarm.proto.wire.PeerConnection` keeps what depends on its state (the handshake,
what was agreed, which message may come first, choke and interest, the extension ids) and the
two hot paths, ``piece`` and ``request``, which it parses and builds inline with the ids and
limits here and struct layouts of its own. A peer's bad bytes raise
:class:`RemoteProtocolError` (the connection then enters ERROR); our own bad events raise
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import struct
from typing import Any

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.limits import BLOCK_SIZE, WIRE_MAX_BITFIELD, WIRE_MAX_MESSAGE
from hubswarm.proto.wire_events import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Event,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    Port,
    Reject,
    Request,
    Suggest,
    Unchoke,
    UnknownMessage,
)

__all__ = [
    "ALLOWED_FAST",
    "BITFIELD",
    "BODY_EVENTS",
    "CANCEL",
    "CHOKE",
    "EXTENDED",
    "FAST_IDS",
    "FIXED_LENGTH",
    "HAVE",
    "HAVE_ALL",
    "HAVE_NONE",
    "INTERESTED",
    "KEEPALIVE",
    "MAX_PIECE_FRAME",
    "NOT_INTERESTED",
    "PIECE",
    "PORT",
    "REJECT",
    "REQUEST",
    "SIMPLE_BYTES",
    "SIMPLE_EVENTS",
    "SUGGEST",
    "U32_MAX",
    "UNCHOKE",
    "bitfield_fits",
    "bitfield_spare_ok",
    "check_head",
    "decode_message",
    "encode_message",
    "extended_frame",
]

# Message ids: BEP 3 (0-8), BEP 5 (9), BEP 6 (0x0D-0x11), BEP 10 (20).
CHOKE, UNCHOKE, INTERESTED, NOT_INTERESTED, HAVE, BITFIELD, REQUEST, PIECE, CANCEL, PORT = range(10)
SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST = 0x0D, 0x0E, 0x0F, 0x10, 0x11
EXTENDED = 20
FAST_IDS = frozenset((SUGGEST, HAVE_ALL, HAVE_NONE, REJECT, ALLOWED_FAST))
# Exact length prefix (id byte included) of every fixed-size message.
FIXED_LENGTH = {
    CHOKE: 1,
    UNCHOKE: 1,
    INTERESTED: 1,
    NOT_INTERESTED: 1,
    HAVE: 5,
    REQUEST: 13,
    CANCEL: 13,
    PORT: 3,
    SUGGEST: 5,
    HAVE_ALL: 1,
    HAVE_NONE: 1,
    REJECT: 13,
    ALLOWED_FAST: 5,
}
MAX_PIECE_FRAME = 9 + BLOCK_SIZE  # id + index + begin + one block

_U32 = struct.Struct(">I")
_LEN_ID = struct.Struct(">IB")
_LEN_ID_U32 = struct.Struct(">IBI")
_LEN_ID_3U32 = struct.Struct(">IBIII")
U32_MAX = 0xFFFFFFFF
_U32X3 = struct.Struct(">III")
_U16 = struct.Struct(">H")

KEEPALIVE = KeepAlive()
SIMPLE_EVENTS: dict[int, Event] = {
    CHOKE: Choke(),
    UNCHOKE: Unchoke(),
    INTERESTED: Interested(),
    NOT_INTERESTED: NotInterested(),
    HAVE_ALL: HaveAll(),
    HAVE_NONE: HaveNone(),
}
SIMPLE_BYTES: dict[type[Any], bytes] = {
    KeepAlive: b"\0\0\0\0",
    Choke: _LEN_ID.pack(1, CHOKE),
    Unchoke: _LEN_ID.pack(1, UNCHOKE),
    Interested: _LEN_ID.pack(1, INTERESTED),
    NotInterested: _LEN_ID.pack(1, NOT_INTERESTED),
    HaveAll: _LEN_ID.pack(1, HAVE_ALL),
    HaveNone: _LEN_ID.pack(1, HAVE_NONE),
}

# The event types encode_message turns into frames.
BODY_EVENTS: frozenset[type[Any]] = frozenset(
    (Have, Suggest, AllowedFast, Request, Cancel, Reject, Bitfield, Port, UnknownMessage)
)


def bitfield_fits(bitfield: bytes, num_pieces: int) -> bool:
    """True if ``bitfield`` has exactly ``ceil(num_pieces / 8)`` bytes and no spare bit set.

    For a bitfield received before the metadata (magnet links) was known.
    """
    return len(bitfield) == (num_pieces + 7) // 8 and (
        num_pieces == 0 or bitfield_spare_ok(bitfield, num_pieces)
    )


def bitfield_spare_ok(bitfield: bytes | memoryview, num_pieces: int) -> bool:
    """True if no bit past ``num_pieces`` is set in a bitfield of the right length."""
    # BEP 3: "Spare bits at the end are set to zero."
    spare = (-num_pieces) % 8
    return spare == 0 or not bitfield[-1] & ((1 << spare) - 1)


def check_head(
    length: int, msg_id: int, fast: bool, extensions: bool, num_pieces: int | None
) -> None:
    """Validate a length prefix against its message id before buffering the body.

    ``fast`` and ``extensions``: BEP 6 and BEP 10 were agreed in the handshakes.

    Raises:
        RemoteProtocolError: a length no such message has, or a message not agreed.
    """
    fixed = FIXED_LENGTH.get(msg_id)
    if fixed is not None:
        if length != fixed:
            raise RemoteProtocolError(f"message {msg_id} with length {length}, expected {fixed}")
        if msg_id in FAST_IDS and not fast:
            raise RemoteProtocolError(f"fast-extension message {msg_id} without BEP 6 agreed")
    elif msg_id == PIECE:
        if not 9 < length <= MAX_PIECE_FRAME:
            raise RemoteProtocolError(f"piece message of length {length}")
    elif msg_id == BITFIELD:
        if length > WIRE_MAX_BITFIELD:
            raise RemoteProtocolError(f"bitfield of {length} bytes exceeds {WIRE_MAX_BITFIELD}")
        if num_pieces is not None and length != 1 + (num_pieces + 7) // 8:
            raise RemoteProtocolError(f"bitfield length {length - 1} for {num_pieces} pieces")
    elif msg_id == EXTENDED:
        if not extensions:
            raise RemoteProtocolError("extended message without BEP 10 agreed")
        if not 2 <= length <= WIRE_MAX_MESSAGE:
            raise RemoteProtocolError(f"extended message of length {length}")
    elif length > WIRE_MAX_MESSAGE:
        raise RemoteProtocolError(f"message {msg_id} of {length} bytes exceeds {WIRE_MAX_MESSAGE}")


def decode_message(msg_id: int, payload: memoryview, num_pieces: int | None) -> Event:
    """The event of a message with a body, other than ``piece`` and ``extended``.

    ``payload`` (the bytes after the id) has the length :func:`check_head` accepted.

    Raises:
        RemoteProtocolError: a piece index out of range, a request for 0 or more than one
            block, or a bitfield with spare bits set.
    """
    if msg_id in (REQUEST, CANCEL, REJECT):
        index, begin, length = _U32X3.unpack_from(payload)
        if num_pieces is not None and index >= num_pieces:
            raise RemoteProtocolError(f"piece index {index} >= {num_pieces}")
        # BEP 3 practice: a request for 0 or more than one block is a violation.
        if not 0 < length <= BLOCK_SIZE:
            raise RemoteProtocolError(f"request length {length} not in 1..{BLOCK_SIZE}")
        cls = Request if msg_id == REQUEST else Cancel if msg_id == CANCEL else Reject
        return cls(index, begin, length)
    if msg_id in (HAVE, SUGGEST, ALLOWED_FAST):
        (index,) = _U32.unpack_from(payload)
        if num_pieces is not None and index >= num_pieces:
            raise RemoteProtocolError(f"piece index {index} >= {num_pieces}")
        cls1 = Have if msg_id == HAVE else Suggest if msg_id == SUGGEST else AllowedFast
        return cls1(index)
    if msg_id == BITFIELD:
        if num_pieces is not None and not bitfield_spare_ok(payload, num_pieces):
            raise RemoteProtocolError("bitfield has spare bits set")
        return Bitfield(bytes(payload))
    if msg_id == PORT:
        return Port(_U16.unpack_from(payload)[0])
    return UnknownMessage(msg_id, bytes(payload))


def encode_message(event: Event, num_pieces: int | None) -> bytes:
    """The frame of a message with a body, other than ``piece`` and the extension messages.

    Have, suggest, allowed fast, request, cancel, reject, bitfield, port, or an unknown id.

    Raises:
        LocalProtocolError: a piece index at or past ``num_pieces``, a bitfield that does
            not fit ``num_pieces``, an unknown message with a known id or too large, or any
            other event.
    """
    match event:
        case Have(piece_index=i):
            return _LEN_ID_U32.pack(5, HAVE, _local_index(i, num_pieces))
        case Suggest(piece_index=i):
            return _LEN_ID_U32.pack(5, SUGGEST, _local_index(i, num_pieces))
        case AllowedFast(piece_index=i):
            return _LEN_ID_U32.pack(5, ALLOWED_FAST, _local_index(i, num_pieces))
        case Request(piece_index=i, begin=b, length=n):
            return _LEN_ID_3U32.pack(13, REQUEST, _local_index(i, num_pieces), b, n)
        case Cancel(piece_index=i, begin=b, length=n):
            return _LEN_ID_3U32.pack(13, CANCEL, _local_index(i, num_pieces), b, n)
        case Reject(piece_index=i, begin=b, length=n):
            return _LEN_ID_3U32.pack(13, REJECT, _local_index(i, num_pieces), b, n)
        case Bitfield(bitfield=bits):
            if len(bits) + 1 > WIRE_MAX_BITFIELD:
                raise LocalProtocolError("bitfield too large")
            if num_pieces is not None and not bitfield_fits(bits, num_pieces):
                raise LocalProtocolError(f"bitfield does not fit {num_pieces} pieces")
            return _LEN_ID.pack(1 + len(bits), BITFIELD) + bits
        case Port(port=port):
            return _LEN_ID.pack(3, PORT) + _U16.pack(port)
        case UnknownMessage(msg_id=msg_id, payload=payload):
            if msg_id in FIXED_LENGTH or msg_id in (BITFIELD, PIECE, EXTENDED):
                raise LocalProtocolError(f"message id {msg_id} has its own event type")
            if len(payload) + 1 > WIRE_MAX_MESSAGE:
                raise LocalProtocolError("message too large")
            return _LEN_ID.pack(1 + len(payload), msg_id) + payload
    raise LocalProtocolError(f"cannot send {event!r}")


def extended_frame(ext_id: int, payload: bytes) -> bytes:
    """A BEP 10 ``extended`` frame: the extension id the receiver chose, then the body.

    Raises:
        LocalProtocolError: the frame would exceed ``WIRE_MAX_MESSAGE``.
    """
    if len(payload) + 2 > WIRE_MAX_MESSAGE:
        raise LocalProtocolError("extended message too large")
    return _LEN_ID.pack(2 + len(payload), EXTENDED) + bytes((ext_id,)) + payload


def _local_index(index: int, num_pieces: int | None) -> int:
    # A piece index must be below the piece count once it is known (BEP 3).
    if num_pieces is not None and index >= num_pieces:
        raise LocalProtocolError(f"piece index {index} >= {num_pieces}")
    return index
