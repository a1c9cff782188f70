"""The session's DHT loop in a flash crowd: quick re-lookups once connected, announce beside."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubswarm.swarm.client import SwarmPeer
from hubswarm.swarm.session import DHT_RAMP_FIRST

from .swarmkit import KIB, FakeDHT, fast_config, make_file, make_torrent, wait_until

pytestmark = pytest.mark.timeout(30)


async def test_connected_peer_looks_again_soon_then_backs_off_to_the_interval(
    tmp_path: Path,
) -> None:
    # The first lookup of a flash crowd finds nobody: the next ones come after 0.25, 0.5 s,
    # ... up to announce_interval (1 s here), not a full interval later.
    make_file(tmp_path / "seed" / "r.bin", 512 * KIB, seed=9)
    mi, _ = make_torrent(tmp_path / "seed" / "r.bin", 64 * KIB)
    # A slow seed keeps the link up (two seeds would part): 512 KiB at 64 KiB/s is 8 s.
    async with (
        SwarmPeer(fast_config(upload_rate=64 * KIB), host="127.0.0.1") as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):
        dht = FakeDHT([("127.0.0.1", seed.port)])
        async with (
            SwarmPeer(fast_config(use_dht=True), host="127.0.0.1", dht=dht) as leech,
            leech.torrent(mi.info_hash, tmp_path / "leech", info=mi.info) as session,
        ):
            await wait_until(lambda: bool(session.links), 5, "connected to the seed")
            assert dht.calls[:2] == ["get_peers", "announce_peer"]
            # 0 + 0.25 + 0.5 s: three lookups well before the 1 s interval has passed twice.
            await asyncio.sleep(DHT_RAMP_FIRST * 3 + 0.5)
            assert session.links, "still connected (the ramp applies to connected peers)"
            assert dht.calls.count("get_peers") >= 3
            assert dht.calls.count("announce_peer") == dht.calls.count("get_peers")
