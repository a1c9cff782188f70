""".torrent files (BEP 3, 12, 19, 27, 47) and magnet links (BEP 9): parse, validate, build.

Sans-IO: bytes and strings in, frozen values out. The info-hash is always the SHA-1 of the
exact bytes of ``info`` as they stand in the document (``bencode.info_span``), never of a
re-encoding. Everything that comes from outside is validated here, so that storage can trust
``FileEntry.path`` (no ``..``, no separators, no NUL, no duplicates).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

from hubswarm.errors import BencodeError, MetainfoError
from hubswarm.limits import (
    BLOCK_SIZE,
    MAGNET_MAX_LENGTH,
    METADATA_MAX_SIZE,
    PIECE_LENGTH_MAX,
    PIECE_LENGTH_MIN,
)
from hubswarm.proto import bencode, compact

__all__ = [
    "FileEntry",
    "InfoDict",
    "Magnet",
    "Metainfo",
    "auto_piece_length",
    "build_info",
    "build_magnet",
    "build_metainfo",
    "parse_info",
    "parse_magnet",
    "parse_metainfo",
]

_HASH_LEN = 20
# auto_piece_length: like libtorrent/qBittorrent, keep the piece count near 1000-2000 so the
# .torrent stays small (20 bytes per piece) while pieces stay small enough to spread quickly.
_AUTO_TARGET_PIECES = 2000
_AUTO_PIECE_MAX = 16 * 1024 * 1024
_FORBIDDEN_IN_NAME = ("/", "\\", "\x00")


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent: path *including* the torrent name, length and stream offset.

    ``padding`` marks a BEP 47 padding file (attr ``p``): its bytes are zeros that belong to
    the piece stream but must not be written to disk.
    """

    path: tuple[str, ...]
    length: int
    offset: int
    padding: bool = False


@dataclass(frozen=True, slots=True)
class InfoDict:
    """The validated ``info`` dictionary of a v1 torrent, with its raw bytes and info-hash."""

    name: str
    piece_length: int
    piece_hashes: tuple[bytes, ...]
    files: tuple[FileEntry, ...]
    private: bool
    raw: bytes
    info_hash: bytes

    def __post_init__(self) -> None:
        if len(self.info_hash) != _HASH_LEN:
            raise MetainfoError("info_hash must be 20 bytes")

    @property
    def total_length(self) -> int:
        """Total bytes of the concatenated file stream (padding files included)."""
        return sum(f.length for f in self.files)

    @property
    def num_pieces(self) -> int:
        """Number of pieces."""
        return len(self.piece_hashes)

    @property
    def is_multi_file(self) -> bool:
        """True for a ``files`` torrent (even with one file), False for a ``length`` torrent."""
        # Single-file paths are (name,); multi-file paths always have at least two components.
        return len(self.files[0].path) > 1

    def piece_size(self, index: int) -> int:
        """Size in bytes of piece ``index``; the last piece may be shorter.

        Raises:
            IndexError: ``index`` is not a piece of this torrent.
        """
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece index {index} out of range 0..{self.num_pieces - 1}")
        if index < self.num_pieces - 1:
            return self.piece_length
        return self.total_length - self.piece_length * (self.num_pieces - 1)


@dataclass(frozen=True, slots=True)
class Metainfo:
    """A parsed .torrent file: the info dict plus trackers, web seeds and DHT nodes."""

    info: InfoDict
    announce_list: tuple[tuple[str, ...], ...] = ()
    url_list: tuple[str, ...] = ()
    nodes: tuple[tuple[str, int], ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None

    @property
    def info_hash(self) -> bytes:
        """SHA-1 of the raw ``info`` bytes."""
        return self.info.info_hash

    @property
    def trackers(self) -> list[str]:
        """All tracker URLs, tier by tier, without duplicates."""
        return list(dict.fromkeys(url for tier in self.announce_list for url in tier))

    def to_magnet(self) -> Magnet:
        """A magnet link carrying this torrent's info-hash, name, trackers and web seeds."""
        return Magnet(
            info_hash=self.info_hash,
            display_name=self.info.name,
            trackers=tuple(self.trackers),
            web_seeds=self.url_list,
        )


@dataclass(frozen=True, slots=True)
class Magnet:
    """A BEP 9 magnet link: ``xt=urn:btih``, ``dn``, ``tr``, ``ws`` and ``x.pe`` peers."""

    info_hash: bytes
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    web_seeds: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.info_hash, bytes) or len(self.info_hash) != _HASH_LEN:
            raise MetainfoError("magnet info_hash must be 20 bytes")
        for host, port in self.peers:
            if not host or not 0 < port < 65536:
                raise MetainfoError(f"invalid magnet peer {host!r}:{port}")


# --- helpers ---------------------------------------------------------------------------------


def _text(value: Any, what: str) -> str:
    """A bencoded string as strict UTF-8 text."""
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what} must be a string, got {type(value).__name__}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetainfoError(f"{what} is not valid UTF-8") from exc


def _check_component(part: str, what: str) -> None:
    """One path component (or the name): must not escape its folder (BEP 3 safety)."""
    if not part:
        raise MetainfoError(f"{what} is empty")
    if part in (".", ".."):
        raise MetainfoError(f"{what} {part!r} is not allowed")
    for bad in _FORBIDDEN_IN_NAME:
        if bad in part:
            raise MetainfoError(f"{what} {part!r} contains a forbidden character {bad!r}")


def _lenient_text(value: Any) -> str | None:
    """Optional top-level text fields: ignore non-strings, replace bad UTF-8 (as libtorrent)."""
    if not isinstance(value, bytes):
        return None
    return value.decode("utf-8", errors="replace")


def _url(value: Any) -> str | None:
    """A tracker or web-seed URL, or None if it is not a usable string."""
    if not isinstance(value, bytes):
        return None
    try:
        text = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return text or None


# --- info dictionary -------------------------------------------------------------------------


def _parse_files(info: dict[bytes, Any], name: str) -> tuple[FileEntry, ...]:
    """The file list of a single-file (``length``) or multi-file (``files``) info dict."""
    has_length = b"length" in info
    has_files = b"files" in info
    if has_length == has_files:
        raise MetainfoError("info must have exactly one of 'length' and 'files'")
    if has_length:
        length = info[b"length"]
        if not isinstance(length, int) or length < 0:
            raise MetainfoError(f"file length must be a non-negative integer, got {length!r}")
        return (FileEntry(path=(name,), length=length, offset=0),)

    raw_files = info[b"files"]
    if not isinstance(raw_files, list) or not raw_files:
        raise MetainfoError("'files' must be a non-empty list")
    entries: list[FileEntry] = []
    seen: set[tuple[str, ...]] = set()
    offset = 0
    for i, item in enumerate(raw_files):
        if not isinstance(item, dict):
            raise MetainfoError(f"files[{i}] must be a dictionary")
        length = item.get(b"length")
        if not isinstance(length, int) or length < 0:
            raise MetainfoError(f"files[{i}] length must be a non-negative integer")
        # BEP 3 allows a UTF-8 twin of 'path'; libtorrent prefers 'path.utf-8' when present.
        raw_path = item.get(b"path.utf-8", item.get(b"path"))
        if not isinstance(raw_path, list) or not raw_path:
            raise MetainfoError(f"files[{i}] path must be a non-empty list")
        parts = tuple(_text(p, f"files[{i}] path component") for p in raw_path)
        for part in parts:
            _check_component(part, f"files[{i}] path component")
        path = (name, *parts)
        attr = item.get(b"attr", b"")
        padding = isinstance(attr, bytes) and b"p" in attr  # BEP 47 padding file
        # Padding files are never written, and libtorrent names them by size alone
        # (".pad/16381" may repeat), so only real files must have distinct paths.
        if not padding:
            if path in seen:
                raise MetainfoError(f"duplicate file path {'/'.join(parts)!r}")
            seen.add(path)
        entries.append(FileEntry(path=path, length=length, offset=offset, padding=padding))
        offset += length
    # A path that is both a file and a folder ("a" and "a/b") cannot be stored.
    for path in seen:
        for cut in range(2, len(path)):
            if path[:cut] in seen:
                raise MetainfoError(f"{'/'.join(path[1:cut])!r} is both a file and a folder")
    return tuple(entries)


def _parse_info_dict(info: Any, raw: bytes) -> InfoDict:
    if not isinstance(info, dict):
        raise MetainfoError("'info' must be a dictionary")
    # BEP 3: 'name.utf-8' is the UTF-8 twin some clients add; prefer it as libtorrent does.
    raw_name = info.get(b"name.utf-8", info.get(b"name"))
    if raw_name is None:
        raise MetainfoError("info has no 'name'")
    name = _text(raw_name, "name")
    _check_component(name, "name")

    piece_length = info.get(b"piece length")
    if not isinstance(piece_length, int):
        raise MetainfoError("'piece length' must be an integer")
    # Any multiple of the 16 KiB block within the caps in limits.py (BEP 3 only *recommends*
    # powers of two). This mirrors what libtorrent's create_torrent produces; its loader is
    # laxer (2.1.1 loads 8192 and 20000, measured), but whole 16 KiB blocks in every piece but
    # the last keep block arithmetic simple for the picker and storage.
    if not PIECE_LENGTH_MIN <= piece_length <= PIECE_LENGTH_MAX or piece_length % BLOCK_SIZE:
        raise MetainfoError(
            f"piece length {piece_length} must be a multiple of {BLOCK_SIZE} "
            f"between {PIECE_LENGTH_MIN} and {PIECE_LENGTH_MAX}"
        )

    pieces = info.get(b"pieces")
    if pieces is None and info.get(b"meta version") == 2:
        # BEP 52 v2-only torrents have no v1 'pieces'; hybrids (v1 + v2) parse as v1.
        raise MetainfoError("v2-only torrents (BEP 52) are not supported")
    if not isinstance(pieces, bytes):
        raise MetainfoError("'pieces' must be a string")
    if len(pieces) % _HASH_LEN:
        raise MetainfoError(f"'pieces' length {len(pieces)} is not a multiple of 20")

    files = _parse_files(info, name)
    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("torrent has no data (total length 0)")
    expected_pieces = -(-total // piece_length)
    if len(pieces) // _HASH_LEN != expected_pieces:
        raise MetainfoError(
            f"{len(pieces) // _HASH_LEN} piece hashes for {total} bytes in pieces of "
            f"{piece_length} (expected {expected_pieces})"
        )
    hashes = tuple(pieces[i : i + _HASH_LEN] for i in range(0, len(pieces), _HASH_LEN))
    private = info.get(b"private", 0)
    return InfoDict(
        name=name,
        piece_length=piece_length,
        piece_hashes=hashes,
        files=files,
        # BEP 27: private=1; like libtorrent, any non-zero integer counts.
        private=isinstance(private, int) and private != 0,
        raw=raw,
        info_hash=hashlib.sha1(raw).digest(),
    )


def parse_info(raw: bytes, expected_info_hash: bytes | None = None) -> InfoDict:
    """Parse and validate the bencoded ``info`` dict (e.g. BEP 9 metadata).

    Raises:
        MetainfoError: malformed bencode, invalid fields, or SHA-1 != ``expected_info_hash``.
    """
    raw = bytes(raw)
    if len(raw) > METADATA_MAX_SIZE:
        raise MetainfoError(f"info of {len(raw)} bytes exceeds {METADATA_MAX_SIZE}")
    if expected_info_hash is not None:
        # Check the hash before parsing: BEP 9 metadata from a peer is untrusted until it does.
        got = hashlib.sha1(raw).digest()
        if got != expected_info_hash:
            raise MetainfoError(
                f"metadata hash {got.hex()} does not match info-hash {expected_info_hash.hex()}"
            )
    try:
        info = bencode.decode(raw)
    except BencodeError as exc:
        raise MetainfoError(f"info is not valid bencode: {exc}") from exc
    return _parse_info_dict(info, raw)


# --- whole .torrent --------------------------------------------------------------------------


def _parse_announce(top: dict[bytes, Any]) -> tuple[tuple[str, ...], ...]:
    """BEP 12: 'announce-list' tiers win over 'announce'; malformed entries are skipped."""
    tiers: list[tuple[str, ...]] = []
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if not isinstance(tier, list):
                continue
            urls = tuple(dict.fromkeys(u for u in map(_url, tier) if u))
            if urls:
                tiers.append(urls)
    if not tiers:
        url = _url(top.get(b"announce"))
        if url:
            tiers.append((url,))
    return tuple(tiers)


def _parse_url_list(value: Any) -> tuple[str, ...]:
    """BEP 19 'url-list': one string or a list of strings."""
    items = [value] if isinstance(value, bytes) else value if isinstance(value, list) else []
    return tuple(dict.fromkeys(u for u in map(_url, items) if u))


def _parse_nodes(value: Any) -> tuple[tuple[str, int], ...]:
    """BEP 5 'nodes': a list of [host, port] pairs; malformed pairs are skipped."""
    out: list[tuple[str, int]] = []
    if isinstance(value, list):
        for item in value:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], bytes)
                and isinstance(item[1], int)
                and 0 < item[1] < 65536
            ):
                host = _lenient_text(item[0])
                if host:
                    out.append((host, item[1]))
    return tuple(out)


def parse_metainfo(data: bytes) -> Metainfo:
    """Parse and validate a v1 .torrent document.

    Optional fields (trackers, web seeds, nodes, comment) with a wrong type are ignored, as
    libtorrent does; the ``info`` dict is validated strictly.

    Raises:
        MetainfoError: malformed bencode or an invalid ``info`` dict.
    """
    data = bytes(data)
    try:
        top = bencode.decode(data)
        if not isinstance(top, dict):
            raise MetainfoError("a .torrent must be a bencoded dictionary")
        if b"info" not in top:
            raise MetainfoError("a .torrent must have an 'info' dictionary")
        start, end = bencode.info_span(data)
    except BencodeError as exc:
        raise MetainfoError(f"not a valid .torrent: {exc}") from exc
    raw = data[start:end]
    info = _parse_info_dict(top[b"info"], raw)
    creation_date = top.get(b"creation date")
    return Metainfo(
        info=info,
        announce_list=_parse_announce(top),
        url_list=_parse_url_list(top.get(b"url-list")),
        nodes=_parse_nodes(top.get(b"nodes")),
        comment=_lenient_text(top.get(b"comment")),
        created_by=_lenient_text(top.get(b"created by")),
        creation_date=creation_date if isinstance(creation_date, int) else None,
    )


# --- building --------------------------------------------------------------------------------


def build_info(
    name: str,
    piece_length: int,
    piece_hashes: Sequence[bytes] | bytes,
    files: Sequence[tuple[Sequence[str], int]] | None = None,
    length: int | None = None,
    private: bool = False,
) -> InfoDict:
    """Build a canonical ``info`` dict and return it parsed (so build -> parse round-trips).

    ``files`` paths are relative to the torrent folder, *without* the name (as in the
    info dict's ``files`` list); give exactly one of ``files`` and ``length``.
    ``piece_hashes`` is a sequence of 20-byte digests or their concatenation.

    Raises:
        MetainfoError: the values do not make a valid torrent.
    """
    if (files is None) == (length is None):
        raise MetainfoError("give exactly one of files and length")
    if isinstance(piece_hashes, bytes | bytearray):
        pieces = bytes(piece_hashes)
    else:
        pieces = b"".join(piece_hashes)
    info: dict[str, Any] = {"name": name, "piece length": piece_length, "pieces": pieces}
    if files is not None:
        info["files"] = [{"length": size, "path": list(path)} for path, size in files]
    else:
        info["length"] = length
    if private:
        info["private"] = 1
    try:
        raw = bencode.encode(info)
    except BencodeError as exc:
        raise MetainfoError(f"cannot encode info: {exc}") from exc
    return parse_info(raw)


def _tiers(announce_list: Iterable[Sequence[str] | str]) -> list[list[str]]:
    """Normalise trackers: a bare string is a tier of its own; empty tiers are dropped."""
    tiers: list[list[str]] = []
    for tier in announce_list:
        urls = [tier] if isinstance(tier, str) else list(tier)
        urls = [u for u in urls if u]
        if urls:
            tiers.append(urls)
    return tiers


def build_metainfo(
    info: InfoDict,
    announce_list: Iterable[Sequence[str] | str] = (),
    url_list: Iterable[str] = (),
    comment: str | None = None,
    created_by: str | None = "hubswarm/0.1",
    creation_date: int | None = None,
    nodes: Iterable[tuple[str, int]] = (),
) -> bytes:
    """Bencode a .torrent around ``info.raw`` (copied byte for byte, so the info-hash holds).

    ``announce_list`` is a list of tiers (BEP 12); a bare URL string counts as its own tier.
    """
    tiers = _tiers(announce_list)
    top: dict[bytes, bytes] = {}
    if tiers:
        top[b"announce"] = bencode.encode(tiers[0][0])
        if sum(len(t) for t in tiers) > 1:
            top[b"announce-list"] = bencode.encode(tiers)
    if comment is not None:
        top[b"comment"] = bencode.encode(comment)
    if created_by is not None:
        top[b"created by"] = bencode.encode(created_by)
    if creation_date is not None:
        top[b"creation date"] = bencode.encode(creation_date)
    top[b"info"] = info.raw
    node_list = [[host, port] for host, port in nodes]
    if node_list:
        top[b"nodes"] = bencode.encode(node_list)
    urls = [u for u in url_list if u]
    if urls:
        top[b"url-list"] = bencode.encode(urls)
    body = b"".join(bencode.encode(k) + top[k] for k in sorted(top))
    return b"d" + body + b"e"


def auto_piece_length(total_length: int) -> int:
    """A power-of-two piece length for ``total_length`` bytes: ~1000-2000 pieces, 16 KiB..16 MiB."""
    piece_length = PIECE_LENGTH_MIN
    while piece_length < _AUTO_PIECE_MAX and total_length > piece_length * _AUTO_TARGET_PIECES:
        piece_length *= 2
    return piece_length


# --- magnet links (BEP 9) --------------------------------------------------------------------


def _parse_btih(value: str) -> bytes:
    """BEP 9: the info-hash as 40 hex digits or 32 base32 characters."""
    try:
        if len(value) == 40:
            return bytes.fromhex(value)
        if len(value) == 32:
            return base64.b32decode(value.upper())
    except (ValueError, binascii.Error) as exc:
        raise MetainfoError(f"invalid btih {value!r}") from exc
    raise MetainfoError(f"btih must be 40 hex or 32 base32 characters, got {len(value)}")


def _parse_peer(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (x.pe)."""
    try:
        return compact.parse_host_port(value)
    except ValueError as exc:
        raise MetainfoError(f"invalid x.pe peer: {exc}") from exc


def parse_magnet(uri: str) -> Magnet:
    """Parse ``magnet:?xt=urn:btih:...&dn=..&tr=..&ws=..&x.pe=..`` (BEP 9).

    Raises:
        MetainfoError: not a magnet link, no (or a bad) ``urn:btih`` exact topic.
    """
    if len(uri) > MAGNET_MAX_LENGTH:
        raise MetainfoError(f"magnet link longer than {MAGNET_MAX_LENGTH} characters")
    if not isinstance(uri, str) or uri[:8].lower() != "magnet:?":
        raise MetainfoError("not a magnet link (must start with 'magnet:?')")
    info_hash: bytes | None = None
    display_name: str | None = None
    trackers: list[str] = []
    web_seeds: list[str] = []
    peers: list[tuple[str, int]] = []
    saw_btmh = False
    for field in uri[8:].split("&"):
        key, sep, raw_value = field.partition("=")
        if not sep:
            continue
        # Some clients number repeated keys: tr.1=..&tr.2=.. (BEP 9 mentions xt.1, xt.2).
        base = key.lower().split(".")[0] if key.lower() != "x.pe" else "x.pe"
        try:
            # dn is display text: '+' means a space there, as in HTML forms; URLs keep '+'.
            value = unquote_plus(raw_value) if base == "dn" else unquote(raw_value, errors="strict")
        except UnicodeDecodeError as exc:
            raise MetainfoError(f"magnet field {key!r} is not valid UTF-8") from exc
        if base == "xt":
            lowered = value.lower()
            if lowered.startswith("urn:btih:"):
                if info_hash is None:
                    info_hash = _parse_btih(value[9:])
            elif lowered.startswith("urn:btmh:"):
                saw_btmh = True
        elif base == "dn":
            display_name = value
        elif base == "tr" and value:
            trackers.append(value)
        elif base == "ws" and value:
            web_seeds.append(value)
        elif base == "x.pe" and value:
            peers.append(_parse_peer(value))
    if info_hash is None:
        if saw_btmh:
            raise MetainfoError("v2-only magnet links (urn:btmh) are not supported")
        raise MetainfoError("magnet link has no 'xt=urn:btih:' info-hash")
    return Magnet(
        info_hash=info_hash,
        display_name=display_name,
        trackers=tuple(dict.fromkeys(trackers)),
        web_seeds=tuple(dict.fromkeys(web_seeds)),
        peers=tuple(dict.fromkeys(peers)),
    )


def build_magnet(m: Magnet) -> str:
    """Build a magnet link: lowercase hex btih, every value percent-encoded (RFC 3986)."""
    parts = [f"xt=urn:btih:{m.info_hash.hex()}"]
    if m.display_name is not None:
        parts.append("dn=" + quote(m.display_name, safe=""))
    parts.extend("tr=" + quote(url, safe="") for url in m.trackers)
    parts.extend("ws=" + quote(url, safe="") for url in m.web_seeds)
    for host, port in m.peers:
        parts.append("x.pe=" + quote(compact.format_host_port(host, port), safe=":[]"))
    return "magnet:?" + "&".join(parts)
