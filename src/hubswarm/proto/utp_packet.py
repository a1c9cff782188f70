"""uTP packets (BEP 29): the 20-byte header, the extension chain, and sequence arithmetic.

Theory of operation: :func:`decode` turns one UDP datagram into a :class:`Packet` or raises
:class:`UtpPacketError` (a :class:`RemoteProtocolError`), never anything else;
:func:`encode` is its inverse. :func:`looks_like_utp` is the cheap test a shell sharing one
UDP port with the DHT uses to route a datagram before decoding it (libtorrent does the same:
KRPC messages are bencoded dictionaries and start with ``d``).

BEP 29 header, all fields big-endian::

    0       4       8               16              24              32
    +-------+-------+---------------+---------------+---------------+
    | type  | ver   | extension     | connection_id                 |
    +-------+-------+---------------+---------------+---------------+
    | timestamp_microseconds                                        |
    +---------------+---------------+---------------+---------------+
    | timestamp_difference_microseconds                             |
    +---------------+---------------+---------------+---------------+
    | wnd_size                                                      |
    +---------------+---------------+---------------+---------------+
    | seq_nr                        | ack_nr                        |
    +---------------+---------------+---------------+---------------+

``extension`` names the first extension; each extension is ``<next extension u8><len u8>
<len bytes>``, and 0 ends the chain. Extension 1 is the selective ACK bitmask: bit ``i``
(least significant bit of each byte first, bytes in order, as libtorrent reads and writes
it) says whether packet ``ack_nr + 2 + i`` was received; ``ack_nr + 1`` is by definition
missing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from hubswarm.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "EXT_MAX_DATAGRAM",
    "EXT_SACK",
    "HEADER_SIZE",
    "MAX_DATAGRAM_MAGIC",
    "MAX_EXTENSIONS",
    "SEQ_MASK",
    "UTP_VERSION",
    "Extension",
    "Packet",
    "PacketType",
    "UtpPacketError",
    "decode",
    "encode",
    "encode_fields",
    "looks_like_utp",
    "max_datagram_extension",
    "max_datagram_of",
    "sack_bitmask",
    "sack_seq_nrs",
    "seq_add",
    "seq_diff",
    "seq_lt",
]

UTP_VERSION = 1
HEADER_SIZE = 20
# Extension ids: BEP 29 defines 1 (selective ACK); libtorrent also sends 3 (close reason).
EXT_SACK = 1
EXT_CLOSE_REASON = 3
# Ours, in SYN and SYN-ACK only: "I read datagrams up to N bytes in full". BEP 29 has no such
# field, and libtorrent reads into a 1500-byte buffer (it caps its own MTU at Ethernet's for
# that reason), so a larger datagram would reach it truncated: without this extension from the
# peer we never send more than MAX_PACKET_SIZE. libtorrent and libutp skip extensions they do
# not know (2, libutp's "extension bits", and 3 are taken). The two magic bytes keep a
# stranger's extension 0x68 of four bytes from being read as ours.
EXT_MAX_DATAGRAM = 0x68
MAX_DATAGRAM_MAGIC = b"hs"
# BEP 29 and libtorrent use at most two extensions per packet; a chain longer than this is
# garbage or an attempt to make us walk a long list (each costs two bytes).
MAX_EXTENSIONS = 8
# seq_nr and ack_nr are 16-bit and wrap (BEP 29); timestamps are 32-bit and wrap.
SEQ_MASK = 0xFFFF
U32_MASK = 0xFFFFFFFF

_HEADER = struct.Struct(">BBHIIIHH")


class UtpPacketError(RemoteProtocolError):
    """A datagram is not a well-formed uTP packet (bad version, type or extension chain)."""


class PacketType(IntEnum):
    """BEP 29 packet types (the high nibble of the first byte)."""

    ST_DATA = 0
    ST_FIN = 1
    ST_STATE = 2
    ST_RESET = 3
    ST_SYN = 4


# By value, for decode: indexing a tuple is cheaper than calling the Enum per datagram.
_PACKET_TYPES = tuple(sorted(PacketType))


# --- sequence arithmetic (16-bit, wrapping) ---------------------------------------------------


def seq_add(seq_nr: int, n: int) -> int:
    """``seq_nr + n`` modulo 2**16."""
    return (seq_nr + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """How far ``a`` is ahead of ``b``, in ``-32768..32767`` (wrapping)."""
    d = (a - b) & SEQ_MASK
    return d - 0x10000 if d >= 0x8000 else d


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` in wrapping 16-bit order."""
    return seq_diff(a, b) < 0


# --- packets ----------------------------------------------------------------------------------


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{name}={value} does not fit in {bits} bits")


@dataclass(frozen=True, slots=True)
class Extension:
    """One link of the extension chain: its id (1..255) and up to 255 bytes of data."""

    type: int
    data: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.type <= 255:
            raise LocalProtocolError(f"extension id {self.type} not in 1..255")
        if len(self.data) > 255:
            raise LocalProtocolError("extension data longer than 255 bytes")


@dataclass(frozen=True, slots=True)
class Packet:
    """One uTP packet; field names are BEP 29's."""

    type: PacketType
    connection_id: int
    timestamp_microseconds: int
    timestamp_difference_microseconds: int
    wnd_size: int
    seq_nr: int
    ack_nr: int
    extensions: tuple[Extension, ...] = ()
    payload: bytes = b""

    def __post_init__(self) -> None:
        # One chained comparison for the common case (a packet per datagram received); the
        # named checks only say which field is out of range.
        if not (
            0 <= self.connection_id <= 0xFFFF
            and 0 <= self.seq_nr <= 0xFFFF
            and 0 <= self.ack_nr <= 0xFFFF
            and 0 <= self.timestamp_microseconds <= 0xFFFFFFFF
            and 0 <= self.timestamp_difference_microseconds <= 0xFFFFFFFF
            and 0 <= self.wnd_size <= 0xFFFFFFFF
        ):
            _check_range("connection_id", self.connection_id, 16)
            _check_range("timestamp_microseconds", self.timestamp_microseconds, 32)
            _check_range(
                "timestamp_difference_microseconds", self.timestamp_difference_microseconds, 32
            )
            _check_range("wnd_size", self.wnd_size, 32)
            _check_range("seq_nr", self.seq_nr, 16)
            _check_range("ack_nr", self.ack_nr, 16)
        if len(self.extensions) > MAX_EXTENSIONS:
            raise LocalProtocolError(f"more than {MAX_EXTENSIONS} extensions")

    @property
    def sack(self) -> bytes | None:
        """The selective ACK bitmask (extension 1), or None."""
        for ext in self.extensions:
            if ext.type == EXT_SACK:
                return ext.data
        return None

    @property
    def size(self) -> int:
        """Encoded size in bytes."""
        return HEADER_SIZE + sum(2 + len(e.data) for e in self.extensions) + len(self.payload)


def encode(packet: Packet) -> bytes:
    """The datagram for ``packet``."""
    exts = packet.extensions
    head = _HEADER.pack(
        (packet.type << 4) | UTP_VERSION,
        exts[0].type if exts else 0,
        packet.connection_id,
        packet.timestamp_microseconds,
        packet.timestamp_difference_microseconds,
        packet.wnd_size,
        packet.seq_nr,
        packet.ack_nr,
    )
    if not exts:
        return head + packet.payload
    parts = [head]
    for i, ext in enumerate(exts):
        following = exts[i + 1].type if i + 1 < len(exts) else 0
        parts.append(bytes((following, len(ext.data))))
        parts.append(ext.data)
    parts.append(packet.payload)
    return b"".join(parts)


def encode_fields(
    kind: PacketType,
    connection_id: int,
    timestamp_microseconds: int,
    timestamp_difference_microseconds: int,
    wnd_size: int,
    seq_nr: int,
    ack_nr: int,
    sack: bytes,
    payload: bytes,
) -> bytes:
    """``encode(Packet(...))`` with at most a SACK extension, without building the Packet:
    the connection's own send path, once per packet (its fields are in range by
    construction; ``struct`` still refuses one that is not).
    """
    head = _HEADER.pack(
        (kind << 4) | UTP_VERSION,
        EXT_SACK if sack else 0,
        connection_id,
        timestamp_microseconds,
        timestamp_difference_microseconds,
        wnd_size,
        seq_nr,
        ack_nr,
    )
    if not sack:
        return head + payload
    return b"".join((head, bytes((0, len(sack))), sack, payload))


def max_datagram_extension(size: int) -> Extension:
    """Our extension announcing that we read datagrams of up to ``size`` bytes.

    Raises:
        LocalProtocolError: ``size`` does not fit in 16 bits.
    """
    _check_range("max datagram", size, 16)
    return Extension(EXT_MAX_DATAGRAM, MAX_DATAGRAM_MAGIC + size.to_bytes(2, "big"))


def max_datagram_of(packet: Packet) -> int | None:
    """The datagram size the sender of ``packet`` says it reads in full, or None."""
    for ext in packet.extensions:
        if (
            ext.type == EXT_MAX_DATAGRAM
            and len(ext.data) == 4
            and ext.data[:2] == MAX_DATAGRAM_MAGIC
        ):
            return int.from_bytes(ext.data[2:], "big")
    return None


def looks_like_utp(datagram: bytes | bytearray | memoryview) -> bool:
    """True if ``datagram`` may be uTP: long enough, version 1, a known type.

    KRPC datagrams start with ``d`` (0x64: type 6, version 4), so they never pass.
    """
    if len(datagram) < HEADER_SIZE:
        return False
    first = datagram[0]
    return first & 0x0F == UTP_VERSION and (first >> 4) <= PacketType.ST_SYN


def decode(datagram: bytes | bytearray | memoryview) -> Packet:
    """Parse one datagram.

    Extension lengths are checked against the datagram before any slice; unknown
    extensions are kept (and skipped by the connection); at most :data:`MAX_EXTENSIONS`.

    Raises:
        UtpPacketError: too short, wrong version, unknown type, or a bad extension chain.
    """
    data = bytes(datagram)
    n = len(data)
    if n < HEADER_SIZE:
        raise UtpPacketError(f"datagram of {n} bytes is shorter than the uTP header")
    type_ver, ext_type, conn_id, ts, ts_diff, wnd, seq_nr, ack_nr = _HEADER.unpack_from(data)
    if type_ver & 0x0F != UTP_VERSION:
        raise UtpPacketError(f"uTP version {type_ver & 0x0F}, expected {UTP_VERSION}")
    kind = type_ver >> 4
    if kind > PacketType.ST_SYN:
        raise UtpPacketError(f"unknown uTP packet type {kind}")
    pos = HEADER_SIZE
    exts: list[Extension] = []
    while ext_type:
        if len(exts) == MAX_EXTENSIONS:
            raise UtpPacketError(f"more than {MAX_EXTENSIONS} extensions")
        if pos + 2 > n:
            raise UtpPacketError("extension header runs past the datagram")
        next_type, length = data[pos], data[pos + 1]
        pos += 2
        if pos + length > n:
            raise UtpPacketError(f"extension of {length} bytes runs past the datagram")
        exts.append(Extension(ext_type, data[pos : pos + length]))
        pos += length
        ext_type = next_type
    return Packet(
        _PACKET_TYPES[kind], conn_id, ts, ts_diff, wnd, seq_nr, ack_nr, tuple(exts), data[pos:]
    )


# --- selective ACK bitmask --------------------------------------------------------------------


def sack_bitmask(ack_nr: int, received: Iterable[int], max_bytes: int) -> bytes:
    """The extension-1 bitmask for packets ``received`` beyond ``ack_nr + 1``.

    Its length is a multiple of 4 (BEP 29: "at least 32 bits, a multiple of 32 bits") and at
    most ``max_bytes``; packets past the last bit are left out (they will be acked later).
    """
    bits = [d for d in (seq_diff(s, ack_nr) - 2 for s in received) if 0 <= d < max_bytes * 8]
    if not bits:
        return b""
    size = min(max_bytes, (max(bits) // 32 + 1) * 4)
    mask = bytearray(size)
    for d in bits:
        if d < size * 8:
            mask[d >> 3] |= 1 << (d & 7)
    return bytes(mask)


def sack_seq_nrs(ack_nr: int, bitmask: bytes) -> Iterator[int]:
    """The seq_nrs a selective ACK bitmask says were received, in increasing order."""
    for i, byte in enumerate(bitmask):
        if byte:
            for bit in range(8):
                if byte >> bit & 1:
                    yield seq_add(ack_nr, 2 + i * 8 + bit)
