"""The session's DHT loop in a flash crowd: quick re-lookups once connected, announce beside,
and back to the steady interval once two lookups in a row bring nobody new."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubswarm.swarm.dhtramp import DHT_RAMP_FIRST
from hubswarm.swarm.listener import SwarmPeer

from .swarmkit import KIB, FakeDHT, fast_config, make_file, make_torrent, wait_until

pytestmark = pytest.mark.timeout(30)


class GrowingDHT(FakeDHT):
    """Each lookup also finds one address never seen before (nobody listens there)."""

    async def get_peers(self, info_hash: bytes) -> list[tuple[str, int]]:
        self.peers.append(("127.0.0.1", 1 + len(self.peers)))
        return await super().get_peers(info_hash)


@pytest.mark.parametrize("growing", [True, False], ids=["crowd-still-arriving", "crowd-met"])
async def test_connected_peer_looks_again_soon_until_two_lookups_bring_nobody_new(
    tmp_path: Path, growing: bool
) -> None:
    # The first lookup of a flash crowd finds nobody new: the next ones come after 0.25,
    # 0.5 s, ... up to the steady interval (announce_interval: 2 s here) while lookups
    # bring new addresses; after two in a row that bring none, the next waits the whole
    # interval. (After one: in the lab, 4 of a crowd of 8 whose second lookup came before
    # the others' announces never met each other, and their download took 1.8x its bound.)
    make_file(tmp_path / "seed" / "r.bin", 512 * KIB, seed=9)
    mi, _ = make_torrent(tmp_path / "seed" / "r.bin", 64 * KIB)
    # A slow seed keeps the link up (two seeds would part): 512 KiB at 64 KiB/s is 8 s.
    async with (
        SwarmPeer(fast_config(upload_rate=64 * KIB), host="127.0.0.1") as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):
        peers = [("127.0.0.1", seed.port)]
        dht = GrowingDHT(peers) if growing else FakeDHT(peers)
        config = fast_config(use_dht=True, announce_interval=2.0)
        async with (
            SwarmPeer(config, host="127.0.0.1", dht=dht) as leech,
            leech.torrent(mi.info_hash, tmp_path / "leech", info=mi.info) as session,
        ):
            await wait_until(lambda: bool(session.links), 5, "connected to the seed")
            assert dht.calls[:2] == ["get_peers", "announce_peer"]
            # Lookups at 0, 0.25, 0.75 s and then at 1.75 s (growing), or at 0, 0.25, 0.75 s
            # and then not before 2.75 s.
            await asyncio.sleep(DHT_RAMP_FIRST * 3 + 0.6)
            assert session.links, "still connected (the ramp applies to connected peers)"
            assert dht.calls.count("get_peers") == 3
            await asyncio.sleep(1.0)
            lookups = dht.calls.count("get_peers")
            assert lookups == (4 if growing else 3)
            assert dht.calls.count("announce_peer") == lookups
