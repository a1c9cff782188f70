"""Hub client: streamed upload, resumable verified download, listing.

Theory of operation for ``download``: bytes go to ``DEST.part`` beside the destination, and
``DEST.part.json`` (the sidecar) remembers the URL and the server's strong ETag (the file's
SHA-256). A later call hashes the partial's bytes, asks for the rest with ``Range: bytes=N-``
and ``If-Range: <etag>`` (RFC 9110 section 13.1.5): a 206 is appended, a 200 means the file
changed and the download restarts from zero. The whole file's SHA-256 is checked against the
server's before an atomic ``os.replace`` puts it in place. On a full disk the partial is kept
(truncated to its last whole block), so running again after freeing space resumes.

No aiohttp or OSError escapes this module: every failure becomes a ``HubError`` or a
``StorageError`` from ``hubswarm.errors``. URLs, TLS, timeouts and the translation of HTTP
failures live in :mod:`hubswarm.hub.client_http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import hdrs

from hubswarm.clock import Clock
from hubswarm.errors import (
    ChecksumMismatchError,
    DiskFullError,
    ServerError,
    ServerUnreachableError,
    StorageError,
)
from hubswarm.hub import tus_client
from hubswarm.hub.client_http import (
    Http,
    Timeouts,
    file_url,
    list_url,
    make_ssl_context,
    name_from_url,
    parse_url,
    raise_for_status,
    read_bounded,
    session_scope,
)
from hubswarm.limits import HUB_CLIENT_CHUNK, HUB_CLIENT_MAX_JSON

__all__ = [
    "DownloadResult",
    "ProgressCallback",
    "RemoteFile",
    "Timeouts",
    "download",
    "file_url",
    "list_files",
    "list_url",
    "make_ssl_context",
    "name_from_url",
    "upload",
]

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, total_or_None)`` after each block."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# Errors that mean "the disk is full", not "the disk is broken".
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Downloads push each finished 32 MiB window towards the disk while the rest arrives.
_WRITEBACK_WINDOW = 32 * 1024 * 1024
# A body read straight from the socket goes in blocks of this size, two buffers in turn: one
# being received while the other is hashed and written. Each block costs three thread
# hand-offs through the loop (~0.1 ms), so 4 MiB keeps them under 3 % of the write's time.
_DIRECT_BLOCK = 4 * HUB_CLIENT_CHUNK
# Smaller bodies stay with aiohttp, whose connection can then serve the next request.
_DIRECT_MIN = 2 * HUB_CLIENT_CHUNK
# The most one write() hands the kernel. Linux sizes page-cache folios by the write (ext4's
# large folios): 1-4 MiB writes cost 1.0-1.5 system CPU-s per GiB here against 0.6 for
# 256 KiB ones, the size aiohttp's reads had always given us (issue 18's profile:
# copy_folio_from_iter_atomic).
_WRITE_SLICE = 256 * 1024


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file as the hub describes it (``PUT`` reply and ``GET /files`` entries)."""

    name: str
    size: int
    sha256: str
    mtime: float

    @classmethod
    def from_json(cls, obj: object) -> RemoteFile:
        """Validate one JSON object from the hub; raises ServerError if it is malformed."""
        if not isinstance(obj, dict):
            raise ServerError("malformed file entry from server (not an object)")
        try:
            name, size, sha, mtime = obj["name"], obj["size"], obj["sha256"], obj["mtime"]
        except KeyError as exc:
            raise ServerError(f"malformed file entry from server (missing {exc})") from None
        if not (
            isinstance(name, str)
            and isinstance(size, int)
            and isinstance(sha, str)
            and isinstance(mtime, int | float)
        ):
            raise ServerError("malformed file entry from server (wrong field types)")
        return cls(name=name, size=size, sha256=sha.lower(), mtime=float(mtime))


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What ``download`` did: where the file is, its checksum, and how much came over the wire."""

    path: Path
    size: int
    sha256: str
    verified: bool  # False only if the server sent no SHA-256 (not our hub)
    resumed_from: int  # bytes of an earlier partial that were kept
    bytes_received: int  # body bytes read from the network in this call
    elapsed: float  # seconds, request to rename

    @property
    def rate(self) -> float:
        """Network bytes per second of this call."""
        return self.bytes_received / self.elapsed if self.elapsed > 0 else 0.0


# --- local file helpers (run in a thread) ---------------------------------------------------


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    """``action`` is a verb: "read", "write", "save"."""
    if exc.errno in _DISK_FULL:
        return DiskFullError(f"disk full: cannot {action} {path} ({exc.strerror})")
    return StorageError(f"cannot {action} {path}: {exc.strerror or exc}")


def _hash_file(path: Path) -> tuple[Any, int]:
    """SHA-256 object and length of a whole file (blocking)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(HUB_CLIENT_CHUNK)
        view = memoryview(buf)
        while k := f.readinto(buf):
            h.update(view[:k])
            n += k
    return h, n


_T = TypeVar("_T")


async def _on_fd(fn: Callable[..., _T], *args: Any, undo: Callable[[_T], None] | None = None) -> _T:
    """``asyncio.to_thread`` for work on the partial's descriptor, to its end if cancelled.

    A thread cannot be stopped. Cancelled while a thread still wrote, the download closed
    the descriptor in its ``finally``, and a resumed download of the same file could get
    the same number: the cancelled one's last blocks then landed in the new partial while
    its hash covered only its own bytes (a corrupt file, seen once in the suite). So a
    cancelled caller waits for the thread, then ``undo`` its result (e.g. close an fd it
    opened), then re-raises.
    """
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        if not job.cancelled() and job.exception() is None and undo is not None:
            undo(job.result())
        raise


def _write_block(fd: int, blocks: list[bytes]) -> None:
    """Write every block at the file position in slices of ``_WRITE_SLICE`` (blocking; short
    writes retried).

    Module-level so tests can make it fail like a full disk.
    """
    for block in blocks:
        view = memoryview(block)
        while view:
            written = os.write(fd, view[:_WRITE_SLICE])
            view = view[written:]


def _hash_blocks(hasher: Any, blocks: list[bytes]) -> None:
    """Feed blocks to the running hash (blocking; hashlib releases the GIL on big blocks)."""
    for block in blocks:
        hasher.update(block)


def _append(fd: int, blocks: list[bytes], good: int) -> None:
    """Write blocks at ``good``; on failure cut the file back to ``good`` bytes."""
    try:
        _write_block(fd, blocks)
    except OSError:
        # Keep the partial a clean prefix of the file so a resume can trust it.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, good)
            os.lseek(fd, good, os.SEEK_SET)
        raise
    end = good + sum(len(b) for b in blocks)
    if end // _WRITEBACK_WINDOW > good // _WRITEBACK_WINDOW and hasattr(os, "posix_fadvise"):
        # Start writing finished windows to disk now (Linux: DONTNEED begins asynchronous
        # writeback, mm/fadvise.c), so the final fsync does not find the whole file dirty.
        start = good // _WRITEBACK_WINDOW * _WRITEBACK_WINDOW
        stop = end // _WRITEBACK_WINDOW * _WRITEBACK_WINDOW
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, start, stop - start, os.POSIX_FADV_DONTNEED)


def _write_sidecar(path: Path, meta: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _finish(fd: int, part: Path, dest: Path, sidecar: Path) -> None:
    """fsync, atomically rename into place, fsync the folder, drop the sidecar."""
    os.fsync(fd)
    os.replace(part, dest)
    with contextlib.suppress(OSError):
        dfd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    sidecar.unlink(missing_ok=True)


def _discard(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink(missing_ok=True)


def _sha_from_headers(resp: aiohttp.ClientResponse) -> str | None:
    """The file's SHA-256 from ``X-Content-SHA256``, else from a strong ETag that is one."""
    value = resp.headers.get("X-Content-SHA256", "").strip().lower()
    if _SHA256_HEX.fullmatch(value):
        return value
    etag = resp.headers.get("ETag", "").strip()
    if etag.startswith('"') and etag.endswith('"') and _SHA256_HEX.fullmatch(etag[1:-1].lower()):
        return etag[1:-1].lower()
    return None


# --- upload ----------------------------------------------------------------------------------


async def upload(
    path: Path,
    url: str,
    *,
    token: str | None,
    progress: ProgressCallback | None,
    session: aiohttp.ClientSession | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeouts: Timeouts | None = None,
    resumable: bool = True,
    state_dir: Path | None = None,
) -> RemoteFile:
    """Stream ``path`` to ``url`` (a hub base URL or ``.../files/NAME``).

    The SHA-256 is computed first (in a thread) and sent with the upload so the server
    refuses a corrupted body. With ``resumable`` and a hub that speaks tus, the upload goes
    over tus and resumes an interrupted one (its URL kept in ``state_dir``, see
    :mod:`hubswarm.hub.tus_client`); otherwise one ``PUT``. Returns the stored file.

    Raises:
        StorageError: the local file cannot be read. HubError: any server or network failure.
    """
    target = file_url(url, path.name)
    try:
        hasher, size = await asyncio.to_thread(_hash_file, path)
        f = await asyncio.to_thread(open, path, "rb", buffering=0)
    except OSError as exc:
        raise _storage_error("read", path, exc) from exc
    digest = hasher.hexdigest()
    read_error: list[OSError] = []

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            try:
                chunk = await asyncio.to_thread(f.read, min(HUB_CLIENT_CHUNK, size - sent))
            except OSError as exc:
                read_error.append(exc)
                raise
            if not chunk:
                read_error.append(OSError(errno.EIO, "file shrank while uploading"))
                raise read_error[-1]
            sent += len(chunk)
            yield chunk
            if progress is not None:
                progress(sent, size)

    headers = {
        "X-Content-SHA256": digest,
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
        "Accept": "application/json",
    }
    try:
        async with session_scope(session, token, ssl, timeouts, target) as http:
            landed = None
            if resumable and size:
                landed = await tus_client.upload(
                    http, path, target, digest, size, progress=progress, state_dir=state_dir
                )
            if landed is not None:
                # The hub's tus reply has no mtime; the SHA-256 is what the check needs.
                obj: Any = {"name": landed.name, "size": size, "sha256": landed.sha256, "mtime": 0}
            else:
                obj = await _put(http, target, body() if size else b"", headers, path, read_error)
    finally:
        await asyncio.to_thread(f.close)
    if read_error:
        raise _storage_error("read", path, read_error[0]) from read_error[0]
    remote = RemoteFile.from_json(obj)
    if remote.sha256 != digest or remote.size != size:
        raise ChecksumMismatchError(
            f"server stored {remote.size} bytes sha256 {remote.sha256[:16]}..., "
            f"sent {size} bytes sha256 {digest[:16]}...",
            url=target,
        )
    return remote


async def _put(
    http: Http,
    target: str,
    data: Any,
    headers: dict[str, str],
    path: Path,
    read_error: list[OSError],
) -> object:
    """One ``PUT`` of the whole body; the hub's JSON reply."""
    try:
        async with http.session.put(target, data=data, **http.kwargs(headers)) as resp:
            if resp.status not in (200, 201):
                await raise_for_status(resp)
            return _loads(await read_bounded(resp, HUB_CLIENT_MAX_JSON), target)
    except aiohttp.ClientError:
        if read_error:
            raise _storage_error("read", path, read_error[0]) from read_error[0]
        raise


def _loads(body: bytes, url: str) -> object:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ServerError(f"server sent invalid JSON ({url})", url=url) from exc


# --- listing ---------------------------------------------------------------------------------


async def list_files(
    url: str,
    token: str | None,
    *,
    session: aiohttp.ClientSession | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeouts: Timeouts | None = None,
) -> list[RemoteFile]:
    """The files a hub holds (``GET /files`` as JSON); ``url`` is the hub base URL."""
    target = list_url(url)
    async with (
        session_scope(session, token, ssl, timeouts, target) as http,
        http.session.get(target, **http.kwargs({"Accept": "application/json"})) as resp,
    ):
        if resp.status != 200:
            await raise_for_status(resp)
        obj = _loads(await read_bounded(resp, HUB_CLIENT_MAX_JSON), target)
    if not isinstance(obj, dict) or not isinstance(obj.get("files"), list):
        raise ServerError(f"server sent no file list ({target})", url=target)
    return [RemoteFile.from_json(entry) for entry in obj["files"]]


# --- download --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Partial:
    """The state of ``DEST.part``: open descriptor, bytes so far, running hash."""

    fd: int
    offset: int
    hasher: Any
    resumed_from: int


async def download(
    url: str,
    dest: Path,
    *,
    token: str | None,
    progress: ProgressCallback | None,
    resume: bool = True,
    session: aiohttp.ClientSession | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeouts: Timeouts | None = None,
    clock: Clock | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if the server's file is unchanged.

    ``clock`` (default: the running loop's) times the download for ``elapsed``.

    Raises:
        ChecksumMismatchError: the bytes do not hash to the server's SHA-256 (partial removed).
        DiskFullError: the disk filled up (partial kept for a later resume).
        HubError: network or server failure (partial kept). StorageError: other local errors.
    """
    parse_url(url)
    part = dest.with_name(dest.name + ".part")
    sidecar = dest.with_name(dest.name + ".part.json")
    clock = clock if clock is not None else Clock()
    started = clock.now()
    state = await _open_partial(url, part, sidecar, resume)
    try:
        async with session_scope(session, token, ssl, timeouts, url) as http:
            received, expected_sha = await _fetch(http, url, part, sidecar, state, progress)
        digest = state.hasher.hexdigest()
        if expected_sha is not None and digest != expected_sha:
            _close(state)
            await asyncio.to_thread(_discard, part, sidecar)
            raise ChecksumMismatchError(
                f"{dest.name}: got sha256 {digest[:16]}..., server says {expected_sha[:16]}... "
                "(partial removed; run again to download afresh)",
                url=url,
            )
        try:
            await _on_fd(_finish, state.fd, part, dest, sidecar)
        except OSError as exc:
            raise _storage_error("save", dest, exc) from exc
    except BaseException:
        if state.offset == 0:
            # Nothing worth resuming: leave no empty partial behind (also on a 401 or 404).
            _close(state)
            _discard(part, sidecar)
        raise
    finally:
        # Closing a descriptor does not block; doing it inline also works while cancelled.
        _close(state)
    return DownloadResult(
        path=dest,
        size=state.offset,
        sha256=digest,
        verified=expected_sha is not None,
        resumed_from=state.resumed_from,
        bytes_received=received,
        elapsed=clock.now() - started,
    )


def _close(state: _Partial) -> None:
    if state.fd >= 0:
        fd, state.fd = state.fd, -1
        os.close(fd)


async def _open_partial(url: str, part: Path, sidecar: Path, resume: bool) -> _Partial:
    """Open ``part``: keep and hash its bytes if its sidecar is for this URL, else truncate."""

    def work() -> _Partial:
        meta = _read_sidecar(sidecar) if resume else None
        keep = (
            meta is not None
            and meta.get("url") == url
            and isinstance(meta.get("etag"), str)
            and part.exists()
        )
        if keep:
            hasher, n = _hash_file(part)
            fd = os.open(part, os.O_WRONLY)
            os.lseek(fd, n, os.SEEK_SET)
            return _Partial(fd, n, hasher, n)
        sidecar.unlink(missing_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return _Partial(fd, 0, hashlib.sha256(), 0)

    try:
        return await _on_fd(work, undo=lambda partial: os.close(partial.fd))
    except OSError as exc:
        raise _storage_error("write", part, exc) from exc


async def _restart(state: _Partial) -> None:
    """Throw the partial's bytes away (the server's file changed or cannot continue it)."""

    def work() -> None:
        os.ftruncate(state.fd, 0)
        os.lseek(state.fd, 0, os.SEEK_SET)

    try:
        await _on_fd(work)
    except OSError as exc:
        raise StorageError(f"cannot truncate partial download: {exc.strerror or exc}") from exc
    state.offset = 0
    state.resumed_from = 0
    state.hasher = hashlib.sha256()


async def _fetch(
    http: Http,
    url: str,
    part: Path,
    sidecar: Path,
    state: _Partial,
    progress: ProgressCallback | None,
) -> tuple[int, str | None]:
    """GET the body (the rest of it, if resuming) into ``state``; returns (received, sha)."""
    meta = _read_sidecar(sidecar) if state.offset > 0 else None
    # Two attempts at most: a resume the server cannot honour falls back to a full GET once.
    for _attempt in range(2):
        headers = {"Accept-Encoding": "identity"}
        etag = meta.get("etag") if meta else None
        if state.offset > 0 and isinstance(etag, str):
            headers["Range"] = f"bytes={state.offset}-"
            headers["If-Range"] = etag  # RFC 9110 13.1.5: the rest only if unchanged
        async with http.session.get(url, **http.kwargs(headers)) as resp:
            if resp.status == 416 and "Range" in headers:
                # Partial already as long as the file (or longer): cannot trust it; start over.
                await _restart(state)
                meta = None
                continue
            if resp.status not in (200, 206):
                await raise_for_status(resp)
            if resp.status == 206 and not _continues(resp, state.offset, etag):
                # A range of a different file or of the wrong place (aiohttp < 3.15 serves a
                # range despite a stale ETag If-Range, see PITFALLS): never splice; restart.
                await _restart(state)
                meta = None
                continue
            total = await _accept(resp, url, sidecar, state)
            expected = _sha_from_headers(resp) or (meta or {}).get("sha256")
            received = await _stream_body(http, resp, state, total, progress, part)
        if total is not None and state.offset != total:
            raise ServerUnreachableError(
                f"connection closed after {state.offset} of {total} bytes (run again to resume)",
                url=url,
            )
        return received, expected if isinstance(expected, str) else None
    raise ServerError("server refused to serve the file from the start", url=url)


def _continues(resp: aiohttp.ClientResponse, offset: int, etag: str | None) -> bool:
    """Whether a 206 continues our partial: same ETag, range starting at our offset."""
    match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
    return (
        match is not None
        and int(match.group(1)) == offset
        and offset > 0
        and etag is not None
        and resp.headers.get("ETag") == etag
    )


async def _accept(
    resp: aiohttp.ClientResponse, url: str, sidecar: Path, state: _Partial
) -> int | None:
    """Restart on a 200 and record its ETag in the sidecar; return the full size."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if match is None or match.group(3) == "*":  # _continues checked the start
            return None
        return int(match.group(3))
    # 200: the whole file from the start (new download, or the file changed).
    if state.offset > 0:
        await _restart(state)
    new_etag = resp.headers.get("ETag")
    if new_etag and not new_etag.startswith("W/"):
        meta: dict[str, Any] = {"url": url, "etag": new_etag, "sha256": _sha_from_headers(resp)}
        meta["size"] = resp.content_length
        try:
            await asyncio.to_thread(_write_sidecar, sidecar, meta)
        except OSError as exc:
            raise _storage_error("write", sidecar, exc) from exc
    return resp.content_length


async def _stream_body(
    http: Http,
    resp: aiohttp.ClientResponse,
    state: _Partial,
    total: int | None,
    progress: ProgressCallback | None,
    part: Path,
) -> int:
    """Copy the body into the partial, hashing as it goes (in threads); returns its length.

    On plain TCP the body is read straight from the socket (see :func:`_take_socket`); else
    (TLS, another network, no Content-Length) through aiohttp in ~1 MiB batches.
    """
    taken = _take_socket(resp, http.timeouts.sock_read)
    if taken is not None:
        sock, buffered, left = taken
        try:
            return await _stream_direct(sock, buffered, left, state, total, progress, part)
        finally:
            sock.close()
            resp.close()  # aiohttp's parser never saw the rest: the connection cannot be reused
    received = 0
    batch: list[bytes] = []
    batched = 0
    eof = False
    while not eof:
        # readchunk hands over the received buffers as they are (no join, no copy); each is
        # one socket read (asyncio reads at most 256 KiB), so a batch stays under 2 chunks.
        chunk, end_of_http_chunk = await resp.content.readchunk()
        if chunk:
            batch.append(chunk)
            batched += len(chunk)
        elif not end_of_http_chunk:  # (b"", False) is EOF; (b"", True) a chunk boundary
            eof = True
        if batched >= HUB_CLIENT_CHUNK or (eof and batch):
            await _save(state, batch, batched, total, progress, part)
            received += batched
            batch, batched = [], 0
    return received


async def _save(
    state: _Partial,
    blocks: list[Any],
    size: int,
    total: int | None,
    progress: ProgressCallback | None,
    part: Path,
) -> None:
    """Hash and append ``blocks`` (``size`` bytes) to the partial; StorageError on failure."""
    try:
        # Hash and write the batch in two threads at once: on two cores the SHA-256
        # (~1.5 GB/s) and the page-cache copy overlap instead of adding up.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(asyncio.to_thread(_hash_blocks, state.hasher, blocks))
            await _on_fd(_append, state.fd, blocks, state.offset)
    except* OSError as group:
        exc = group.exceptions[0]
        assert isinstance(exc, OSError)
        err = _storage_error("write", part, exc)
        if isinstance(err, DiskFullError):
            err = DiskFullError(
                f"{err} ({state.offset} bytes kept in {part.name}; "
                "free some space and run again to resume)"
            )
        raise err from exc
    state.offset += size
    if progress is not None:
        progress(state.offset, total)


# --- the body straight from the socket ------------------------------------------------------


def _take_socket(
    resp: aiohttp.ClientResponse, read_timeout: float
) -> tuple[socket.socket, bytes, int] | None:
    """Take the rest of the body away from aiohttp: (our socket, bytes it already had, bytes
    left), or None where aiohttp must keep reading (TLS, another network, no length, coding).

    Why: aiohttp's parser copies every body byte into a new object while holding the GIL
    (a third of the GIL-held time of a 1 GiB download, issue 18); ``recv_into`` in a thread
    fills our own buffers with the kernel's one copy. The transport stops reading first, so
    no byte is read twice; the connection is closed afterwards, never reused.
    """
    conn = resp.connection
    transport = conn.transport if conn is not None else None
    if (
        transport is None
        or transport.get_extra_info("sslcontext") is not None
        or transport.get_extra_info("ssl_object") is not None
        or resp.content_length is None
        or resp.content_length < _DIRECT_MIN
        or hdrs.TRANSFER_ENCODING in resp.headers
        or resp.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity"
    ):
        return None
    raw = transport.get_extra_info("socket")
    if raw is None or raw.type != socket.SOCK_STREAM:
        return None
    # Synchronous from here on: no loop turn can feed aiohttp more bytes in between.
    transport.pause_reading()
    buffered = resp.content.read_nowait(-1)
    transport.pause_reading()  # draining may have resumed it
    left = resp.content_length - len(buffered)
    if left < 0:
        return None  # cannot happen with a Content-Length parser; keep aiohttp's checks
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.settimeout(read_timeout)  # socket.timeout is TimeoutError: "timed out talking to"
    return sock, buffered, left


def _recv_block(sock: socket.socket, buf: bytearray, want: int) -> tuple[int, OSError | None]:
    """Fill ``buf[:want]`` from the socket (blocking, in a thread): (bytes, None), fewer
    bytes only at EOF; or the bytes before a failure (a timeout too) and the failure."""
    view = memoryview(buf)
    got = 0
    while got < want:
        try:
            n = sock.recv_into(view[got:want])
        except OSError as exc:
            return got, exc
        if n == 0:
            break
        got += n
    return got, None


async def _stream_direct(
    sock: socket.socket,
    buffered: bytes,
    left: int,
    state: _Partial,
    total: int | None,
    progress: ProgressCallback | None,
    part: Path,
) -> int:
    """Receive ``left`` bytes into two buffers in turn, saving one while the other fills."""
    received = 0
    if buffered:
        await _save(state, [buffered], len(buffered), total, progress, part)
        received += len(buffered)
    bufs = (bytearray(min(_DIRECT_BLOCK, left)), bytearray(min(_DIRECT_BLOCK, left)))
    turn = 0

    def start(want: int) -> asyncio.Future[tuple[int, OSError | None]] | None:
        if want <= 0:
            return None
        return asyncio.ensure_future(asyncio.to_thread(_recv_block, sock, bufs[turn], want))

    job = start(min(_DIRECT_BLOCK, left))
    try:
        while job is not None:
            n, failure = await asyncio.shield(job)
            job = None
            left -= n
            view = memoryview(bufs[turn])[:n]
            turn ^= 1
            if n and failure is None:
                job = start(min(_DIRECT_BLOCK, left))
            if n:  # kept even when the connection failed: a resume continues after them
                await _save(state, [view], n, total, progress, part)
                received += n
            if failure is not None:
                raise failure
            # n == 0 is EOF before the end: the caller reports the short body.
    finally:
        if job is not None:
            # A thread cannot be stopped: end its recv (shutdown wakes it) and wait for it, so
            # it never touches a buffer or descriptor after we return.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            await asyncio.wait([job])
    return received
