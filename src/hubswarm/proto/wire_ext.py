"""The peer wire's BEP 10 extension messages as pure codecs, and the BEP 9 metadata assembler.

:class:`~hubswarm.proto.wire.PeerConnection` owns the connection's state (which extension
ids each side advertised, what was agreed, when a message may come); this module owns the
bodies of the extended messages it routes here: the extended handshake (BEP 10), ut_metadata
(BEP 9) and ut_pex (BEP 11), decoded from and encoded to their bencoded form with every field
checked, plus :class:`MetadataAssembler`, which collects metadata pieces and checks them
against the info_hash. A decoder raises :class:`RemoteProtocolError` on a peer's violation;
the connection then enters ERROR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

from hubswarm.errors import BencodeError, LocalProtocolError, MetainfoError, RemoteProtocolError
from hubswarm.limits import METADATA_MAX_SIZE, PEX_MAX_PEERS
from hubswarm.proto import bencode, compact
from hubswarm.proto.wire_events import (
    Event,
    Extended,
    ExtendedHandshake,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    PeerExchange,
    metadata_piece_count,
    metadata_piece_size,
)

__all__ = [
    "UT_METADATA",
    "UT_PEX",
    "MetadataAssembler",
    "decode_extended_handshake",
    "decode_metadata",
    "decode_pex",
    "encode_extended_handshake",
    "encode_pex",
]

UT_METADATA = "ut_metadata"
UT_PEX = "ut_pex"


# --- decoding -----------------------------------------------------------------------------


def decode_extended_handshake(body: bytes) -> ExtendedHandshake:
    """BEP 10's handshake (extension id 0); unreadable names are skipped, bad ids refused."""
    d = _bencoded_dict(body, "extended handshake")
    raw_m = d.get(b"m", {})
    if not isinstance(raw_m, dict):
        raise RemoteProtocolError("extended handshake 'm' is not a dictionary")
    m: dict[str, int] = {}
    for key, value in raw_m.items():
        # BEP 10: ids are single bytes; 0 disables. Entries we cannot read are skipped.
        if isinstance(value, int) and 0 <= value <= 255:
            try:
                m[key.decode()] = value
            except UnicodeDecodeError:
                continue
        else:
            raise RemoteProtocolError(f"extension id {value!r} is not in 0..255")
    size = d.get(b"metadata_size")
    metadata_size: int | None = None
    if isinstance(size, int) and size != 0:
        # BEP 9: bounded so that an assembler never allocates more than the cap.
        if not 0 < size <= METADATA_MAX_SIZE:
            raise RemoteProtocolError(f"metadata_size {size} not in 1..{METADATA_MAX_SIZE}")
        metadata_size = size
    v = d.get(b"v")
    p = d.get(b"p")
    reqq = d.get(b"reqq")
    yourip = d.get(b"yourip")
    return ExtendedHandshake(
        m=m,
        metadata_size=metadata_size,
        v=v.decode("utf-8", "replace") if isinstance(v, bytes) else None,
        p=p if isinstance(p, int) and 0 < p <= 0xFFFF else None,
        reqq=reqq if isinstance(reqq, int) and reqq > 0 else None,
        yourip=yourip if isinstance(yourip, bytes) and len(yourip) in (4, 16) else None,
    )


def decode_metadata(ext_id: int, body: bytes, known: int | None) -> Event:
    """A ut_metadata message (BEP 9); ``known`` is the peer's advertised ``metadata_size``.

    An unknown ``msg_type`` comes back as a plain :class:`Extended` (BEP 9: ignore it).
    """
    try:
        d, end = bencode.decode_prefix(body)
    except BencodeError as exc:
        raise RemoteProtocolError(f"ut_metadata message is not bencode: {exc}") from exc
    if not isinstance(d, dict):
        raise RemoteProtocolError("ut_metadata message is not a dictionary")
    msg_type = d.get(b"msg_type")
    piece = d.get(b"piece")
    if not isinstance(msg_type, int) or not isinstance(piece, int):
        raise RemoteProtocolError("ut_metadata message without integer msg_type and piece")
    if not 0 <= piece < metadata_piece_count(METADATA_MAX_SIZE):
        raise RemoteProtocolError(f"ut_metadata piece {piece} out of range")
    if msg_type == 0:
        return MetadataRequest(piece)
    if msg_type == 2:
        return MetadataReject(piece)
    if msg_type != 1:
        # BEP 9: unknown msg_type values are to be ignored.
        return Extended(ext_id, body)
    total = d.get(b"total_size")
    if not isinstance(total, int) or not 0 < total <= METADATA_MAX_SIZE:
        raise RemoteProtocolError(f"ut_metadata total_size {total!r} out of range")
    if known is not None and known != total:
        raise RemoteProtocolError(f"total_size {total} != metadata_size {known}")
    data = body[end:]
    expected = metadata_piece_size(total, piece)
    if expected == 0 or len(data) != expected:
        raise RemoteProtocolError(f"metadata piece {piece}: {len(data)} bytes, want {expected}")
    return MetadataData(piece, total, data)


def decode_pex(body: bytes) -> PeerExchange:
    """BEP 11. Lists of the wrong type, a trailing partial entry, port-0 entries and
    entries past ``PEX_MAX_PEERS`` are skipped, as other clients do: only a message that
    is not a bencoded dictionary breaks the protocol."""
    d = _bencoded_dict(body, "ut_pex message")

    def field(key: bytes) -> bytes:
        value = d.get(key)
        return value if isinstance(value, bytes) else b""

    added: list[tuple[str, int]] = []
    flags: list[int] = []
    dropped: list[tuple[str, int]] = []
    for key, size in ((b"added", compact.V4_SIZE), (b"added6", compact.V6_SIZE)):
        f = field(key + b".f")
        for i, (ip, port) in enumerate(compact.entries(field(key), size)):
            if len(added) >= PEX_MAX_PEERS:
                break
            if port:
                added.append((ip, port))
                flags.append(f[i] if i < len(f) else 0)
    for key, size in ((b"dropped", compact.V4_SIZE), (b"dropped6", compact.V6_SIZE)):
        for ip, port in compact.entries(field(key), size):
            if len(dropped) >= PEX_MAX_PEERS:
                break
            if port:
                dropped.append((ip, port))
    return PeerExchange(tuple(added), tuple(flags), tuple(dropped))


def _bencoded_dict(body: bytes, what: str) -> dict[bytes, Any]:
    """``body`` as a bencoded dictionary, else a protocol violation naming ``what``."""
    try:
        d = bencode.decode(body)
    except BencodeError as exc:
        raise RemoteProtocolError(f"{what} is not bencode: {exc}") from exc
    if not isinstance(d, dict):
        raise RemoteProtocolError(f"{what} is not a dictionary")
    return d


# --- encoding -----------------------------------------------------------------------------


def encode_extended_handshake(event: ExtendedHandshake) -> bytes:
    """The bencoded body of our extended handshake (BEP 10), optional fields only if set."""
    d: dict[bytes, Any] = {b"m": {k.encode(): v for k, v in event.m.items()}}
    if event.metadata_size is not None:
        d[b"metadata_size"] = event.metadata_size
    if event.v is not None:
        d[b"v"] = event.v.encode()
    if event.p is not None:
        d[b"p"] = event.p
    if event.reqq is not None:
        d[b"reqq"] = event.reqq
    if event.yourip is not None:
        d[b"yourip"] = event.yourip
    return bencode.encode(d)


def encode_pex(event: PeerExchange) -> bytes:
    """The bencoded body of a ut_pex message (BEP 11), IPv4 and IPv6 peers in their own lists."""
    flags = event.added_flags or (0,) * len(event.added)
    v4, v6 = compact.pack_peers(event.added)
    v6s = [":" in compact.normalise_ip(ip) for ip, _ in event.added]
    f4 = bytes(f for f, is6 in zip(flags, v6s, strict=True) if not is6)
    f6 = bytes(f for f, is6 in zip(flags, v6s, strict=True) if is6)
    d4, d6 = compact.pack_peers(event.dropped)
    d: dict[bytes, bytes] = {b"added": v4, b"added.f": f4, b"dropped": d4}
    if v6:
        d[b"added6"], d[b"added6.f"] = v6, f6
    if d6:
        d[b"dropped6"] = d6
    return bencode.encode(d)


# --- BEP 9 metadata -----------------------------------------------------------------------


class MetadataAssembler:
    """Collects BEP 9 metadata pieces and checks them against the info_hash.

    Pure and bounded: at most ``METADATA_MAX_SIZE`` bytes are held.
    """

    def __init__(self, info_hash: bytes, metadata_size: int) -> None:
        if len(info_hash) != 20:
            raise LocalProtocolError("info_hash must be 20 bytes")
        if not 0 < metadata_size <= METADATA_MAX_SIZE:
            raise RemoteProtocolError(
                f"metadata_size {metadata_size} not in 1..{METADATA_MAX_SIZE}"
            )
        self.info_hash = bytes(info_hash)
        self.metadata_size = metadata_size
        self.num_pieces = metadata_piece_count(metadata_size)
        self._pieces: list[bytes | None] = [None] * self.num_pieces
        self.resets = 0

    def missing(self) -> list[int]:
        """Metadata pieces not yet received, in order."""
        return [i for i, p in enumerate(self._pieces) if p is None]

    def wanted(self, in_flight: Collection[int] = ()) -> list[int]:
        """Missing pieces to request: those not already ``in_flight`` (from other peers), or
        every missing one when all are, so one slow peer cannot hold the metadata back."""
        missing = self.missing()
        free = [i for i in missing if i not in in_flight]
        return free or missing

    def add(self, event: MetadataData) -> bytes | None:
        """Store one piece; return the whole verified metadata once complete, else None.

        Raises:
            RemoteProtocolError: the piece does not fit this metadata's size.
            MetainfoError: all pieces arrived but their SHA-1 is not the info_hash; the
                assembler has been reset and every piece is missing again.
        """
        if event.total_size != self.metadata_size:
            raise RemoteProtocolError(
                f"total_size {event.total_size} != metadata_size {self.metadata_size}"
            )
        if len(event.data) != metadata_piece_size(self.metadata_size, event.piece):
            raise RemoteProtocolError(f"metadata piece {event.piece} has the wrong size")
        self._pieces[event.piece] = event.data
        if any(p is None for p in self._pieces):
            return None
        raw = b"".join(p for p in self._pieces if p is not None)
        if hashlib.sha1(raw).digest() != self.info_hash:
            self._pieces = [None] * self.num_pieces
            self.resets += 1
            raise MetainfoError("metadata does not match the info_hash; starting over")
        return raw
