"""``hubswarm put / get / ls`` through click's CliRunner against a real hub in a thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hubswarm.cli import cli, transfer
from hubswarm.hub.app import HubConfig
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.server import running_hub


class ThreadedHub:
    """The hub app on 127.0.0.1 in its own thread and event loop (the CLI runs asyncio.run)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-hub")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = HubConfig(data_dir=self.data, shutdown_timeout=2.0)
        async with running_hub(config) as url:
            self.url = url
            self._ready.set()
            async with asyncio.timeout(120):
                await self._stop.wait()

    def __enter__(self) -> ThreadedHub:
        self._thread.start()
        assert self._ready.wait(10), "hub did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


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
