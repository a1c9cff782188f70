"""HubSeeder: one torrent session per hub file, following uploads, replacements and deletes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubswarm.hub.store import FileStore
from hubswarm.hybrid import HubSeeder, seed_config


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _scans(seeder: HubSeeder, n: int = 2) -> None:
    """Wait for ``n`` more scans (bounded)."""
    for _ in range(n):
        seeder.scanned.clear()
        await asyncio.wait_for(seeder.scanned.wait(), 10)


@pytest.fixture
async def store(tmp_path: Path) -> FileStore:
    s = FileStore(tmp_path)
    await asyncio.to_thread(s.prepare)
    return s


async def test_seeder_follows_the_store(store: FileStore) -> None:
    seeder = HubSeeder(store.data_dir, announce=None, config=seed_config(), scan_interval=0.05)
    ports: list[int] = []
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(seeder.run(ports.append))
        await _scans(seeder, 1)
        assert ports == [seeder.port]
        assert seeder.seeding == {}
        await store.put("a.bin", _chunks(os.urandom(100_000)))
        await store.put("empty", _chunks(b""))  # an empty file cannot be a torrent
        await store.put("dir/b.bin", _chunks(os.urandom(50_000)))
        await _scans(seeder)
        assert set(seeder.seeding) == {"a.bin", "dir/b.bin"}
        first = seeder.seeding["a.bin"].info_hash
        await store.put("a.bin", _chunks(os.urandom(100_000)))  # replaced: a new torrent
        await _scans(seeder)
        assert seeder.seeding["a.bin"].info_hash != first
        await store.delete("dir/b.bin")
        await _scans(seeder)
        assert set(seeder.seeding) == {"a.bin"}
        # One session per file, the replaced and the deleted ones' ended.
        assert seeder.peer is not None
        assert set(seeder.peer.sessions) == {seeder.seeding["a.bin"].info_hash}
        task.cancel()
    assert task.cancelled()
