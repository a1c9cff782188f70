"""The 68-byte BitTorrent handshake as bytes: its layout, the reserved bits, a pure parser.

BEP 3: ``<pstrlen=19><pstr="BitTorrent protocol"><8 reserved><20 info_hash><20 peer_id>``.
The reserved bits announce BEP 10 (byte 5, 0x10), BEP 6 (byte 7, 0x04) and BEP 5 (byte 7,
0x01). This lives apart from :class:`~hubswarm.proto.wire.PeerConnection` because it is a
fixed format with no state: the connection decides what a handshake means (which torrent,
what was agreed, the next state); this module only builds and reads the bytes, so tests and
fault injectors can write a handshake without a connection.
"""

from __future__ import annotations

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto.wire_events import Handshake

__all__ = ["HANDSHAKE_LENGTH", "PSTR", "PSTR_PREFIX", "make_reserved", "parse_handshake"]

PSTR = b"BitTorrent protocol"
PSTR_PREFIX = bytes((len(PSTR),)) + PSTR
HANDSHAKE_LENGTH = 1 + len(PSTR) + 8 + 20 + 20


def make_reserved(*, extension_protocol: bool, fast: bool, dht: bool) -> bytes:
    """The 8 reserved handshake bytes with the BEP 10, BEP 6 and BEP 5 bits set as asked."""
    reserved = bytearray(8)
    if extension_protocol:
        reserved[5] |= 0x10
    if fast:
        reserved[7] |= 0x04
    if dht:
        reserved[7] |= 0x01
    return bytes(reserved)


def parse_handshake(mv: memoryview, pos: int, end: int) -> Handshake | None:
    """The handshake at ``mv[pos:end]``, or None while fewer than 68 bytes have come.

    The protocol prefix is checked on as many bytes as there are, so a peer speaking
    another protocol is refused at its first byte rather than after 68.

    Raises:
        RemoteProtocolError: the bytes are not ``\\x13BitTorrent protocol``.
    """
    avail = min(end - pos, HANDSHAKE_LENGTH)
    k = min(avail, len(PSTR_PREFIX))
    if mv[pos : pos + k] != PSTR_PREFIX[:k]:
        raise RemoteProtocolError("not a BitTorrent handshake (bad pstrlen or pstr)")
    if avail < HANDSHAKE_LENGTH:
        return None
    start = pos + len(PSTR_PREFIX)
    return Handshake(
        info_hash=bytes(mv[start + 8 : start + 28]),
        peer_id=bytes(mv[start + 28 : start + 48]),
        reserved=bytes(mv[start : start + 8]),
    )
