"""Typed events of the peer wire protocol (BEP 3, 5, 6, 9, 10, 11).

Each event is a frozen slotted dataclass that validates its fields in ``__post_init__``;
building an invalid event is our own misuse and raises :class:`LocalProtocolError`.
Bytes from a peer are validated by :class:`hubswarm.proto.wire.PeerConnection` *before* an
event is built, so a peer's mistake surfaces as :class:`RemoteProtocolError` instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from hubswarm.errors import LocalProtocolError
from hubswarm.limits import BLOCK_SIZE, METADATA_MAX_SIZE, METADATA_PIECE_SIZE

__all__ = [
    "AllowedFast",
    "Bitfield",
    "Cancel",
    "Choke",
    "Event",
    "Extended",
    "ExtendedHandshake",
    "ExtensionEvent",
    "Handshake",
    "Have",
    "HaveAll",
    "HaveNone",
    "Interested",
    "KeepAlive",
    "MetadataData",
    "MetadataReject",
    "MetadataRequest",
    "NotInterested",
    "PeerExchange",
    "Piece",
    "Port",
    "Reject",
    "Request",
    "Suggest",
    "Unchoke",
    "UnknownMessage",
    "metadata_piece_count",
    "metadata_piece_size",
]

_U32_MAX = 0xFFFFFFFF


def _u32(name: str, value: int) -> None:
    # Every index, offset and length on the wire is a 4-byte big-endian integer (BEP 3).
    if not 0 <= value <= _U32_MAX:
        raise LocalProtocolError(f"{name}={value} does not fit in 4 bytes")


def _block_length(length: int) -> None:
    # BEP 3 practice: blocks are 16 KiB; clients drop peers that ask for more.
    if not 0 < length <= BLOCK_SIZE:
        raise LocalProtocolError(f"block length {length} not in 1..{BLOCK_SIZE}")


def _check_block(piece_index: int, begin: int, length: int) -> None:
    # One comparison chain for the messages sent per 16 KiB block (request, piece, cancel,
    # reject); the precise error only when it fails.
    if 0 <= piece_index <= _U32_MAX and 0 <= begin <= _U32_MAX and 0 < length <= BLOCK_SIZE:
        return
    _u32("piece_index", piece_index)
    _u32("begin", begin)
    _block_length(length)


def metadata_piece_count(total_size: int) -> int:
    """Number of BEP 9 metadata pieces (16 KiB each, the last one shorter)."""
    return (total_size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE


def metadata_piece_size(total_size: int, piece: int) -> int:
    """Size of metadata piece ``piece`` of a ``total_size`` metadata (0 if out of range)."""
    return max(0, min(METADATA_PIECE_SIZE, total_size - piece * METADATA_PIECE_SIZE))


# --- handshake (BEP 3) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Handshake:
    """The 68-byte opening: reserved bits, info_hash and peer_id (BEP 3)."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    def __post_init__(self) -> None:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20 or len(self.reserved) != 8:
            raise LocalProtocolError("handshake needs a 20-byte info_hash and peer_id, 8 reserved")

    @property
    def extension_protocol(self) -> bool:
        """BEP 10: reserved byte 5, bit 0x10."""
        return bool(self.reserved[5] & 0x10)

    @property
    def fast(self) -> bool:
        """BEP 6: reserved byte 7, bit 0x04."""
        return bool(self.reserved[7] & 0x04)

    @property
    def dht(self) -> bool:
        """BEP 5: reserved byte 7, bit 0x01."""
        return bool(self.reserved[7] & 0x01)


# --- BEP 3 messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A zero-length message (BEP 3)."""


@dataclass(frozen=True, slots=True)
class Choke:
    """id 0."""


@dataclass(frozen=True, slots=True)
class Unchoke:
    """id 1."""


@dataclass(frozen=True, slots=True)
class Interested:
    """id 2."""


@dataclass(frozen=True, slots=True)
class NotInterested:
    """id 3."""


@dataclass(frozen=True, slots=True)
class Have:
    """id 4: the sender has verified ``piece_index``."""

    piece_index: int

    def __post_init__(self) -> None:
        _u32("piece_index", self.piece_index)


@dataclass(frozen=True, slots=True)
class Bitfield:
    """id 5: one bit per piece, high bit of byte 0 is piece 0; only as the first message."""

    bitfield: bytes


@dataclass(frozen=True, slots=True)
class Request:
    """id 6: ask for ``length`` bytes at ``begin`` of ``piece_index``."""

    piece_index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_block(self.piece_index, self.begin, self.length)


@dataclass(frozen=True, slots=True)
class Piece:
    """id 7: one block of data."""

    piece_index: int
    begin: int
    block: bytes

    def __post_init__(self) -> None:
        _check_block(self.piece_index, self.begin, len(self.block))


@dataclass(frozen=True, slots=True)
class Cancel:
    """id 8: withdraw a request."""

    piece_index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_block(self.piece_index, self.begin, self.length)


@dataclass(frozen=True, slots=True)
class Port:
    """id 9: the sender's DHT UDP port (BEP 5)."""

    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise LocalProtocolError(f"port {self.port} out of range")


# --- BEP 6 fast extension -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggest:
    """id 0x0D: the sender suggests downloading ``piece_index`` (BEP 6)."""

    piece_index: int

    def __post_init__(self) -> None:
        _u32("piece_index", self.piece_index)


@dataclass(frozen=True, slots=True)
class HaveAll:
    """id 0x0E: the sender is a seed; replaces the bitfield (BEP 6)."""


@dataclass(frozen=True, slots=True)
class HaveNone:
    """id 0x0F: the sender has nothing; replaces the bitfield (BEP 6)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """id 0x10: the sender will not serve this request (BEP 6)."""

    piece_index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_block(self.piece_index, self.begin, self.length)


@dataclass(frozen=True, slots=True)
class AllowedFast:
    """id 0x11: ``piece_index`` may be requested even while choked (BEP 6)."""

    piece_index: int

    def __post_init__(self) -> None:
        _u32("piece_index", self.piece_index)


# --- BEP 10 extension protocol and BEP 9 ut_metadata ----------------------------------------


@dataclass(frozen=True, slots=True)
class ExtendedHandshake:
    """Extended message 0 (BEP 10): the sender's extension ids ``m`` and its capabilities.

    An id of 0 in ``m`` disables that extension. ``metadata_size`` comes from BEP 9.
    """

    m: dict[str, int] = field(default_factory=dict)
    metadata_size: int | None = None
    v: str | None = None
    p: int | None = None
    reqq: int | None = None
    yourip: bytes | None = None

    def __post_init__(self) -> None:
        for name, ext_id in self.m.items():
            if not isinstance(name, str) or not 0 <= ext_id <= 255:
                raise LocalProtocolError(f"extension id {name!r}={ext_id} not in 0..255")
        if self.metadata_size is not None and not 0 < self.metadata_size <= METADATA_MAX_SIZE:
            raise LocalProtocolError(f"metadata_size {self.metadata_size} out of range")
        if self.p is not None and not 0 < self.p <= 0xFFFF:
            raise LocalProtocolError(f"p={self.p} is not a port")
        if self.reqq is not None and self.reqq < 1:
            raise LocalProtocolError(f"reqq={self.reqq} must be positive")
        if self.yourip is not None and len(self.yourip) not in (4, 16):
            raise LocalProtocolError("yourip must be 4 or 16 bytes")


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """ut_metadata msg_type 0: ask for metadata piece ``piece`` (BEP 9)."""

    piece: int

    def __post_init__(self) -> None:
        if not 0 <= self.piece < metadata_piece_count(METADATA_MAX_SIZE):
            raise LocalProtocolError(f"metadata piece {self.piece} out of range")


@dataclass(frozen=True, slots=True)
class MetadataData:
    """ut_metadata msg_type 1: metadata piece ``piece`` of ``total_size`` bytes (BEP 9)."""

    piece: int
    total_size: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 < self.total_size <= METADATA_MAX_SIZE:
            raise LocalProtocolError(f"metadata total_size {self.total_size} out of range")
        expected = metadata_piece_size(self.total_size, self.piece)
        if self.piece < 0 or expected == 0 or len(self.data) != expected:
            raise LocalProtocolError(
                f"metadata piece {self.piece} of {len(self.data)} bytes, expected {expected}"
            )


@dataclass(frozen=True, slots=True)
class MetadataReject:
    """ut_metadata msg_type 2: the sender will not send piece ``piece`` (BEP 9)."""

    piece: int

    def __post_init__(self) -> None:
        if not 0 <= self.piece < metadata_piece_count(METADATA_MAX_SIZE):
            raise LocalProtocolError(f"metadata piece {self.piece} out of range")


@dataclass(frozen=True, slots=True)
class PeerExchange:
    """ut_pex (BEP 11): peers the sender connected to since its last message, and left.

    ``added_flags`` holds one BEP 11 flag byte per entry of ``added`` (0x02: a seed,
    0x10: reachable, the sender dialled it), or is empty when the sender gave none.
    """

    added: tuple[tuple[str, int], ...] = ()
    added_flags: tuple[int, ...] = ()
    dropped: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.added_flags and len(self.added_flags) != len(self.added):
            raise LocalProtocolError("added_flags needs one flag byte per added peer")
        if any(not 0 <= f <= 255 for f in self.added_flags):
            raise LocalProtocolError("a PEX flag is not a byte")
        for ip, port in (*self.added, *self.dropped):
            if not 0 < port <= 0xFFFF:
                raise LocalProtocolError(f"PEX peer {ip}:{port}: port not in 1..65535")
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise LocalProtocolError(f"PEX peer {ip[:64]!r} is not an IP address") from None


@dataclass(frozen=True, slots=True)
class Extended:
    """Any other extended message (BEP 10), payload undecoded.

    Received: ``ext_id`` is *our* id for it. Sent: ``ext_id`` is the *remote's* id for it
    (look it up in ``PeerConnection.remote_extensions``).
    """

    ext_id: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 < self.ext_id <= 255:
            raise LocalProtocolError(f"ext_id {self.ext_id} not in 1..255")


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message id we do not know; ignored per BEP 3 practice, surfaced for logging."""

    msg_id: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.msg_id <= 255:
            raise LocalProtocolError(f"msg_id {self.msg_id} not in 0..255")


# BEP 10 messages: sent only when both handshakes set the extension bit, and (like
# ``keep-alive`` and ``port``) allowed before the bitfield without taking its place.
ExtensionEvent = (
    ExtendedHandshake | MetadataRequest | MetadataData | MetadataReject | PeerExchange | Extended
)

Event = (
    Handshake
    | KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | Suggest
    | HaveAll
    | HaveNone
    | Reject
    | AllowedFast
    | ExtendedHandshake
    | MetadataRequest
    | MetadataData
    | MetadataReject
    | PeerExchange
    | Extended
    | UnknownMessage
)
