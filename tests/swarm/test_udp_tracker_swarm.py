"""Two of our peers find each other only through a ``udp://`` tracker (BEP 15), in virtual
time on the in-memory network: the torrent's announce URL is used, not skipped."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.hub.tracker import TrackerState
from hubswarm.hub.udp_tracker import running_udp_tracker
from hubswarm.proto.metainfo import Magnet, build_magnet, parse_magnet

from .swarmkit import KIB, MIB, VirtualHosts, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(60)

TRACKER_IP = "10.0.9.1"
URL = f"udp://{TRACKER_IP}:6969/announce"


async def _swarm(tmp_path: Path) -> tuple[int, int, float]:
    data = make_file(tmp_path / "seed" / "f.bin", 1 * MIB, seed=3)
    mi, _ = make_torrent(tmp_path / "seed" / "f.bin", 64 * KIB, trackers=[URL])
    assert mi.announce_list == ((URL,),)
    hosts = VirtualHosts(latency=0.01)
    state = TrackerState(interval=5, rng=random.Random(0), clock=hosts.clock)
    tracker_host = hosts.network.host(TRACKER_IP)
    async with running_udp_tracker(state, TRACKER_IP, 6969, network=tracker_host) as server:
        async with (
            hosts.peer(fast_config(announce_interval=5.0)) as seed,
            seed.torrent(
                mi.info_hash, tmp_path / "seed", info=mi.info, trackers=mi.announce_list,
                seed_mode=True,
            ),
            hosts.peer(fast_config(announce_interval=5.0)) as leech,
        ):  # fmt: skip
            # A magnet with the tracker only (tr=udp://...): no peer address, no DHT.
            magnet = build_magnet(Magnet(info_hash=mi.info_hash, trackers=(URL,)))
            trackers = [(url,) for url in parse_magnet(magnet).trackers]
            assert trackers == [(URL,)]
            started = hosts.clock.now()
            async with leech.torrent(mi.info_hash, tmp_path / "leech", trackers=trackers) as s:
                await s.wait_complete(timeout=30)
                took = hosts.clock.now() - started
        assert (tmp_path / "leech" / "f.bin").read_bytes() == data
        return server.stats.announces, server.stats.connects, took


def test_seed_and_leech_meet_through_our_udp_tracker(tmp_path: Path) -> None:
    announces, connects, took = vtime.run(_swarm(tmp_path))
    assert announces >= 2
    assert connects >= 2
    assert took < 10.0
