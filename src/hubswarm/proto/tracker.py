"""Tracker HTTP protocol codec: announce and scrape requests and responses (sans-IO).

BEP 3 defines the announce query and the bencoded reply; BEP 23 the compact IPv4 peer list,
BEP 7 the compact IPv6 list (``peers6``), BEP 48 scrape. Binary query values (``info_hash``,
``peer_id``) are percent-encoded byte-wise and must be decoded from the *raw* query string:
decoding to ``str`` first (as aiohttp's ``request.query`` does) turns ``%FF`` into U+FFFD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote_from_bytes, unquote, unquote_to_bytes, urlsplit, urlunsplit

from hubswarm.errors import BencodeError, TrackerError
from hubswarm.limits import (
    TRACKER_MAX_NUMWANT,
    TRACKER_MAX_PARAM,
    TRACKER_MAX_QUERY,
    TRACKER_MAX_RESPONSE,
    TRACKER_MAX_SCRAPE,
)
from hubswarm.proto import bencode
from hubswarm.proto.compact import normalise_ip, pack_peers, unpack_peers

__all__ = [
    "EVENTS",
    "HASH_LEN",
    "AnnounceRequest",
    "AnnounceResponse",
    "Event",
    "ScrapeFile",
    "ScrapeRequest",
    "ScrapeResponse",
    "encode_failure",
    "failure_reason",
    "parse_query",
    "scrape_url",
]

Event = Literal["started", "completed", "stopped"]
EVENTS: Final = ("started", "completed", "stopped")
# info_hash and peer_id are 20 bytes (BEP 3: a SHA-1 digest, and 20 bytes of id).
HASH_LEN = 20
# Counters are 64-bit in every client we know of (libtorrent std::int64_t); bigger is garbage.
_MAX_COUNTER = 2**63 - 1


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_LEN:
        raise TrackerError(f"{name} must be {HASH_LEN} bytes")


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise TrackerError(f"invalid port {port!r}")


def _check_counter(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNTER:
        raise TrackerError(f"{name} must be an integer >= 0")


def _check_param(name: str, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > TRACKER_MAX_PARAM):
        raise TrackerError(f"{name} too long")


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """One announce (BEP 3 query parameters); ``numwant=None`` lets the tracker choose."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: Event | None = None
    compact: bool = True
    numwant: int | None = None
    ip: str | None = None
    key: bytes | None = None  # opaque: aria2 sends raw bytes
    no_peer_id: bool = False
    tracker_id: str | None = None

    def __post_init__(self) -> None:
        _check_hash("info_hash", self.info_hash)
        _check_hash("peer_id", self.peer_id)
        _check_port(self.port)
        _check_counter("uploaded", self.uploaded)
        _check_counter("downloaded", self.downloaded)
        _check_counter("left", self.left)
        if self.event is not None and self.event not in EVENTS:
            raise TrackerError(f"invalid event {self.event!r}")
        if self.numwant is not None:
            _check_counter("numwant", self.numwant)
            if self.numwant > TRACKER_MAX_NUMWANT:
                raise TrackerError(f"numwant above {TRACKER_MAX_NUMWANT}")
        _check_param("ip", self.ip)
        if self.key is not None and (
            not isinstance(self.key, bytes) or len(self.key) > TRACKER_MAX_PARAM
        ):
            raise TrackerError("key too long")
        _check_param("trackerid", self.tracker_id)

    def to_query(self) -> str:
        """The query string (without ``?``), binary values percent-encoded byte-wise."""
        parts = [
            f"info_hash={quote_from_bytes(self.info_hash, safe='')}",
            f"peer_id={quote_from_bytes(self.peer_id, safe='')}",
            f"port={self.port}",
            f"uploaded={self.uploaded}",
            f"downloaded={self.downloaded}",
            f"left={self.left}",
            f"compact={int(self.compact)}",
        ]
        if self.no_peer_id:
            parts.append("no_peer_id=1")
        if self.event is not None:
            parts.append(f"event={self.event}")
        if self.numwant is not None:
            parts.append(f"numwant={self.numwant}")
        if self.ip is not None:
            parts.append(f"ip={quote_from_bytes(self.ip.encode(), safe='')}")
        if self.key is not None:
            parts.append(f"key={quote_from_bytes(self.key, safe='')}")
        if self.tracker_id is not None:
            parts.append(f"trackerid={quote_from_bytes(self.tracker_id.encode(), safe='')}")
        return "&".join(parts)


def _split_query(raw_query: str) -> dict[str, list[bytes]]:
    """Split a raw query into name -> raw byte values, in order; bounded in size."""
    if len(raw_query) > TRACKER_MAX_QUERY:
        raise TrackerError(f"query longer than {TRACKER_MAX_QUERY} bytes")
    params: dict[str, list[bytes]] = {}
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        # '+' is kept literally: clients percent-encode every byte that is not unreserved.
        params.setdefault(unquote(name), []).append(unquote_to_bytes(value))
    return params


def _one(params: dict[str, list[bytes]], name: str) -> bytes | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise TrackerError(f"{name} given more than once")
    return values[0]


def _int_param(params: dict[str, list[bytes]], name: str, *, required: bool) -> int | None:
    raw = _one(params, name)
    if raw is None:
        if required:
            raise TrackerError(f"missing {name}")
        return None
    text = raw.strip()
    if not text or len(text) > 20 or not text.lstrip(b"-").isdigit() or text.count(b"-") > 1:
        raise TrackerError(f"invalid {name}")
    return int(text)


def _bytes_param(params: dict[str, list[bytes]], name: str) -> bytes | None:
    raw = _one(params, name)
    if raw is not None and len(raw) > TRACKER_MAX_PARAM:
        raise TrackerError(f"{name} too long")
    return raw


def _str_param(params: dict[str, list[bytes]], name: str) -> str | None:
    """A text parameter; one that is not UTF-8 is dropped (it is advisory, never required)."""
    raw = _bytes_param(params, name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _flag(params: dict[str, list[bytes]], name: str) -> bool | None:
    raw = _one(params, name)
    if raw is None:
        return None
    if raw in (b"1", b"true"):
        return True
    if raw in (b"0", b"false", b""):
        return False
    raise TrackerError(f"invalid {name}")


def parse_query(raw_query: str) -> AnnounceRequest:
    """Parse an announce from the RAW (still percent-encoded) query string.

    Unknown parameters are ignored (libtorrent adds ``supportcrypto``, ``corrupt``, ...).
    ``numwant`` is clamped to ``TRACKER_MAX_NUMWANT``; a negative one means "default".

    Raises:
        TrackerError: a missing or invalid parameter; the message is the ``failure reason``.
    """
    params = _split_query(raw_query)
    info_hash = _one(params, "info_hash")
    peer_id = _one(params, "peer_id")
    if info_hash is None:
        raise TrackerError("missing info_hash")
    if peer_id is None:
        raise TrackerError("missing peer_id")
    _check_hash("info_hash", info_hash)
    _check_hash("peer_id", peer_id)
    port = _int_param(params, "port", required=True)
    assert port is not None
    _check_port(port)
    counters = {}
    for name in ("uploaded", "downloaded", "left"):
        # BEP 3 requires them; some clients omit uploaded/downloaded on `started`.
        value = _int_param(params, name, required=False)
        counters[name] = 0 if value is None else value
    event_bytes = _bytes_param(params, "event")
    event_raw = None if event_bytes is None else event_bytes.decode("latin-1")
    event: Event | None
    # BEP 21 `paused` and an empty event are regular announces.
    if event_raw in (None, "", "empty", "paused"):
        event = None
    elif event_raw == "started":
        event = "started"
    elif event_raw == "completed":
        event = "completed"
    elif event_raw == "stopped":
        event = "stopped"
    else:
        raise TrackerError(f"invalid event {event_raw[:32]!r}")
    numwant = _int_param(params, "numwant", required=False)
    if numwant is not None:
        numwant = None if numwant < 0 else min(numwant, TRACKER_MAX_NUMWANT)
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=counters["uploaded"],
        downloaded=counters["downloaded"],
        left=counters["left"],
        event=event,
        # BEP 23: a client that does not ask for compact may only understand the dict form.
        compact=bool(_flag(params, "compact")),
        numwant=numwant,
        ip=_str_param(params, "ip"),
        key=_bytes_param(params, "key"),
        no_peer_id=bool(_flag(params, "no_peer_id")),
        tracker_id=_str_param(params, "trackerid"),
    )


def _normalise_ip(ip: str) -> str:
    """Canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4."""
    try:
        return normalise_ip(ip)
    except ValueError as exc:
        raise TrackerError(f"invalid peer address {ip[:64]!r}") from exc


def failure_reason(data: bytes) -> str | None:
    """The ``failure reason`` of a bencoded reply, or None if it carries none (or is garbage)."""
    try:
        _decode_dict(data, "response")
    except TrackerError as exc:
        text = str(exc)
        return text.removeprefix(_FAILURE) if text.startswith(_FAILURE) else None
    return None


_FAILURE = "tracker failure: "


def _decode_dict(data: bytes, what: str) -> dict[bytes, Any]:
    """Size-check and decode a tracker reply; surface a ``failure reason``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TrackerError(f"{what} is not bytes")
    if len(data) > TRACKER_MAX_RESPONSE:
        raise TrackerError(f"{what} larger than {TRACKER_MAX_RESPONSE} bytes")
    try:
        value = bencode.decode(bytes(data))
    except BencodeError as exc:
        raise TrackerError(f"{what} is not valid bencode: {exc}") from exc
    if not isinstance(value, dict):
        raise TrackerError(f"{what} is not a dictionary")
    if b"failure reason" in value:
        reason = value[b"failure reason"]
        text = (
            reason.decode("utf-8", "replace")[:TRACKER_MAX_PARAM]
            if isinstance(reason, bytes)
            else "?"
        )
        raise TrackerError(f"{_FAILURE}{text}")
    return value


def _opt_int(d: dict[bytes, Any], key: bytes) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TrackerError(f"{key.decode()} is not an integer >= 0")
    return value


def _opt_text(d: dict[bytes, Any], key: bytes) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise TrackerError(f"{key.decode()} is not a string")
    return value.decode("utf-8", "replace")


def _parse_compact(blob: bytes, size: int) -> list[tuple[str, int]]:
    """BEP 23 / BEP 7: 4 (or 16) address bytes then a 2-byte big-endian port, per peer."""
    if len(blob) % size:
        raise TrackerError(f"compact peer list length {len(blob)} is not a multiple of {size}")
    return unpack_peers(blob, size)


def _parse_peer_dicts(items: list[Any]) -> list[tuple[str, int]]:
    peers = []
    for item in items:
        if not isinstance(item, dict):
            raise TrackerError("peer entry is not a dictionary")
        ip, port = item.get(b"ip"), item.get(b"port")
        if not isinstance(ip, bytes) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise TrackerError("peer entry without a valid ip and port")
        if port == 0:
            continue
        try:
            text = ip.decode("ascii")
        except UnicodeDecodeError as exc:
            raise TrackerError("peer ip is not ASCII") from exc
        # BEP 3 allows a DNS name here; we only connect to addresses.
        try:
            peers.append((_normalise_ip(text), port))
        except TrackerError:
            continue
    return peers


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """A successful announce reply; ``peers`` are (ip, port), IPv4 and IPv6 mixed."""

    interval: int
    peers: tuple[tuple[str, int], ...] = ()
    min_interval: int | None = None
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    tracker_id: str | None = None

    def __post_init__(self) -> None:
        _check_counter("interval", self.interval)
        for name in ("min_interval", "complete", "incomplete"):
            value = getattr(self, name)
            if value is not None:
                _check_counter(name, value)
        for ip, port in self.peers:
            _normalise_ip(ip)
            _check_port(port)

    def encode(self, compact: bool) -> bytes:
        """Bencode the reply: compact (BEP 23 ``peers`` + BEP 7 ``peers6``) or dict list."""
        out: dict[bytes, Any] = {b"interval": self.interval}
        if self.min_interval is not None:
            out[b"min interval"] = self.min_interval
        if self.complete is not None:
            out[b"complete"] = self.complete
        if self.incomplete is not None:
            out[b"incomplete"] = self.incomplete
        if self.warning is not None:
            out[b"warning message"] = self.warning.encode()
        if self.tracker_id is not None:
            out[b"tracker id"] = self.tracker_id.encode()
        if compact:
            v4, v6 = pack_peers(self.peers)
            out[b"peers"] = v4
            if v6:
                out[b"peers6"] = v6
        else:
            out[b"peers"] = [
                {b"ip": _normalise_ip(ip).encode(), b"port": port} for ip, port in self.peers
            ]
        return bencode.encode(out)

    @classmethod
    def parse(cls, data: bytes) -> AnnounceResponse:
        """Parse a tracker's announce reply (compact or dict peers, ``peers6``).

        Raises:
            TrackerError: ``failure reason``, oversize, bad bencode or bad fields.
        """
        d = _decode_dict(data, "announce response")
        interval = _opt_int(d, b"interval")
        if interval is None:
            raise TrackerError("announce response without interval")
        raw_peers = d.get(b"peers", b"")
        if isinstance(raw_peers, bytes):
            peers = _parse_compact(raw_peers, 6)
        elif isinstance(raw_peers, list):
            peers = _parse_peer_dicts(raw_peers)
        else:
            raise TrackerError("peers is neither a string nor a list")
        raw6 = d.get(b"peers6", b"")
        if not isinstance(raw6, bytes):
            raise TrackerError("peers6 is not a string")
        peers.extend(_parse_compact(raw6, 18))
        return cls(
            interval=interval,
            peers=tuple(peers),
            min_interval=_opt_int(d, b"min interval"),
            complete=_opt_int(d, b"complete"),
            incomplete=_opt_int(d, b"incomplete"),
            warning=_opt_text(d, b"warning message"),
            tracker_id=_opt_text(d, b"tracker id"),
        )


def encode_failure(reason: str) -> bytes:
    """A BEP 3 failure reply: ``d14:failure reason<len>:<reason>e``."""
    return bencode.encode({b"failure reason": reason.encode()})


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    """A BEP 48 scrape of one or more info-hashes."""

    info_hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.info_hashes:
            raise TrackerError("scrape needs at least one info_hash")
        if len(self.info_hashes) > TRACKER_MAX_SCRAPE:
            raise TrackerError(f"more than {TRACKER_MAX_SCRAPE} info_hashes in one scrape")
        for info_hash in self.info_hashes:
            _check_hash("info_hash", info_hash)

    def to_query(self) -> str:
        """``info_hash=..&info_hash=..`` percent-encoded byte-wise."""
        return "&".join(f"info_hash={quote_from_bytes(h, safe='')}" for h in self.info_hashes)

    @classmethod
    def parse_query(cls, raw_query: str) -> ScrapeRequest:
        """Parse a scrape from the raw query; a full scrape (no info_hash) is refused.

        Raises:
            TrackerError: no or invalid info_hash, or too many.
        """
        params = _split_query(raw_query)
        hashes = params.get("info_hash", [])
        # Duplicates collapse, keeping order (the reply is a dict anyway).
        return cls(tuple(dict.fromkeys(hashes)))


@dataclass(frozen=True, slots=True)
class ScrapeFile:
    """Counts for one torrent: seeds, completed downloads, leechers (BEP 48)."""

    complete: int
    downloaded: int
    incomplete: int

    def __post_init__(self) -> None:
        _check_counter("complete", self.complete)
        _check_counter("downloaded", self.downloaded)
        _check_counter("incomplete", self.incomplete)


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """A BEP 48 scrape reply: info_hash -> counts."""

    files: dict[bytes, ScrapeFile] = field(default_factory=dict)

    def encode(self) -> bytes:
        """``d5:filesd20:<hash>d8:completei..e10:downloadedi..e10:incompletei..eeee``."""
        return bencode.encode(
            {
                b"files": {
                    h: {
                        b"complete": f.complete,
                        b"downloaded": f.downloaded,
                        b"incomplete": f.incomplete,
                    }
                    for h, f in self.files.items()
                }
            }
        )

    @classmethod
    def parse(cls, data: bytes) -> ScrapeResponse:
        """Parse a scrape reply.

        Raises:
            TrackerError: ``failure reason``, oversize, bad bencode or bad fields.
        """
        d = _decode_dict(data, "scrape response")
        files = d.get(b"files")
        if not isinstance(files, dict):
            raise TrackerError("scrape response without files")
        out: dict[bytes, ScrapeFile] = {}
        for info_hash, counts in files.items():
            _check_hash("info_hash", info_hash)
            if not isinstance(counts, dict):
                raise TrackerError("scrape entry is not a dictionary")
            out[info_hash] = ScrapeFile(
                complete=_opt_int(counts, b"complete") or 0,
                downloaded=_opt_int(counts, b"downloaded") or 0,
                incomplete=_opt_int(counts, b"incomplete") or 0,
            )
        return cls(out)


def scrape_url(announce_url: str) -> str | None:
    """BEP 48 convention: replace a final ``announce`` path segment by ``scrape``.

    Returns the URL unchanged if it already names ``scrape``; ``None`` if the tracker
    cannot be scraped (the last segment does not start with ``announce``).
    """
    parts = urlsplit(announce_url)
    head, _, last = parts.path.rpartition("/")
    if last.startswith("scrape"):
        return announce_url
    if not last.startswith("announce"):
        return None
    path = f"{head}/scrape{last[len('announce') :]}"
    return urlunsplit(parts._replace(path=path))
