"""Resumable uploads: the tus 1.0 protocol at ``/uploads/`` (core, creation, termination,
checksum, expiration). Header parsing lives in :mod:`hubswarm.proto.tus`.

The endpoints, for a client of any kind (every request but OPTIONS sends
``Tus-Resumable: 1.0.0`` and a write token, as ``Authorization: Bearer`` or ``?token=``)::

    OPTIONS /uploads/        204: Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm
    POST    /uploads/        Upload-Length: N, Upload-Metadata: filename <base64 of the name>
                             [, sha256 <base64 of 64 hex digits>]  -> 201, Location: /uploads/ID
    HEAD    /uploads/ID      200, Upload-Offset: bytes the hub has, Upload-Length, Upload-Expires
    PATCH   /uploads/ID      Content-Type: application/offset+octet-stream, Upload-Offset: the
                             HEAD offset, body: the next bytes [, Upload-Checksum: sha256 <b64>]
                             -> 204, Upload-Offset: the new offset. When it reaches the length,
                             the file lands in /files/NAME (atomically, as PUT) and the reply
                             carries X-Content-SHA256.
    DELETE  /uploads/ID      204: the upload and its bytes are gone.

A browser resumes after a dropped connection by HEAD (the offset) and a PATCH of the rest.
Errors: 409 wrong offset, 413 over the length or the hub's limit, 415 wrong Content-Type,
423 another PATCH of the same upload is running, 460 checksum mismatch, 404/410 unknown or
expired upload, 412 a Tus-Resumable other than 1.0.0, 507 disk full (bytes so far kept).

Theory of operation: an upload is ``.uploads/ID.json`` (name, length, announced SHA-256) and
``.uploads/ID.part`` (its bytes so far, the offset is its size). The SHA-256 and the torrent's
piece hashes run over the bytes as they arrive, in the same thread call that writes them;
after a restart they are rebuilt from the ``.part`` on the next PATCH. A PATCH with a
checksum is all or nothing (rolled back to where it started); without one, what arrived
before a disconnect is kept (that is what tus promises). Unlike ``.partial/``, ``.uploads/``
survives restarts; uploads idle for longer than the expiry are removed by a sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from aiohttp import hdrs, web

from hubswarm.errors import RemoteProtocolError, StorageError, UnsafePathError
from hubswarm.hub import torrents
from hubswarm.hub.app import (
    CLOCK_KEY,
    CONFIG_KEY,
    STATS_KEY,
    STORE_KEY,
    _body_chunks,
    _HTTPJSONError,
    authorize,
    throttle_for,
)
from hubswarm.hub.auth import Role, TokenRecord
from hubswarm.hub.store import FileStore, validate_name
from hubswarm.limits import HUB_CHUNK
from hubswarm.proto import tus as proto
from hubswarm.proto.pieces import PieceHasher, piece_length_for

__all__ = ["TUS_KEY", "TusUploads", "add_tus_routes"]

# An upload untouched this long is abandoned (tusd leaves expiry to its operator; a day
# covers a laptop closed overnight on a slow link).
TUS_EXPIRY = 24 * 3600.0
# How often the sweeper looks for abandoned uploads.
TUS_SWEEP_INTERVAL = 60.0
# Uploads in progress at once (each is two small files and a few hundred bytes of state).
TUS_MAX_UPLOADS = 1000
_RESUMABLE = {"Tus-Resumable": proto.TUS_VERSION}
_CONTENT_TYPE = "application/offset+octet-stream"
_ID_BYTES = 16
_SHA256_HEX = 64

_T = TypeVar("_T")


@dataclass(slots=True)
class _Upload:
    """One upload in progress; mutated on the event loop only, under ``lock`` for writes."""

    id: str
    name: str
    length: int
    expected_sha256: str | None
    offset: int
    expires_at: float  # Clock.wall seconds
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # None after a restart or a failed write: rebuilt from the .part before the next PATCH.
    sha256: Any = None
    pieces: PieceHasher | None = None


class TusUploads:
    """The uploads of one hub: ``.uploads/`` on disk and their state in memory."""

    def __init__(self, store: FileStore, expiry: float = TUS_EXPIRY) -> None:
        self.store = store
        self.dir = store.data_dir / ".uploads"
        self.expiry = expiry
        self.uploads: dict[str, _Upload] = {}

    def part(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.part"

    def _meta(self, upload_id: str) -> Path:
        return self.dir / f"{upload_id}.json"

    def load_sync(self, now: float) -> None:
        """Read the uploads left by an earlier run (blocking); drop what is unreadable."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for meta in self.dir.glob("*.json"):
            uid = meta.stem
            try:
                rec = json.loads(meta.read_text())
                offset = self.part(uid).stat().st_size
                up = _Upload(
                    uid,
                    str(rec["name"]),
                    int(rec["length"]),
                    rec.get("sha256"),
                    offset,
                    now + self.expiry,
                )
                validate_name(up.name)
            except (OSError, ValueError, KeyError, TypeError, UnsafePathError):
                self.remove_sync(uid)
                continue
            self.uploads[uid] = up

    def create_sync(self, up: _Upload) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part(up.id).touch(exist_ok=False)
        record = {"name": up.name, "length": up.length, "sha256": up.expected_sha256}
        self._meta(up.id).write_text(json.dumps(record))

    def remove_sync(self, upload_id: str) -> None:
        for p in (self.part(upload_id), self._meta(upload_id)):
            with contextlib.suppress(OSError):
                p.unlink()

    async def sweep(self, now: float) -> list[str]:
        """Remove uploads whose expiry passed and that no PATCH is writing; their ids."""
        gone = [u.id for u in self.uploads.values() if u.expires_at <= now and not u.lock.locked()]
        for uid in gone:
            del self.uploads[uid]
            await asyncio.to_thread(self.remove_sync, uid)
        return gone


TUS_KEY = web.AppKey("hub_tus", TusUploads)


async def _finishing(fn: Callable[..., _T], *args: Any) -> _T:
    """``to_thread`` that, when cancelled, still waits for the thread: the offset and hashes
    we keep must describe the bytes really written."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        raise


def _write(f: BinaryIO, up: _Upload, data: bytes, checksum: Any) -> None:
    """Write at ``up.offset`` and hash (blocking); on failure cut the file back to the offset."""
    try:
        f.write(data)
        f.flush()
    except OSError:
        with contextlib.suppress(OSError):
            f.truncate(up.offset)
            f.seek(up.offset)
        raise
    up.sha256.update(data)
    if checksum is not None:
        checksum.update(data)
    up.offset += len(data)


def _rehash(path: Path, up: _Upload) -> None:
    """Rebuild the running hashes from the bytes on disk (after a restart or failure)."""
    sha = hashlib.sha256()
    pieces = PieceHasher(piece_length_for(up.length)) if up.length else None
    n = 0
    with path.open("rb") as f:
        while n < up.offset and (block := f.read(min(4 * HUB_CHUNK, up.offset - n))):
            sha.update(block)
            if pieces is not None:
                pieces.update(block)
            n += len(block)
    up.offset = n
    up.sha256, up.pieces = sha, pieces


def _tus_errors(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Every tus reply, errors too, carries Tus-Resumable; header errors are 400s."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except _HTTPJSONError as exc:
            exc.headers.update(_RESUMABLE)
            raise
        except RemoteProtocolError as exc:
            raise _HTTPJSONError(400, str(exc), headers=dict(_RESUMABLE)) from None
        resp.headers.update(_RESUMABLE)
        return resp

    return wrapped


async def _start(request: web.Request) -> TokenRecord | None:
    record = await authorize(request, Role.WRITE)
    try:
        proto.check_resumable(request.headers.get("Tus-Resumable"))
    except RemoteProtocolError as exc:
        raise _HTTPJSONError(412, str(exc), headers={"Tus-Version": proto.TUS_VERSION}) from None
    return record


def _find(request: web.Request) -> _Upload:
    uploads = request.app[TUS_KEY]
    up = uploads.uploads.get(request.match_info["id"])
    if up is None:
        raise _HTTPJSONError(404, "no such upload (finished, terminated or expired)")
    if up.expires_at <= request.app[CLOCK_KEY].wall():
        raise _HTTPJSONError(410, "upload expired")
    return up


def _expires(up: _Upload) -> dict[str, str]:
    return {"Upload-Expires": proto.format_expires(up.expires_at)}


async def options(request: web.Request) -> web.Response:
    """``OPTIONS /uploads/``: what this server speaks (no token needed)."""
    return web.Response(
        status=204,
        headers={
            "Tus-Version": proto.TUS_VERSION,
            "Tus-Extension": ",".join(proto.EXTENSIONS),
            "Tus-Max-Size": str(request.app[CONFIG_KEY].max_upload),
            "Tus-Checksum-Algorithm": ",".join(proto.CHECKSUM_ALGORITHMS),
        },
    )


def _target(meta: dict[str, bytes]) -> tuple[str, str | None]:
    """The file name (and announced SHA-256) from the creation metadata."""
    raw = meta.get("filename")
    if not raw:
        raise _HTTPJSONError(400, "Upload-Metadata must carry the target name as 'filename'")
    try:
        name = validate_name(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _HTTPJSONError(400, "filename is not valid UTF-8") from None
    except UnsafePathError as exc:
        raise _HTTPJSONError(400, str(exc)) from None
    sha = meta.get("sha256")
    if sha is None:
        return name, None
    text = sha.decode("ascii", errors="replace").lower()
    if len(text) != _SHA256_HEX or any(c not in "0123456789abcdef" for c in text):
        raise _HTTPJSONError(400, "metadata sha256 must be 64 hex digits")
    return name, text


def _conflicts(store: FileStore, name: str) -> bool:
    """Is ``name`` a folder, or below a file (blocking)?"""
    parts = name.split("/")
    ancestors = ("/".join(parts[:i]) for i in range(1, len(parts)))
    return store.path(name).is_dir() or any(store.path(a).is_file() for a in ancestors)


async def create(request: web.Request) -> web.Response:
    """``POST /uploads/``: a new upload of ``Upload-Length`` bytes to ``filename``."""
    await _start(request)
    uploads = request.app[TUS_KEY]
    config = request.app[CONFIG_KEY]
    if "Upload-Defer-Length" in request.headers:
        raise _HTTPJSONError(400, "Upload-Defer-Length is not supported: send Upload-Length")
    length = proto.parse_offset(request.headers.get("Upload-Length"), "Upload-Length")
    if length > config.max_upload:
        raise _HTTPJSONError(413, f"upload larger than {config.max_upload} bytes")
    name, sha = _target(proto.parse_metadata(request.headers.get("Upload-Metadata")))
    if await asyncio.to_thread(_conflicts, uploads.store, name):
        # Found now rather than when the last byte is in (the landing would refuse it too).
        raise _HTTPJSONError(409, f"{name} would replace a folder or sit below a file")
    if len(uploads.uploads) >= TUS_MAX_UPLOADS:
        raise _HTTPJSONError(503, "too many uploads in progress", headers={"Retry-After": "60"})
    up = _Upload(
        secrets.token_hex(_ID_BYTES),
        name,
        length,
        sha,
        0,
        request.app[CLOCK_KEY].wall() + uploads.expiry,
    )
    await asyncio.to_thread(uploads.create_sync, up)
    up.sha256 = hashlib.sha256()
    up.pieces = torrents.hasher_for(length)
    uploads.uploads[up.id] = up
    headers = {hdrs.LOCATION: f"{request.url.origin()}/uploads/{up.id}", **_expires(up)}
    if length == 0:
        async with up.lock:
            await _land(request, up)
    return web.Response(status=201, headers=headers)


async def head(request: web.Request) -> web.Response:
    """``HEAD /uploads/ID``: how many bytes the hub has."""
    await _start(request)
    up = _find(request)
    return web.Response(
        status=200,
        headers={
            "Upload-Offset": str(up.offset),
            "Upload-Length": str(up.length),
            hdrs.CACHE_CONTROL: "no-store",
            **_expires(up),
        },
    )


async def _land(request: web.Request, up: _Upload) -> dict[str, str]:
    """All bytes are in: check, fsync and move the file into ``files/`` (called under lock)."""
    uploads = request.app[TUS_KEY]
    digest = up.sha256.hexdigest()
    if up.expected_sha256 is not None and digest != up.expected_sha256:
        del uploads.uploads[up.id]
        await asyncio.to_thread(uploads.remove_sync, up.id)
        raise _HTTPJSONError(460, f"sha256 {digest} != announced {up.expected_sha256}")
    part = uploads.part(up.id)

    def land() -> Any:
        with part.open("rb+") as f:
            os.fsync(f.fileno())
        return request.app[STORE_KEY].commit_sync(part, up.name, digest)

    try:
        info, _created = await _finishing(land)
    except OSError as exc:
        raise StorageError(f"cannot store {up.name!r}: {exc.strerror or exc}") from exc
    del uploads.uploads[up.id]
    await asyncio.to_thread(uploads.remove_sync, up.id)
    await torrents.remember(request.app, info, up.pieces)
    request.app[STATS_KEY].uploads[up.name] += 1
    return {"X-Content-SHA256": info.sha256}


async def patch(request: web.Request) -> web.Response:
    """``PATCH /uploads/ID``: append the body at ``Upload-Offset``."""
    record = await _start(request)
    up = _find(request)
    if request.content_type != _CONTENT_TYPE:
        raise _HTTPJSONError(415, f"Content-Type must be {_CONTENT_TYPE}", close=True)
    offset = proto.parse_offset(request.headers.get("Upload-Offset"))
    checksum = proto.parse_checksum(request.headers.get("Upload-Checksum"))
    if up.lock.locked():
        raise _HTTPJSONError(423, "another PATCH of this upload is running", close=True)
    async with up.lock:
        if offset != up.offset:
            raise _HTTPJSONError(409, f"Upload-Offset {offset} != {up.offset}", close=True)
        size = request.content_length
        if size is not None and offset + size > up.length:
            raise _HTTPJSONError(413, f"body goes past Upload-Length {up.length}", close=True)
        await _receive(request, up, checksum, record)
        up.expires_at = request.app[CLOCK_KEY].wall() + request.app[TUS_KEY].expiry
        headers = {"Upload-Offset": str(up.offset), **_expires(up)}
        if up.offset == up.length:
            headers = {"Upload-Offset": str(up.offset), **await _land(request, up)}
    return web.Response(status=204, headers=headers)


async def _receive(
    request: web.Request, up: _Upload, checksum: proto.Checksum | None, record: TokenRecord | None
) -> None:
    """Stream the body into the .part, hashing; a checksummed PATCH is all or nothing."""
    uploads = request.app[TUS_KEY]
    path = uploads.part(up.id)
    try:
        if up.sha256 is None:
            await _finishing(_rehash, path, up)
        f = await asyncio.to_thread(open, path, "r+b")
    except OSError as exc:
        raise FileStore._translate(exc, up.name) from exc
    start = up.offset
    assert up.sha256 is not None  # rebuilt above
    saved = (up.sha256.copy(), up.pieces.copy() if up.pieces else None)
    chunk_hash = checksum.hasher() if checksum is not None else None
    config = request.app[CONFIG_KEY]
    body = _body_chunks(request, config, request.app[STATS_KEY], throttle_for(request, record))
    pending: list[bytes] = []
    ok = False

    async def write(data: bytes, chunk_hash: Any) -> None:
        jobs = [_finishing(_write, f, up, data, chunk_hash)]
        if up.pieces is not None:
            # SHA-1 in a thread of its own, beside the write and the SHA-256 (as FileStore).
            jobs.append(_finishing(up.pieces.update, data))
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, OSError):  # the disk's; the network's pass through untouched
                # The pieces may have taken bytes the file did not: rebuild both next time.
                up.sha256 = up.pieces = None
                raise FileStore._translate(result, up.name) from result
            if isinstance(result, BaseException):
                raise result

    try:
        await asyncio.to_thread(f.seek, start)
        async with contextlib.aclosing(body) as chunks:
            async for chunk in chunks:
                if up.offset + sum(map(len, pending)) + len(chunk) > up.length:
                    raise _HTTPJSONError(
                        413, f"body goes past Upload-Length {up.length}", close=True
                    )
                pending.append(chunk)
                if sum(map(len, pending)) >= HUB_CHUNK:
                    data, pending = b"".join(pending), []
                    await write(data, chunk_hash)
        if pending:
            data, pending = b"".join(pending), []
            await write(data, chunk_hash)
        if (
            checksum is not None
            and chunk_hash is not None
            and chunk_hash.digest() != checksum.digest
        ):
            raise _HTTPJSONError(460, f"Upload-Checksum {checksum.algorithm} mismatch")
        ok = True
    except Exception:
        # A disconnect or a slow body without a checksum keeps what arrived (tus resumes).
        if pending and checksum is None:
            with contextlib.suppress(StorageError):
                await write(b"".join(pending), None)
        raise
    finally:
        if not ok and checksum is not None:
            up.offset = start  # all or nothing: back to where this PATCH started
            up.sha256, up.pieces = saved
            with contextlib.suppress(OSError):
                await asyncio.to_thread(f.truncate, start)
        await asyncio.to_thread(f.close)


async def terminate(request: web.Request) -> web.Response:
    """``DELETE /uploads/ID``: forget the upload and its bytes."""
    await _start(request)
    up = _find(request)
    if up.lock.locked():
        raise _HTTPJSONError(423, "a PATCH of this upload is running")
    uploads = request.app[TUS_KEY]
    del uploads.uploads[up.id]
    await asyncio.to_thread(uploads.remove_sync, up.id)
    return web.Response(status=204)


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Load the uploads of an earlier run, then sweep abandoned ones until cleanup."""
    uploads, clock = app[TUS_KEY], app[CLOCK_KEY]
    await asyncio.to_thread(uploads.load_sync, clock.wall())

    async def run() -> None:
        while True:
            await clock.sleep(TUS_SWEEP_INTERVAL)
            await uploads.sweep(clock.wall())

    task = asyncio.ensure_future(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_tus_routes(app: web.Application) -> None:
    """Register ``/uploads/`` on ``app`` and its sweeper."""
    app[TUS_KEY] = TusUploads(app[STORE_KEY])
    app.cleanup_ctx.append(_sweeper)
    app.router.add_route("OPTIONS", "/uploads/", _tus_errors(options))
    app.router.add_post("/uploads/", _tus_errors(create))
    app.router.add_route("HEAD", "/uploads/{id}", _tus_errors(head))
    app.router.add_patch("/uploads/{id}", _tus_errors(patch))
    app.router.add_delete("/uploads/{id}", _tus_errors(terminate))
