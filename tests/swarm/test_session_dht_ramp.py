"""The session's DHT loop in a flash crowd: quick re-lookups once connected, announce beside,
and back to the steady interval once two lookups in a row bring nobody new.

Run in virtual time on the in-memory network: the lookup counts are exact at each instant.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.clock import Clock
from hubswarm.memnet import MemoryNetwork
from hubswarm.swarm.listener import SwarmPeer

from .swarmkit import KIB, FakeDHT, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(30)


class GrowingDHT(FakeDHT):
    """Each lookup also finds one address never seen before (nobody listens there)."""

    async def get_peers(self, info_hash: bytes) -> list[tuple[str, int]]:
        self.peers.append(("10.9.9.9", 1 + len(self.peers)))
        return await super().get_peers(info_hash)


async def _lookups_at(tmp_path: Path, growing: bool, instants: list[float]) -> list[int]:
    """The number of lookups the leech made at each instant after its session started."""
    make_file(tmp_path / "seed" / "r.bin", 512 * KIB, seed=9)
    mi, _ = make_torrent(tmp_path / "seed" / "r.bin", 64 * KIB)
    network, clock = MemoryNetwork(latency=0.001), Clock(epoch=0.0)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        # A slow seed keeps the link up (two seeds would part): 512 KiB at 64 KiB/s is 8 s.
        seed = await stack.enter_async_context(
            SwarmPeer(
                fast_config(upload_rate=64 * KIB),
                host="10.0.0.1",
                network=network.host("10.0.0.1"),
                clock=clock,
            )
        )
        await stack.enter_async_context(seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info))
        peers = [("10.0.0.1", seed.port)]
        dht = GrowingDHT(peers) if growing else FakeDHT(peers)
        leech = await stack.enter_async_context(
            SwarmPeer(
                fast_config(use_dht=True, announce_interval=2.0),
                host="10.0.0.2",
                dht=dht,
                network=network.host("10.0.0.2"),
                clock=clock,
            )
        )
        started = loop.time()
        session = await stack.enter_async_context(
            leech.torrent(mi.info_hash, tmp_path / "leech", info=mi.info)
        )
        await asyncio.sleep(0.1)
        assert session.links
        assert dht.calls[:2] == ["get_peers", "announce_peer"]
        counts = []
        for at in instants:
            await asyncio.sleep(started + at - loop.time())
            assert session.links, "still connected (the ramp applies to connected peers)"
            counts.append(dht.calls.count("get_peers"))
            assert dht.calls.count("announce_peer") == counts[-1]
        return counts


@pytest.mark.parametrize("growing", [True, False], ids=["crowd-still-arriving", "crowd-met"])
def test_connected_peer_looks_again_soon_until_two_lookups_bring_nobody_new(
    tmp_path: Path, growing: bool
) -> None:
    # The first lookup comes before any connection: alone, the next waits 0.25 s. Connected,
    # the next ones come 0.25, 0.5, 1 s, ... apart, up to the steady interval
    # (announce_interval: 2 s here), while lookups bring new addresses: at 0, 0.25, 0.5, 1,
    # 2 and 4 s (growing). After two in a row that bring none, the next waits the whole
    # interval: at 0, 0.25, 0.5 and then 2.5 and 4.5 s (the crowd met with the first lookup).
    instants = [0.1, 0.3, 0.7, 1.1, 2.1, 3.9, 4.1]
    counts = vtime.run(_lookups_at(tmp_path, growing, instants))
    assert counts == ([1, 2, 3, 4, 5, 5, 6] if growing else [1, 2, 3, 3, 3, 4, 4])
