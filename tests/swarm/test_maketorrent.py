"""create_torrent (swarm.maketorrent) and the `hubswarm torrent` commands."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from hubswarm.errors import ConfigError, UnsafePathError
from hubswarm.proto.metainfo import build_magnet, parse_magnet, parse_metainfo
from hubswarm.swarm import maketorrent
from hubswarm.swarm.maketorrent import create_torrent, list_files

PL = 16 * 1024


def piece_hashes(data: bytes, piece_length: int = PL) -> tuple[bytes, ...]:
    return tuple(
        hashlib.sha1(data[i : i + piece_length]).digest() for i in range(0, len(data), piece_length)
    )


def blob(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


@pytest.mark.parametrize("size", [PL - 1, PL, PL + 1, 3 * PL - 1, 3 * PL, 3 * PL + 1])
def test_single_file_boundaries(tmp_path: Path, size: int) -> None:
    data = blob(size)
    (tmp_path / "f.bin").write_bytes(data)
    info, torrent = create_torrent(tmp_path / "f.bin", piece_length=PL, creation_date=1)
    assert not info.is_multi_file
    assert info.name == "f.bin"
    assert info.total_length == size
    assert info.piece_hashes == piece_hashes(data)
    assert parse_metainfo(torrent).info == info


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_multi_file_hashes_across_boundaries(tmp_path: Path, delta: int) -> None:
    root = tmp_path / "share"
    (root / "sub").mkdir(parents=True)
    contents = {
        "a.bin": blob(PL + delta, 1),
        "empty": b"",
        "sub/b.bin": blob(PL - delta, 2),
        "z.bin": blob(2 * PL + delta, 3),
    }
    for rel, data in contents.items():
        (root / rel).write_bytes(data)
    info, _ = create_torrent(root, piece_length=PL, creation_date=1)
    assert info.is_multi_file
    assert [f.path for f in info.files] == [
        ("share", "a.bin"),
        ("share", "empty"),
        ("share", "sub", "b.bin"),
        ("share", "z.bin"),
    ]
    assert info.piece_hashes == piece_hashes(b"".join(contents.values()))


def test_files_sorted_by_utf8_bytes(tmp_path: Path) -> None:
    for name in ("é", "z", "a", "B", "a b"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-dir" / "x").write_bytes(b"y")
    parts = [p for p, _, _ in list_files(tmp_path)]
    assert parts == [("B",), ("a",), ("a b",), ("a-dir", "x"), ("z",), ("é",)]
    assert parts == sorted(parts, key=lambda p: [c.encode() for c in p])


def test_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = blob(5 * PL + 123)
    (tmp_path / "f").write_bytes(data)
    reads: list[int] = []
    real_open = open

    class Recorder:
        def __init__(self, path: Any, mode: str) -> None:
            self._f = real_open(path, mode)

        def __enter__(self) -> Recorder:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

        def read(self, n: int = -1) -> bytes:
            reads.append(n)
            return bytes(self._f.read(n))

    monkeypatch.setattr(maketorrent, "MAKETORRENT_READ_CHUNK", 1000)
    monkeypatch.setattr(maketorrent, "open", Recorder, raising=False)
    info, _ = create_torrent(tmp_path / "f", piece_length=2 * PL, creation_date=1)
    assert info.piece_hashes == piece_hashes(data, 2 * PL)
    assert reads
    assert all(0 < n <= 1000 for n in reads)


def test_progress_and_fields(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(blob(100))
    seen: list[tuple[int, int]] = []
    info, torrent = create_torrent(
        tmp_path / "f",
        trackers=["http://t1/a", ["http://t2/a", "http://t3/a"]],
        web_seeds=["http://ws/"],
        private=True,
        comment="hello",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (100, 100)
    meta = parse_metainfo(torrent)
    assert meta.info.private
    assert meta.announce_list == (("http://t1/a",), ("http://t2/a", "http://t3/a"))
    assert meta.url_list == ("http://ws/",)
    assert meta.comment == "hello"
    assert meta.creation_date is not None
    assert meta.creation_date > 1_600_000_000
    assert info.piece_length == PL  # auto


def test_symlink_inside_followed_escaping_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "real").write_bytes(b"abc")
    (root / "link").symlink_to(root / "real")
    info, _ = create_torrent(root, creation_date=1)
    assert [f.path[1:] for f in info.files] == [("link",), ("real",)]
    (tmp_path / "secret").write_bytes(b"s")
    (root / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="outside"):
        create_torrent(root)


def test_symlink_loop_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"1")
    (root / "d" / "loop").symlink_to(root / "d")
    with pytest.raises(UnsafePathError, match="loop"):
        create_torrent(root)


@pytest.mark.parametrize("kind", ["empty-dir", "empty-files", "empty-file", "missing", "fifo"])
def test_nothing_to_share_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "t"
    if kind == "empty-dir":
        (target / "sub").mkdir(parents=True)
    elif kind == "empty-files":
        target.mkdir()
        (target / "a").write_bytes(b"")
    elif kind == "empty-file":
        target.write_bytes(b"")
    elif kind == "fifo":
        target.mkdir()
        os.mkfifo(target / "pipe")
    with pytest.raises(ConfigError):
        create_torrent(target)


@pytest.mark.parametrize("piece_length", [0, -PL, PL + 1, 8 * 1024, 256 * 1024 * 1024])
def test_bad_piece_length(tmp_path: Path, piece_length: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ConfigError, match="piece length"):
        create_torrent(tmp_path / "f", piece_length=piece_length)


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> click.Group:
    from hubswarm.cli.torrent import register

    @click.group()
    def root() -> None:
        pass

    register(root)
    return root


def test_cli_create_and_show(tmp_path: Path, cli: click.Group) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(blob(40000))
    out = tmp_path / "d.torrent"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["torrent", "create", str(tmp_path / "d"), "-o", str(out), "--tracker", "http://t/a",
         "--web-seed", "http://ws/", "--piece-length", str(PL), "--private", "--comment", "c"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = parse_metainfo(out.read_bytes())
    assert meta.info_hash.hex() in result.output
    magnet_line = next(line for line in result.output.splitlines() if line.startswith("magnet:"))
    assert parse_magnet(magnet_line).info_hash == meta.info_hash
    assert meta.info.private
    assert meta.info.num_pieces == 3

    again = runner.invoke(cli, ["torrent", "create", str(tmp_path / "d"), "-o", str(out)])
    assert again.exit_code != 0
    assert isinstance(again.exception, ConfigError)

    shown = runner.invoke(cli, ["torrent", "show", str(out)])
    assert shown.exit_code == 0, shown.output
    for text in ("d/x", "40000", meta.info_hash.hex(), "http://t/a", "http://ws/"):
        assert text in shown.output

    magnet = build_magnet(meta.to_magnet())
    shown = runner.invoke(cli, ["torrent", "show", magnet + "&x.pe=[::1]:5"])
    assert shown.exit_code == 0, shown.output
    assert meta.info_hash.hex() in shown.output
    assert "[::1]:5" in shown.output


def test_cli_show_bad_input(tmp_path: Path, cli: click.Group) -> None:
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"not bencode")
    runner = CliRunner()
    for arg in (str(bad), str(tmp_path / "missing"), "magnet:?dn=x"):
        result = runner.invoke(cli, ["torrent", "show", arg])
        assert result.exit_code != 0


def test_broken_symlink_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"1")
    (root / "dangling").symlink_to(root / "nowhere")
    with pytest.raises(ConfigError):
        create_torrent(root)


def test_dot_path_takes_the_folder_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "named"
    root.mkdir()
    (root / "f").write_bytes(b"1")
    monkeypatch.chdir(root)
    info, _ = create_torrent(Path("."))
    assert info.name == "named"
    assert info.files[0].path == ("named", "f")
