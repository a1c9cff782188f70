"""The hub's file store: validated names, streamed atomic uploads, cached SHA-256.

Layout under the data directory (see the interfaces brief)::

    files/<path>        final files, only ever replaced atomically (os.replace); a path is
                        folder/.../name, its folders made on upload and removed when empty
    .partial/           uploads in progress; same filesystem; emptied on start and on failure
    .meta/<name>.json   cached {"size", "mtime_ns", "ino", "sha256"} of files/<name>
                        (named by the SHA-256 of the path when it has a folder or when
                        "<name>.json" would be too long)

Theory of operation: an upload streams into a fresh temp file in ``.partial/`` while SHA-256 is
computed chunk by chunk; only after the size and digest checks pass and the data is fsync'ed is the
temp file renamed over ``files/<name>``. Every exit path other than success removes the temp file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hubswarm.errors import (
    DigestMismatchError,
    DiskFullError,
    NameConflictError,
    StorageError,
    UnsafePathError,
    UploadTooLargeError,
)
from hubswarm.limits import HUB_CHUNK, HUB_MAX_NAME_BYTES, HUB_MAX_PATH_BYTES, HUB_MAX_PATH_DEPTH
from hubswarm.proto.pieces import PieceHasher

# ENOSPC: no space left on device; EDQUOT: disk quota exceeded. Both map to 507 (RFC 4918 §11.5).
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Read size while hashing a stored file (1 MiB): large reads, few system calls.
_HASH_READ = 4 * HUB_CHUNK


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What the hub knows about one stored file (the JSON of list and upload replies)."""

    name: str
    size: int
    sha256: str
    mtime: float
    # Not part of the JSON: lets the server notice a file replaced between stat and send.
    mtime_ns: int = 0

    def to_json(self) -> dict[str, object]:
        """The ``{"name","size","sha256","mtime"}`` object of the Hub HTTP API."""
        return {"name": self.name, "size": self.size, "sha256": self.sha256, "mtime": self.mtime}


def validate_segment(name: str) -> str:
    """Return ``name`` if it is a safe name of one file or folder, else raise UnsafePathError.

    Rejected: empty, ``.``/``..``, a leading dot (hidden files, our own ``.partial``), ``/`` or
    ``\\``, NUL and other control characters (C0, DEL, C1), lone surrogates, > 255 UTF-8 bytes.
    """
    if not name:
        raise UnsafePathError("empty file name (or an empty folder in the path)")
    if name in (".", ".."):
        raise UnsafePathError(f"reserved file name {name!r}")
    if name.startswith("."):
        raise UnsafePathError("file name must not start with a dot")
    if "/" in name or "\\" in name:
        raise UnsafePathError("file name must not contain a path separator")
    for ch in name:
        # Cc covers NUL, C0 controls, DEL and C1 controls; Cs are lone surrogates
        # (from surrogateescape decoding) that cannot be encoded to UTF-8.
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise UnsafePathError("file name must not contain control characters")
    if len(name.encode("utf-8")) > HUB_MAX_NAME_BYTES:
        raise UnsafePathError(f"file name longer than {HUB_MAX_NAME_BYTES} bytes")
    return name


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe path ``folder/.../file``, else raise UnsafePathError.

    Folders are separated by ``/``; each segment passes :func:`validate_segment` (so no empty
    segment: no leading, trailing or double ``/``), at most HUB_MAX_PATH_DEPTH segments and
    HUB_MAX_PATH_BYTES UTF-8 bytes in all.
    """
    if len(name) > HUB_MAX_PATH_BYTES or len(name.encode("utf-8", "surrogatepass")) > (
        HUB_MAX_PATH_BYTES
    ):
        raise UnsafePathError(f"path longer than {HUB_MAX_PATH_BYTES} bytes")
    segments = name.split("/")
    if len(segments) > HUB_MAX_PATH_DEPTH:
        raise UnsafePathError(f"path deeper than {HUB_MAX_PATH_DEPTH} folders")
    for segment in segments:
        validate_segment(segment)
    return name


def validate_folder(folder: str) -> str:
    """``""`` (the top folder) or a path as :func:`validate_name` accepts."""
    return folder if folder == "" else validate_name(folder)


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """A folder: its path, the bytes and the number of files anywhere below it."""

    name: str
    size: int
    files: int

    def to_json(self) -> dict[str, object]:
        """The ``{"name","size","files"}`` object of a folder listing."""
        return {"name": self.name, "size": self.size, "files": self.files}


@dataclass(frozen=True, slots=True)
class Listing:
    """One folder's view: every file below it (full paths), and its direct subfolders."""

    folder: str
    files: list[FileInfo]
    folders: list[FolderInfo]

    @property
    def size(self) -> int:
        """Bytes of all files below the folder."""
        return sum(f.size for f in self.files)

    def direct_files(self) -> list[FileInfo]:
        """Files directly in the folder (not in a subfolder)."""
        prefix = self.folder + "/" if self.folder else ""
        return [f for f in self.files if "/" not in f.name[len(prefix) :]]

    def to_json(self) -> dict[str, object]:
        """``GET /files[/FOLDER/]`` JSON: ``files`` lists every file below, as before folders."""
        return {
            "folder": self.folder,
            "size": self.size,
            "count": len(self.files),
            "files": [f.to_json() for f in self.files],
            "folders": [d.to_json() for d in self.folders],
        }


def write_all(f: BinaryIO, data: bytes) -> None:
    """Write ``data`` fully (module-level so tests can simulate ENOSPC by replacing it)."""
    f.write(data)


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in _DISK_FULL_ERRNOS


class _PartialFile:
    """A temp file in ``.partial/`` that hashes what it is given; methods block (use a thread)."""

    def __init__(self, partial_dir: Path, pieces: PieceHasher | None = None) -> None:
        fd, path = tempfile.mkstemp(dir=partial_dir, prefix="up-", suffix=".part")
        self.path = Path(path)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._sha256 = hashlib.sha256()
        # The torrent's SHA-1 piece hashes of the same bytes (hub.torrents stores them),
        # fed by FileStore._write in a second thread beside ``write``.
        self.pieces = pieces
        self.pieces_job: asyncio.Future[None] | None = None
        self.size = 0

    async def pieces_done(self) -> None:
        """Wait for the batch the piece hasher is on (if any)."""
        if self.pieces_job is not None:
            job, self.pieces_job = self.pieces_job, None
            await job

    def write(self, data: bytes) -> None:
        # hashlib releases the GIL for large buffers, so hashing here runs beside the loop.
        self._sha256.update(data)
        write_all(self._file, data)
        self.size += len(data)

    def finish(self) -> str:
        """Flush and fsync; return the hex SHA-256."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._sha256.hexdigest()

    def discard(self) -> None:
        """Close and remove; never raises (it runs on every failure path)."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class FileStore:
    """Flat file store of the hub, rooted at a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.partial_dir = self.data_dir / ".partial"
        self.meta_dir = self.data_dir / ".meta"

    # --- setup -----------------------------------------------------------------------------

    def prepare(self) -> int:
        """Create the folders and remove leftover partial uploads; return how many were removed.

        Blocking: call it before serving or through asyncio.to_thread.
        """
        for d in (self.files_dir, self.partial_dir, self.meta_dir):
            d.mkdir(parents=True, exist_ok=True)
        removed = 0
        for entry in self.partial_dir.iterdir():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
        return removed

    def partials(self) -> list[Path]:
        """Temp files currently in ``.partial/`` (tests assert this is empty after failures)."""
        if not self.partial_dir.exists():
            return []
        return sorted(self.partial_dir.iterdir())

    def path(self, name: str) -> Path:
        """The final path of ``name`` (validated)."""
        return self.files_dir / validate_name(name)

    # --- upload ----------------------------------------------------------------------------

    async def put(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        max_size: int | None = None,
        expected_sha256: str | None = None,
        pieces: PieceHasher | None = None,
    ) -> tuple[FileInfo, bool]:
        """Stream ``chunks`` into ``files/<name>`` atomically; return (info, created).

        ``pieces``, if given, is fed every byte too (the torrent's piece hashes).

        Raises:
            UnsafePathError, UploadTooLargeError, DigestMismatchError, DiskFullError, StorageError.
            Whatever ``chunks`` raises (timeout, disconnect, cancellation) propagates. In every
            failure case the partial file is gone and ``files/<name>`` is untouched.
        """
        final = self.path(name)
        try:
            part = await asyncio.to_thread(_PartialFile, self.partial_dir, pieces)
        except OSError as exc:
            raise self._translate(exc, name) from exc
        committed = False
        try:
            # Small network chunks are batched into writes of >= HUB_CHUNK; a list + one join
            # copies each byte once (a single large chunk is not copied at all).
            pending: list[bytes] = []
            pending_len = 0
            async for chunk in chunks:
                pending.append(chunk)
                pending_len += len(chunk)
                # Count while streaming: Content-Length may be absent (chunked) or a lie.
                if max_size is not None and part.size + pending_len > max_size:
                    raise UploadTooLargeError(f"upload of {name!r} exceeds {max_size} bytes")
                if pending_len >= HUB_CHUNK:
                    await self._write(part, b"".join(pending), name)
                    pending.clear()
                    pending_len = 0
            if pending_len:
                await self._write(part, b"".join(pending), name)
            await part.pieces_done()
            try:
                digest = await asyncio.to_thread(part.finish)
            except OSError as exc:
                raise self._translate(exc, name) from exc
            if expected_sha256 is not None and digest != expected_sha256.lower():
                raise DigestMismatchError(
                    f"upload of {name!r}: sha256 {digest} != announced {expected_sha256.lower()}"
                )
            info, created = await asyncio.to_thread(self._commit, part.path, final, digest)
            committed = True
            return info, created
        finally:
            if not committed:
                # Runs on cancellation too; discard is quick and must not be skipped.
                part.discard()
                if part.pieces_job is not None:
                    # Hashing in a thread cannot be stopped; it ends soon, unawaited.
                    part.pieces_job.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _write(self, part: _PartialFile, data: bytes, name: str) -> None:
        try:
            if part.pieces is None:
                await asyncio.to_thread(part.write, data)
                return
            # SHA-1 in a thread of its own, one batch behind: it overlaps the SHA-256, the copy
            # into the page cache and the next network read instead of adding to them
            # (hashlib drops the GIL). Batches stay in order; one is in flight at most.
            await part.pieces_done()
            part.pieces_job = asyncio.ensure_future(asyncio.to_thread(part.pieces.update, data))
            await asyncio.to_thread(part.write, data)
        except OSError as exc:
            raise self._translate(exc, name) from exc

    @staticmethod
    def _translate(exc: OSError, name: str) -> StorageError:
        if _is_disk_full(exc):
            return DiskFullError(f"disk full while storing {name!r}")
        return StorageError(f"cannot store {name!r}: {exc.strerror or exc}")

    def commit_sync(self, part_path: Path, name: str, digest: str) -> tuple[FileInfo, bool]:
        """Move a finished, fsync'ed upload (same filesystem) over ``files/<name>`` atomically.

        Blocking. For uploads that live elsewhere while in progress (hub.tus).
        """
        return self._commit(part_path, self.path(name), digest)

    def _commit(self, part_path: Path, final: Path, digest: str) -> tuple[FileInfo, bool]:
        name = final.relative_to(self.files_dir).as_posix()
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            created = not final.exists()
            os.replace(part_path, final)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            # A file stands where a folder of the path should be, or a folder where the file is.
            raise NameConflictError(f"cannot store {name!r}: {exc.strerror}") from exc
        # fsync the directory so the rename itself survives a crash (POSIX rename semantics).
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        st = final.stat()
        self._write_meta(name, st, digest)
        return FileInfo(name, st.st_size, digest, st.st_mtime, st.st_mtime_ns), created

    # --- metadata --------------------------------------------------------------------------

    def _meta_path(self, name: str) -> Path:
        # "<name>.json" could pass the 255-byte limit of a file name: long names and paths
        # with folders use their hash (one flat .meta/ folder).
        if "/" in name or len(name.encode("utf-8")) + len(".json") > HUB_MAX_NAME_BYTES:
            return self.meta_dir / f"{hashlib.sha256(name.encode('utf-8')).hexdigest()}.json"
        return self.meta_dir / f"{name}.json"

    def _write_meta(self, name: str, st: os.stat_result, digest: str) -> None:
        record = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ino": st.st_ino,
            "sha256": digest,
        }
        fd, tmp = tempfile.mkstemp(dir=self.partial_dir, prefix="meta-", suffix=".part")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, self._meta_path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def info_sync(self, name: str) -> FileInfo:
        """Stat ``files/<name>`` and return its info, hashing it if the cache is stale.

        Blocking (may hash the whole file): call through asyncio.to_thread.
        Raises FileNotFoundError if there is no such file.
        """
        final = self.path(name)
        st = final.stat()
        if not final.is_file():
            raise FileNotFoundError(name)
        try:
            record = json.loads(self._meta_path(name).read_text())
            if (record["size"], record["mtime_ns"], record["ino"]) == (
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
            ):
                return FileInfo(
                    name, st.st_size, str(record["sha256"]), st.st_mtime, st.st_mtime_ns
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing or stale cache: recompute below
        h = hashlib.sha256()
        with final.open("rb") as f:
            while block := f.read(_HASH_READ):
                h.update(block)
            st = os.fstat(f.fileno())
        digest = h.hexdigest()
        self._write_meta(name, st, digest)
        return FileInfo(name, st.st_size, digest, st.st_mtime, st.st_mtime_ns)

    async def info(self, name: str) -> FileInfo:
        """Async wrapper of :meth:`info_sync`."""
        return await asyncio.to_thread(self.info_sync, name)

    def _walk(self, folder: str, depth: int) -> tuple[list[FileInfo], list[str]]:
        """(files anywhere below ``folder``, its direct subfolders), by name; symlinked
        folders and unsafe names (dropped in by hand) are skipped."""
        files: list[FileInfo] = []
        subfolders: list[str] = []
        base = self.files_dir / folder if folder else self.files_dir
        prefix = folder + "/" if folder else ""
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        for entry in entries:
            try:
                validate_segment(entry.name)
                name = validate_name(prefix + entry.name)
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(name)
                    if depth + 1 < HUB_MAX_PATH_DEPTH:
                        files.extend(self._walk(name, depth + 1)[0])
                else:
                    files.append(self.info_sync(name))
            except (UnsafePathError, FileNotFoundError):
                continue
        return files, subfolders

    def list_sync(self, folder: str = "") -> list[FileInfo]:
        """Every stored file below ``folder`` (default: all), sorted by path (blocking)."""
        return self._walk(validate_folder(folder), 0)[0]

    async def list(self, folder: str = "") -> list[FileInfo]:
        """Async wrapper of :meth:`list_sync`."""
        return await asyncio.to_thread(self.list_sync, folder)

    def is_folder(self, name: str) -> bool:
        """Is ``name`` (validated) a folder of the store? ``""`` is the top folder."""
        return name == "" or (self.path(name).is_dir() and not self.path(name).is_symlink())

    def listing_sync(self, folder: str = "") -> Listing:
        """``folder``'s listing with each subfolder's size and file count (blocking).

        Raises FileNotFoundError if ``folder`` is not a folder.
        """
        folder = validate_folder(folder)
        if not self.is_folder(folder):
            raise FileNotFoundError(folder)
        files, subfolders = self._walk(folder, 0)
        folders = []
        for sub in subfolders:
            below = [f for f in files if f.name.startswith(sub + "/")]
            folders.append(FolderInfo(sub, sum(f.size for f in below), len(below)))
        return Listing(folder, files, folders)

    async def listing(self, folder: str = "") -> Listing:
        """Async wrapper of :meth:`listing_sync`."""
        return await asyncio.to_thread(self.listing_sync, folder)

    def delete_sync(self, name: str) -> None:
        """Remove the file ``name`` and its cached digest, or the empty folder ``name``.

        Raises FileNotFoundError if absent, NameConflictError for a folder that is not empty.
        """
        path = self.path(name)
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise NameConflictError(f"folder {name!r} is not empty") from exc
                raise
            return
        path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self._meta_path(name).unlink()

    async def delete(self, name: str) -> None:
        """Async wrapper of :meth:`delete_sync`."""
        await asyncio.to_thread(self.delete_sync, name)
