"""BEP 19 web seeds: a download from the hub alone, and a multi-file one from a static server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from hubswarm.hub.app import HubConfig
from hubswarm.hub.server import running_hub
from hubswarm.proto.metainfo import build_info
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.webseed import file_url

from .swarmkit import KIB, MIB, fast_config, make_file, make_torrent, make_tree

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"


async def test_web_seed_only_download_from_the_hub(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    data = make_file(data_dir / "files" / "ws.bin", 3 * MIB + 77)
    async with running_hub(HubConfig(data_dir=data_dir, anonymous_read=True)) as url:
        mi, _ = make_torrent(data_dir / "files" / "ws.bin", 128 * KIB, web_seeds=[f"{url}/files/"])
        assert mi.url_list == (f"{url}/files/",)
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "leech", info=mi.info, web_seeds=mi.url_list
            ) as session,
        ):
            await session.wait_complete(20)
            # Endgame may fetch a last piece twice (one copy per web seed worker).
            got = session.stats.downloaded_from_webseeds
            assert len(data) <= got <= len(data) + 2 * mi.info.piece_length
            assert session.stats.pieces_from_webseeds == mi.info.num_pieces
            assert session.stats.downloaded_from_peers == 0
    assert (tmp_path / "leech" / "ws.bin").read_bytes() == data


@asynccontextmanager
async def static_server(root: Path) -> AsyncIterator[str]:
    """aiohttp's static files (Range via FileResponse) under ``/seed/``."""
    app = web.Application()
    app.router.add_static("/seed/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOCAL, 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://{LOCAL}:{port}/seed/"
    finally:
        await runner.cleanup()


async def test_multi_file_web_seed(tmp_path: Path) -> None:
    sizes = {"x.bin": 200 * KIB + 1, "y/z.bin": 300 * KIB, "y/empty": 0, "w w.txt": 5}
    files = make_tree(tmp_path / "www" / "tree", sizes)
    async with static_server(tmp_path / "www") as base:
        mi, _ = make_torrent(tmp_path / "www" / "tree", 64 * KIB, web_seeds=[base])
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "leech", info=mi.info, web_seeds=mi.url_list
            ) as session,
        ):
            await session.wait_complete(20)
    for rel, data in files.items():
        assert (tmp_path / "leech" / "tree" / rel).read_bytes() == data


async def test_unreachable_web_seed_does_not_stop_the_peers(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "u.bin", 1 * MIB)
    mi, _ = make_torrent(tmp_path / "seed" / "u.bin", 64 * KIB)
    dead = "http://127.0.0.1:9/nothing/"
    async with (
        SwarmPeer(fast_config(), host=LOCAL) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        SwarmPeer(fast_config(), host=LOCAL) as leech,
        leech.torrent(
            mi.info_hash,
            tmp_path / "leech",
            info=mi.info,
            web_seeds=[dead],
            peers=[(LOCAL, seed.port)],
        ) as session,
    ):
        await session.wait_complete(20)
        assert session.stats.downloaded_from_webseeds == 0
    assert (tmp_path / "leech" / "u.bin").read_bytes() == data


async def test_default_policy_leaves_a_fed_peer_to_the_swarm(tmp_path: Path) -> None:
    """Issue 22: with a seed peer feeding it, a leech under the default web-seed policy
    (assist) takes next to nothing from the hub's web seed; under ``always`` the same leech
    takes more from it."""
    data_dir = tmp_path / "hub"
    data = make_file(data_dir / "files" / "p.bin", 2 * MIB)
    got: dict[str, int] = {}
    async with running_hub(HubConfig(data_dir=data_dir, anonymous_read=True)) as url:
        mi, _ = make_torrent(data_dir / "files" / "p.bin", 64 * KIB, web_seeds=[f"{url}/files/"])
        for mode in ("assist", "always"):
            async with (
                SwarmPeer(fast_config(), host=LOCAL) as seed,
                seed.torrent(mi.info_hash, data_dir / "files", info=mi.info),
                SwarmPeer(fast_config(webseed_mode=mode), host=LOCAL) as leech,
                leech.torrent(
                    mi.info_hash,
                    tmp_path / mode,
                    info=mi.info,
                    web_seeds=mi.url_list,
                    peers=[(LOCAL, seed.port)],
                ) as session,
            ):
                await session.wait_complete(20)
                got[mode] = session.stats.downloaded_from_webseeds
            assert (tmp_path / mode / "p.bin").read_bytes() == data
    # A stall of a second (a loaded host) may let the web seed fill a few pieces; under
    # "always" its share depends on how fast the loopback seed is, but it is never idle.
    assert got["assist"] <= len(data) // 4
    assert got["assist"] < got["always"]


def test_file_url_follows_bep19() -> None:
    h = b"\x00" * 20
    single = build_info("a b.bin", 16 * KIB, (h,), None, 10)
    assert file_url("http://h/files/", single, 0) == "http://h/files/a%20b.bin"
    assert file_url("http://h/exact.bin", single, 0) == "http://h/exact.bin"
    multi = build_info("top", 16 * KIB, (h,), [(("d", "f#1"), 4), (("g",), 6)], None)
    assert file_url("http://h/s/", multi, 0) == "http://h/s/top/d/f%231"
    assert file_url("http://h/s", multi, 1) == "http://h/s/top/g"
