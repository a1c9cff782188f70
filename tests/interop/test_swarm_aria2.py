"""Our peer against aria2c on loopback via our tracker (aria2c cannot add a peer by address).

Plaintext, and with aria2c requiring encryption (``--bt-require-crypto=true
--bt-min-crypto-level=arc4``) against our ``--encryption enabled`` and ``required``: then
every link our peer held, sampled while the transfer runs, must have been RC4.
"""

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
from .peers import aria2c, link_kinds

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOCAL = "127.0.0.1"
# aria2 refuses any peer that does not speak MSE, and any MSE stream that is not RC4.
ARIA2_REQUIRE_RC4 = ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
# (multi-file, our encryption policy or None for plaintext with an aria2c that allows it)
CASES = [(False, None), (True, None), (False, "enabled"), (False, "required")]
CASE_IDS = ["single", "multi", "rc4-enabled", "rc4-required"]


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


@pytest.mark.parametrize(("multi", "policy"), CASES, ids=CASE_IDS)
async def test_our_seed_to_aria2c_leech(tmp_path: Path, multi: bool, policy: str | None) -> None:
    path, expected = content(tmp_path / "seed", multi)
    crypto = [] if policy is None else ARIA2_REQUIRE_RC4
    async with tracker() as announce:
        mi, raw = make_torrent(path, 64 * KIB, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        (tmp_path / "aria").mkdir()
        async with (
            SwarmPeer(fast_config(encryption=policy or "enabled"), host=LOCAL) as seed,
            seed.torrent(
                mi.info_hash, tmp_path / "seed", info=mi.info, trackers=mi.announce_list
            ) as seeding,
            link_kinds(seeding) as kinds,
        ):
            args = [
                *crypto,
                "--seed-time=0",
                "-d",
                str(tmp_path / "aria"),
                str(tmp_path / "t.torrent"),
            ]
            with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log") as proc:
                code = await wait_exit(proc, 40)
            assert code == 0, (tmp_path / "aria2.log").read_text()[-3000:]
            assert seeding.stats.uploaded >= mi.info.total_length
    # A plaintext transfer may come and go between two samples; an RC4 one must be seen.
    assert policy is None or (kinds and all(kinds)), f"links to an RC4-only aria2c: {kinds}"
    for rel, data in expected.items():
        assert (tmp_path / "aria" / rel).read_bytes() == data


@pytest.mark.parametrize(("multi", "policy"), CASES, ids=CASE_IDS)
async def test_aria2c_seed_to_our_leech(tmp_path: Path, multi: bool, policy: str | None) -> None:
    path, expected = content(tmp_path / "seed", multi)
    crypto = [] if policy is None else ARIA2_REQUIRE_RC4
    async with tracker() as announce:
        mi, raw = make_torrent(path, 64 * KIB, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        args = [
            *crypto,
            "--seed-ratio=0.0",
            "--check-integrity=true",
            "--bt-seed-unverified=false",
            "-d",
            str(tmp_path / "seed"),
            str(tmp_path / "t.torrent"),
        ]
        with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log"):
            async with (
                SwarmPeer(fast_config(encryption=policy or "enabled"), host=LOCAL) as leech,
                leech.torrent(
                    mi.info_hash, tmp_path / "ours", info=mi.info, trackers=mi.announce_list
                ) as session,
                link_kinds(session) as kinds,
            ):
                await session.wait_complete(40)
                assert session.stats.downloaded_from_peers >= mi.info.total_length
    # A plaintext transfer may come and go between two samples; an RC4 one must be seen.
    assert policy is None or (kinds and all(kinds)), f"links to an RC4-only aria2c: {kinds}"
    for rel, data in expected.items():
        assert (tmp_path / "ours" / rel).read_bytes() == data
