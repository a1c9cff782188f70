"""Piece storage: blocks -> verified pieces -> files on disk, and blocks back out for upload.

Theory of operation
-------------------
* Incoming blocks are assembled in memory (``add_block``), at most ``max_pieces_in_flight``
  pieces at once (``STORAGE_MAX_BUFFER_BYTES`` / piece length, at least 4). The picker's
  ``max_in_progress`` should be set to the same number so this bound is never hit.
* ``await finish_piece(i)`` (or ``write_piece(i, data)`` for a whole piece, e.g. from a
  web seed) hashes with SHA-1 and writes **in a worker thread** (``asyncio.to_thread``);
  only a piece whose hash matches touches the disk. Returns True/False.
* A file being downloaded lives at ``<name>.part`` (sparse, preallocated by truncate).
  When every piece touching it verifies, it is fsynced and atomically renamed to its final
  name, so a final-named file never holds unverified bytes; a killed download loses at
  most the pieces in flight and ``recheck()`` finds the rest in the ``.part`` files.
* ``await recheck()`` hashes what is on disk (final and ``.part`` files), returns the good
  pieces, renames complete ``.part`` files to final and demotes damaged final files back to
  ``.part``. Seeding a finished folder = recheck says every piece is good.
* BEP 47 padding files are never created; their bytes read as zeros.
* Path safety: every file path is re-checked to stay inside ``root`` (no ``..``, no absolute
  part, no symlink leading out) -> ``UnsafePathError``. ENOSPC/EDQUOT -> ``DiskFullError``
  (the piece is not marked good).
* ``read_block`` serves from a small LRU cache of whole verified pieces
  (``STORAGE_READ_CACHE_BYTES``); a miss reads the whole piece in one worker-thread call.
* Disk I/O uses positional ``os.pread``/``os.pwrite`` on descriptors kept in a small LRU
  cache, under one lock per store; hashing runs outside that lock.
* Verified pieces are written with ``O_DIRECT`` where the file system allows it and the span is
  aligned (piece buffers are page-aligned anonymous maps): the disk takes the bytes from our
  buffer, with no copy into the page cache (that copy was 28 % of a leech's CPU) and nothing
  left for the final fsync to write. Unaligned spans (a last piece, multi-file edges) and file
  systems that refuse ``O_DIRECT`` (tmpfs) take the buffered path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import mmap
import os
import queue
import threading
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from hubswarm.errors import DiskFullError, LocalProtocolError, StorageError, UnsafePathError
from hubswarm.limits import (
    BLOCK_SIZE,
    PARTIAL_SUFFIX,
    STORAGE_FILE_HANDLES,
    STORAGE_MAX_BUFFER_BYTES,
    STORAGE_READ_CACHE_BYTES,
)
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.layout import FileSpan, Layout

if TYPE_CHECKING:
    from hubswarm.proto.metainfo import InfoDict

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# recheck() hashes this many pieces per worker-thread call, so cancellation is prompt.
_RECHECK_BATCH = 16
# O_DIRECT needs the file offset, the length and the buffer address aligned to the device's
# logical block size: 512 or 4096 bytes on common disks; 4096 covers both (a device that wants
# more answers EINVAL, and the store falls back to buffered writes).
_DIRECT_ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)

# A piece being assembled: a page-aligned anonymous map (O_DIRECT-ready; the kernel zero-fills
# its pages on first touch), or a bytearray.
_Buffer = bytearray | mmap.mmap


def _safe_paths(root: Path, parts: tuple[str, ...]) -> tuple[Path, Path]:
    """(final, partial) paths for a file inside ``root``.

    Raises:
        UnsafePathError: a component is empty, ``.``/``..``, absolute or holds a separator,
            or an existing symlink leads outside ``root``.
    """
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or "\x00" in part
            or os.path.isabs(part)
        ):
            raise UnsafePathError(f"unsafe path component {part!r} in {'/'.join(parts)!r}")
    final = root.joinpath(*parts)
    partial = final.with_name(final.name + PARTIAL_SUFFIX)
    real_root = root.resolve()
    for candidate in (final, partial):
        # resolve() follows every existing symlink on the way, so a link out is caught.
        if not candidate.resolve().is_relative_to(real_root):
            raise UnsafePathError(f"{'/'.join(parts)!r} leads outside {root}")
    return final, partial


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing these dirty pages to disk now, without waiting (Linux).

    Otherwise the kernel holds a whole download in the page cache (up to dirty_ratio) and the
    fsync in ``_finalize`` writes it all at the end: 4-5 s per GiB on a 230 MB/s disk, after
    the transfer. POSIX_FADV_DONTNEED starts asynchronous writeback of the range
    (mm/fadvise.c, WB_SYNC_NONE) and drops only pages already clean.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


_Job = tuple[int, _Buffer, "asyncio.Future[bytes | None]"]


def _settle(
    future: asyncio.Future[bytes | None], result: bytes | None, error: BaseException | None
) -> None:
    """Complete a hashing job's future on the event loop (unless its waiter gave up)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _new_map(size: int) -> mmap.mmap:
    """A page-aligned anonymous map, its pages faulted in by one call (MAP_POPULATE) rather
    than one fault per page as the blocks arrive."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, size, flags=flags)


class _PieceBuffer:
    __slots__ = ("data", "filled", "got")

    def __init__(self, size: int, nblocks: int, data: _Buffer | None = None) -> None:
        # A recycled buffer holds an old piece: every block is written before it is hashed.
        self.data: _Buffer = _new_map(size) if data is None else data
        self.got = bytearray(nblocks)  # 1 per block received
        self.filled = 0


class PieceStore:
    """Pieces of one torrent on disk under ``root``; use it as an async context manager.

    ``have`` (a ``Bitfield``, read-only for callers) holds the verified pieces.
    """

    def __init__(
        self,
        info: InfoDict,
        root: Path,
        *,
        block_size: int = BLOCK_SIZE,
        max_buffer_bytes: int = STORAGE_MAX_BUFFER_BYTES,
        max_open_files: int = STORAGE_FILE_HANDLES,
        read_cache_bytes: int = STORAGE_READ_CACHE_BYTES,
        piece_pool: dict[bytes, bytes] | None = None,
    ) -> None:
        """Raises ``UnsafePathError`` if a file path would leave ``root``.

        ``piece_pool``: verified pieces by SHA-1, shared with the other stores of this
        process (see ``SessionConfig.piece_pool``): the read cache keeps the pool's copy."""
        self.info = info
        self.root = Path(root)
        self.layout = Layout.from_info(info)
        self.block_size = block_size
        self.max_pieces_in_flight = max(4, max_buffer_bytes // max(1, info.piece_length))
        # add_block runs per 16 KiB block: every piece but the last has the nominal length.
        self._last_piece = self.layout.num_pieces - 1
        self._piece_length = info.piece_length
        self._max_open = max(1, max_open_files)
        self._read_cache: OrderedDict[int, bytes] = OrderedDict()
        self._read_cache_pieces = read_cache_bytes // max(1, info.piece_length)
        self._piece_pool = piece_pool
        paths = [_safe_paths(self.root, f.path) for f in info.files]
        self._final = [p[0] for p in paths]
        self._partial = [p[1] for p in paths]
        self._partial_index = {p: i for i, p in enumerate(self._partial)}
        clash = set(self._final) & set(self._partial)
        if clash:
            # Files "a" and "a.part": one file's partial name is another's final name.
            raise UnsafePathError(f"file names clash with partial names: {sorted(map(str, clash))}")
        # A file is "done" once it carries its final name (all its pieces verified).
        self._done = [f.length == 0 or f.padding for f in info.files]
        # finish_piece hands pieces to ONE hashing/writing thread (started on first use,
        # joined by close). A to_thread call per piece wakes a different pool thread each
        # time: those threads contend for the lock and the GIL, and each wake-up costs the
        # event loop CPU that one long-lived thread does not.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._hasher: threading.Thread | None = None
        # Pieces adopted by assume_complete() and not hashed yet (checked on first read).
        self._unchecked: set[int] = set()
        # Piece buffers recycled after hashing: a fresh 512 KiB buffer is zero-filled and
        # page-faulted in on every piece (about 8 % of a leech's event loop at 100 MB/s).
        self._spare: list[_Buffer] = []
        # O_DIRECT descriptors of .part files, by file index (see _write_span); False once the
        # file system refused O_DIRECT: every write is buffered from then on.
        self._direct_fds: dict[int, int] = {}
        self._direct_ok = bool(_O_DIRECT)
        self.have = Bitfield(self.layout.num_pieces)
        self._buffers: dict[int, _PieceBuffer] = {}
        self._fds: OrderedDict[Path, int] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> PieceStore:
        """Create ``root`` and the zero-length files (they hold no unverified bytes)."""
        await asyncio.to_thread(self._prepare)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Drop in-flight piece buffers and close every file handle (idempotent)."""
        self._buffers.clear()
        self._read_cache.clear()
        self._spare.clear()
        hasher, self._hasher = self._hasher, None
        if hasher is not None:
            self._jobs.put(None)  # after the queued pieces: they finish (or see the close)
            await asyncio.to_thread(hasher.join, 30.0)
        await asyncio.to_thread(self._close_all)

    def final_path(self, file_index: int) -> Path:
        """Where the file ends up once complete."""
        return self._final[file_index]

    def partial_path(self, file_index: int) -> Path:
        """Where the file lives while incomplete."""
        return self._partial[file_index]

    def file_done(self, file_index: int) -> bool:
        """True once the file carries its final name (all its pieces verified)."""
        return self._done[file_index]

    # --- incoming -------------------------------------------------------------------------

    def add_block(self, piece_index: int, begin: int, data: bytes) -> bool:
        """Buffer one block of our block grid; True when the piece's buffer is full.

        Raises:
            LocalProtocolError: off-grid block, bad range, or piece already verified.
            StorageError: more than ``max_pieces_in_flight`` pieces would be buffered.
        """
        # Called once per 16 KiB block received: checks inline, one len().
        if self._closed:
            raise StorageError("piece store is closed")
        if 0 <= piece_index < self._last_piece:
            size = self._piece_length
        else:
            size = self.layout.piece_size(piece_index)
        if self.have[piece_index]:
            raise LocalProtocolError(f"piece {piece_index} is already verified")
        bs = self.block_size
        k, rem = divmod(begin, bs)
        n = len(data)
        if rem or begin >= size or n != (bs if size - begin > bs else size - begin):
            raise LocalProtocolError(f"block ({piece_index}, {begin}, {n}) is off-grid")
        buf = self._buffers.get(piece_index)
        if buf is None:
            if len(self._buffers) >= self.max_pieces_in_flight:
                raise StorageError(
                    f"more than {self.max_pieces_in_flight} pieces in flight "
                    "(set PiecePicker max_in_progress to PieceStore.max_pieces_in_flight)"
                )
            nblocks = -(-size // self.block_size)
            spare = self._spare.pop() if self._spare and size == self._piece_length else None
            buf = self._buffers[piece_index] = _PieceBuffer(size, nblocks, spare)
        got = buf.got
        if not got[k]:
            buf.data[begin : begin + n] = data
            got[k] = 1
            buf.filled += 1
        return buf.filled == len(got)

    def discard_piece(self, piece_index: int) -> None:
        """Forget a buffered piece (e.g. the download was abandoned)."""
        self._buffers.pop(piece_index, None)

    async def finish_piece(self, piece_index: int) -> bool:
        """Hash the full buffer off the event loop; write it if good. The buffer is freed.

        Raises:
            LocalProtocolError: the piece's buffer is not full.
            DiskFullError: ENOSPC/EDQUOT while writing (the piece is not marked good).
        """
        buf = self._buffers.get(piece_index)
        if buf is None or buf.filled != len(buf.got):
            raise LocalProtocolError(f"piece {piece_index} is not fully received")
        del self._buffers[piece_index]
        # The buffer left _buffers above, so the worker thread owns it: no copy needed. The
        # worker also makes the read-only copy for the upload cache, off the event loop.
        # The queue needs no bound of its own: the picker's max_in_progress (= our
        # max_pieces_in_flight) bounds the pieces received and not yet verified.
        self._check_open()
        loop = asyncio.get_running_loop()
        if type(loop).run_in_executor is not asyncio.BaseEventLoop.run_in_executor:
            # A loop that takes thread work through its own run_in_executor (the virtual-time
            # loop, which must see every job to keep its clock still meanwhile) gets it there.
            data = await loop.run_in_executor(None, self._verify_write_copy, piece_index, buf.data)
        else:
            data = await self._hash_in_worker(piece_index, buf.data)
        # Spares: at most max_pieces_in_flight, which already bounds the buffers alive at once
        # (a fresh map costs a zeroed page per 4 KiB); none kept once every piece is here.
        if self.have.is_complete:
            self._spare.clear()
        elif len(buf.data) == self._piece_length and len(self._spare) < self.max_pieces_in_flight:
            self._spare.append(buf.data)  # the worker is done with it (data is a copy)
        if data is None:
            return False
        self._cache_piece(piece_index, data)
        return True

    async def _hash_in_worker(self, piece_index: int, data: _Buffer) -> bytes | None:
        """Verify and write on the store's one hashing thread (started on first use)."""
        if self._hasher is None:
            self._hasher = threading.Thread(
                target=self._hash_worker, name=f"hasher-{self.info.name[:20]}", daemon=True
            )
            self._hasher.start()
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._jobs.put((piece_index, data, future))
        return await future

    async def write_piece(self, piece_index: int, data: bytes) -> bool:
        """Verify and write a whole piece (web seed, tests); True if its hash matched."""
        self._check_open()
        if len(data) != self.layout.piece_size(piece_index):
            raise LocalProtocolError(f"piece {piece_index} must be {len(data)} bytes")
        self._buffers.pop(piece_index, None)
        data = bytes(data)
        ok = await asyncio.to_thread(self._verify_and_write, piece_index, data)
        if ok:
            self._cache_piece(piece_index, data)
        return ok

    # --- outgoing -------------------------------------------------------------------------

    async def read_block(self, piece_index: int, begin: int, length: int) -> bytes:
        """Read bytes of a verified piece for upload (off the event loop).

        Raises:
            LocalProtocolError: the range is outside the piece.
            StorageError: we do not have the piece, or the read failed.
        """
        self._check_open()
        self.layout.check_block(piece_index, begin, length)
        if not self.have[piece_index]:
            raise StorageError(f"piece {piece_index} is not verified")
        cached = self._read_cache.get(piece_index)
        if cached is None and piece_index in self._unchecked:
            # Trusted by ``assume_complete``: hash it on its first read (libtorrent's
            # seed_mode does the same), so a file changed since never goes out unchecked.
            size = self.layout.piece_size(piece_index)
            whole, ok = await asyncio.to_thread(self._read_and_check, piece_index, size)
            self._unchecked.discard(piece_index)
            if not ok:
                self.have.clear(piece_index)
                raise StorageError(f"piece {piece_index} changed on disk since it was hashed")
            if self._read_cache_pieces <= 0:
                return whole[begin : begin + length]
            self._cache_piece(piece_index, whole)
            cached = whole
        if cached is None and self._read_cache_pieces > 0:
            # Peers ask for a piece block by block: one thread hop reads the whole piece.
            size = self.layout.piece_size(piece_index)
            cached = await asyncio.to_thread(self._read, piece_index, 0, size)
            self._cache_piece(piece_index, cached)
        if cached is not None:
            self._read_cache.move_to_end(piece_index)
            return cached[begin : begin + length]
        return await asyncio.to_thread(self._read, piece_index, begin, length)

    def _cache_piece(self, piece_index: int, data: bytes) -> None:
        if self._read_cache_pieces <= 0:
            return
        pool = self._piece_pool
        if pool is not None:
            # Verified against this hash just now (or read back from our own verified file):
            # equal to any other store's copy of it, so one object serves them all.
            key = self.info.piece_hashes[piece_index]
            shared = pool.get(key)
            if shared is not None and len(shared) == len(data):
                data = shared
            else:
                pool[key] = data
        self._read_cache[piece_index] = data
        self._read_cache.move_to_end(piece_index)
        while len(self._read_cache) > self._read_cache_pieces:
            self._read_cache.popitem(last=False)

    # --- resume ---------------------------------------------------------------------------

    async def assume_complete(self) -> Bitfield:
        """Adopt every piece without hashing now (the caller hashed these files moments ago,
        e.g. ``share`` right after making the torrent); each piece is hashed on its first
        upload read instead. Returns the have-set (all pieces).

        Raises:
            StorageError: a file is missing (nothing to seed).
        """
        self._check_open()
        for f, entry in enumerate(self.info.files):
            if entry.length and not entry.padding and not self._final[f].is_file():
                raise StorageError(f"{self._final[f]} is missing")
        good = Bitfield.all(self.layout.num_pieces)
        self._read_cache.clear()
        await asyncio.to_thread(self._adopt, good)
        self._unchecked = set(range(self.layout.num_pieces))
        return good.copy()

    async def recheck(self) -> Bitfield:
        """Hash existing data (final and .part files); return and adopt the good pieces.

        Complete files are renamed to their final names; final-named files with a bad
        piece are demoted to ``.part``.
        """
        self._check_open()
        good = Bitfield(self.layout.num_pieces)
        for start in range(0, self.layout.num_pieces, _RECHECK_BATCH):
            batch = range(start, min(start + _RECHECK_BATCH, self.layout.num_pieces))
            for i, ok in zip(batch, await asyncio.to_thread(self._check_batch, batch), strict=True):
                if ok:
                    good.set(i)
        self._read_cache.clear()
        self._unchecked = set()
        await asyncio.to_thread(self._adopt, good)
        return good.copy()

    # --- worker-thread side ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("piece store is closed")

    def _read_and_check(self, piece_index: int, size: int) -> tuple[bytes, bool]:
        data = self._read(piece_index, 0, size)
        return data, hashlib.sha1(data).digest() == self.info.piece_hashes[piece_index]

    def _hash_worker(self) -> None:
        """The hashing thread: verify and write queued pieces in order until ``None``."""
        while (job := self._jobs.get()) is not None:
            piece_index, data, future = job
            result: bytes | None = None
            error: BaseException | None = None
            try:
                result = self._verify_write_copy(piece_index, data)
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)

    def _verify_write_copy(self, piece_index: int, data: _Buffer) -> bytes | None:
        if not self._verify_and_write(piece_index, data):
            return None
        return bytes(data) if self._read_cache_pieces > 0 else b""

    def _verify_and_write(self, piece_index: int, data: bytes | _Buffer) -> bool:
        if hashlib.sha1(data).digest() != self.info.piece_hashes[piece_index]:
            return False
        with self._lock:
            # A write whose awaiting task was cancelled can still run after close().
            self._check_open()
            if self.have[piece_index]:
                return True  # a duplicate (endgame); already on disk
            try:
                # A map starts on a page: a span at an aligned offset of it may go O_DIRECT.
                aligned = isinstance(data, mmap.mmap)
                for span in self.layout.spans(piece_index):
                    if span.file.padding:
                        continue
                    start = span.buffer_offset
                    chunk = memoryview(data)[start : start + span.length]
                    direct = aligned and start % _DIRECT_ALIGN == 0
                    self._write_span(span.file_index, chunk, span.file_offset, direct=direct)
                self.have.set(piece_index)
                for f in self.layout.completed_files(piece_index, self.have):
                    if not self._done[f]:
                        self._finalize(f)
            except OSError as exc:
                # fsync/rename can fail late (delayed allocation reports ENOSPC at fsync).
                self.have.clear(piece_index)
                raise self._translate(exc) from exc
            except StorageError:
                self.have.clear(piece_index)
                raise
        return True

    def _write_span(self, f: int, chunk: memoryview, offset: int, *, direct: bool) -> None:
        """Write one span of a verified piece into file ``f`` (lock held): with O_DIRECT when
        ``direct`` (the caller's buffer is aligned) and the offset and length are aligned too,
        else buffered with writeback started at once."""
        fd = self._fd(f, write=True)  # creates the .part file at full size
        if direct and self._direct_ok and not (offset | len(chunk)) % _DIRECT_ALIGN:
            dfd = self._direct_fd(f)
            if dfd is not None:
                try:
                    self._pwrite_all(dfd, chunk, offset)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise  # translated by the caller (ENOSPC: DiskFullError)
                    self._direct_ok = False  # refused after all: buffered from now on
                    self._close_direct()
        self._pwrite_all(fd, chunk, offset)
        _start_writeback(fd, offset, len(chunk))

    def _direct_fd(self, f: int) -> int | None:
        """An O_DIRECT descriptor of file ``f``'s .part file (lock held), or None when the
        file system refuses it (tmpfs: EINVAL), which turns O_DIRECT off for the store."""
        fd = self._direct_fds.get(f)
        if fd is not None:
            return fd
        while len(self._direct_fds) >= self._max_open:  # bounded like the buffered ones
            os.close(self._direct_fds.pop(next(iter(self._direct_fds))))
        try:
            fd = os.open(self._partial[f], os.O_WRONLY | os.O_NOFOLLOW | _O_DIRECT)
        except OSError:
            self._direct_ok = False
            return None
        self._direct_fds[f] = fd
        return fd

    def _close_direct(self, f: int | None = None) -> None:
        """Close file ``f``'s O_DIRECT descriptor, or all of them (lock held)."""
        for index in [f] if f is not None else list(self._direct_fds):
            fd = self._direct_fds.pop(index, None)
            if fd is not None:
                os.close(fd)

    def _translate(self, exc: OSError) -> StorageError:
        if exc.errno in _DISK_FULL:
            return DiskFullError(f"disk full under {self.root}: {exc}")
        return StorageError(f"I/O error under {self.root}: {exc}")

    def _prepare(self) -> None:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            for f, entry in enumerate(self.info.files):
                if entry.length == 0 and not entry.padding:
                    final = self._final[f]
                    final.parent.mkdir(parents=True, exist_ok=True)
                    final.touch(exist_ok=True)

    def _pwrite_all(self, fd: int, chunk: memoryview, offset: int) -> None:
        """Write all of ``chunk`` at ``offset``; OSError is the caller's to translate."""
        while chunk:
            n = os.pwrite(fd, chunk, offset)
            chunk = chunk[n:]
            offset += n

    def _read(self, piece_index: int, begin: int, length: int) -> bytes:
        with self._lock:
            self._check_open()
            spans = self.layout.spans(piece_index, begin, length)
            if len(spans) == 1 and not spans[0].file.padding:
                # The usual case (one file): pread's bytes as they are, not copied twice more
                # through a zero-filled bytearray.
                return self._pread_span(spans[0])
            out = bytearray(length)
            for span in spans:
                if span.file.padding:
                    continue  # BEP 47: zeros
                out[span.buffer_offset : span.buffer_offset + span.length] = self._pread_span(span)
            return bytes(out)

    def _pread_span(self, span: FileSpan) -> bytes:
        """The bytes of one span, read whole (lock held)."""
        fd = self._open_cached(self._path(span.file_index), create=False)
        try:
            chunk = os.pread(fd, span.length, span.file_offset)
        except OSError as exc:
            raise StorageError(f"read failed: {exc}") from exc
        if len(chunk) != span.length:
            raise StorageError(f"{self._path(span.file_index)} is shorter than expected")
        return chunk

    def _check_batch(self, batch: range) -> list[bool]:
        results = []
        for i in batch:
            try:
                data = self._read_any(i)
            except StorageError:
                results.append(False)
                continue
            results.append(
                data is not None and hashlib.sha1(data).digest() == self.info.piece_hashes[i]
            )
        return results

    def _read_any(self, piece_index: int) -> bytes | None:
        """The piece from whatever exists on disk (final or .part), None if missing."""
        with self._lock:
            self._check_open()
            out = bytearray(self.layout.piece_size(piece_index))
            for span in self.layout.spans(piece_index):
                if span.file.padding:
                    continue
                f = span.file_index
                path = self._final[f] if self._final[f].exists() else self._partial[f]
                if not path.is_file():
                    return None
                fd = self._open_cached(path, create=False)
                try:
                    chunk = os.pread(fd, span.length, span.file_offset)
                except OSError as exc:
                    raise StorageError(f"read failed: {exc}") from exc
                if len(chunk) != span.length:
                    return None
                out[span.buffer_offset : span.buffer_offset + span.length] = chunk
            return bytes(out)

    def _adopt(self, good: Bitfield) -> None:
        with self._lock:
            self._check_open()
            # In place: callers may hold a reference to store.have.
            for i in range(len(good)):
                self.have.set(i, good[i])
            for f, entry in enumerate(self.info.files):
                if entry.padding:
                    continue
                complete = self.layout.file_complete(f, good)
                final, partial = self._final[f], self._partial[f]
                if complete and entry.length == 0:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    final.touch(exist_ok=True)
                    self._done[f] = True
                elif complete and not final.exists():
                    self._finalize(f)
                elif complete:
                    self._done[f] = True
                elif final.exists():
                    # Unverified bytes under a final name: demote (keeps the invariant).
                    self._close_path(final)
                    os.replace(final, partial)
                    self._done[f] = False
                else:
                    self._done[f] = False

    def _finalize(self, f: int) -> None:
        """fsync and atomically rename a complete file to its final name (lock held)."""
        entry = self.info.files[f]
        final, partial = self._final[f], self._partial[f]
        final.parent.mkdir(parents=True, exist_ok=True)
        if entry.length == 0:
            final.touch(exist_ok=True)
        else:
            fd = self._fd(f, write=True)
            os.ftruncate(fd, entry.length)  # a stale oversized .part must not keep its tail
            os.fsync(fd)  # also flushes what O_DIRECT wrote through (the device's cache)
            self._close_direct(f)
            self._close_path(partial)
            os.replace(partial, final)
            # fsync the directory so the rename itself survives a crash.
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._done[f] = True

    def _path(self, f: int) -> Path:
        return self._final[f] if self._done[f] else self._partial[f]

    def _fd(self, f: int, *, write: bool) -> int:
        return self._open_cached(self._path(f), create=write)

    def _open_cached(self, path: Path, *, create: bool) -> int:
        """A cached descriptor: .part files read-write (created sparse at full size when
        ``create``), final files read-only (a seed folder may be read-only)."""
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        while len(self._fds) >= self._max_open:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        index = self._partial_index.get(path)
        try:
            if index is not None:
                flags = os.O_RDWR | os.O_NOFOLLOW
                if create:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    flags |= os.O_CREAT
                fd = os.open(path, flags, 0o644)
                size = self.info.files[index].length
                if create and os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)  # sparse preallocation
            else:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise self._translate(exc) from exc
        self._fds[path] = fd
        return fd

    def _close_path(self, path: Path) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def _close_all(self) -> None:
        with self._lock:
            self._closed = True
            self._close_direct()
            while self._fds:
                _, fd = self._fds.popitem()
                os.close(fd)
