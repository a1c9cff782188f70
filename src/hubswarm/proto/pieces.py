"""BEP 3 piece hashes computed as bytes stream by, and the .torrent the hub makes of a file.

Sans-IO: ``PieceHasher`` is fed the bytes of a file in order, in chunks of any size, and
yields the SHA-1 of each ``piece_length`` piece (the last one shorter); the hub feeds it the
chunks of an upload in the same pass that computes the file's SHA-256, so a torrent of a new
file costs no second read. ``hub_torrent`` wraps stored pieces into a single-file v1 torrent
whose web seed (BEP 19) is the hub's own URL of the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hubswarm.errors import MetainfoError
from hubswarm.proto.metainfo import (
    InfoDict,
    Magnet,
    auto_piece_length,
    build_info,
    build_magnet,
    build_metainfo,
)

__all__ = ["HubTorrent", "PieceHasher", "hub_torrent", "piece_length_for"]

_HASH_LEN = 20


def piece_length_for(size: int) -> int:
    """The piece length the hub uses for a file of ``size`` bytes (as ``maketorrent`` picks)."""
    return auto_piece_length(size)


class PieceHasher:
    """SHA-1 of each piece of a byte stream fed in arbitrary chunks."""

    __slots__ = ("_hasher", "_in_piece", "_pieces", "length", "piece_length")

    def __init__(self, piece_length: int) -> None:
        if piece_length <= 0:
            raise MetainfoError("piece length must be positive")
        self.piece_length = piece_length
        self.length = 0  # bytes fed so far
        self._pieces: list[bytes] = []
        self._hasher: Any = hashlib.sha1()
        self._in_piece = 0

    def update(self, data: bytes | memoryview) -> None:
        """Feed the next bytes of the stream."""
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_length - self._in_piece)
            self._hasher.update(view[:take])
            self._in_piece += take
            self.length += take
            view = view[take:]
            if self._in_piece == self.piece_length:
                self._pieces.append(self._hasher.digest())
                self._hasher = hashlib.sha1()
                self._in_piece = 0

    def copy(self) -> PieceHasher:
        """An independent hasher in the same state (to roll back a refused chunk)."""
        other = PieceHasher(self.piece_length)
        other.length = self.length
        other._pieces = list(self._pieces)
        other._hasher = self._hasher.copy()
        other._in_piece = self._in_piece
        return other

    def pieces(self) -> bytes:
        """The concatenated piece hashes of everything fed (the last piece may be short)."""
        tail = [self._hasher.digest()] if self._in_piece else []
        return b"".join(self._pieces + tail)


@dataclass(frozen=True, slots=True)
class HubTorrent:
    """A hub file as a torrent: the info dict and the whole bencoded .torrent."""

    info: InfoDict
    data: bytes
    magnet: str

    @property
    def info_hash(self) -> str:
        """Hex info-hash."""
        return self.info.info_hash.hex()


def hub_torrent(
    name: str,
    size: int,
    piece_length: int,
    pieces: bytes,
    *,
    announce: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    created_by: str = "hubswarm hub",
    files: Sequence[tuple[Sequence[str], int]] | None = None,
) -> HubTorrent:
    """A v1 torrent of ``name`` (its last path segment) from stored piece hashes: single-file
    of ``size`` bytes, or multi-file with ``files`` (paths relative to the folder, sizes).

    No creation date: the same file always gives the same bytes (and ETag-able caching).

    Raises:
        MetainfoError: the pieces do not fit ``size``, or the name cannot be a torrent name.
    """
    base = name.rsplit("/", 1)[-1]
    if len(pieces) % _HASH_LEN:
        raise MetainfoError("piece hashes are not a multiple of 20 bytes")
    if files is None:
        info = build_info(base, piece_length, pieces, length=size)
    else:
        if sum(n for _, n in files) != size:
            raise MetainfoError("the files' sizes do not add up to the size")
        info = build_info(base, piece_length, pieces, files=files)
    data = build_metainfo(
        info,
        announce_list=list(announce),
        url_list=web_seeds,
        created_by=created_by,
        creation_date=None,
    )
    magnet = build_magnet(
        Magnet(
            info_hash=info.info_hash,
            display_name=base,
            trackers=tuple(announce),
            web_seeds=tuple(web_seeds),
        )
    )
    return HubTorrent(info=info, data=data, magnet=magnet)
