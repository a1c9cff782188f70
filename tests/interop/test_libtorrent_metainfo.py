"""Interop with real libtorrent: .torrents and magnets made by each side load in the other."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import pytest

from hubswarm.errors import MetainfoError
from hubswarm.proto import bencode
from hubswarm.proto.metainfo import Magnet, build_magnet, parse_magnet, parse_metainfo
from hubswarm.swarm.maketorrent import create_torrent

try:
    import libtorrent as lt
except ImportError as exc:  # a missing dependency must fail loudly, never skip
    raise RuntimeError(
        "libtorrent's Python bindings are required for interop tests "
        "(pip install libtorrent, or bash scripts/install.sh --test)"
    ) from exc

pytestmark = pytest.mark.interop

PL = 16 * 1024


def blob(n: int, seed: int) -> bytes:
    return hashlib.sha256(seed.to_bytes(4, "big")).digest() * (n // 32) + b"x" * (n % 32)


def make_tree(root: Path) -> dict[str, bytes]:
    contents = {
        "a.bin": blob(PL - 1, 1),
        "docs/readme.txt": blob(100, 2),
        "docs/z/deep.bin": blob(2 * PL + 1, 3),
        "Été.txt": blob(PL, 4),
    }
    for rel, data in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return contents


def lt_files(ti: Any) -> list[tuple[str, int, bool]]:
    fs = ti.layout()
    return [
        (
            fs.file_path(i),
            fs.file_size(i),
            bool(fs.file_flags(i) & lt.file_storage.flag_pad_file),
        )
        for i in range(fs.num_files())
    ]


def lt_trackers(ti: Any) -> list[str]:
    # trackers() and web_seeds() still work in 2.1 but warn; the warning is not ours.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [t.url for t in ti.trackers()]


def lt_web_seeds(ti: Any) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [w["url"] for w in ti.web_seeds()]


def lt_make(path: Path, flags: int, private: bool = False) -> bytes:
    # lt.list_files + create_torrent(list) is 2.1's replacement for file_storage/add_files.
    ct = lt.create_torrent(lt.list_files(str(path)), PL, flags)
    ct.add_tracker("http://127.0.0.1:1/announce", 0)
    ct.add_url_seed("http://127.0.0.1:2/")
    ct.set_priv(private)
    lt.set_piece_hashes(ct, str(path.parent))
    return bytes(lt.bencode(ct.generate()))


# --- ours -> libtorrent -----------------------------------------------------------------------


@pytest.mark.parametrize("multi", [False, True])
def test_our_torrent_loads_in_libtorrent(tmp_path: Path, multi: bool) -> None:
    if multi:
        target = tmp_path / "share"
        target.mkdir()
        make_tree(target)
    else:
        target = tmp_path / "single.bin"
        target.write_bytes(blob(3 * PL + 5, 9))
    info, data = create_torrent(
        target,
        piece_length=PL,
        trackers=["http://127.0.0.1:1/announce"],
        web_seeds=["http://127.0.0.1:2/"],
        private=True,
    )
    ti = lt.torrent_info(lt.bdecode(data))  # type: ignore[arg-type]  # stubs say bytes; a dict works
    assert ti.info_hashes().v1.to_bytes() == info.info_hash
    assert str(ti.info_hash()) == info.info_hash.hex()
    assert ti.num_pieces() == info.num_pieces
    assert ti.piece_length() == PL
    assert ti.total_size() == info.total_length
    assert ti.name() == info.name
    assert ti.priv()
    assert lt_files(ti) == [("/".join(f.path), f.length, False) for f in info.files]
    for i, digest in enumerate(info.piece_hashes):
        assert ti.hash_for_piece(i) == digest
    assert lt_trackers(ti) == ["http://127.0.0.1:1/announce"]
    assert lt_web_seeds(ti) == ["http://127.0.0.1:2/"]
    # libtorrent's own view of the info section is byte-identical to ours.
    assert bytes(ti.info_section()) == info.raw


def test_libtorrent_checks_our_pieces_against_the_data(tmp_path: Path) -> None:
    target = tmp_path / "share"
    target.mkdir()
    contents = make_tree(target)
    info, _ = create_torrent(target, piece_length=PL)
    # Recompute with libtorrent's hasher over the same folder: same piece hashes.
    # libtorrent's v1 file order is its directory walk; ours is sorted by UTF-8 path (the
    # BEP 52 order, which libtorrent's hybrids use too). Hand it our order to compare hashes.
    entries = sorted(
        lt.list_files(str(target)), key=lambda e: [c.encode() for c in e.filename.split("/")]
    )
    ct = lt.create_torrent(entries, PL, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(tmp_path))
    ti = lt.torrent_info(ct.generate())
    assert [ti.hash_for_piece(i) for i in range(ti.num_pieces())] == list(info.piece_hashes)
    assert sorted(contents) == sorted("/".join(f.path[1:]) for f in info.files)
    # Same files, same order, same hashes: the very same info dict, byte for byte.
    assert ti.info_hashes().v1.to_bytes() == info.info_hash


# --- libtorrent -> ours -----------------------------------------------------------------------


@pytest.mark.parametrize("multi", [False, True])
def test_libtorrent_v1_torrent_loads_in_ours(tmp_path: Path, multi: bool) -> None:
    if multi:
        target = tmp_path / "share"
        target.mkdir()
        make_tree(target)
    else:
        target = tmp_path / "one.bin"
        target.write_bytes(blob(PL + 1, 5))
    data = lt_make(target, lt.create_torrent.v1_only, private=True)
    ti = lt.torrent_info(data)
    meta = parse_metainfo(data)
    assert meta.info_hash == ti.info_hashes().v1.to_bytes()
    assert meta.info.is_multi_file is multi
    assert meta.info.private
    assert meta.info.num_pieces == ti.num_pieces()
    assert [("/".join(f.path), f.length, f.padding) for f in meta.info.files] == lt_files(ti)
    assert meta.trackers == ["http://127.0.0.1:1/announce"]
    assert meta.url_list == ("http://127.0.0.1:2/",)
    if not multi:  # (multi-file order differs: see the test above)
        ours, _ = create_torrent(target, piece_length=PL, private=True)
        assert ours.info_hash == meta.info_hash


def test_libtorrent_hybrid_torrent_loads_in_ours(tmp_path: Path) -> None:
    # libtorrent 2.x makes v1+v2 hybrids by default: v1 'files' with BEP 47 padding files.
    target = tmp_path / "share"
    target.mkdir()
    make_tree(target)
    # Two small files of one size: libtorrent pads both with the same ".pad/<n>" path.
    (target / "same1").write_bytes(b"abc")
    (target / "same2").write_bytes(b"xyz")
    data = lt_make(target, 0)
    ti = lt.torrent_info(data)
    meta = parse_metainfo(data)
    assert meta.info_hash == ti.info_hashes().v1.to_bytes()
    assert [("/".join(f.path), f.length, f.padding) for f in meta.info.files] == lt_files(ti)
    pads = [f.path for f in meta.info.files if f.padding]
    assert len(pads) > len(set(pads))  # repeated padding paths are accepted
    assert meta.info.total_length == ti.total_size()
    assert meta.info.num_pieces == ti.num_pieces()


# --- magnets ----------------------------------------------------------------------------------


def test_our_magnet_parses_in_libtorrent() -> None:
    ours = Magnet(
        info_hash=bytes(range(20)),
        display_name="a b&c é",
        trackers=("http://127.0.0.1:1/announce?x=1&y=2", "udp://127.0.0.1:3"),
        web_seeds=("http://127.0.0.1:2/files/",),
        peers=(("127.0.0.1", 6881), ("::1", 6882)),
    )
    p = lt.parse_magnet_uri(build_magnet(ours))
    assert p.info_hashes.v1.to_bytes() == ours.info_hash
    assert p.name == ours.display_name
    assert list(p.trackers) == list(ours.trackers)
    assert list(p.url_seeds) == list(ours.web_seeds)
    assert [(h, port) for h, port in p.peers] == list(ours.peers)


def test_libtorrent_magnet_parses_in_ours(tmp_path: Path) -> None:
    target = tmp_path / "share"
    target.mkdir()
    make_tree(target)
    ti = lt.torrent_info(lt_make(target, lt.create_torrent.v1_only))
    uri = lt.make_magnet_uri(ti)
    m = parse_magnet(uri)
    assert m.info_hash == ti.info_hashes().v1.to_bytes()
    assert m.display_name == "share"
    assert m.trackers == ("http://127.0.0.1:1/announce",)
    assert m.web_seeds == ("http://127.0.0.1:2/",)
    # Round trip through our builder back into libtorrent.
    assert lt.parse_magnet_uri(build_magnet(m)).info_hashes.v1.to_bytes() == m.info_hash


def test_info_hash_taken_from_original_bytes() -> None:
    # libtorrent keeps unknown info keys; so do we, and both hash the same bytes.
    info = {
        b"length": 5,
        b"name": b"x",
        b"piece length": PL,
        b"pieces": hashlib.sha1(b"hello").digest(),
        b"source": b"somewhere",
    }
    data = bencode.encode({b"info": info})
    ti = lt.torrent_info(data)
    assert parse_metainfo(data).info_hash == ti.info_hashes().v1.to_bytes()


def test_libtorrent_v2_only_torrent_refused_clearly(tmp_path: Path) -> None:
    target = tmp_path / "one.bin"
    target.write_bytes(blob(100, 6))
    with pytest.raises(MetainfoError, match="v2-only"):
        parse_metainfo(lt_make(target, lt.create_torrent.v2_only))
