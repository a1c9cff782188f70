"""PieceStore fast paths: assume_complete (share's seed mode) and the hashing thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubswarm.errors import StorageError
from hubswarm.swarm.storage import PieceStore
from tests.swarm.test_storage import PL, SIZES, make_torrent, piece


def write_all(root: Path, contents: dict[str, bytes]) -> None:
    for name, data in contents.items():
        path = root / "tor" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


async def test_assume_complete_serves_good_pieces(tmp_path: Path) -> None:
    info, stream, contents = make_torrent(SIZES)
    write_all(tmp_path, contents)
    async with PieceStore(info, tmp_path) as store:
        have = await store.assume_complete()
        assert have.is_complete
        for i in range(info.num_pieces):
            size = len(piece(stream, i))
            assert await store.read_block(i, 0, size) == piece(stream, i)


async def test_assume_complete_checks_each_piece_on_first_read(tmp_path: Path) -> None:
    info, stream, contents = make_torrent(SIZES)
    write_all(tmp_path, contents)
    # The last file changed after the torrent was made: its pieces must not go out.
    changed = tmp_path / "tor" / "c.bin"
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    last = info.num_pieces - 1
    async with PieceStore(info, tmp_path, read_cache_bytes=0) as store:
        await store.assume_complete()
        with pytest.raises(StorageError):
            await store.read_block(last, 0, 16)
        assert not store.have[last]
        assert await store.read_block(0, 0, 16) == stream[:16]


async def test_assume_complete_refuses_missing_files(tmp_path: Path) -> None:
    info, _, contents = make_torrent(SIZES)
    write_all(tmp_path, {k: v for k, v in contents.items() if k != "sub/b.bin"})
    async with PieceStore(info, tmp_path) as store:
        with pytest.raises(StorageError):
            await store.assume_complete()


async def test_many_pieces_queued_to_the_hashing_thread(tmp_path: Path) -> None:
    import asyncio

    info, stream, contents = make_torrent(SIZES, seed=3)
    async with PieceStore(info, tmp_path, max_buffer_bytes=64 * PL) as store:
        for i in range(info.num_pieces):
            data = piece(stream, i)
            for b in range(0, len(data), 16 * 1024):
                store.add_block(i, b, data[b : b + 16 * 1024])
        # All pieces in flight at once: the one thread verifies them in order.
        results = await asyncio.gather(*(store.finish_piece(i) for i in range(info.num_pieces)))
        assert all(results)
        assert store.have.is_complete
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data
