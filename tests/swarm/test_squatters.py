"""Slots that cannot be squatted (issue 21), in virtual time on a MemoryNetwork.

Idle handshaken peers (a valid handshake, then only keep-alives) and half-open connections
(never a handshake) try to hold a seed's connections; an honest leech must still get in
and finish in about the time it takes without them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubswarm import net, vtime
from hubswarm.clock import Clock
from hubswarm.memnet import MemoryNetwork
from hubswarm.swarm.listener import MAX_PENDING_INCOMING, SwarmPeer
from hubswarm.swarm.session import TorrentSession

from .swarmkit import KIB, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(60)

SEED_IP, LEECH_IP = "10.0.0.1", "10.0.0.2"
PSTR = b"\x13BitTorrent protocol"
KEEPALIVE = b"\x00\x00\x00\x00"


async def _squat(
    network: MemoryNetwork, ip: str, port: int, info_hash: bytes, k: int, *, handshake: bool
) -> None:
    """One hostile connection: a handshake (or nothing), then a keep-alive every 30 s."""
    reader, writer = await net.open_stream(network.host(ip), SEED_IP, port)
    try:
        if handshake:
            writer.write(PSTR + bytes(8) + info_hash + b"-XX0000-squat%07d" % k)
        for _ in range(100):  # bounded; cancelled by the test long before
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30.0):
                    if not await reader.read(65536):
                        return  # the seed closed us
            if handshake:
                writer.write(KEEPALIVE)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _seed(
    tmp: Path, network: MemoryNetwork, clock: Clock
) -> AsyncIterator[tuple[SwarmPeer, TorrentSession, bytes, object]]:
    make_file(tmp / "seed" / "s.bin", 256 * KIB, seed=5)
    mi, _ = make_torrent(tmp / "seed" / "s.bin", 32 * KIB)
    # 2 peers -> 4 link slots; the default one link per address.
    cfg = fast_config(max_peers=2, max_per_address=1, peer_id=b"-HS0100-seed00000000")
    async with (
        SwarmPeer(cfg, host=SEED_IP, network=network.host(SEED_IP), clock=clock) as peer,
        peer.torrent(mi.info_hash, tmp / "seed", info=mi.info, seed_mode=True) as session,
    ):
        yield peer, session, mi.info_hash, mi


async def _leech_time(
    tmp: Path, network: MemoryNetwork, clock: Clock, port: int, mi: object
) -> float:
    loop = asyncio.get_running_loop()
    cfg = fast_config(peer_id=b"-HS0100-leech0000000")
    started = loop.time()
    async with (
        SwarmPeer(cfg, host=LEECH_IP, network=network.host(LEECH_IP), clock=clock) as peer,
        peer.torrent(
            mi.info_hash,  # type: ignore[attr-defined]
            tmp / "leech",
            info=mi.info,  # type: ignore[attr-defined]
            peers=[(SEED_IP, port)],
        ) as session,
    ):
        await session.wait_complete(timeout=120)
    return loop.time() - started


def _run(tmp: Path, squatters: int, same_address: bool, handshake: bool) -> tuple[float, int]:
    """The leech's time under attack, and the most links the seed held to one address."""

    async def main() -> tuple[float, int]:
        network = MemoryNetwork(latency=0.005)
        clock = Clock(epoch=0.0)
        async with (
            _seed(tmp, network, clock) as (peer, session, info_hash, mi),
            asyncio.TaskGroup() as tg,
        ):
            tasks = [
                tg.create_task(
                    _squat(
                        network,
                        "10.9.0.1" if same_address else f"10.9.{k // 250}.{k % 250 + 1}",
                        peer.port,
                        info_hash,
                        k,
                        handshake=handshake,
                    )
                )
                for k in range(squatters)
            ]
            # Handshaken squatters: held long enough to be evictable; half-open ones:
            # the leech comes well within their handshake time-out.
            await asyncio.sleep(30.0 if handshake else 1.0)
            per_address: dict[str, int] = {}
            for link in session.links:
                per_address[link.address[0]] = per_address.get(link.address[0], 0) + 1
            took = await _leech_time(tmp, network, clock, peer.port, mi)
            for t in tasks:
                t.cancel()
        return took, max(per_address.values(), default=0)

    return vtime.run(main())


def test_baseline_without_squatters(tmp_path: Path) -> None:
    took, _ = _run(tmp_path, 0, same_address=False, handshake=True)
    assert took < 1.0


def test_idle_handshaken_peers_from_one_address_hold_one_link(tmp_path: Path) -> None:
    took, most = _run(tmp_path, 100, same_address=True, handshake=True)
    assert most == 1
    assert took < 1.0


def test_idle_handshaken_peers_from_many_addresses_are_evicted(tmp_path: Path) -> None:
    took, most = _run(tmp_path, 100, same_address=False, handshake=True)
    assert most == 1
    assert took < 1.0  # an idle squatter made room at once


def test_half_open_flood_does_not_delay_an_honest_peer(tmp_path: Path) -> None:
    took, _ = _run(tmp_path, 3 * MAX_PENDING_INCOMING, same_address=False, handshake=False)
    assert took < 1.0  # not the 10 s handshake time-out
