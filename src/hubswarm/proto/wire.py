"""Sans-IO peer wire protocol: handshake, BEP 3 messages, BEP 6, BEP 10 and BEP 9.

Theory of operation (modelled on h11): a :class:`PeerConnection` never touches a socket.
``receive_data(bytes) -> list[Event]`` parses what the peer sent; ``send(event) -> bytes``
returns what to write. Our own handshake is produced by :meth:`PeerConnection.handshake`
(or :meth:`PeerConnection.accept`), since its fields are the connection's own settings.

States (of the connection as a whole, see ``_TRANSITIONS``)::

    HANDSHAKE --remote handshake, info_hash matches--> OPEN
    HANDSHAKE --remote handshake, our info_hash None--> AWAIT_ACCEPT --accept(info_hash)--> OPEN
    any --peer violation--> ERROR   (receive_data raises RemoteProtocolError, send raises Local)

A responder serving many torrents on one port is created with ``info_hash=None``. Its first
event is the peer's :class:`Handshake`; the shell looks the torrent up by
``event.info_hash``, then calls ``accept(info_hash)`` which returns our handshake bytes
(or simply closes the socket to refuse). Bytes the peer pipelined meanwhile are buffered
(bounded) and come out of the next ``receive_data(b"")``.

Every length prefix is checked against the message type *before* any byte of the body is
buffered, so a peer can never make the buffer exceed one legitimate message.

Stateless formats live apart: the 68-byte handshake in :mod:`hubswarm.proto.wire_handshake`;
message ids, lengths, layouts and the codec of messages with a body in
:mod:`hubswarm.proto.wire_frames`; the bodies of the extended messages (BEP 10's handshake,
BEP 9's ut_metadata, BEP 11's ut_pex) and the BEP 9 metadata assembler in
:mod:`hubswarm.proto.wire_ext`. This module keeps the state and the two hot paths (``piece``
and ``request`` are parsed and built inline, one Python frame per message).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from enum import Enum

from hubswarm.errors import BencodeError, LocalProtocolError, RemoteProtocolError
from hubswarm.limits import (
    BLOCK_SIZE,
    WIRE_MAX_BITFIELD,
    WIRE_MAX_PREACCEPT_BUFFER,
)
from hubswarm.proto import bencode
from hubswarm.proto.wire_events import (
    AllowedFast,
    Bitfield,
    Choke,
    Event,
    Extended,
    ExtendedHandshake,
    ExtensionEvent,
    Handshake,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    PeerExchange,
    Piece,
    Port,
    Reject,
    Request,
    Suggest,
    Unchoke,
)
from hubswarm.proto.wire_ext import (
    UT_METADATA,
    UT_PEX,
    decode_extended_handshake,
    decode_metadata,
    decode_pex,
    encode_extended_handshake,
    encode_pex,
)
from hubswarm.proto.wire_frames import (
    BITFIELD,
    BODY_EVENTS,
    CHOKE,
    EXTENDED,
    HAVE_ALL,
    HAVE_NONE,
    INTERESTED,
    KEEPALIVE,
    MAX_PIECE_FRAME,
    NOT_INTERESTED,
    PIECE,
    PORT,
    REQUEST,
    SIMPLE_BYTES,
    SIMPLE_EVENTS,
    U32_MAX,
    UNCHOKE,
    check_head,
    decode_message,
    encode_message,
    extended_frame,
)
from hubswarm.proto.wire_handshake import (
    HANDSHAKE_LENGTH,
    PSTR_PREFIX,
    make_reserved,
    parse_handshake,
)

# The struct layouts of the hot paths are built here, not imported from wire_frames: with
# the imported objects the request-parsing loop ran about 10 % slower (CPython 3.11, same
# bytecode, reproducible across runs; the cause was not pinned down).
_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")
_U32X3 = struct.Struct(">III")
_PIECE_HEAD = struct.Struct(">IBII")
_LEN_ID_3U32 = struct.Struct(">IBIII")

__all__ = ["UT_METADATA", "UT_PEX", "PeerConnection", "Role", "State"]

# A parsed ``piece`` event without its dataclass __init__ and __post_init__ (three Python
# frames per 16 KiB block): the parser has checked the fields (u32 index below the piece
# count, u32 begin, a block of 1..16 KiB), so the slots are set directly.
_new_event = object.__new__
_set_piece_index = Piece.__dict__["piece_index"].__set__
_set_piece_begin = Piece.__dict__["begin"].__set__
_set_piece_block = Piece.__dict__["block"].__set__


class Role(Enum):
    """Who opened the TCP connection."""

    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(Enum):
    """State of a :class:`PeerConnection` (see the module docstring)."""

    HANDSHAKE = "handshake"
    AWAIT_ACCEPT = "await_accept"
    OPEN = "open"
    ERROR = "error"


class _Trigger(Enum):
    HANDSHAKE_MATCHED = "handshake_matched"
    HANDSHAKE_UNKNOWN_HASH = "handshake_unknown_hash"
    ACCEPTED = "accepted"
    VIOLATION = "violation"


_TRANSITIONS: dict[State, dict[_Trigger, State]] = {
    State.HANDSHAKE: {
        _Trigger.HANDSHAKE_MATCHED: State.OPEN,
        _Trigger.HANDSHAKE_UNKNOWN_HASH: State.AWAIT_ACCEPT,
        _Trigger.VIOLATION: State.ERROR,
    },
    State.AWAIT_ACCEPT: {_Trigger.ACCEPTED: State.OPEN, _Trigger.VIOLATION: State.ERROR},
    State.OPEN: {_Trigger.VIOLATION: State.ERROR},
    State.ERROR: {_Trigger.VIOLATION: State.ERROR},
}


class PeerConnection:
    """One peer wire connection, sans-IO: bytes in -> events, events in -> bytes.

    Raises:
        LocalProtocolError: an initiator without ``info_hash``, bad ids.
    """

    def __init__(
        self,
        role: Role,
        *,
        info_hash: bytes | None,
        peer_id: bytes,
        extension_protocol: bool = True,
        fast: bool = True,
        dht: bool = False,
        num_pieces: int | None = None,
        tolerate_late_bitfield: bool = False,
    ) -> None:
        if info_hash is not None and len(info_hash) != 20:
            raise LocalProtocolError("info_hash must be 20 bytes")
        if info_hash is None and role is Role.INITIATOR:
            raise LocalProtocolError("an initiator must know the info_hash it asks for")
        if len(peer_id) != 20:
            raise LocalProtocolError("peer_id must be 20 bytes")
        self.role = role
        self.peer_id = bytes(peer_id)
        self.reserved = make_reserved(extension_protocol=extension_protocol, fast=fast, dht=dht)
        self._info_hash = None if info_hash is None else bytes(info_hash)
        self._state = State.HANDSHAKE
        self._buf = bytearray()
        self._num_pieces: int | None = None
        if num_pieces is not None:
            self.set_num_pieces(num_pieces)
        self._handshake_sent = False
        self.remote_handshake: Handshake | None = None
        # Negotiated: both sides set the bit.
        self.supports_fast = False
        self.supports_extensions = False
        # BEP 3/6: a bitfield, have all or have none may only come first. Extended messages
        # (libtorrent sends its extended handshake before the bitfield) and port do not count.
        self._remote_may_send_bitfield = True
        # aria2 1.36 re-sends its whole bitfield mid-connection (even right after have none)
        # instead of a batch of haves; libtorrent accepts that, so the shell may opt in.
        self.tolerate_late_bitfield = tolerate_late_bitfield
        self._local_may_send_bitfield = True
        self._local_extensions: dict[str, int] = {}
        self._remote_extensions: dict[str, int] = {}
        self.remote_extended_handshake: ExtendedHandshake | None = None
        self._local_metadata_size: int | None = None
        # BEP 3: connections start out choked and not interested.
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False

    # --- properties ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def info_hash(self) -> bytes | None:
        """Our info_hash (None for a responder until :meth:`accept`)."""
        return self._info_hash

    @property
    def num_pieces(self) -> int | None:
        """Pieces in the torrent, once known; indexes are validated against it."""
        return self._num_pieces

    @property
    def remote_extensions(self) -> dict[str, int]:
        """The remote's BEP 10 ids (name -> id), as of its last extended handshake."""
        return dict(self._remote_extensions)

    @property
    def local_extensions(self) -> dict[str, int]:
        """Our BEP 10 ids, as advertised in the extended handshake we sent."""
        return dict(self._local_extensions)

    @property
    def remote_metadata_size(self) -> int | None:
        """BEP 9 ``metadata_size`` from the remote's extended handshake."""
        hs = self.remote_extended_handshake
        return None if hs is None else hs.metadata_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events (always bounded)."""
        return len(self._buf)

    # --- control ---------------------------------------------------------------------------

    def set_num_pieces(self, num_pieces: int) -> None:
        """Tell the connection the torrent's piece count (after metadata is known).

        Raises:
            LocalProtocolError: not positive, or a different count was set before.
        """
        if num_pieces < 1 or num_pieces > WIRE_MAX_BITFIELD * 8:
            raise LocalProtocolError(f"num_pieces {num_pieces} out of range")
        if self._num_pieces is not None and self._num_pieces != num_pieces:
            raise LocalProtocolError("num_pieces already set to a different value")
        self._num_pieces = num_pieces

    def handshake(self) -> bytes:
        """Our 68-byte handshake; call once (an initiator right away).

        Raises:
            LocalProtocolError: already sent, info_hash unknown, or the connection failed.
        """
        self._check_usable()
        if self._handshake_sent:
            raise LocalProtocolError("handshake already sent")
        if self._info_hash is None:
            raise LocalProtocolError("info_hash unknown: accept() the peer's handshake first")
        self._handshake_sent = True
        return PSTR_PREFIX + self.reserved + self._info_hash + self.peer_id

    def accept(self, info_hash: bytes) -> bytes:
        """Serve the torrent the peer asked for (state AWAIT_ACCEPT); return our handshake.

        Afterwards call ``receive_data(b"")`` to get messages the peer pipelined.

        Raises:
            LocalProtocolError: wrong state, or ``info_hash`` is not the one the peer sent.
        """
        self._check_usable()
        if self._state is not State.AWAIT_ACCEPT or self.remote_handshake is None:
            raise LocalProtocolError(f"accept() in state {self._state.name}")
        if info_hash != self.remote_handshake.info_hash:
            raise LocalProtocolError("accept() must name the info_hash the peer sent")
        self._info_hash = bytes(info_hash)
        self._transition(_Trigger.ACCEPTED)
        return self.handshake()

    def _in(self, state: State) -> bool:
        # A method, so that mypy does not carry a narrowed state across transitions.
        return self._state is state

    def _check_usable(self) -> None:
        if self._state is State.ERROR:
            raise LocalProtocolError("connection is in ERROR state")

    def _transition(self, trigger: _Trigger) -> None:
        try:
            self._state = _TRANSITIONS[self._state][trigger]
        except KeyError:
            raise LocalProtocolError(
                f"no transition from {self._state.name} on {trigger.name}"
            ) from None

    def _violation(self, message: str) -> RemoteProtocolError:
        self._transition(_Trigger.VIOLATION)
        self._buf = bytearray()
        return RemoteProtocolError(message)

    # --- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the socket; return the complete events they finish.

        Raises:
            RemoteProtocolError: the peer broke the protocol (state becomes ERROR), or the
                connection was already in ERROR.
        """
        if self._state is State.ERROR:
            raise RemoteProtocolError("connection is in ERROR state")
        events: list[Event] = []
        try:
            self._receive(memoryview(data).cast("B"), events)
        except RemoteProtocolError:
            if not self._in(State.ERROR):
                self._transition(_Trigger.VIOLATION)
                self._buf = bytearray()
            raise
        except (BencodeError, LocalProtocolError, ValueError, struct.error) as exc:
            raise self._violation(f"malformed message: {exc}") from exc
        return events

    def _receive(self, view: memoryview, events: list[Event]) -> None:
        buf = self._buf
        n = len(view)
        off = 0
        # First finish the partial frame left over from the last call, pulling only the bytes
        # it needs, so the rest of ``view`` is parsed in place (one copy per block).
        while buf:
            if self._state is State.AWAIT_ACCEPT:
                self._stash(view[off:])
                return
            need = self._head_need(buf)
            if len(buf) < need and off < n:
                take = min(need - len(buf), n - off)
                buf += view[off : off + take]
                off += take
            with memoryview(buf) as bmv:
                consumed = self._parse(bmv, 0, len(buf), events)
            if consumed:
                del buf[:consumed]
            elif off >= n:
                return
        if off < n:
            pos = self._parse(view, off, n, events)
            if pos < n:
                self._stash(view[pos:])

    def bytes_wanted(self) -> int:
        """Bytes that must arrive before :meth:`receive_data` can return another event.

        The rest of the frame whose start is buffered (its 4-byte length prefix first), or 1
        when nothing is buffered. Never reaches past that frame, so a shell may wait for this
        many bytes at once (``SO_RCVLOWAT``) without waiting on data the peer has not sent:
        a sender writes a frame whole. Before the connection is open, 1.
        """
        buf = self._buf
        if not buf or self._state is not State.OPEN:
            return 1
        if len(buf) < 5:  # the length prefix, then the id byte (checked before the body)
            return 4 - len(buf) if len(buf) < 4 else 1
        length: int = _U32.unpack_from(buf, 0)[0]
        return max(1, 4 + length - len(buf))

    def _stash(self, rest: memoryview) -> None:
        if len(self._buf) + len(rest) > WIRE_MAX_PREACCEPT_BUFFER:
            raise self._violation("too much data before the handshake was accepted")
        self._buf += rest

    def _head_need(self, buf: bytearray) -> int:
        """Bytes the frame at the head of ``buf`` needs in all (its header if still unknown)."""
        if self._state is State.HANDSHAKE:
            return HANDSHAKE_LENGTH
        if len(buf) < 4:
            return 4
        length: int = _U32.unpack_from(buf, 0)[0]
        if length == 0:
            return 4
        if len(buf) < 5:
            return 5
        check_head(length, buf[4], self.supports_fast, self.supports_extensions, self._num_pieces)
        return 4 + length

    def _parse_handshake(self, mv: memoryview, pos: int, end: int, events: list[Event]) -> int:
        hs = parse_handshake(mv, pos, end)
        if hs is None:
            return pos
        if self._info_hash is not None and hs.info_hash != self._info_hash:
            raise self._violation("handshake info_hash does not match ours")
        self.remote_handshake = hs
        self.supports_fast = hs.fast and bool(self.reserved[7] & 0x04)
        self.supports_extensions = hs.extension_protocol and bool(self.reserved[5] & 0x10)
        self._transition(
            _Trigger.HANDSHAKE_MATCHED
            if self._info_hash is not None
            else _Trigger.HANDSHAKE_UNKNOWN_HASH
        )
        events.append(hs)
        return pos + HANDSHAKE_LENGTH

    def _parse(self, mv: memoryview, pos: int, end: int, events: list[Event]) -> int:
        """Parse whole frames of ``mv[pos:end]``, validate the head of a partial one.

        Returns the offset after the last whole frame.
        """
        if self._state is not State.OPEN:
            if self._state is State.HANDSHAKE:
                pos = self._parse_handshake(mv, pos, end, events)
            if not self._in(State.OPEN):
                return pos
        num_pieces = self._num_pieces
        # Fixed once the handshakes are done: locals, not attribute lookups per frame.
        fast, extensions = self.supports_fast, self.supports_extensions
        append = events.append
        while True:
            avail = end - pos
            if avail < 4:
                return pos
            (length,) = _U32.unpack_from(mv, pos)
            if length == 0:
                append(KEEPALIVE)
                pos += 4
                continue
            if avail < 5:
                return pos
            msg_id = mv[pos + 4]
            if msg_id == PIECE:  # the hot path: no dict lookups, one copy of the block
                if not 9 < length <= MAX_PIECE_FRAME:
                    raise self._violation(f"piece message of length {length}")
                if avail < 4 + length:
                    return pos
                index, begin = _U32X2.unpack_from(mv, pos + 5)
                if num_pieces is not None and index >= num_pieces:
                    self._check_index(index)  # raises; the comparison stays inline (hot path)
                piece = _new_event(Piece)
                _set_piece_index(piece, index)
                _set_piece_begin(piece, begin)
                _set_piece_block(piece, bytes(mv[pos + 13 : pos + 4 + length]))
                append(piece)
                self._remote_may_send_bitfield = False
                pos += 4 + length
                continue
            if msg_id == REQUEST:  # a seed's hot path: one per block it uploads
                if length != 13:
                    raise self._violation(f"message {REQUEST} with length {length}, expected 13")
                if avail < 17:
                    return pos
                index, begin, size = _U32X3.unpack_from(mv, pos + 5)
                if num_pieces is not None and index >= num_pieces:
                    self._check_index(index)  # raises
                if not 0 < size <= BLOCK_SIZE:
                    raise self._violation(f"request length {size} not in 1..{BLOCK_SIZE}")
                append(Request(index, begin, size))
                self._remote_may_send_bitfield = False
                pos += 17
                continue
            check_head(length, msg_id, fast, extensions, num_pieces)
            if avail < 4 + length:
                return pos
            append(self._decode(msg_id, mv[pos + 5 : pos + 4 + length]))
            pos += 4 + length

    def _check_index(self, index: int, *, local: bool = False) -> None:
        """A piece index must be below the piece count once it is known (BEP 3).

        Raises:
            RemoteProtocolError: the peer sent it (the connection enters ERROR).
            LocalProtocolError: ``local``: we were about to send it.
        """
        if self._num_pieces is not None and index >= self._num_pieces:
            message = f"piece index {index} >= {self._num_pieces}"
            if local:
                raise LocalProtocolError(message)
            raise self._violation(message)

    def _decode(self, msg_id: int, payload: memoryview) -> Event:
        """Decode one message whose length was validated by :meth:`_check_head`."""
        if msg_id in (BITFIELD, HAVE_ALL, HAVE_NONE):
            if not self._remote_may_send_bitfield and not self.tolerate_late_bitfield:
                raise self._violation("bitfield/have all/have none not the first message")
            self._remote_may_send_bitfield = False
        elif msg_id not in (EXTENDED, PORT):
            self._remote_may_send_bitfield = False
        simple = SIMPLE_EVENTS.get(msg_id)
        if simple is not None:
            if msg_id <= NOT_INTERESTED:
                self._update_remote_flags(msg_id)
            return simple
        if msg_id == EXTENDED:
            return self._decode_extended(payload[0], bytes(payload[1:]))
        return decode_message(msg_id, payload, self._num_pieces)

    def _update_remote_flags(self, msg_id: int) -> None:
        if msg_id == CHOKE:
            self.peer_choking = True
        elif msg_id == UNCHOKE:
            self.peer_choking = False
        elif msg_id == INTERESTED:
            self.peer_interested = True
        else:
            self.peer_interested = False

    def _decode_extended(self, ext_id: int, body: bytes) -> Event:
        if ext_id == 0:
            return self._decode_extended_handshake(body)
        if ext_id == self._local_extensions.get(UT_METADATA):
            return decode_metadata(ext_id, body, self.remote_metadata_size)
        if ext_id == self._local_extensions.get(UT_PEX):
            return decode_pex(body)
        return Extended(ext_id, body)

    def _decode_extended_handshake(self, body: bytes) -> ExtendedHandshake:
        hs = decode_extended_handshake(body)
        for name, ext in hs.m.items():
            if ext == 0:
                self._remote_extensions.pop(name, None)
            else:
                self._remote_extensions[name] = ext
        self.remote_extended_handshake = hs
        return hs

    # --- sending ---------------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """Return the bytes for ``event`` (anything but :class:`Handshake`).

        Raises:
            LocalProtocolError: the event is not allowed now (before our handshake, a fast or
                extended message not negotiated, a bitfield not first, an index out of range).
        """
        self._check_usable()
        if not self._handshake_sent:
            raise LocalProtocolError("send our handshake first")
        if type(event) is Piece:  # hot path
            self._check_index(event.piece_index, local=True)
            self._local_may_send_bitfield = False
            block = event.block
            return _PIECE_HEAD.pack(9 + len(block), PIECE, event.piece_index, event.begin) + block
        simple = SIMPLE_BYTES.get(type(event))
        if simple is not None:
            self._local_first(event)
            self._update_local_flags(event)
            return simple
        self._local_first(event)
        if type(event) in BODY_EVENTS:
            return encode_message(event, self._num_pieces)
        return self._send_extension(event)

    def send_requests(self, requests: Iterable[tuple[int, int, int]]) -> bytes:
        """The bytes of several ``request`` messages, from (piece_index, begin, length).

        Same checks as ``send(Request(...))`` for each, without building the events: the
        leech sends one request per 16 KiB block received, in batches.

        Raises:
            LocalProtocolError: as ``send``; nothing is sent then.
        """
        self._check_usable()
        if not self._handshake_sent:
            raise LocalProtocolError("send our handshake first")
        out = bytearray()
        pack = _LEN_ID_3U32.pack
        limit = self._num_pieces
        for index, begin, length in requests:
            if limit is not None and index >= limit:
                raise LocalProtocolError(f"piece index {index} >= {limit}")
            if not (0 < length <= BLOCK_SIZE and 0 <= index <= U32_MAX and 0 <= begin <= U32_MAX):
                raise LocalProtocolError(f"bad request ({index}, {begin}, {length})")
            out += pack(13, REQUEST, index, begin, length)
        if out:
            self._local_may_send_bitfield = False
        return bytes(out)

    def piece_header(self, piece_index: int, begin: int, length: int) -> bytes:
        """The 13-byte header of a piece message whose block the caller writes right after.

        Same checks as ``send(Piece(...))``; lets the shell ``writelines([header, block])``
        from a memoryview without joining the block into a new bytes object.
        """
        self._check_usable()
        if not self._handshake_sent:
            raise LocalProtocolError("send our handshake first")
        if not 0 < length <= BLOCK_SIZE:
            raise LocalProtocolError(f"block length {length} not in 1..{BLOCK_SIZE}")
        self._check_index(piece_index, local=True)
        self._local_may_send_bitfield = False
        return _PIECE_HEAD.pack(9 + length, PIECE, piece_index, begin)

    def _local_first(self, event: Event) -> None:
        # Mirror of the receive-side rule, plus: fast and extended messages need both bits.
        if isinstance(event, Suggest | HaveAll | HaveNone | Reject | AllowedFast):
            if not self.supports_fast:
                raise LocalProtocolError("BEP 6 was not agreed with this peer")
        elif isinstance(event, ExtensionEvent) and not self.supports_extensions:
            raise LocalProtocolError("BEP 10 was not agreed with this peer")
        if isinstance(event, Bitfield | HaveAll | HaveNone):
            if not self._local_may_send_bitfield:
                raise LocalProtocolError("bitfield/have all/have none must be the first message")
            self._local_may_send_bitfield = False
        elif not isinstance(event, KeepAlive | Port | ExtensionEvent):
            self._local_may_send_bitfield = False

    def _update_local_flags(self, event: Event) -> None:
        match event:
            case Choke():
                self.am_choking = True
            case Unchoke():
                self.am_choking = False
            case Interested():
                self.am_interested = True
            case NotInterested():
                self.am_interested = False
            case _:
                pass

    def _send_extension(self, event: Event) -> bytes:
        match event:
            case Handshake():
                raise LocalProtocolError("use handshake() or accept() to send the handshake")
            case ExtendedHandshake():
                return self._send_extended_handshake(event)
            case MetadataRequest(piece=piece):
                return self._send_metadata({b"msg_type": 0, b"piece": piece}, b"")
            case MetadataReject(piece=piece):
                return self._send_metadata({b"msg_type": 2, b"piece": piece}, b"")
            case MetadataData(piece=piece, total_size=total, data=data):
                d = {b"msg_type": 1, b"piece": piece, b"total_size": total}
                return self._send_metadata(d, data)
            case PeerExchange():
                return self._send_pex(event)
            case Extended(ext_id=ext_id, payload=payload):
                return extended_frame(ext_id, payload)
        return encode_message(event, self._num_pieces)  # raises "cannot send"

    def _send_extended_handshake(self, event: ExtendedHandshake) -> bytes:
        frame = extended_frame(0, encode_extended_handshake(event))
        for name, ext in event.m.items():
            if ext == 0:
                self._local_extensions.pop(name, None)
            else:
                self._local_extensions[name] = ext
        if event.metadata_size is not None:
            self._local_metadata_size = event.metadata_size
        return frame

    def _send_pex(self, event: PeerExchange) -> bytes:
        ext_id = self._remote_extensions.get(UT_PEX)
        if not ext_id:
            raise LocalProtocolError("the peer did not advertise ut_pex")
        return extended_frame(ext_id, encode_pex(event))

    def _send_metadata(self, d: dict[bytes, int], data: bytes) -> bytes:
        ext_id = self._remote_extensions.get(UT_METADATA)
        if not ext_id:
            raise LocalProtocolError("the peer did not advertise ut_metadata")
        return extended_frame(ext_id, bencode.encode(d) + data)
