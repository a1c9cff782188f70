"""FileStore unit tests: atomic streamed uploads, failure cleanup, digest cache."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import pytest

from hubswarm.errors import (
    DigestMismatchError,
    DiskFullError,
    StorageError,
    UnsafePathError,
    UploadTooLargeError,
)
from hubswarm.hub import store as store_mod
from hubswarm.hub.store import FileStore


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStore(tmp_path / "data")
    s.prepare()
    return s


@pytest.mark.parametrize("size", [0, 1, 1000, store_mod.HUB_CHUNK - 1, store_mod.HUB_CHUNK + 1])
async def test_put_round_trip(store: FileStore, size: int) -> None:
    data = os.urandom(size)
    info, created = await store.put("f.bin", chunks_of(data, 7777))
    assert created
    assert info.size == size
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.path("f.bin").read_bytes() == data
    assert store.partials() == []
    again, created2 = await store.put("f.bin", chunks_of(b"new"))
    assert not created2
    assert again.sha256 == hashlib.sha256(b"new").hexdigest()
    assert (await store.info("f.bin")).sha256 == again.sha256


async def test_too_large_removes_partial_and_keeps_old(store: FileStore) -> None:
    await store.put("f", chunks_of(b"old"))
    with pytest.raises(UploadTooLargeError):
        await store.put("f", chunks_of(b"x" * 5000), max_size=4999)
    assert store.partials() == []
    assert store.path("f").read_bytes() == b"old"
    info, _ = await store.put("g", chunks_of(b"x" * 5000), max_size=5000)
    assert info.size == 5000


async def test_digest_mismatch_stores_nothing(store: FileStore) -> None:
    with pytest.raises(DigestMismatchError):
        await store.put("f", chunks_of(b"abc"), expected_sha256="00" * 32)
    assert not store.path("f").exists()
    assert store.partials() == []
    good = hashlib.sha256(b"abc").hexdigest().upper()  # hex case does not matter
    info, _ = await store.put("f", chunks_of(b"abc"), expected_sha256=good)
    assert info.sha256 == good.lower()


async def test_disk_full_becomes_disk_full_error(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(f: BinaryIO, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "write_all", full)
    with pytest.raises(DiskFullError):
        await store.put("f", chunks_of(b"x" * 10))
    assert store.partials() == []
    assert not store.path("f").exists()


async def test_other_os_error_is_storage_error(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(f: BinaryIO, data: bytes) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_mod, "write_all", broken)
    with pytest.raises(StorageError) as info:
        await store.put("f", chunks_of(b"x"))
    assert not isinstance(info.value, DiskFullError)
    assert store.partials() == []


async def test_source_failure_and_cancel_remove_partial(store: FileStore) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * (store_mod.HUB_CHUNK * 2)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("f", failing())
    assert store.partials() == []

    started = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b"y" * (store_mod.HUB_CHUNK * 2)
        started.set()
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(store.put("f", stalling()))
    async with asyncio.timeout(5):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.partials() == []
    assert not store.path("f").exists()


async def test_unsafe_name_refused_before_io(store: FileStore) -> None:
    with pytest.raises(UnsafePathError):
        await store.put("../escape", chunks_of(b"x"))
    assert store.partials() == []
    assert not (store.data_dir / "escape").exists()


def test_prepare_removes_leftovers(tmp_path: Path) -> None:
    s = FileStore(tmp_path)
    s.prepare()
    (s.partial_dir / "up-stale.part").write_bytes(b"junk")
    assert s.prepare() == 1
    assert s.partials() == []


async def test_info_recomputed_when_file_changes_behind_our_back(store: FileStore) -> None:
    await store.put("f", chunks_of(b"one"))
    p = store.path("f")
    p.write_bytes(b"two, longer")  # edited by hand: cache (size/mtime/inode) is stale
    info = await store.info("f")
    assert info.sha256 == hashlib.sha256(b"two, longer").hexdigest()
    with pytest.raises(FileNotFoundError):
        await store.info("missing")


async def test_list_and_delete(store: FileStore) -> None:
    await store.put("b", chunks_of(b"2"))
    await store.put("a", chunks_of(b"1"))
    (store.files_dir / ".hidden").write_bytes(b"dropped in by hand")
    names = [f.name for f in await store.list()]
    assert names == ["a", "b"]
    await store.delete("a")
    assert [f.name for f in await store.list()] == ["b"]
    with pytest.raises(FileNotFoundError):
        await store.delete("a")
