"""KRPC, the DHT's RPC over UDP (BEP 5), sans-IO.

Theory of operation: every datagram is one bencoded dictionary with ``t`` (transaction id),
``y`` (``q`` query, ``r`` response, ``e`` error). :func:`decode_message` turns bytes into one
typed message or raises :class:`KRPCError` (code 203, protocol error; 204 for an unknown
method) and never anything else; :func:`encode_message` is its inverse. Responses do not
name their method (BEP 5), so :class:`Response` carries every optional field and the
:class:`TransactionTable` remembers what was asked, of whom, until when.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hubswarm.errors import BencodeError, KRPCError
from hubswarm.limits import (
    DHT_MAX_DATAGRAM,
    DHT_MAX_PENDING_TRANSACTIONS,
    DHT_MAX_TOKEN_LEN,
    DHT_MAX_TRANSACTION_ID_LEN,
)
from hubswarm.proto import bencode

__all__ = [
    "ERROR_GENERIC",
    "ERROR_METHOD_UNKNOWN",
    "ERROR_PROTOCOL",
    "ERROR_SERVER",
    "ID_LEN",
    "NODE_INFO_LEN",
    "PEER_INFO_LEN",
    "AnnouncePeer",
    "CompactNode",
    "Error",
    "FindNode",
    "GetPeers",
    "Message",
    "Pending",
    "Ping",
    "Query",
    "QueryBody",
    "Response",
    "TransactionTable",
    "decode_message",
    "decode_nodes",
    "decode_peers",
    "distance",
    "encode_message",
    "encode_nodes",
    "encode_peer",
    "peek_query_transaction_id",
]

Address = tuple[str, int]

ID_LEN = 20
# BEP 5 "Contact Encoding": 20-byte node id + 4-byte IPv4 + 2-byte port; peers are 6 bytes.
NODE_INFO_LEN = 26
PEER_INFO_LEN = 6
# BEP 5 "Errors".
ERROR_GENERIC = 201
ERROR_SERVER = 202
ERROR_PROTOCOL = 203
ERROR_METHOD_UNKNOWN = 204
_ERROR_MESSAGE_MAX = 256


def distance(a: bytes, b: bytes) -> int:
    """Kademlia XOR distance between two 160-bit ids, as an unsigned integer (BEP 5)."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def _check_id(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise KRPCError(f"{what} must be {ID_LEN} bytes")
    return value


def _check_port(port: object, *, allow_zero: bool = False) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not (0 <= port <= 65535):
        raise KRPCError(f"port {port!r} out of range")
    if port == 0 and not allow_zero:
        raise KRPCError("port 0 is not a valid contact port")
    return port


def _ip_octets(ip: object) -> bytes:
    # Hot path (every contact of every response): parse, then insist on the canonical text so
    # that " 1.2.3.4", "01.2.3.4" or "+1.2.3.4" are refused.
    if isinstance(ip, str):
        parts = ip.split(".")
        if len(parts) == 4:
            try:
                octets = bytes(map(int, parts))
            except ValueError:
                pass
            else:
                if f"{octets[0]}.{octets[1]}.{octets[2]}.{octets[3]}" == ip:
                    return octets
    raise KRPCError(f"{ip!r} is not an IPv4 address")


def _check_ip(ip: str) -> str:
    _ip_octets(ip)
    return ip


# --- compact contact info ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompactNode:
    """A node's contact: 160-bit id and its UDP address (BEP 5 compact node info)."""

    node_id: bytes
    ip: str
    port: int
    # The 26-byte compact form, made once while the fields are checked: a node is sent in
    # many responses (every find_node answer carries 8), and encoding it each time was the
    # largest cost of encoding a response.
    compact: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_id(self.node_id, "node id")
        octets = _ip_octets(self.ip)
        port = _check_port(self.port)
        object.__setattr__(self, "compact", self.node_id + octets + port.to_bytes(2, "big"))

    @property
    def address(self) -> Address:
        """The ``(ip, port)`` pair of this node."""
        return (self.ip, self.port)


def encode_peer(ip: str, port: int) -> bytes:
    """Compact peer info: 4-byte IPv4 then 2-byte port, network order (BEP 5)."""
    return _ip_octets(ip) + _check_port(port, allow_zero=True).to_bytes(2, "big")


def _decode_peer(data: bytes) -> Address:
    ip = f"{data[0]}.{data[1]}.{data[2]}.{data[3]}"
    port = int.from_bytes(data[4:6], "big")
    return ip, port


def decode_peers(values: Iterable[bytes]) -> list[Address]:
    """Decode a ``values`` list of 6-byte compact peers; skip entries with port 0.

    Raises:
        KRPCError: an entry is not exactly 6 bytes.
    """
    out: list[Address] = []
    for value in values:
        if not isinstance(value, bytes) or len(value) != PEER_INFO_LEN:
            raise KRPCError("compact peer info must be 6 bytes")
        ip, port = _decode_peer(value)
        if port:
            out.append((ip, port))
    return out


def encode_nodes(nodes: Iterable[CompactNode]) -> bytes:
    """Concatenate 26-byte compact node infos (BEP 5)."""
    return b"".join([n.compact for n in nodes])


def decode_nodes(data: bytes) -> list[CompactNode]:
    """Split a ``nodes`` string into contacts; entries with port 0 are skipped.

    Raises:
        KRPCError: the length is not a multiple of 26.
    """
    if len(data) % NODE_INFO_LEN:
        raise KRPCError(f"nodes string of {len(data)} bytes is not a multiple of 26")
    out: list[CompactNode] = []
    for i in range(0, len(data), NODE_INFO_LEN):
        chunk = data[i : i + NODE_INFO_LEN]
        port = (chunk[24] << 8) | chunk[25]
        if port:
            out.append(_node_from_compact(chunk, port))
    return out


_new = object.__new__
_set = object.__setattr__


def _node_from_compact(chunk: bytes, port: int) -> CompactNode:
    """A contact from its 26 bytes without ``__post_init__``'s checks: every field made from
    the bytes is valid by construction (20-byte id, dotted quad, port > 0), and checking them
    again was most of the cost of decoding a response."""
    node = _new(CompactNode)
    _set(node, "node_id", chunk[:ID_LEN])
    _set(node, "ip", f"{chunk[20]}.{chunk[21]}.{chunk[22]}.{chunk[23]}")
    _set(node, "port", port)
    _set(node, "compact", chunk)
    return node


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping`` query arguments."""

    node_id: bytes

    def __post_init__(self) -> None:
        _check_id(self.node_id, "id")


@dataclass(frozen=True, slots=True)
class FindNode:
    """``find_node`` query arguments."""

    node_id: bytes
    target: bytes

    def __post_init__(self) -> None:
        _check_id(self.node_id, "id")
        _check_id(self.target, "target")


@dataclass(frozen=True, slots=True)
class GetPeers:
    """``get_peers`` query arguments."""

    node_id: bytes
    info_hash: bytes

    def __post_init__(self) -> None:
        _check_id(self.node_id, "id")
        _check_id(self.info_hash, "info_hash")


@dataclass(frozen=True, slots=True)
class AnnouncePeer:
    """``announce_peer`` query arguments; with ``implied_port`` the UDP source port is used."""

    node_id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False

    def __post_init__(self) -> None:
        _check_id(self.node_id, "id")
        _check_id(self.info_hash, "info_hash")
        # BEP 5: with implied_port the port argument is ignored, so 0 is acceptable then.
        _check_port(self.port, allow_zero=self.implied_port)
        if not isinstance(self.token, bytes) or not 0 < len(self.token) <= DHT_MAX_TOKEN_LEN:
            raise KRPCError(f"token must be 1..{DHT_MAX_TOKEN_LEN} bytes")


QueryBody = Ping | FindNode | GetPeers | AnnouncePeer
_METHODS: dict[type[Any], bytes] = {
    Ping: b"ping",
    FindNode: b"find_node",
    GetPeers: b"get_peers",
    AnnouncePeer: b"announce_peer",
}


def _check_tid(tid: object) -> bytes:
    if not isinstance(tid, bytes) or not 0 < len(tid) <= DHT_MAX_TRANSACTION_ID_LEN:
        raise KRPCError(f"transaction id must be 1..{DHT_MAX_TRANSACTION_ID_LEN} bytes")
    return tid


@dataclass(frozen=True, slots=True)
class Query:
    """A KRPC query (``y`` = ``q``)."""

    transaction_id: bytes
    body: QueryBody
    version: bytes | None = None

    def __post_init__(self) -> None:
        _check_tid(self.transaction_id)

    @property
    def method(self) -> str:
        """The method name, e.g. ``"get_peers"``."""
        return _METHODS[type(self.body)].decode()


@dataclass(frozen=True, slots=True)
class Response:
    """A KRPC response (``y`` = ``r``); optional fields depend on the query answered."""

    transaction_id: bytes
    node_id: bytes
    nodes: tuple[CompactNode, ...] = ()
    values: tuple[Address, ...] = ()
    token: bytes | None = None
    version: bytes | None = None

    def __post_init__(self) -> None:
        _check_tid(self.transaction_id)
        _check_id(self.node_id, "id")
        if self.token is not None and len(self.token) > DHT_MAX_TOKEN_LEN:
            raise KRPCError("token too long")


@dataclass(frozen=True, slots=True)
class Error:
    """A KRPC error (``y`` = ``e``): ``[code, message]`` (BEP 5 codes 201-204)."""

    transaction_id: bytes
    code: int
    message: str = ""

    def __post_init__(self) -> None:
        _check_tid(self.transaction_id)


Message = Query | Response | Error


def encode_message(msg: Message) -> bytes:
    """Bencode one KRPC message."""
    out: dict[bytes, Any] = {b"t": msg.transaction_id}
    if isinstance(msg, Query):
        body = msg.body
        args: dict[bytes, Any] = {b"id": body.node_id}
        match body:
            case FindNode(target=target):
                args[b"target"] = target
            case GetPeers(info_hash=info_hash):
                args[b"info_hash"] = info_hash
            case AnnouncePeer():
                args[b"info_hash"] = body.info_hash
                args[b"port"] = body.port
                args[b"token"] = body.token
                if body.implied_port:
                    args[b"implied_port"] = 1
        out[b"y"] = b"q"
        out[b"q"] = _METHODS[type(body)]
        out[b"a"] = args
        if msg.version is not None:
            out[b"v"] = msg.version
    elif isinstance(msg, Response):
        r: dict[bytes, Any] = {b"id": msg.node_id}
        if msg.nodes:
            r[b"nodes"] = encode_nodes(msg.nodes)
        if msg.values:
            r[b"values"] = [encode_peer(ip, port) for ip, port in msg.values]
        if msg.token is not None:
            r[b"token"] = msg.token
        out[b"y"] = b"r"
        out[b"r"] = r
        if msg.version is not None:
            out[b"v"] = msg.version
    else:
        out[b"y"] = b"e"
        out[b"e"] = [msg.code, msg.message.encode("utf-8", "replace")[:_ERROR_MESSAGE_MAX]]
    # Built above from checked fields only (bytes keys, bytes, int, lists, dicts; no str or
    # bool): no need for the general encoder's normalising walk.
    return bencode.encode_checked(out)


# KRPC messages are flat: a dict holding a dict holding a list; depth 4 is plenty.
KRPC_MAX_DEPTH = 4


def _top_dict(data: bytes) -> dict[bytes, Any]:
    if not isinstance(data, bytes):
        raise KRPCError("datagram must be bytes")
    if len(data) > DHT_MAX_DATAGRAM:
        raise KRPCError(f"datagram of {len(data)} bytes exceeds {DHT_MAX_DATAGRAM}")
    try:
        obj = bencode.decode(data, max_depth=KRPC_MAX_DEPTH)
    except BencodeError as exc:
        raise KRPCError(f"bad bencode: {exc}") from exc
    if not isinstance(obj, dict):
        raise KRPCError("KRPC message is not a dictionary")
    return obj


def peek_query_transaction_id(data: bytes) -> bytes | None:
    """Return ``t`` of a datagram that is a well-formed dict with ``y`` = ``q``, else None.

    Lets the shell answer a broken query with a 203/204 error (BEP 5) without guessing.
    """
    try:
        obj = _top_dict(data)
        return _check_tid(obj.get(b"t")) if obj.get(b"y") == b"q" else None
    except KRPCError:
        return None


def _optional_version(obj: dict[bytes, Any]) -> bytes | None:
    v = obj.get(b"v")
    # BEP 5: "v" is a short client version string; drop anything else rather than fail.
    return v if isinstance(v, bytes) and len(v) <= 16 else None


def _decode_query(tid: bytes, obj: dict[bytes, Any]) -> Query:
    method = obj.get(b"q")
    args = obj.get(b"a")
    if not isinstance(method, bytes):
        raise KRPCError("query without a method name")
    if not isinstance(args, dict):
        raise KRPCError("query without an argument dictionary")
    node_id = args.get(b"id")
    body: QueryBody
    if method == b"ping":
        body = Ping(_check_id(node_id, "id"))
    elif method == b"find_node":
        body = FindNode(_check_id(node_id, "id"), _check_id(args.get(b"target"), "target"))
    elif method == b"get_peers":
        body = GetPeers(_check_id(node_id, "id"), _check_id(args.get(b"info_hash"), "info_hash"))
    elif method == b"announce_peer":
        implied = args.get(b"implied_port", 0)
        if implied not in (0, 1) or isinstance(implied, bool):
            raise KRPCError("implied_port must be 0 or 1")
        port = args.get(b"port", 0 if implied else None)
        token = args.get(b"token")
        if not isinstance(token, bytes):
            raise KRPCError("announce_peer without a token")
        body = AnnouncePeer(
            _check_id(node_id, "id"),
            _check_id(args.get(b"info_hash"), "info_hash"),
            _check_port(port, allow_zero=bool(implied)),
            token,
            bool(implied),
        )
    else:
        raise KRPCError(f"method {method[:32]!r} unknown", code=ERROR_METHOD_UNKNOWN)
    return Query(tid, body, _optional_version(obj))


def _decode_response(tid: bytes, obj: dict[bytes, Any]) -> Response:
    r = obj.get(b"r")
    if not isinstance(r, dict):
        raise KRPCError("response without an 'r' dictionary")
    nodes_raw = r.get(b"nodes", b"")
    if not isinstance(nodes_raw, bytes):
        raise KRPCError("'nodes' must be a string")
    values_raw = r.get(b"values", [])
    if not isinstance(values_raw, list):
        raise KRPCError("'values' must be a list")
    token = r.get(b"token")
    if token is not None and not isinstance(token, bytes):
        raise KRPCError("'token' must be a string")
    return Response(
        tid,
        _check_id(r.get(b"id"), "id"),
        tuple(decode_nodes(nodes_raw)),
        tuple(decode_peers(values_raw)),
        token,
        _optional_version(obj),
    )


def _decode_error(tid: bytes, obj: dict[bytes, Any]) -> Error:
    e = obj.get(b"e")
    if not isinstance(e, list) or len(e) < 1 or not isinstance(e[0], int):
        raise KRPCError("error without [code, message]")
    text = e[1] if len(e) > 1 and isinstance(e[1], bytes) else b""
    return Error(tid, e[0], text[:_ERROR_MESSAGE_MAX].decode("utf-8", "replace"))


def decode_message(data: bytes) -> Message:
    """Parse one datagram into a typed KRPC message.

    Raises:
        KRPCError: code 203 for anything malformed, 204 for an unknown query method.
    """
    obj = _top_dict(data)
    tid = _check_tid(obj.get(b"t"))
    kind = obj.get(b"y")
    if kind == b"q":
        return _decode_query(tid, obj)
    if kind == b"r":
        return _decode_response(tid, obj)
    if kind == b"e":
        return _decode_error(tid, obj)
    raise KRPCError("'y' must be q, r or e")


# --- transactions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """One outstanding query: who was asked, what, and until when an answer counts."""

    transaction_id: bytes
    address: Address
    method: str
    expires_at: float
    node_id: bytes | None = None


@dataclass(slots=True)
class TransactionTable:
    """Outstanding queries by transaction id; answers count only from the address asked.

    The rng is injected; ids are 2 bytes as in BEP 5's example and libtorrent, grown to 4 when
    the table is busy so that a blind spoofer cannot guess one.
    """

    rng: random.Random
    max_pending: int = DHT_MAX_PENDING_TRANSACTIONS
    _pending: dict[bytes, Pending] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def open(
        self,
        address: Address,
        method: str,
        now: float,
        timeout: float,
        node_id: bytes | None = None,
    ) -> Pending:
        """Allocate a fresh transaction id for a query to ``address``.

        Raises:
            KRPCError: too many queries outstanding (code 202, our own limit).
        """
        if len(self._pending) >= self.max_pending:
            self.expire(now)
            if len(self._pending) >= self.max_pending:
                raise KRPCError("too many outstanding queries", code=ERROR_SERVER)
        size = 2 if len(self._pending) < 1024 else 4
        for _ in range(64):
            tid = self.rng.getrandbits(8 * size).to_bytes(size, "big")
            if tid not in self._pending:
                break
        else:  # pragma: no cover - 64 collisions in a row cannot happen below the cap
            raise KRPCError("no free transaction id", code=ERROR_SERVER)
        pending = Pending(tid, address, method, now + timeout, node_id)
        self._pending[tid] = pending
        return pending

    def match(self, transaction_id: bytes, address: Address, now: float) -> Pending | None:
        """Close and return the transaction an answer belongs to, or None to ignore it.

        An answer from another address leaves the transaction open: a spoofer cannot cancel it.
        """
        pending = self._pending.get(transaction_id)
        if pending is None or pending.address != address:
            return None
        del self._pending[transaction_id]
        return None if pending.expires_at < now else pending

    def cancel(self, transaction_id: bytes) -> None:
        """Forget a transaction (its waiter gave up)."""
        self._pending.pop(transaction_id, None)

    def expire(self, now: float) -> list[Pending]:
        """Remove and return every transaction whose deadline has passed."""
        gone = [p for p in self._pending.values() if p.expires_at < now]
        for p in gone:
            del self._pending[p.transaction_id]
        return gone
