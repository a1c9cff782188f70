"""UDP tracker protocol (BEP 15) codec: connect, announce, scrape and error, sans-IO.

Theory of operation
-------------------
Every message is one datagram of big-endian fields. A client first *connects*: it sends the
magic protocol id and a random transaction id, and gets a 64-bit connection id that it puts
in its announces and scrapes for the next minute (BEP 15 "connection ID"). Every reply
echoes the request's action and transaction id; a reply with action 3 carries an error
message instead. BEP 15's IPv6 note: a tracker answering over IPv6 lists 18-byte peers
(16 address bytes, 2 port bytes) instead of 6-byte IPv4 ones.

Requests are parsed by the tracker (:func:`parse_request`), replies by the client
(:func:`parse_response`, which checks the expected action and transaction id). Every
parser raises :class:`~hubswarm.errors.TrackerError` on bad input and nothing else.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from hubswarm.errors import TrackerError
from hubswarm.limits import TRACKER_MAX_NUMWANT
from hubswarm.proto.compact import unpack_peers
from hubswarm.proto.tracker import HASH_LEN, Event, ScrapeFile

__all__ = [
    "CONNECT_REQUEST_LEN",
    "MAX_DATAGRAM",
    "MAX_SCRAPE_HASHES",
    "PROTOCOL_ID",
    "Action",
    "AnnounceRequest",
    "AnnounceResponse",
    "ConnectRequest",
    "ConnectResponse",
    "ErrorResponse",
    "Request",
    "Response",
    "ScrapeRequest",
    "ScrapeResponse",
    "UdpEvent",
    "parse_request",
    "parse_response",
    "peek_header",
]

# BEP 15: the magic constant that starts every connect request.
PROTOCOL_ID: Final = 0x41727101980
# BEP 15: "Up to about 74 torrents can be scraped at once"; a larger reply would not fit
# a 1500-byte Ethernet frame.
MAX_SCRAPE_HASHES: Final = 74
# The largest UDP payload over IPv4 (65535 - 20 - 8); nothing bigger is a datagram.
MAX_DATAGRAM: Final = 65507
# Longest error message we keep or send (the HTTP tracker's failure reason cap).
MAX_ERROR_MESSAGE: Final = 255

CONNECT_REQUEST_LEN: Final = 16
_HEADER = struct.Struct(">II")  # action, transaction_id (every reply; requests after conn id)
_CONNECT = struct.Struct(">QII")  # protocol_id, action, transaction_id
_CONNECT_REPLY = struct.Struct(">IIQ")  # action, transaction_id, connection_id
_REQUEST_HEAD = struct.Struct(">QII")  # connection_id, action, transaction_id
# After the head: info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want, port.
_ANNOUNCE_BODY = struct.Struct(">20s20sQQQIIIiH")
ANNOUNCE_REQUEST_LEN: Final = _REQUEST_HEAD.size + _ANNOUNCE_BODY.size  # 98
_ANNOUNCE_REPLY = struct.Struct(">IIIII")  # action, transaction_id, interval, leechers, seeders
_SCRAPE_ENTRY = struct.Struct(">III")  # seeders, completed, leechers
_U32 = 2**32
_U64 = 2**64
# Counters the HTTP codec also allows (int64 in every client we know of).
_MAX_COUNTER = 2**63 - 1


class Action(IntEnum):
    """BEP 15 actions."""

    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


class UdpEvent(IntEnum):
    """BEP 15 event codes (the order differs from the text names' usual one)."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3

    @classmethod
    def from_name(cls, event: Event | None) -> UdpEvent:
        """The code of an HTTP event name (None: a regular announce)."""
        return _EVENT_CODES[event]

    @property
    def text(self) -> Event | None:
        """The HTTP event name (None for NONE)."""
        return _EVENT_NAMES[self]


_EVENT_CODES: dict[Event | None, UdpEvent] = {
    None: UdpEvent.NONE,
    "completed": UdpEvent.COMPLETED,
    "started": UdpEvent.STARTED,
    "stopped": UdpEvent.STOPPED,
}
_EVENT_NAMES = {code: name for name, code in _EVENT_CODES.items()}


def _check_uint(name: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise TrackerError(f"{name} out of range")


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_LEN:
        raise TrackerError(f"{name} must be {HASH_LEN} bytes")


# --- requests (client -> tracker) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """Ask for a connection id (16 bytes on the wire)."""

    transaction_id: int

    def __post_init__(self) -> None:
        _check_uint("transaction_id", self.transaction_id, _U32)

    def encode(self) -> bytes:
        return _CONNECT.pack(PROTOCOL_ID, Action.CONNECT, self.transaction_id)


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """One announce (98 bytes); ``ip`` 0 means "the packet's source", ``num_want`` -1 the
    tracker's default."""

    connection_id: int
    transaction_id: int
    info_hash: bytes
    peer_id: bytes
    downloaded: int = 0
    left: int = 0
    uploaded: int = 0
    event: UdpEvent = UdpEvent.NONE
    ip: int = 0
    key: int = 0
    num_want: int = -1
    port: int = 0

    def __post_init__(self) -> None:
        _check_uint("connection_id", self.connection_id, _U64)
        _check_uint("transaction_id", self.transaction_id, _U32)
        _check_hash("info_hash", self.info_hash)
        _check_hash("peer_id", self.peer_id)
        for name in ("downloaded", "left", "uploaded"):
            _check_uint(name, getattr(self, name), _MAX_COUNTER + 1)
        if not isinstance(self.event, UdpEvent):
            raise TrackerError(f"invalid event {self.event!r}")
        _check_uint("ip", self.ip, _U32)
        _check_uint("key", self.key, _U32)
        if isinstance(self.num_want, bool) or not -(2**31) <= self.num_want < 2**31:
            raise TrackerError("num_want out of range")
        _check_uint("port", self.port, 65536)

    def encode(self) -> bytes:
        return _REQUEST_HEAD.pack(
            self.connection_id, Action.ANNOUNCE, self.transaction_id
        ) + _ANNOUNCE_BODY.pack(
            self.info_hash,
            self.peer_id,
            self.downloaded,
            self.left,
            self.uploaded,
            self.event,
            self.ip,
            self.key,
            self.num_want,
            self.port,
        )

    @property
    def numwant(self) -> int | None:
        """``num_want`` as the HTTP tracker takes it: negative is "default", big is capped."""
        return None if self.num_want < 0 else min(self.num_want, TRACKER_MAX_NUMWANT)

    @property
    def ip_text(self) -> str | None:
        """The ``ip`` field as text, None when 0 (BEP 15: use the sender's address)."""
        return None if self.ip == 0 else str(ipaddress.IPv4Address(self.ip))


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """Counts for up to :data:`MAX_SCRAPE_HASHES` torrents."""

    connection_id: int
    transaction_id: int
    info_hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_uint("connection_id", self.connection_id, _U64)
        _check_uint("transaction_id", self.transaction_id, _U32)
        if not 1 <= len(self.info_hashes) <= MAX_SCRAPE_HASHES:
            raise TrackerError(f"a scrape names 1 to {MAX_SCRAPE_HASHES} info_hashes")
        for info_hash in self.info_hashes:
            _check_hash("info_hash", info_hash)

    def encode(self) -> bytes:
        head = _REQUEST_HEAD.pack(self.connection_id, Action.SCRAPE, self.transaction_id)
        return head + b"".join(self.info_hashes)


Request = ConnectRequest | AnnounceRequest | ScrapeRequest


def parse_request(data: bytes) -> Request:
    """Parse a datagram sent to a tracker.

    Bytes after a complete announce are ignored (BEP 41 options); a scrape's length must
    be a whole number of info-hashes.

    Raises:
        TrackerError: short or oversized packet, wrong protocol id, unknown action, or a
            field out of range.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TrackerError("request is not bytes")
    data = bytes(data)
    if len(data) > MAX_DATAGRAM:
        raise TrackerError("request larger than a datagram")
    if len(data) < CONNECT_REQUEST_LEN:
        raise TrackerError(f"request of {len(data)} bytes is too short")
    connection_id, action, transaction_id = _REQUEST_HEAD.unpack_from(data)
    if action == Action.CONNECT:
        if connection_id != PROTOCOL_ID:
            raise TrackerError("connect request without the BEP 15 protocol id")
        return ConnectRequest(transaction_id)
    if action == Action.ANNOUNCE:
        if len(data) < ANNOUNCE_REQUEST_LEN:
            raise TrackerError(f"announce of {len(data)} bytes is too short")
        fields = _ANNOUNCE_BODY.unpack_from(data, _REQUEST_HEAD.size)
        info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want, port = fields
        if event > UdpEvent.STOPPED:
            raise TrackerError(f"invalid event {event}")
        return AnnounceRequest(
            connection_id,
            transaction_id,
            info_hash,
            peer_id,
            downloaded,
            left,
            uploaded,
            UdpEvent(event),
            ip,
            key,
            num_want,
            port,
        )
    if action == Action.SCRAPE:
        body = data[_REQUEST_HEAD.size :]
        if not body or len(body) % HASH_LEN:
            raise TrackerError("scrape length is not a whole number of info_hashes")
        hashes = tuple(body[i : i + HASH_LEN] for i in range(0, len(body), HASH_LEN))
        return ScrapeRequest(connection_id, transaction_id, hashes)
    raise TrackerError(f"unknown action {action}")


# --- responses (tracker -> client) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectResponse:
    """The connection id, valid for a minute (16 bytes on the wire)."""

    transaction_id: int
    connection_id: int

    def __post_init__(self) -> None:
        _check_uint("transaction_id", self.transaction_id, _U32)
        _check_uint("connection_id", self.connection_id, _U64)

    def encode(self) -> bytes:
        return _CONNECT_REPLY.pack(Action.CONNECT, self.transaction_id, self.connection_id)


def _check_peers(peers: tuple[tuple[str, int], ...], ipv6: bool) -> None:
    for ip, port in peers:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise TrackerError(f"invalid peer address {str(ip)[:64]!r}") from None
        if addr.version == 6 and not ipv6:
            raise TrackerError(f"IPv6 peer {ip} in an IPv4 reply")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise TrackerError(f"invalid peer port {port!r}")


def _pack_peer(ip: str, port: int, ipv6: bool) -> bytes:
    addr = ipaddress.ip_address(ip)
    if ipv6 and addr.version == 4:
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)  # v4-mapped
    return addr.packed + port.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """Interval, swarm counts and peers: IPv4 (6 bytes each) or, with ``ipv6``, 18 bytes
    each (the reply to a request that came over IPv6; an IPv4 peer goes IPv4-mapped)."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: tuple[tuple[str, int], ...] = ()
    ipv6: bool = False

    def __post_init__(self) -> None:
        _check_uint("transaction_id", self.transaction_id, _U32)
        for name in ("interval", "leechers", "seeders"):
            _check_uint(name, getattr(self, name), _U32)
        _check_peers(self.peers, self.ipv6)

    def encode(self) -> bytes:
        head = _ANNOUNCE_REPLY.pack(
            Action.ANNOUNCE, self.transaction_id, self.interval, self.leechers, self.seeders
        )
        return head + b"".join(_pack_peer(ip, port, self.ipv6) for ip, port in self.peers)


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """One (seeders, completed, leechers) entry per requested info-hash, in request order."""

    transaction_id: int
    files: tuple[ScrapeFile, ...]

    def __post_init__(self) -> None:
        _check_uint("transaction_id", self.transaction_id, _U32)
        if len(self.files) > MAX_SCRAPE_HASHES:
            raise TrackerError(f"more than {MAX_SCRAPE_HASHES} scrape entries")
        for f in self.files:
            for value in (f.complete, f.downloaded, f.incomplete):
                _check_uint("scrape count", value, _U32)

    def encode(self) -> bytes:
        head = _HEADER.pack(Action.SCRAPE, self.transaction_id)
        return head + b"".join(
            _SCRAPE_ENTRY.pack(f.complete, f.downloaded, f.incomplete) for f in self.files
        )


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The tracker's refusal, a human-readable message (action 3)."""

    transaction_id: int
    message: str

    def __post_init__(self) -> None:
        _check_uint("transaction_id", self.transaction_id, _U32)
        if not isinstance(self.message, str):
            raise TrackerError("error message is not text")

    def encode(self, limit: int = MAX_ERROR_MESSAGE) -> bytes:
        """The datagram, the message cut to ``limit`` bytes (the server keeps replies no
        bigger than the request)."""
        text = self.message.encode("utf-8")[: max(0, limit)]
        return _HEADER.pack(Action.ERROR, self.transaction_id) + text


Response = ConnectResponse | AnnounceResponse | ScrapeResponse | ErrorResponse


def peek_header(data: bytes) -> tuple[int, int]:
    """(action, transaction_id) of a reply, to route it before parsing it.

    Raises:
        TrackerError: shorter than 8 bytes.
    """
    if len(data) < _HEADER.size:
        raise TrackerError(f"reply of {len(data)} bytes is too short")
    action, transaction_id = _HEADER.unpack_from(data)
    return int(action), int(transaction_id)


def parse_response(
    data: bytes,
    *,
    action: Action,
    transaction_id: int,
    ipv6: bool = False,
    hashes: int = MAX_SCRAPE_HASHES,
) -> Response:
    """Parse the reply to a request of ``action`` with ``transaction_id``.

    ``ipv6``: the request went over IPv6, so peers are 18 bytes; ``hashes``: how many
    info-hashes the scrape asked about (more entries are refused). An error reply
    (action 3) is returned as :class:`ErrorResponse`, for any request.

    Raises:
        TrackerError: short or oversized packet, wrong action or transaction id, a peer
            list that is not a whole number of peers, more scrape entries than asked.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TrackerError("reply is not bytes")
    data = bytes(data)
    if len(data) > MAX_DATAGRAM:
        raise TrackerError("reply larger than a datagram")
    got_action, got_tid = peek_header(data)
    if got_tid != transaction_id:
        raise TrackerError(f"reply for transaction {got_tid:#x}, expected {transaction_id:#x}")
    if got_action == Action.ERROR:
        text = data[_HEADER.size :][:MAX_ERROR_MESSAGE].decode("utf-8", "replace")
        return ErrorResponse(got_tid, text)
    if got_action != action:
        raise TrackerError(f"reply with action {got_action}, expected {int(action)}")
    if action == Action.CONNECT:
        if len(data) < _CONNECT_REPLY.size:
            raise TrackerError(f"connect reply of {len(data)} bytes is too short")
        _, _, connection_id = _CONNECT_REPLY.unpack_from(data)
        return ConnectResponse(got_tid, connection_id)
    if action == Action.ANNOUNCE:
        if len(data) < _ANNOUNCE_REPLY.size:
            raise TrackerError(f"announce reply of {len(data)} bytes is too short")
        _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        blob = data[_ANNOUNCE_REPLY.size :]
        size = 18 if ipv6 else 6
        if len(blob) % size:
            raise TrackerError(f"peer list of {len(blob)} bytes is not a multiple of {size}")
        peers = tuple(unpack_peers(blob, size))
        return AnnounceResponse(got_tid, interval, leechers, seeders, peers, ipv6)
    if action == Action.SCRAPE:
        body = data[_HEADER.size :]
        if len(body) % _SCRAPE_ENTRY.size:
            raise TrackerError("scrape reply is not a whole number of entries")
        count = len(body) // _SCRAPE_ENTRY.size
        if count > min(hashes, MAX_SCRAPE_HASHES):
            raise TrackerError(f"scrape reply with {count} entries for {hashes} info_hashes")
        files = tuple(
            ScrapeFile(*_SCRAPE_ENTRY.unpack_from(body, i * _SCRAPE_ENTRY.size))
            for i in range(count)
        )
        return ScrapeResponse(got_tid, files)
    raise TrackerError(f"cannot parse a reply to action {int(action)}")
