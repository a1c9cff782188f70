"""Every hub file is a torrent: ``GET /torrents/NAME.torrent`` and the listing's magnet links.

The torrent is a single-file v1 torrent whose ``announce`` is the hub's own tracker (when it
runs one) and whose ``url-list`` (BEP 19) is the hub's URL of the file, so any BitTorrent
client downloads from the hub over HTTP and from whoever else seeds it.

Piece hashes are kept in ``.pieces/<sha256>-<piece_length>.sha1`` (the concatenated SHA-1s),
keyed by the file's SHA-256: new content is a new key, so a replaced file never gets stale
pieces, and identical files share one entry. Uploads fill the cache in the same pass that
computes the SHA-256 (``hasher_for`` / ``remember``); a file stored before (or uploaded
without a Content-Length) gets its pieces computed on the first ``.torrent`` request, in a
thread, once however many requests ask at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from aiohttp import web

from hubswarm.errors import MetainfoError, UnsafePathError
from hubswarm.hub.app import (
    STORE_KEY,
    _HTTPJSONError,
    authorize,
)
from hubswarm.hub.auth import Role
from hubswarm.hub.store import FileInfo, validate_name
from hubswarm.proto.pieces import HubTorrent, PieceHasher, hub_torrent, piece_length_for

__all__ = ["PieceCache", "add_torrent_routes", "annotate", "hasher_for", "remember"]

_PREFIX = "/torrents/"
_SUFFIX = ".torrent"
_SHA1_LEN = 20
# Read size while hashing a stored file's pieces (1 MiB, as the store's SHA-256 pass).
_READ = 1024 * 1024


class PieceCache:
    """The ``.pieces/`` folder, and the computations in flight (one per key)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / ".pieces"
        self._inflight: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}

    def _path(self, sha256: str, piece_length: int) -> Path:
        return self.dir / f"{sha256}-{piece_length}.sha1"

    def load_sync(self, sha256: str, size: int) -> bytes | None:
        """The cached pieces of the content ``sha256`` of ``size`` bytes, or None (blocking)."""
        piece_length = piece_length_for(size)
        try:
            data = self._path(sha256, piece_length).read_bytes()
        except OSError:
            return None
        # A truncated or foreign file is not trusted: recompute.
        return data if len(data) == _SHA1_LEN * -(-size // piece_length) else None

    def store_sync(self, sha256: str, piece_length: int, pieces: bytes) -> None:
        """Write the pieces atomically (blocking)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pieces)
            os.replace(tmp, self._path(sha256, piece_length))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _compute_sync(self, path: Path, info: FileInfo) -> bytes | None:
        """Hash ``path``'s pieces and SHA-256 in one pass; cache them if it is still ``info``
        (None if the file changed meanwhile)."""
        pieces = PieceHasher(piece_length_for(info.size))
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(_READ):
                pieces.update(block)
                sha.update(block)
        if sha.hexdigest() != info.sha256 or pieces.length != info.size:
            return None
        data = pieces.pieces()
        self.store_sync(info.sha256, pieces.piece_length, data)
        return data

    def _compute_folder_sync(
        self, key: str, paths: list[Path], infos: list[FileInfo]
    ) -> bytes | None:
        """Hash the pieces of the files' concatenation (pieces cross file boundaries); cache
        them under ``key`` unless a file changed (size or mtime) meanwhile."""
        total = sum(f.size for f in infos)
        pieces = PieceHasher(piece_length_for(total))
        for path, info in zip(paths, infos, strict=True):
            with path.open("rb") as f:
                n = 0
                while block := f.read(_READ):
                    pieces.update(block)
                    n += len(block)
                st = os.fstat(f.fileno())
            if (n, st.st_mtime_ns) != (info.size, info.mtime_ns):
                return None
        data = pieces.pieces()
        self.store_sync(key, pieces.piece_length, data)
        return data

    async def folder_pieces(self, paths: list[Path], infos: list[FileInfo]) -> bytes | None:
        """The pieces of a folder torrent of ``infos`` (in torrent order); None if a file
        changed while they were hashed. Cached by the files' paths, SHA-256s and sizes."""
        ident = "\n".join(f"{f.name}\0{f.sha256}\0{f.size}" for f in infos)
        key = "folder-" + hashlib.sha256(ident.encode()).hexdigest()
        total = sum(f.size for f in infos)
        if (cached := await asyncio.to_thread(self.load_sync, key, total)) is not None:
            return cached
        return await asyncio.to_thread(self._compute_folder_sync, key, paths, infos)

    async def pieces(self, path: Path, info: FileInfo) -> bytes | None:
        """The pieces of ``info`` (cached, or computed in a thread once for all who ask);
        None if the file no longer is ``info``."""
        if (cached := await asyncio.to_thread(self.load_sync, info.sha256, info.size)) is not None:
            return cached
        key = (info.sha256, info.size)
        if (running := self._inflight.get(key)) is None:
            running = asyncio.ensure_future(asyncio.to_thread(self._compute_sync, path, info))
            self._inflight[key] = running
            running.add_done_callback(lambda f: self._done(key, f))
        # Shielded: one requester hanging up does not stop the hashing the others wait for.
        return await asyncio.shield(running)

    def _done(self, key: tuple[str, int], fut: asyncio.Future[bytes | None]) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled():
            fut.exception()  # retrieved: the requesters (if any are left) got it already


PIECES_KEY = web.AppKey("hub_pieces", PieceCache)


def hasher_for(size: int | None) -> PieceHasher | None:
    """A piece hasher for an upload of ``size`` bytes (None if unknown or empty: lazy later)."""
    return PieceHasher(piece_length_for(size)) if size else None


async def remember(app: web.Application, info: FileInfo, hasher: PieceHasher | None) -> None:
    """Cache the pieces an upload computed, if they cover exactly the stored file."""
    if hasher is None or hasher.length != info.size or info.size == 0:
        return
    await asyncio.to_thread(
        app[PIECES_KEY].store_sync, info.sha256, hasher.piece_length, hasher.pieces()
    )


def _has_tracker(app: web.Application) -> bool:
    return any(r.canonical == "/announce" for r in app.router.resources())


def _torrent_of(request: web.Request, info: FileInfo, pieces: bytes) -> HubTorrent:
    """The torrent of ``info`` as seen from this request's host (tracker and web seed)."""
    base = str(request.url.origin())
    web_seed = f"{base}/files/{quote(info.name, safe='/')}"
    if (token := request.query.get("token")) is not None:
        # Asked with ?token=: BitTorrent clients send no Authorization header, so the web
        # seed carries the token the same way (a hub with --anonymous-read needs none).
        web_seed += f"?token={quote(token, safe='')}"
    announce = [f"{base}/announce"] if _has_tracker(request.app) else []
    return hub_torrent(
        info.name,
        info.size,
        piece_length_for(info.size),
        pieces,
        announce=announce,
        web_seeds=[web_seed],
    )


async def _file_torrent(request: web.Request, name: str) -> HubTorrent | None:
    store = request.app[STORE_KEY]
    info = await store.info(name)
    if info.size == 0:
        raise _HTTPJSONError(409, f"{name} is empty: an empty file cannot be a torrent")
    pieces = await request.app[PIECES_KEY].pieces(store.path(name), info)
    return None if pieces is None else _torrent_of(request, info, pieces)


def _name_from(request: web.Request) -> str:
    raw = request.rel_url.raw_path
    if not raw.startswith(_PREFIX) or not raw.endswith(_SUFFIX):
        raise _HTTPJSONError(404, "a torrent URL is /torrents/NAME.torrent")
    try:
        name = unquote_to_bytes(raw[len(_PREFIX) : -len(_SUFFIX)]).decode("utf-8")
        return validate_name(name)
    except UnicodeDecodeError:
        raise _HTTPJSONError(400, "file name is not valid UTF-8") from None
    except UnsafePathError as exc:
        raise _HTTPJSONError(400, str(exc)) from None


async def _folder_torrent(request: web.Request, folder: str) -> HubTorrent | None:
    """The multi-file torrent of every file below ``folder`` (None if one changed meanwhile).

    Its web seed is the URL of the folder's parent, ending in ``/``: BEP 19 clients append
    the torrent's name and each file's path. A ``?token=`` cannot ride along there, so a
    folder's web seed serves only a hub with ``--anonymous-read``.
    """
    store = request.app[STORE_KEY]
    listing = await store.listing(folder)
    prefix = folder + "/"
    # BEP 3 order, as maketorrent and libtorrent: by the UTF-8 bytes of each path component.
    infos = sorted(listing.files, key=lambda f: [p.encode() for p in f.name.split("/")])
    total = sum(f.size for f in infos)
    if total == 0:
        raise _HTTPJSONError(409, f"{folder} holds no bytes: it cannot be a torrent")
    paths = [store.path(f.name) for f in infos]
    pieces = await request.app[PIECES_KEY].folder_pieces(paths, infos)
    if pieces is None:
        return None
    base = str(request.url.origin())
    parent = folder.rsplit("/", 1)[0] + "/" if "/" in folder else ""
    files = [(f.name[len(prefix) :].split("/"), f.size) for f in infos]
    return hub_torrent(
        folder,
        total,
        piece_length_for(total),
        pieces,
        announce=[f"{base}/announce"] if _has_tracker(request.app) else [],
        web_seeds=[f"{base}/files/{quote(parent, safe='/')}"],
        files=files,
    )


async def get_torrent(request: web.Request) -> web.Response:
    """``GET /torrents/PATH.torrent``: the v1 torrent of a file (single-file) or of a folder
    (multi-file), as application/x-bittorrent."""
    await authorize(request, Role.READ)
    name = _name_from(request)
    store = request.app[STORE_KEY]
    try:
        if await asyncio.to_thread(store.is_folder, name):
            torrent = await _folder_torrent(request, name)
        else:
            torrent = await _file_torrent(request, name)
    except FileNotFoundError:
        raise _HTTPJSONError(404, f"no such file or folder: {name}") from None
    except MetainfoError as exc:
        raise _HTTPJSONError(409, f"{name} cannot be a torrent: {exc}") from None
    if torrent is None:
        raise _HTTPJSONError(503, "a file changed while the torrent was made; try again")
    base = name.rsplit("/", 1)[-1]
    return web.Response(
        body=torrent.data,
        content_type="application/x-bittorrent",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(base + _SUFFIX)}",
            "X-Info-Hash": torrent.info_hash,
        },
    )


async def annotate(request: web.Request, files: list[dict[str, object]]) -> None:
    """Add ``info_hash`` and ``magnet`` to listing entries whose pieces are cached (else None).

    A file stored before pieces were kept gets them on its first ``.torrent`` request.
    """
    cache = request.app[PIECES_KEY]

    def lookup() -> list[bytes | None]:
        out: list[bytes | None] = []
        for f in files:
            size, sha = f.get("size"), f.get("sha256")
            ok = isinstance(size, int) and size > 0 and isinstance(sha, str)
            out.append(cache.load_sync(str(sha), int(str(size))) if ok else None)
        return out

    for entry, pieces in zip(files, await asyncio.to_thread(lookup), strict=True):
        entry["info_hash"] = entry["magnet"] = None
        if pieces is None:
            continue
        info = FileInfo(str(entry["name"]), int(str(entry["size"])), str(entry["sha256"]), 0.0)
        with contextlib.suppress(MetainfoError):
            torrent = _torrent_of(request, info, pieces)
            entry["info_hash"], entry["magnet"] = torrent.info_hash, torrent.magnet


def add_torrent_routes(app: web.Application) -> None:
    """Register ``GET /torrents/NAME.torrent`` and the piece cache on ``app``."""
    app[PIECES_KEY] = PieceCache(app[STORE_KEY].data_dir)
    app.router.add_get("/torrents/{name:[\\s\\S]+}", get_torrent)
