"""``hubswarm put / get / ls`` through click's CliRunner against a real hub in a thread."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hubswarm.cli import cli, transfer
from hubswarm.hub.auth import Role, TokenStore

from .threaded import ThreadedHub


@pytest.fixture
def root() -> click.Group:
    # The root group loads cli/transfer.py once it is in its module list; until then, add it.
    if "get" not in cli.commands:
        transfer.register(cli)
    return cli


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[ThreadedHub, str]]:
    data = tmp_path / "data"
    data.mkdir()
    _, admin = TokenStore(data).create(Role.ADMIN)
    with ThreadedHub(data) as h:
        yield h, admin


def _run(root: click.Group, args: list[str], token: str | None = None) -> Result:
    env = {"HUBSWARM_TOKEN": token} if token else {"HUBSWARM_TOKEN": ""}
    return CliRunner().invoke(root, args, env=env, catch_exceptions=False)


def test_put_get_ls_round_trip(
    root: click.Group, hub: tuple[ThreadedHub, str], tmp_path: Path
) -> None:
    h, token = hub
    content = os.urandom(300_000)
    sha = hashlib.sha256(content).hexdigest()
    src = tmp_path / "data.bin"
    src.write_bytes(content)

    put = _run(root, ["put", str(src), h.url], token)
    assert put.exit_code == 0, put.stderr
    assert put.stdout.startswith(f"uploaded data.bin (300000 bytes, sha256 {sha}, ")
    assert put.stdout.count("\n") == 1

    out = tmp_path / "out.bin"
    get = _run(root, ["get", f"{h.url}/files/data.bin", "-o", str(out), "--token", token])
    assert get.exit_code == 0, get.stderr
    assert get.stdout.startswith(f"saved {out} (300000 bytes, sha256 {sha}, ")
    assert get.stdout.rstrip().endswith("MB/s)")
    assert out.read_bytes() == content

    folder = tmp_path / "dir"
    folder.mkdir()
    get2 = _run(root, ["get", f"{h.url}/files/data.bin", "-o", str(folder)], token)
    assert get2.exit_code == 0, get2.stderr
    assert (folder / "data.bin").read_bytes() == content

    ls = _run(root, ["ls", h.url], token)
    assert ls.exit_code == 0, ls.stderr
    assert ls.stdout.split()[-2:] == [sha, "data.bin"]


def test_get_missing_file_prints_one_error_line(
    root: click.Group, hub: tuple[ThreadedHub, str], tmp_path: Path
) -> None:
    h, token = hub
    res = _run(root, ["get", f"{h.url}/files/missing.bin", "-o", str(tmp_path / "m")], token)
    assert res.exit_code == 1
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hubswarm: error: 404 no such file")
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m")) == []


def test_errors_are_one_line(
    root: click.Group, hub: tuple[ThreadedHub, str], tmp_path: Path
) -> None:
    h, _ = hub
    cases = [
        ["get", f"{h.url}/files/x"],  # no token: 401
        ["get", h.url],  # not a file URL
        ["ls", "http://127.0.0.1:1"],  # nothing listens on port 1
    ]
    for args in cases:
        res = _run(root, args)
        assert res.exit_code == 1, args
        lines = res.stderr.splitlines()
        assert len(lines) == 1, (args, res.stderr)
        assert lines[0].startswith("hubswarm: error: "), args


def test_put_a_folder_keeps_its_tree(
    root: click.Group, hub: tuple[ThreadedHub, str], tmp_path: Path
) -> None:
    h, token = hub
    src = tmp_path / "album"
    (src / "disc 2").mkdir(parents=True)
    (src / "one.txt").write_bytes(b"1" * 10)
    (src / "disc 2" / "two.txt").write_bytes(b"2" * 20)
    (src / ".hidden").write_bytes(b"skipped")
    (src / "link").symlink_to(src / "one.txt")
    put = _run(root, ["put", str(src), h.url], token)
    assert put.exit_code == 0, put.stderr
    assert put.stdout.splitlines()[-1] == "uploaded folder album: 2 files, 30 bytes"
    files = h.data / "files" / "album"
    assert (files / "one.txt").read_bytes() == b"1" * 10
    assert (files / "disc 2" / "two.txt").read_bytes() == b"2" * 20
    assert sorted(p.name for p in files.iterdir()) == ["disc 2", "one.txt"]
    bad = _run(root, ["put", str(src), f"{h.url}/files/x.txt"], token)
    assert bad.exit_code == 1
    assert "base URL" in bad.stderr
