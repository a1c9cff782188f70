"""PieceStore: verified writes, atomic rename, resume, path safety, disk full."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from hubswarm.errors import DiskFullError, LocalProtocolError, StorageError, UnsafePathError
from hubswarm.proto.metainfo import FileEntry, InfoDict, build_info
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.picker import PiecePicker
from hubswarm.swarm.storage import PieceStore

B = 16 * 1024
PL = 2 * B  # piece length: two blocks


def make_torrent(sizes: dict[str, int], seed: int = 0, piece_length: int = PL):
    """(info, stream bytes, {relpath: bytes}) for a multi-file torrent of random data."""
    rng = random.Random(seed)
    contents = {name: rng.randbytes(n) for name, n in sizes.items()}
    stream = b"".join(contents.values())
    hashes = [
        hashlib.sha1(stream[i : i + piece_length]).digest()
        for i in range(0, len(stream), piece_length)
    ]
    files = [(tuple(name.split("/")), n) for name, n in sizes.items()]
    info = build_info("tor", piece_length, hashes, files=files)
    return info, stream, contents


SIZES = {"a.bin": PL - 1, "empty1": 0, "sub/b.bin": PL + 1, "sub/empty2": 0, "c.bin": 3 * PL + 100}


def piece(stream: bytes, i: int, pl: int = PL) -> bytes:
    return stream[i * pl : (i + 1) * pl]


def final_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def test_download_all_pieces_blocks_in_random_order(tmp_path: Path) -> None:
    info, stream, contents = make_torrent(SIZES)
    order = list(range(info.num_pieces))
    random.Random(1).shuffle(order)
    async with PieceStore(info, tmp_path) as store:
        for i in order:
            data = piece(stream, i)
            blocks = list(range(0, len(data), B))
            random.Random(i).shuffle(blocks)
            done = [store.add_block(i, b, data[b : b + B]) for b in blocks]
            assert done[-1]
            assert not any(done[:-1])
            assert await store.finish_piece(i)
            # a final name appears only once all of that file's pieces are good
            for f, entry in enumerate(info.files):
                is_final = store.final_path(f).exists()
                complete = store.layout.file_complete(f, store.have)
                assert is_final == complete, (entry.path, i)
                if is_final and entry.length:
                    assert not store.partial_path(f).exists()
        assert store.have.is_complete
        # upload path: read any block back
        assert await store.read_block(2, 100, 1000) == stream[2 * PL + 100 : 2 * PL + 1100]
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data
    assert not any(p.name.endswith(".part") for p in tmp_path.rglob("*"))


async def test_bad_piece_rejected_and_not_written(tmp_path: Path) -> None:
    info, stream, _ = make_torrent({"x": 2 * PL})
    async with PieceStore(info, tmp_path) as store:
        bad = bytearray(piece(stream, 0))
        bad[5] ^= 1
        assert store.add_block(0, 0, bytes(bad[:B])) is False
        assert store.add_block(0, B, bytes(bad[B:])) is True
        assert await store.finish_piece(0) is False
        assert not store.have[0]
        part = store.partial_path(0)
        assert not part.exists() or part.read_bytes()[:PL] == bytes(PL)
        with pytest.raises(StorageError):
            await store.read_block(0, 0, 10)
        assert await store.write_piece(0, piece(stream, 0))
        assert part.read_bytes()[:PL] == piece(stream, 0)


async def test_kill_midway_then_recheck_resumes(tmp_path: Path) -> None:
    info, stream, contents = make_torrent(SIZES, seed=3)
    n = info.num_pieces
    good = [0, 2, n - 1]
    store = PieceStore(info, tmp_path)
    async with store:
        for i in good:
            assert await store.write_piece(i, piece(stream, i))
        # a piece half received when we are "killed"
        store.add_block(1, 0, piece(stream, 1)[:B])
    # no final-named file with data (zero-length files hold no bytes and may exist)
    for f, entry in enumerate(info.files):
        if entry.length:
            complete = store.layout.file_complete(f, store.have)
            assert store.final_path(f).exists() == complete
    assert not store.final_path(2).exists()  # sub/b.bin needs pieces 0..1 at least
    with pytest.raises(StorageError):
        store.add_block(1, B, b"x" * B)  # closed

    async with PieceStore(info, tmp_path) as again:
        have = await again.recheck()
        assert set(have) == set(good)
        for i in range(n):
            if i not in good:
                assert await again.write_piece(i, piece(stream, i))
        assert again.have.is_complete
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data


async def test_seed_from_finished_folder(tmp_path: Path) -> None:
    info, stream, contents = make_torrent(SIZES, seed=4)
    for name, data in contents.items():
        path = tmp_path / "tor" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    async with PieceStore(info, tmp_path) as store:
        have = await store.recheck()
        assert have.is_complete
        assert (
            await store.read_block(info.num_pieces - 1, 0, 50)
            == piece(stream, info.num_pieces - 1)[:50]
        )
        with pytest.raises(LocalProtocolError):
            await store.read_block(0, PL - 10, 20)  # past the end of the piece
    assert final_files(tmp_path) == {f"tor/{n}" for n in contents}


async def test_recheck_demotes_corrupt_final_file(tmp_path: Path) -> None:
    info, stream, contents = make_torrent({"one": PL, "two": PL}, seed=5)
    for name, data in contents.items():
        (tmp_path / "tor").mkdir(exist_ok=True)
        (tmp_path / "tor" / name).write_bytes(data)
    with open(tmp_path / "tor" / "two", "r+b") as fh:
        fh.write(b"\xff")
    async with PieceStore(info, tmp_path) as store:
        have = await store.recheck()
        assert list(have) == [0]
        assert (tmp_path / "tor" / "one").exists()
        assert not (tmp_path / "tor" / "two").exists()
        assert (tmp_path / "tor" / "two.part").exists()
        assert await store.write_piece(1, piece(stream, 1))
    assert (tmp_path / "tor" / "two").read_bytes() == contents["two"]


def fake_info(path: tuple[str, ...]) -> InfoDict:
    base = build_info("tor", PL, [b"\0" * 20], files=[(("ok",), 10)])
    return InfoDict(
        name=base.name,
        piece_length=PL,
        piece_hashes=base.piece_hashes,
        files=(FileEntry(path=path, length=10, offset=0),),
        private=False,
        raw=base.raw,
        info_hash=base.info_hash,
    )


@pytest.mark.parametrize(
    "path", [("tor", ".."), ("..", "x"), ("tor", "/etc/passwd"), ("tor", "a/../../b"), ("tor", "")]
)
def test_path_traversal_rejected(tmp_path: Path, path: tuple[str, ...]) -> None:
    with pytest.raises(UnsafePathError):
        PieceStore(fake_info(path), tmp_path / "root")


def test_symlink_out_of_root_rejected(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tor").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "tor" / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        PieceStore(fake_info(("tor", "link", "f")), root)


async def test_disk_full_raises_and_piece_not_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info, stream, _ = make_torrent({"x": PL})

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    async with PieceStore(info, tmp_path) as store:
        monkeypatch.setattr(os, "pwrite", full)
        with pytest.raises(DiskFullError):
            await store.write_piece(0, piece(stream, 0))
        assert not store.have[0]
        monkeypatch.undo()
        assert await store.write_piece(0, piece(stream, 0))
    assert (tmp_path / "tor" / "x").read_bytes() == stream


async def test_buffer_bound_and_grid_checks(tmp_path: Path) -> None:
    info, stream, _ = make_torrent({"x": 6 * PL})
    async with PieceStore(info, tmp_path, max_buffer_bytes=4 * PL) as store:
        assert store.max_pieces_in_flight == 4
        for i in range(4):
            store.add_block(i, 0, piece(stream, i)[:B])
        with pytest.raises(StorageError):
            store.add_block(4, 0, piece(stream, 4)[:B])
        with pytest.raises(LocalProtocolError):
            store.add_block(0, 1, b"x" * B)  # off grid
        with pytest.raises(LocalProtocolError):
            store.add_block(0, B, b"x" * 10)  # wrong length
        with pytest.raises(LocalProtocolError):
            await store.finish_piece(0)  # not complete
        store.discard_piece(0)
        store.add_block(4, 0, piece(stream, 4)[:B])


async def test_many_files_lru_handles(tmp_path: Path) -> None:
    sizes = {f"f{i:02d}": 3000 + i for i in range(40)}
    info, stream, contents = make_torrent(sizes, seed=9)
    async with PieceStore(info, tmp_path, max_open_files=3) as store:
        for i in range(info.num_pieces):
            assert await store.write_piece(i, piece(stream, i))
        assert len(store._fds) <= 3
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data


def test_partial_name_clash_rejected(tmp_path: Path) -> None:
    info = build_info("tor", PL, [b"\0" * 20], files=[(("a",), 10), (("a.part",), 10)])
    with pytest.raises(UnsafePathError):
        PieceStore(info, tmp_path)


async def test_oversized_stale_part_is_trimmed(tmp_path: Path) -> None:
    info, stream, contents = make_torrent({"x": PL + 7})
    part = tmp_path / "tor" / "x.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(stream + b"garbage-tail")
    async with PieceStore(info, tmp_path) as store:
        assert (await store.recheck()).is_complete
    assert (tmp_path / "tor" / "x").read_bytes() == contents["x"]
    assert not part.exists()


async def test_picker_and_store_together(tmp_path: Path) -> None:
    """The session's loop in miniature: pick -> receive -> store -> hash -> piece_complete."""
    info, stream, contents = make_torrent(SIZES, seed=11)
    seed_has = Bitfield.all(info.num_pieces)
    async with PieceStore(info, tmp_path, max_buffer_bytes=4 * PL) as store:
        picker = PiecePicker(
            info.num_pieces,
            info.piece_size,
            rng=random.Random(0),
            max_in_progress=store.max_pieces_in_flight,
        )
        picker.peer_bitfield(seed_has)
        corrupt_once = {3}
        for _ in range(1000):
            if picker.is_complete:
                break
            for req in picker.next_requests("seed", seed_has, 7, now=0.0):
                start = req.piece_index * PL + req.begin
                block = stream[start : start + req.length]
                if req.piece_index in corrupt_once and req.begin == 0:
                    corrupt_once.discard(req.piece_index)
                    block = b"\xee" * len(block)
                res = picker.block_received("seed", req)
                if not res.stored:
                    continue
                if store.add_block(req.piece_index, req.begin, block):
                    ok = await store.finish_piece(req.piece_index)
                    blamed = picker.piece_complete(req.piece_index, ok)
                    assert ok or blamed == ["seed"]
        assert picker.is_complete
        assert not corrupt_once  # the bad piece happened, was rejected and fetched again
        assert store.have == picker.have
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data


async def test_enospc_at_fsync_keeps_part_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info, stream, _ = make_torrent({"x": PL})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    async with PieceStore(info, tmp_path) as store:
        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(DiskFullError):
            await store.write_piece(0, piece(stream, 0))
        assert not store.have[0]
        assert not store.final_path(0).exists()


async def test_padding_files_never_created_and_read_as_zeros(tmp_path: Path) -> None:
    rng = random.Random(12)
    a, b = rng.randbytes(PL - 10), rng.randbytes(PL)
    stream = a + bytes(10) + b
    hashes = tuple(hashlib.sha1(stream[i : i + PL]).digest() for i in range(0, len(stream), PL))
    base = build_info("tor", PL, list(hashes), files=[(("a",), 2 * PL)])
    files = (
        FileEntry(path=("tor", "a"), length=PL - 10, offset=0),
        FileEntry(path=("tor", ".pad", "10"), length=10, offset=PL - 10, padding=True),
        FileEntry(path=("tor", "b"), length=PL, offset=PL),
    )
    info = InfoDict(name="tor", piece_length=PL, piece_hashes=hashes, files=files,
                    private=False, raw=base.raw, info_hash=base.info_hash)  # fmt: skip
    async with PieceStore(info, tmp_path) as store:
        for i in range(2):
            assert await store.write_piece(i, piece(stream, i))
        assert await store.read_block(0, PL - 20, 20) == a[-10:] + bytes(10)
    assert final_files(tmp_path) == {"tor/a", "tor/b"}
    assert (tmp_path / "tor" / "a").read_bytes() == a


async def _fetch_all(store: PieceStore, stream: bytes) -> None:
    for i in range(store.layout.num_pieces):
        data = piece(stream, i)
        for b in range(0, len(data), B):
            store.add_block(i, b, data[b : b + B])
        assert await store.finish_piece(i)


async def test_stores_sharing_a_piece_pool_cache_one_copy_of_each_piece(tmp_path: Path) -> None:
    info, stream, _ = make_torrent(SIZES)
    pool: dict[bytes, bytes] = {}
    async with (
        PieceStore(info, tmp_path / "a", piece_pool=pool) as a,
        PieceStore(info, tmp_path / "b", piece_pool=pool) as b,
    ):
        await _fetch_all(a, stream)
        await _fetch_all(b, stream)
        assert len(pool) == info.num_pieces
        for i in range(info.num_pieces):
            size = a.layout.piece_size(i)
            whole_a = await a.read_block(i, 0, size)
            whole_b = await b.read_block(i, 0, size)
            assert whole_a == piece(stream, i)
            assert whole_a is whole_b  # the same object: one copy for both stores
    # Without a pool, each store keeps its own copy.
    async with (
        PieceStore(info, tmp_path / "c") as c,
        PieceStore(info, tmp_path / "d") as d,
    ):
        await _fetch_all(c, stream)
        await _fetch_all(d, stream)
        size = c.layout.piece_size(0)
        assert await c.read_block(0, 0, size) is not await d.read_block(0, 0, size)


async def _fill(store: PieceStore, stream: bytes, i: int, pl: int = PL) -> bool:
    data = piece(stream, i, pl)
    for b in range(0, len(data), B):
        store.add_block(i, b, data[b : b + B])
    return await store.finish_piece(i)


async def test_direct_writes_aligned_spans_buffered_rest(tmp_path: Path) -> None:
    # Piece 3 fills b.bin from offset 0 (aligned: O_DIRECT); piece 4 holds b.bin's last 100
    # bytes and c.bin's start (unaligned: buffered); the last piece is short (buffered).
    sizes = {"a.bin": 3 * PL, "b.bin": PL + 100, "c.bin": 4096 + 1}
    info, stream, contents = make_torrent(sizes)
    async with PieceStore(info, tmp_path) as store:
        for i in reversed(range(info.num_pieces)):
            assert await _fill(store, stream, i)
        assert store._direct_ok  # this file system took O_DIRECT (ext4 here)
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data


async def test_direct_write_disk_full_is_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info, stream, _ = make_torrent({"x": 2 * PL})

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    async with PieceStore(info, tmp_path) as store:
        monkeypatch.setattr(os, "pwrite", full)
        with pytest.raises(DiskFullError):
            await _fill(store, stream, 0)
        assert not store.have[0]
        monkeypatch.undo()
        assert await _fill(store, stream, 0)
        assert await _fill(store, stream, 1)
    assert (tmp_path / "tor" / "x").read_bytes() == stream


@pytest.mark.parametrize("refused_at", ["open", "write"])
async def test_file_system_refusing_direct_io_falls_back_to_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused_at: str
) -> None:
    # As a file system without O_DIRECT answers (EINVAL at open, or at the first write).
    real_open, real_pwrite = os.open, os.pwrite
    direct_fds: set[int] = set()

    def open_(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT:
            if refused_at == "open":
                raise OSError(errno.EINVAL, "Invalid argument")
            fd = real_open(path, flags, *args)  # type: ignore[arg-type]
            direct_fds.add(fd)
            return fd
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    def pwrite(fd: int, data: object, offset: int) -> int:
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "pwrite", pwrite)
    info, stream, _ = make_torrent({"x": 3 * PL})
    async with PieceStore(info, tmp_path) as store:
        for i in range(info.num_pieces):
            assert await _fill(store, stream, i)
        assert not store._direct_ok
    assert (tmp_path / "tor" / "x").read_bytes() == stream


async def test_direct_descriptors_bounded_like_the_others(tmp_path: Path) -> None:
    # Every file half-written before any completes: its O_DIRECT descriptor stays open.
    sizes = {f"f{i:02d}": 2 * PL for i in range(8)}
    info, stream, contents = make_torrent(sizes, seed=3)
    async with PieceStore(info, tmp_path, max_open_files=3) as store:
        for i in [*range(0, info.num_pieces, 2), *range(1, info.num_pieces, 2)]:
            assert await _fill(store, stream, i)
            assert len(store._direct_fds) <= 3
        assert store._direct_ok
    for name, data in contents.items():
        assert (tmp_path / "tor" / name).read_bytes() == data
