"""Create a v1 .torrent from a file or a folder (BEP 3).

Synchronous and blocking on purpose: callers in an event loop run it with
``asyncio.to_thread``. Memory stays bounded: files are read in chunks of at most
``MAKETORRENT_READ_CHUNK`` bytes and pieces are hashed across file boundaries as a stream.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from hubswarm.errors import ConfigError, UnsafePathError
from hubswarm.limits import (
    BLOCK_SIZE,
    MAKETORRENT_READ_CHUNK,
    PIECE_LENGTH_MAX,
    PIECE_LENGTH_MIN,
)
from hubswarm.proto.metainfo import InfoDict, auto_piece_length, build_info, build_metainfo

__all__ = ["create_torrent", "list_files"]

# Symlinked folders could nest without end; no honest tree is deeper than this.
_MAX_DEPTH = 64


def _utf8_name(path: Path) -> str:
    """The file name as text; names that are not UTF-8 cannot go into a torrent (BEP 3)."""
    name = path.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{path}: file name is not valid UTF-8") from exc
    return name


def list_files(root: Path) -> list[tuple[tuple[str, ...], Path, int]]:
    """Every regular file under ``root``: (relative parts, real path, size), sorted by UTF-8 path.

    Symlinks are followed only if they stay inside ``root``; special files are refused.

    Raises:
        UnsafePathError: a symlink points outside ``root``, or symlinked folders loop.
        ConfigError: a special file (FIFO, socket, device) or a name that is not UTF-8.
    """
    real_root = root.resolve(strict=True)
    out: list[tuple[tuple[str, ...], Path, int]] = []

    def walk(folder: Path, parts: tuple[str, ...], ancestors: frozenset[Path]) -> None:
        if len(parts) > _MAX_DEPTH:
            raise ConfigError(f"{folder}: folders nested deeper than {_MAX_DEPTH}")
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            path = Path(entry.path)
            name = _utf8_name(path)
            real = path.resolve(strict=True)
            if entry.is_symlink() and not real.is_relative_to(real_root):
                raise UnsafePathError(f"{path}: symlink points outside {root} (to {real})")
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                if real in ancestors:
                    raise UnsafePathError(f"{path}: symlinked folders form a loop")
                walk(path, (*parts, name), ancestors | {real})
            elif stat.S_ISREG(st.st_mode):
                out.append(((*parts, name), real, st.st_size))
            else:
                raise ConfigError(f"{path}: not a regular file or folder")

    walk(root, (), frozenset({real_root}))
    # Sort by the UTF-8 bytes of the whole path, as libtorrent and mktorrent do.
    out.sort(key=lambda item: [p.encode() for p in item[0]])
    return out


def _hash_pieces(
    files: Sequence[tuple[Path, int]],
    piece_length: int,
    progress: Callable[[int, int], None] | None,
) -> list[bytes]:
    """SHA-1 of each piece of the concatenated file stream, reading in bounded chunks."""
    total = sum(size for _, size in files)
    hashes: list[bytes] = []
    hasher = hashlib.sha1()
    in_piece = 0
    done = 0
    for path, size in files:
        with open(path, "rb") as f:
            remaining = size
            while remaining:
                want = min(MAKETORRENT_READ_CHUNK, piece_length - in_piece, remaining)
                chunk = f.read(want)
                if not chunk:
                    raise ConfigError(f"{path}: file shrank while it was being hashed")
                hasher.update(chunk)
                in_piece += len(chunk)
                remaining -= len(chunk)
                done += len(chunk)
                if in_piece == piece_length:
                    hashes.append(hasher.digest())
                    hasher = hashlib.sha1()
                    in_piece = 0
                if progress is not None:
                    progress(done, total)
    if in_piece:
        hashes.append(hasher.digest())
    return hashes


def create_torrent(
    path: Path,
    *,
    piece_length: int | None = None,
    trackers: Iterable[Sequence[str] | str] = (),
    web_seeds: Iterable[str] = (),
    private: bool = False,
    comment: str | None = None,
    created_by: str | None = "hubswarm/0.1",
    creation_date: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[InfoDict, bytes]:
    """Hash ``path`` (a file -> single-file torrent, a folder -> multi-file) into a .torrent.

    ``trackers``: each URL string is its own tier; a list of URLs is one tier (BEP 12).
    ``creation_date`` defaults to now. Returns the info dict and the bencoded .torrent.

    Raises:
        ConfigError: missing path, empty folder, zero total length, special files, bad
            piece length.
        UnsafePathError: a symlink escapes the folder.
        MetainfoError: an invalid name (e.g. with a backslash).
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    # "." and ".." have no name of their own; a symlinked file keeps the link's name.
    name = _utf8_name(path if path.name not in ("", ".", "..") else path.resolve())
    listing: list[tuple[tuple[str, ...], Path, int]]
    try:
        if stat.S_ISREG(st.st_mode):
            listing = [((name,), path, st.st_size)]
            multi = False
        elif stat.S_ISDIR(st.st_mode):
            listing = [((name, *parts), real, size) for parts, real, size in list_files(path)]
            multi = True
            if not listing:
                raise ConfigError(f"{path}: folder has no files")
        else:
            raise ConfigError(f"{path}: not a regular file or folder")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    total = sum(size for _, _, size in listing)
    if total == 0:
        raise ConfigError(f"{path}: nothing to share (total length 0)")
    if piece_length is None:
        piece_length = auto_piece_length(total)
    # Check before hashing (which may take minutes), with the same rule the parser applies.
    if not PIECE_LENGTH_MIN <= piece_length <= PIECE_LENGTH_MAX or piece_length % BLOCK_SIZE:
        raise ConfigError(
            f"piece length {piece_length} must be a multiple of {BLOCK_SIZE} "
            f"between {PIECE_LENGTH_MIN} and {PIECE_LENGTH_MAX}"
        )
    try:
        hashes = _hash_pieces([(p, size) for _, p, size in listing], piece_length, progress)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if multi:
        info = build_info(
            name,
            piece_length,
            hashes,
            files=[(parts[1:], size) for parts, _, size in listing],
            private=private,
        )
    else:
        info = build_info(name, piece_length, hashes, length=total, private=private)
    data = build_metainfo(
        info,
        announce_list=trackers,
        url_list=web_seeds,
        comment=comment,
        created_by=created_by,
        creation_date=int(time.time()) if creation_date is None else creation_date,
    )
    return info, data
