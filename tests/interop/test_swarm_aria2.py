"""Our peer against aria2c on loopback via our tracker (aria2c cannot add a peer by address)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from hubswarm.hub.tracker import TrackerConfig, create_tracker_app
from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent, make_tree
from .peers import aria2c

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOCAL = "127.0.0.1"


@asynccontextmanager
async def tracker() -> AsyncIterator[str]:
    """Our standalone tracker on 127.0.0.1 with a 1 s interval; yields the announce URL."""
    runner = web.AppRunner(create_tracker_app(TrackerConfig(interval=1)))
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOCAL, 0)
        await site.start()
        yield f"http://{LOCAL}:{runner.addresses[0][1]}/announce"
    finally:
        await runner.cleanup()


def content(root: Path, multi: bool) -> tuple[Path, dict[str, bytes]]:
    if not multi:
        return root / "s.bin", {"s.bin": make_file(root / "s.bin", 2 * MIB + 1)}
    files = make_tree(root / "m", {"a.bin": 500 * KIB, "b/c.bin": 700 * KIB + 9})
    return root / "m", {f"m/{rel}": data for rel, data in files.items()}


async def wait_exit(proc: object, timeout: float) -> int:
    """Wait for a subprocess.Popen without blocking the event loop."""
    async with asyncio.timeout(timeout):
        while proc.poll() is None:  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)
    return int(proc.returncode)  # type: ignore[attr-defined]


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
async def test_our_seed_to_aria2c_leech(tmp_path: Path, multi: bool) -> None:
    path, expected = content(tmp_path / "seed", multi)
    async with tracker() as announce:
        mi, raw = make_torrent(path, 64 * KIB, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        (tmp_path / "aria").mkdir()
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as seed,
            seed.torrent(
                mi.info_hash, tmp_path / "seed", info=mi.info, trackers=mi.announce_list
            ) as seeding,
        ):
            args = ["--seed-time=0", "-d", str(tmp_path / "aria"), str(tmp_path / "t.torrent")]
            with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log") as proc:
                code = await wait_exit(proc, 40)
            assert code == 0, (tmp_path / "aria2.log").read_text()[-3000:]
            assert seeding.stats.uploaded >= mi.info.total_length
    for rel, data in expected.items():
        assert (tmp_path / "aria" / rel).read_bytes() == data


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
async def test_aria2c_seed_to_our_leech(tmp_path: Path, multi: bool) -> None:
    path, expected = content(tmp_path / "seed", multi)
    async with tracker() as announce:
        mi, raw = make_torrent(path, 64 * KIB, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        args = [
            "--seed-ratio=0.0",
            "--check-integrity=true",
            "--bt-seed-unverified=false",
            "-d",
            str(tmp_path / "seed"),
            str(tmp_path / "t.torrent"),
        ]
        with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log"):
            async with (
                SwarmPeer(fast_config(), host=LOCAL) as leech,
                leech.torrent(
                    mi.info_hash, tmp_path / "ours", info=mi.info, trackers=mi.announce_list
                ) as session,
            ):
                await session.wait_complete(40)
                assert session.stats.downloaded_from_peers >= mi.info.total_length
    for rel, data in expected.items():
        assert (tmp_path / "ours" / rel).read_bytes() == data
