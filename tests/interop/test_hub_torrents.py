"""A hub file fetched by its .torrent alone: libtorrent and aria2c, from the hub's web seed
(BEP 19) and, with ``hub serve --seed``, from the hub's own peer over BitTorrent."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote_from_bytes

import aiohttp
import pytest

from hubswarm.hub.app import HubConfig
from hubswarm.hub.server import running_hub
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.proto import bencode
from hubswarm.proto.metainfo import build_metainfo, parse_metainfo

from ..hub.conftest import make_tokens
from ..hub.test_curl import hub_process
from .peers import aria2c, lt_peer

pytestmark = pytest.mark.interop

MIB = 1 << 20


def _tracker(app: object) -> None:
    add_tracker_routes(app, TrackerState(interval=1))  # type: ignore[arg-type]


def _without_web_seed(torrent: bytes) -> bytes:
    """The same torrent (same info-hash) with no url-list: only peers can serve it."""
    mi = parse_metainfo(torrent)
    return build_metainfo(mi.info, announce_list=mi.announce_list, url_list=())


async def _put_and_torrent(url: str, name: str, data: bytes, token: str | None) -> bytes:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        async with s.put(f"{url}/files/{name}", data=io.BytesIO(data), headers=auth) as r:
            assert r.status in (200, 201), await r.text()
        async with s.get(f"{url}/torrents/{name}.torrent") as r:
            assert r.status == 200
            return await r.read()


async def _wait_seeded(url: str, torrent: bytes, timeout: float) -> None:
    """Until the hub's tracker lists a seed of ``torrent`` (BEP 48 scrape): the client's first
    announce must find the hub's peer (libtorrent waits minutes before announcing again)."""
    info_hash = parse_metainfo(torrent).info_hash
    query = "info_hash=" + quote_from_bytes(info_hash, safe="")
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            async with s.get(f"{url}/scrape?{query}") as r:
                files = bencode.decode(await r.read()).get(b"files", {})
            if files.get(info_hash, {}).get(b"complete", 0) >= 1:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"the hub's peer did not announce {info_hash.hex()} in {timeout} s")


def _lt_fetch(torrent: bytes, dest: Path, timeout: float) -> None:
    with lt_peer() as peer:
        peer.add(dest, torrent=torrent)
        peer.wait(peer.is_seed, timeout, "download complete")


def _aria2_fetch(torrent: bytes, dest: Path, tmp: Path, timeout: float) -> None:
    tfile = tmp / "a.torrent"
    tfile.write_bytes(torrent)
    dest.mkdir(parents=True, exist_ok=True)
    log = tmp / "aria2.log"
    with aria2c(["--seed-time=0", "-d", str(dest), str(tfile)], cwd=tmp, log=log) as proc:
        code = proc.wait(timeout=timeout)
    assert code == 0, log.read_text()[-3000:]


@pytest.mark.parametrize("client", ["libtorrent", "aria2c"])
async def test_web_seed_only(tmp_path: Path, client: str) -> None:
    """No peer at all: the client downloads from the hub's HTTP URL in the torrent."""
    data = os.urandom(3 * MIB + 1234)
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    tokens, _ = make_tokens(data_dir)
    config = HubConfig(data_dir=data_dir, anonymous_read=True, shutdown_timeout=2.0)
    async with running_hub(config, configure=_tracker) as url:
        torrent = await _put_and_torrent(url, "web seed.bin", data, tokens["write"])
        mi = parse_metainfo(torrent)
        assert mi.url_list == (f"{url}/files/web%20seed.bin",)
        dest = tmp_path / "got"
        if client == "libtorrent":
            await asyncio.to_thread(_lt_fetch, torrent, dest, 60)
        else:
            await asyncio.to_thread(_aria2_fetch, torrent, dest, tmp_path, 60)
    assert (dest / "web seed.bin").read_bytes() == data


@asynccontextmanager
async def _seeding_hub(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """``hubswarm hub serve --seed`` (a process); yields (URL, write token)."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    tokens, _ = make_tokens(data_dir)
    extra = ["--anonymous-read", "--seed", "--tracker-interval", "1"]
    async with hub_process(data_dir, extra) as (proc, url):
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            seed_line = (await proc.stdout.readline()).decode()
        assert "seeding every file from 127.0.0.1:" in seed_line, seed_line
        yield url, tokens["write"]


@pytest.mark.slow
@pytest.mark.parametrize("client", ["libtorrent", "aria2c"])
async def test_hub_seed_serves_over_bittorrent(tmp_path: Path, client: str) -> None:
    """``--seed``: with the web seed taken out of the torrent, the bytes can only come from the
    hub's peer (found through the hub's tracker); a file uploaded after start is picked up."""
    data = os.urandom(2 * MIB + 77)
    async with _seeding_hub(tmp_path) as (url, token):
        torrent = _without_web_seed(await _put_and_torrent(url, "p2p.bin", data, token))
        assert parse_metainfo(torrent).trackers == [f"{url}/announce"]
        await _wait_seeded(url, torrent, 30)  # picked up by the scan after the upload
        dest = tmp_path / "got"
        started = time.monotonic()
        if client == "libtorrent":
            await asyncio.to_thread(_lt_fetch, torrent, dest, 60)
        else:
            await asyncio.to_thread(_aria2_fetch, torrent, dest, tmp_path, 60)
        assert time.monotonic() - started < 60
    assert (dest / "p2p.bin").read_bytes() == data


@pytest.mark.slow
async def test_hub_seed_and_web_seed_together(tmp_path: Path) -> None:
    """The torrent as served (web seed and tracker): libtorrent completes from both."""
    data = os.urandom(4 * MIB)
    async with _seeding_hub(tmp_path) as (url, token):
        torrent = await _put_and_torrent(url, "both.bin", data, token)
        await _wait_seeded(url, torrent, 30)
        await asyncio.to_thread(_lt_fetch, torrent, tmp_path / "got", 60)
    assert (tmp_path / "got" / "both.bin").read_bytes() == data


@pytest.mark.parametrize("client", ["libtorrent", "aria2c"])
async def test_folder_from_the_web_seed(tmp_path: Path, client: str) -> None:
    """A folder's multi-file torrent: the client asks the hub for ``files/FOLDER/PATH``."""
    files = {"album/one.bin": os.urandom(MIB + 5), "album/cd 2/two.bin": os.urandom(700_000)}
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    tokens, _ = make_tokens(data_dir)
    config = HubConfig(data_dir=data_dir, anonymous_read=True, shutdown_timeout=2.0)
    async with running_hub(config, configure=_tracker) as url:
        for name, data in files.items():
            await _put_and_torrent(url, name, data, tokens["write"])
        async with aiohttp.ClientSession() as s, s.get(f"{url}/torrents/album.torrent") as r:
            torrent = await r.read()
        dest = tmp_path / "got"
        if client == "libtorrent":
            await asyncio.to_thread(_lt_fetch, torrent, dest, 60)
        else:
            await asyncio.to_thread(_aria2_fetch, torrent, dest, tmp_path, 60)
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
